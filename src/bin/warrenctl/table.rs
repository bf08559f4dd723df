//! rabbitmqctl's list output: a header row of column names, then one
//! tab-separated row per item (`--no-table-headers` drops the header);
//! or with `--formatter json` an array of objects holding those columns.
//! Values print as rabbitmqctl prints them: strings bare, booleans and
//! numbers as they are, tables and lists as JSON.

use super::client::{print_out, Failure};
use serde_json::{Map, Value};

/// How list commands print.
pub struct Output {
    pub headers: bool,
    pub json: bool,
}

/// A list command's column: its rabbitmqctl name and where its value is
/// in the API object (a dotted path).
pub struct Column {
    pub name: String,
    pub path: String,
}

impl Output {
    /// Prints `items` (API objects) in the given columns.
    pub fn print(&self, columns: &[Column], items: &[Value]) -> Result<(), Failure> {
        if self.json {
            let rows: Vec<Value> = items
                .iter()
                .map(|item| {
                    let mut m = Map::new();
                    for c in columns {
                        m.insert(c.name.clone(), lookup(item, &c.path).clone());
                    }
                    Value::Object(m)
                })
                .collect();
            let mut text = serde_json::to_string_pretty(&rows).unwrap_or_default();
            text.push('\n');
            return print_out(&text);
        }
        let mut out = String::new();
        if self.headers {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            out.push_str(&names.join("\t"));
            out.push('\n');
        }
        for item in items {
            let cells: Vec<String> = columns
                .iter()
                .map(|c| cell(lookup(item, &c.path)))
                .collect();
            out.push_str(&cells.join("\t"));
            out.push('\n');
        }
        print_out(&out)
    }
}

fn lookup<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for p in path.split('.') {
        cur = match cur.get(p) {
            Some(x) => x,
            None => return &Value::Null,
        };
    }
    cur
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        // rabbitmqctl prints an empty argument table as an empty list.
        Value::Object(m) if m.is_empty() => "[]".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_print_like_rabbitmqctl() {
        assert_eq!(cell(&json!("q1")), "q1");
        assert_eq!(cell(&json!(true)), "true");
        assert_eq!(cell(&json!(3)), "3");
        assert_eq!(cell(&json!({"x-max-length": 1})), "{\"x-max-length\":1}");
        assert_eq!(cell(&json!([])), "[]");
        assert_eq!(lookup(&json!({"a": {"b": 1}}), "a.b"), &json!(1));
        assert_eq!(lookup(&json!({"a": 1}), "a.b"), &Value::Null);
    }
}
