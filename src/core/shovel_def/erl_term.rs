//! Erlang terms printed as `~tp` does, for RabbitMQ's error texts: the
//! terms a JSON value decodes to, and those `amqp_uri` reports.

use serde_json::Value;

/// The Erlang term a JSON value decodes to (strings are binaries, arrays
/// lists, objects maps, null the atom `null`), or one built for a message.
#[derive(Clone, Debug)]
pub(super) enum Term {
    /// Printed as is: atoms, floats, big integers.
    Raw(String),
    Int(i64),
    /// A binary (`<<"x">>`).
    Bin(String),
    /// A character list (`"x"`).
    Str(String),
    List(Vec<Term>),
    Tuple(Vec<Term>),
    Map(Vec<(Term, Term)>),
}

/// io_lib_pretty's default line length.
pub(super) const LINE: usize = 80;

impl Term {
    pub(super) fn atom(a: &str) -> Term {
        Term::Raw(a.to_string())
    }

    pub(super) fn json(v: &Value) -> Term {
        match v {
            Value::Null => Term::atom("null"),
            Value::Bool(b) => Term::atom(if *b { "true" } else { "false" }),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Term::Int(i),
                None if n.is_u64() => Term::Raw(n.to_string()),
                None => Term::Raw(erl_float(n.as_f64().unwrap_or_default())),
            },
            Value::String(s) => Term::Bin(s.clone()),
            Value::Array(a) => Term::List(a.iter().map(Term::json).collect()),
            Value::Object(m) => {
                let mut pairs: Vec<_> = m.iter().collect();
                pairs.sort_by(|a, b| a.0.cmp(b.0));
                Term::Map(
                    pairs
                        .into_iter()
                        .map(|(k, v)| (Term::Bin(k.clone()), Term::json(v)))
                        .collect(),
                )
            }
        }
    }

    /// On one line.
    pub(super) fn flat(&self) -> String {
        match self {
            Term::Raw(s) => s.clone(),
            Term::Int(i) => i.to_string(),
            Term::Bin(s) if s.is_empty() => "<<>>".into(),
            Term::Bin(s) if s.chars().all(|c| printable(c, u32::MAX)) => {
                let utf8 = if s.is_ascii() { "" } else { "/utf8" };
                format!("<<{}{utf8}>>", quote(s.chars()))
            }
            Term::Bin(s) => {
                let bytes: Vec<String> = s.bytes().map(|b| b.to_string()).collect();
                format!("<<{}>>", bytes.join(","))
            }
            Term::Str(s) if s.is_empty() => "[]".into(),
            Term::Str(s) if s.chars().all(|c| printable(c, 255)) => quote(s.chars()),
            Term::Str(s) => format!("[{}]", join(s.chars().map(|c| (c as u32).to_string()))),
            Term::List(v) => match printable_list(v) {
                Some(s) => quote(s.chars()),
                None => format!("[{}]", join(v.iter().map(Term::flat))),
            },
            Term::Tuple(v) => format!("{{{}}}", join(v.iter().map(Term::flat))),
            Term::Map(v) => format!(
                "#{{{}}}",
                join(
                    v.iter()
                        .map(|(k, v)| format!("{} => {}", k.flat(), v.flat()))
                )
            ),
        }
    }

    /// Appends the term starting at column `col`, with `tail` characters to
    /// follow it on its last line: on one line when it fits in [`LINE`],
    /// else a list, tuple or map has one element a line, aligned after its
    /// opening bracket. (io_lib_pretty also packs short elements on a line;
    /// that refinement is not copied.)
    fn pretty(&self, col: usize, tail: usize, out: &mut String) {
        let flat = self.flat();
        let (open, close, elems): (&str, &str, Vec<(String, &Term)>) = match self {
            Term::List(v) if printable_list(v).is_none() => {
                ("[", "]", v.iter().map(|t| (String::new(), t)).collect())
            }
            Term::Tuple(v) => ("{", "}", v.iter().map(|t| (String::new(), t)).collect()),
            Term::Map(v) => (
                "#{",
                "}",
                v.iter()
                    .map(|(k, t)| (format!("{} => ", k.flat()), t))
                    .collect(),
            ),
            _ => ("", "", Vec::new()),
        };
        if elems.is_empty() || col + flat.chars().count() + tail <= LINE {
            out.push_str(&flat);
            return;
        }
        let inner = col + open.len();
        out.push_str(open);
        let n = elems.len();
        for (i, (key, t)) in elems.into_iter().enumerate() {
            if i > 0 {
                out.push_str(",\n");
                out.extend(std::iter::repeat_n(' ', inner));
            }
            out.push_str(&key);
            let last = i + 1 == n;
            t.pretty(
                inner + key.chars().count(),
                if last { tail + close.len() } else { 1 },
                out,
            );
        }
        out.push_str(close);
    }
}

/// `prefix` followed by `~tp` of `t` (its column counted from the prefix's
/// last line).
pub(super) fn tp(prefix: &str, t: &Term) -> String {
    let col = prefix
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count();
    let mut out = prefix.to_string();
    t.pretty(col, 0, &mut out);
    out
}

fn join(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join(",")
}

/// A list of integers that are printable characters prints as a string.
fn printable_list(v: &[Term]) -> Option<String> {
    if v.is_empty() {
        return None;
    }
    v.iter()
        .map(|t| match t {
            Term::Int(i) => u32::try_from(*i)
                .ok()
                .and_then(char::from_u32)
                .filter(|&c| printable(c, 255)),
            _ => None,
        })
        .collect()
}

/// `io_lib:printable_list`'s characters, up to `max` (255: latin1, the
/// default printable range for lists; binaries are printed as UTF-8).
fn printable(c: char, max: u32) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\t' | '\u{b}' | '\u{8}' | '\u{c}' | '\u{1b}' | ' '..='~'
    ) || ((c as u32) >= 0xa0 && (c as u32) <= max)
}

/// A double-quoted string with Erlang's escapes.
fn quote(chars: impl Iterator<Item = char>) -> String {
    let mut s = String::from('"');
    for c in chars {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            '\u{b}' => s.push_str("\\v"),
            '\u{8}' => s.push_str("\\b"),
            '\u{c}' => s.push_str("\\f"),
            '\u{1b}' => s.push_str("\\e"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// A float as Erlang prints it: shortest round-trip digits, `1.0e21`
/// rather than `1e21`. (Erlang switches to the exponent form at other
/// magnitudes than Rust does: an approximation for unusual values.)
fn erl_float(f: f64) -> String {
    let s = format!("{f:?}");
    match s.split_once('e') {
        Some((m, e)) if !m.contains('.') => format!("{m}.0e{e}"),
        _ => s,
    }
}
