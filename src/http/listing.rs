//! The query parameters every list endpoint of RabbitMQ's management API
//! takes, applied to a list of JSON objects: `name` (+ `use_regex`)
//! filtering, `sort` (a dotted field path, e.g.
//! `message_stats.publish_details.rate`) and `sort_reverse`, `columns`
//! (dotted paths kept, the rest dropped), and pagination (`page`,
//! `page_size` ≤ 500) answered as `{items, page, page_count, page_size,
//! item_count, filtered_count, total_count}`. Without `page` the answer is
//! the bare array, as in RabbitMQ.

use super::ApiError;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Largest `page_size` RabbitMQ accepts.
pub const MAX_PAGE_SIZE: usize = 500;
/// `page_size` when `page` is given without it.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The list parameters of one request.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub name: Option<String>,
    pub use_regex: bool,
    pub sort: Option<String>,
    pub sort_reverse: bool,
    pub columns: Option<Vec<String>>,
    /// `(page, page_size)`, both from 1.
    pub page: Option<(usize, usize)>,
    /// `disable_stats=true`: message_stats and rates are left out.
    pub disable_stats: bool,
}

impl ListQuery {
    /// Reads the parameters; a bad `page` or `page_size` is a 400 as in
    /// RabbitMQ.
    pub fn parse(q: &HashMap<String, String>) -> Result<ListQuery, ApiError> {
        let flag = |k: &str| q.get(k).is_some_and(|v| v == "true");
        let page = match q.get("page") {
            None => None,
            Some(p) => {
                let page: usize = p.parse().ok().filter(|&n| n >= 1).ok_or_else(|| {
                    ApiError::bad_request(&format!("{p} is not a valid page number"))
                })?;
                let size: usize = match q.get("page_size") {
                    None => DEFAULT_PAGE_SIZE,
                    Some(s) => s.parse().ok().filter(|&n| n >= 1).ok_or_else(|| {
                        ApiError::bad_request(&format!("{s} is not a valid page size"))
                    })?,
                };
                if size > MAX_PAGE_SIZE {
                    return Err(ApiError::bad_request(&format!(
                        "Page size cannot be greater than {MAX_PAGE_SIZE}"
                    )));
                }
                Some((page, size))
            }
        };
        Ok(ListQuery {
            name: q.get("name").filter(|n| !n.is_empty()).cloned(),
            use_regex: flag("use_regex"),
            sort: q.get("sort").filter(|s| !s.is_empty()).cloned(),
            sort_reverse: flag("sort_reverse"),
            columns: q.get("columns").filter(|c| !c.is_empty()).map(|c| {
                c.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
            page,
            disable_stats: flag("disable_stats"),
        })
    }

    /// Filters, sorts, pages and trims `items`; the JSON answer.
    pub fn apply(&self, mut items: Vec<Value>) -> Result<Value, ApiError> {
        let total = items.len();
        if let Some(name) = &self.name {
            let keep = name_filter(name, self.use_regex)?;
            items.retain(|v| keep(v.get("name").and_then(Value::as_str).unwrap_or("")));
        }
        let filtered = items.len();
        if let Some(sort) = &self.sort {
            let path: Vec<&str> = sort.split('.').collect();
            items.sort_by(|a, b| compare(lookup(a, &path), lookup(b, &path)));
        }
        if self.sort_reverse {
            items.reverse();
        }
        let page = self.page.map(|(page, size)| {
            let page_count = filtered.div_ceil(size).max(1);
            (page, size, page_count)
        });
        if let Some((page, size, page_count)) = page {
            if page > page_count {
                return Err(ApiError::bad_request("Page out of range"));
            }
            items = items
                .into_iter()
                .skip((page - 1) * size)
                .take(size)
                .collect();
        }
        if let Some(cols) = &self.columns {
            items = items.into_iter().map(|v| keep_columns(v, cols)).collect();
        }
        Ok(match page {
            None => Value::Array(items),
            Some((page, size, page_count)) => serde_json::json!({
                "filtered_count": filtered,
                "item_count": items.len(),
                "items": items,
                "page": page,
                "page_count": page_count,
                "page_size": size,
                "total_count": total,
            }),
        })
    }

    /// `apply` for items that are costly to render (100,000 queues), as
    /// JSON bytes: the name filter, the sort and the page run on the items
    /// themselves, and only the page is rendered, one item at a time
    /// straight into the output (no tree of every item in memory).
    /// `key(item, field)` gives the value of a sort field cheaply, or None
    /// for a field it does not know, in which case every item is rendered
    /// and `apply` does the rest.
    pub fn apply_lazy<T>(
        &self,
        items: Vec<T>,
        name: impl Fn(&T) -> &str,
        key: impl Fn(&T, &str) -> Option<Value>,
        render: impl Fn(&T) -> Value,
    ) -> Result<Vec<u8>, ApiError> {
        let knows_sort = match (&self.sort, items.first()) {
            (Some(s), Some(first)) => key(first, s).is_some(),
            _ => true,
        };
        if !knows_sort {
            let v = self.apply(items.iter().map(render).collect())?;
            return serde_json::to_vec(&v).map_err(|e| ApiError::internal(&e.to_string()));
        }
        let total = items.len();
        let mut items = items;
        if let Some(n) = &self.name {
            let keep = name_filter(n, self.use_regex)?;
            items.retain(|t| keep(name(t)));
        }
        let filtered = items.len();
        if let Some(sort) = &self.sort {
            let mut keyed: Vec<(Option<Value>, T)> =
                items.into_iter().map(|t| (key(&t, sort), t)).collect();
            keyed.sort_by(|a, b| compare(a.0.as_ref(), b.0.as_ref()));
            items = keyed.into_iter().map(|(_, t)| t).collect();
        }
        if self.sort_reverse {
            items.reverse();
        }
        let page = self.page.map(|(page, size)| {
            let page_count = filtered.div_ceil(size).max(1);
            (page, size, page_count)
        });
        let chosen: Vec<&T> = match page {
            Some((page, size, page_count)) => {
                if page > page_count {
                    return Err(ApiError::bad_request("Page out of range"));
                }
                items.iter().skip((page - 1) * size).take(size).collect()
            }
            None => items.iter().collect(),
        };
        let count = chosen.len();
        let mut out = Vec::with_capacity(count * 512 + 256);
        if let Some((_, _, _)) = page {
            out.extend_from_slice(
                format!("{{\"filtered_count\":{filtered},\"item_count\":{count},\"items\":")
                    .as_bytes(),
            );
        }
        out.push(b'[');
        for (i, t) in chosen.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let mut v = render(t);
            if let Some(cols) = &self.columns {
                v = keep_columns(v, cols);
            }
            serde_json::to_writer(&mut out, &v).map_err(|e| ApiError::internal(&e.to_string()))?;
        }
        out.push(b']');
        if let Some((page, size, page_count)) = page {
            out.extend_from_slice(
                format!(
                    ",\"page\":{page},\"page_count\":{page_count},\"page_size\":{size},\"total_count\":{total}}}"
                )
                .as_bytes(),
            );
        }
        Ok(out)
    }

    /// `columns=` for a single object (GET of one queue, exchange…).
    pub fn trim_one(&self, v: Value) -> Value {
        match &self.columns {
            Some(cols) => keep_columns(v, cols),
            None => v,
        }
    }
}

/// The name filter: a case-insensitive substring, or with `use_regex` a
/// regular expression (a bad one is a 400).
fn name_filter(name: &str, use_regex: bool) -> Result<Box<dyn Fn(&str) -> bool>, ApiError> {
    if use_regex {
        let re = regex::RegexBuilder::new(name)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| ApiError::bad_request(&format!("invalid regex: {e}")))?;
        Ok(Box::new(move |s| re.is_match(s)))
    } else {
        let needle = name.to_lowercase();
        Ok(Box::new(move |s| s.to_lowercase().contains(&needle)))
    }
}

fn lookup<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    Some(cur)
}

/// Missing values first, then numbers, then strings; numbers numerically,
/// strings case-insensitively (RabbitMQ sorts names that way).
fn compare(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn rank(v: Option<&Value>) -> u8 {
        match v {
            None | Some(Value::Null) => 0,
            Some(Value::Bool(_)) => 1,
            Some(Value::Number(_)) => 2,
            Some(Value::String(_)) => 3,
            _ => 4,
        }
    }
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x
            .to_lowercase()
            .cmp(&y.to_lowercase())
            .then_with(|| x.cmp(y)),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Keeps the dotted paths `cols` of `v` (nested objects rebuilt as needed).
fn keep_columns(v: Value, cols: &[String]) -> Value {
    let mut out = Map::new();
    for col in cols {
        let path: Vec<&str> = col.split('.').collect();
        if let Some(x) = lookup(&v, &path) {
            insert_path(&mut out, &path, x.clone());
        }
    }
    Value::Object(out)
}

fn insert_path(m: &mut Map<String, Value>, path: &[&str], x: Value) {
    if path.len() == 1 {
        m.insert(path[0].to_string(), x);
        return;
    }
    let child = m
        .entry(path[0].to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(c) = child {
        insert_path(c, &path[1..], x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(pairs: &[(&str, &str)]) -> ListQuery {
        let m = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ListQuery::parse(&m).unwrap()
    }

    fn items() -> Vec<Value> {
        vec![
            json!({"name": "b", "messages": 3, "message_stats": {"publish_details": {"rate": 1.5}}}),
            json!({"name": "A", "messages": 10}),
            json!({"name": "c-orders", "messages": 1, "message_stats": {"publish_details": {"rate": 0.5}}}),
        ]
    }

    #[test]
    fn bare_array_without_page() {
        let v = q(&[]).apply(items()).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 3);
    }

    #[test]
    fn paginates_with_counts() {
        let v = q(&[("page", "2"), ("page_size", "2"), ("sort", "name")])
            .apply(items())
            .unwrap();
        assert_eq!(v["page"], 2);
        assert_eq!(v["page_count"], 2);
        assert_eq!(v["page_size"], 2);
        assert_eq!(v["item_count"], 1);
        assert_eq!(v["filtered_count"], 3);
        assert_eq!(v["total_count"], 3);
        assert_eq!(v["items"][0]["name"], "c-orders");
    }

    #[test]
    fn sorts_by_nested_field_missing_first() {
        let v = q(&[
            ("sort", "message_stats.publish_details.rate"),
            ("sort_reverse", "true"),
        ])
        .apply(items())
        .unwrap();
        let names: Vec<_> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("b"), json!("c-orders"), json!("A")]);
    }

    #[test]
    fn filters_by_substring_or_regex() {
        let v = q(&[("name", "ORD")]).apply(items()).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1);
        let v = q(&[("name", "^[ab]$"), ("use_regex", "true")])
            .apply(items())
            .unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1, "regex is case-sensitive");
        let bad = q(&[("name", "(("), ("use_regex", "true")]).apply(items());
        assert!(bad.is_err());
    }

    #[test]
    fn columns_keep_dotted_paths() {
        let v = q(&[("columns", "name,message_stats.publish_details.rate")])
            .apply(items())
            .unwrap();
        assert_eq!(
            v[0],
            json!({"name": "b", "message_stats": {"publish_details": {"rate": 1.5}}})
        );
        assert_eq!(v[1], json!({"name": "A"}));
    }

    /// The lazy path answers exactly what the plain one does, for sort
    /// fields it knows and (falling back) for those it does not.
    #[test]
    fn lazy_and_plain_agree() {
        let key = |v: &Value, f: &str| match f {
            "name" | "messages" => Some(v[f].clone()),
            _ => None,
        };
        let queries: &[&[(&str, &str)]] = &[
            &[],
            &[("sort", "name")],
            &[("sort", "messages"), ("sort_reverse", "true")],
            &[("page", "1"), ("page_size", "2"), ("sort", "name")],
            &[("page", "2"), ("page_size", "2"), ("name", "o")],
            &[("page", "1"), ("page_size", "1"), ("name", "o")],
            &[("sort", "message_stats.publish_details.rate")],
            &[("columns", "name"), ("sort", "messages")],
        ];
        for query in queries {
            let lq = q(query);
            let plain = lq.apply(items()).map_err(|e| e.reason);
            let lazy = lq
                .apply_lazy(items(), |v| v["name"].as_str().unwrap(), key, |v| v.clone())
                .map(|bytes| serde_json::from_slice::<Value>(&bytes).unwrap())
                .map_err(|e| e.reason);
            assert_eq!(plain, lazy, "{query:?}");
        }
    }

    #[test]
    fn page_limits() {
        let m = |p: &str, s: &str| {
            let m: HashMap<String, String> = [("page", p), ("page_size", s)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            ListQuery::parse(&m)
        };
        assert!(m("1", "501").is_err());
        assert!(m("0", "10").is_err());
        assert!(m("x", "10").is_err());
        assert!(m("1", "500").is_ok());
        let out_of_range = q(&[("page", "3"), ("page_size", "2")]).apply(items());
        assert!(out_of_range.is_err());
        // An empty list still has page 1.
        let empty = q(&[("page", "1")]).apply(vec![]).unwrap();
        assert_eq!(empty["page_count"], 1);
        assert_eq!(empty["items"], json!([]));
    }
}
