//! Headers-exchange matching: does a message's `headers` table satisfy a
//! binding's arguments? Follows RabbitMQ's `rabbit_exchange_type_headers`
//! (3.13 / 4.x, where messages are routed through `mc:routing_headers`).
//!
//! # Rules
//! The binding argument `x-match` selects the mode (default `all`):
//! - `all` / `any`: every / at least one binding argument must match. Binding
//!   arguments whose name starts with `x-` are skipped, so `x-` headers in the
//!   message never take part either.
//! - `all-with-x` / `any-with-x`: the same, but `x-` arguments count (only
//!   `x-match` itself is skipped).
//! - `all` with no argument left to check matches every message; `any` with
//!   none matches nothing. A message without headers behaves like one with an
//!   empty table.
//! - An argument of type void matches when the header is present, whatever
//!   its value (even void).
//! - Otherwise the header must be present with an equal value.
//!
//! # Value equality
//! RabbitMQ drops the field types when it builds the routing headers and
//! compares the bare Erlang values with `=:=`. That means, and this module
//! does the same:
//! - every integer type compares by number: `I32(5)` matches `I64(5)` and
//!   `U8(5)`;
//! - `F32` and `F64` compare by number, after widening the `F32`; an integer
//!   never equals a float (`=:=` is strict): `I32(1)` does not match `F64(1.0)`;
//! - a long string equals a byte array with the same bytes (both are binaries);
//! - booleans, decimals, timestamps only equal their own kind;
//! - arrays and nested tables keep their element types in RabbitMQ, so they
//!   must be structurally equal including types.
//!
//! One deliberate divergence: RabbitMQ 3.13+ scales a *header* timestamp to
//! milliseconds but not a *binding* timestamp, so a timestamp argument only
//! matches a timestamp header of 0 (or an integer header 1000 times larger).
//! That looks accidental; here a timestamp equals a timestamp with the same
//! seconds, which is also what RabbitMQ 3.12 and earlier did.
//!
//! If a key appears twice in the message headers the last one wins (RabbitMQ
//! folds the table into a map). Matching never allocates.

use crate::core::error::CoreError;
use crate::protocol::table::{FieldTable, FieldValue};
use std::fmt::Write;

/// How a headers binding combines its arguments (the `x-match` argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XMatch {
    /// Every non-`x-` argument must match (the default).
    All,
    /// At least one non-`x-` argument must match.
    Any,
    /// Every argument except `x-match` must match.
    AllWithX,
    /// At least one argument other than `x-match` must match.
    AnyWithX,
}

/// Reads `x-match` from binding arguments, as RabbitMQ validates a binding.
///
/// A missing `x-match` means [`XMatch::All`]. Anything else than one of the
/// four long strings is refused with RabbitMQ's explanation (a precondition
/// failure: the 0-9-1 channel closes with 406), for example
/// `PRECONDITION_FAILED - Invalid x-match field value <<"foo">>; expected all, any, all-with-x, or any-with-x`
/// or, for a value that is not a long string,
/// `PRECONDITION_FAILED - Invalid x-match field type signedint (value 1); expected longstr`.
pub fn parse_x_match(args: &FieldTable) -> Result<XMatch, CoreError> {
    // rabbit_misc:table_lookup takes the first occurrence.
    let Some((_, value)) = args.0.iter().find(|(k, _)| &k[..] == b"x-match") else {
        return Ok(XMatch::All);
    };
    match value {
        FieldValue::LongStr(s) => match &s[..] {
            b"all" => Ok(XMatch::All),
            b"any" => Ok(XMatch::Any),
            b"all-with-x" => Ok(XMatch::AllWithX),
            b"any-with-x" => Ok(XMatch::AnyWithX),
            other => {
                let mut msg = String::from("Invalid x-match field value ");
                erl_binary(&mut msg, other);
                msg.push_str("; expected all, any, all-with-x, or any-with-x");
                Err(CoreError::PreconditionFailed(msg))
            }
        },
        other => {
            let mut msg = String::from("Invalid x-match field type ");
            msg.push_str(erl_type(other));
            msg.push_str(" (value ");
            erl_value(&mut msg, other);
            msg.push_str("); expected longstr");
            Err(CoreError::PreconditionFailed(msg))
        }
    }
}

/// True if a message with `headers` matches a binding with arguments `args`
/// and mode `mode` (from [`parse_x_match`] on the same `args`). Does not
/// allocate.
pub fn headers_match(args: &FieldTable, mode: XMatch, headers: Option<&FieldTable>) -> bool {
    let (need_all, with_x) = match mode {
        XMatch::All => (true, false),
        XMatch::Any => (false, false),
        XMatch::AllWithX => (true, true),
        XMatch::AnyWithX => (false, true),
    };
    let headers: &[_] = headers.map_or(&[], |h| &h.0[..]);
    for (key, want) in &args.0 {
        let key = &key[..];
        if key == b"x-match" || (!with_x && key.starts_with(b"x-")) {
            continue;
        }
        // Last occurrence wins, like the map RabbitMQ folds headers into.
        let got = headers.iter().rev().find(|(k, _)| &k[..] == key);
        let ok = match (want, got) {
            (_, None) => false,
            (FieldValue::Void, Some(_)) => true,
            (want, Some((_, got))) => value_eq(want, got),
        };
        // Short-circuit exactly as RabbitMQ's match_all / match_any do.
        if ok != need_all {
            return ok;
        }
    }
    need_all
}

/// An integer-typed value as a number (all AMQP integer types fit in i64).
fn as_int(v: &FieldValue) -> Option<i64> {
    Some(match *v {
        FieldValue::I8(x) => x.into(),
        FieldValue::U8(x) => x.into(),
        FieldValue::I16(x) => x.into(),
        FieldValue::U16(x) => x.into(),
        FieldValue::I32(x) => x.into(),
        FieldValue::U32(x) => x.into(),
        FieldValue::I64(x) => x,
        _ => return None,
    })
}

/// A float-typed value as an f64 (f32 widens exactly).
fn as_float(v: &FieldValue) -> Option<f64> {
    match *v {
        FieldValue::F32(x) => Some(x.into()),
        FieldValue::F64(x) => Some(x),
        _ => None,
    }
}

/// RabbitMQ's comparison of a binding value with a header value: the Erlang
/// values with their AMQP types erased, compared with `=:=` (see module docs).
fn value_eq(want: &FieldValue, got: &FieldValue) -> bool {
    use FieldValue as V;
    if let (Some(a), Some(b)) = (as_int(want), as_int(got)) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (as_float(want), as_float(got)) {
        return a == b;
    }
    match (want, got) {
        (V::LongStr(a) | V::ByteArray(a), V::LongStr(b) | V::ByteArray(b)) => a == b,
        (V::Bool(a), V::Bool(b)) => a == b,
        (V::Decimal(ae, av), V::Decimal(be, bv)) => ae == be && av == bv,
        (V::Timestamp(a), V::Timestamp(b)) => a == b,
        // Elements of arrays and tables keep their types in Erlang
        // ({Type, Value} tuples), so these compare structurally, typed.
        (V::Array(a), V::Array(b)) => a == b,
        (V::Table(a), V::Table(b)) => a == b,
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Erlang-style rendering of values, for the error text only (`~tp` output).

/// RabbitMQ's name for a field value's type (`rabbit_binary_parser` atoms).
fn erl_type(v: &FieldValue) -> &'static str {
    use FieldValue as V;
    match v {
        V::Bool(_) => "bool",
        V::I8(_) => "byte",
        V::U8(_) => "unsignedbyte",
        V::I16(_) => "short",
        V::U16(_) => "unsignedshort",
        V::I32(_) => "signedint",
        V::U32(_) => "unsignedint",
        V::I64(_) => "long",
        V::F32(_) => "float",
        V::F64(_) => "double",
        V::Decimal(..) => "decimal",
        V::LongStr(_) => "longstr",
        V::Array(_) => "array",
        V::Timestamp(_) => "timestamp",
        V::Table(_) => "table",
        V::Void => "void",
        V::ByteArray(_) => "binary",
    }
}

/// Writes a value the way Erlang's `~tp` prints its decoded form.
fn erl_value(out: &mut String, v: &FieldValue) {
    use FieldValue as V;
    if let Some(i) = as_int(v) {
        let _ = write!(out, "{i}");
        return;
    }
    if let Some(f) = as_float(v) {
        let _ = write!(out, "{f:?}");
        return;
    }
    match v {
        V::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        V::Decimal(e, m) => {
            let _ = write!(out, "{{{e},{m}}}");
        }
        V::LongStr(b) | V::ByteArray(b) => erl_binary(out, b),
        V::Timestamp(t) => {
            let _ = write!(out, "{t}");
        }
        V::Void => out.push_str("undefined"),
        V::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{{{},", erl_type(item));
                erl_value(out, item);
                out.push('}');
            }
            out.push(']');
        }
        V::Table(t) => {
            out.push('[');
            for (i, (k, item)) in t.0.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('{');
                erl_binary(out, k);
                let _ = write!(out, ",{},", erl_type(item));
                erl_value(out, item);
                out.push('}');
            }
            out.push(']');
        }
        // Numbers were handled above.
        _ => {}
    }
}

/// Writes a binary as Erlang prints it: `<<"text">>` when printable ASCII,
/// `<<"text"/utf8>>` when printable UTF-8, otherwise `<<1,2,3>>`.
fn erl_binary(out: &mut String, b: &[u8]) {
    let printable = |c: char| {
        !c.is_control()
            || matches!(
                c,
                '\n' | '\r' | '\t' | '\u{b}' | '\u{8}' | '\u{c}' | '\u{1b}'
            )
    };
    match std::str::from_utf8(b) {
        Ok(s) if !s.is_empty() && s.chars().all(printable) => {
            out.push_str("<<\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{b}' => out.push_str("\\v"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    '\u{1b}' => out.push_str("\\e"),
                    c => out.push(c),
                }
            }
            out.push('"');
            if !s.is_ascii() {
                out.push_str("/utf8");
            }
            out.push_str(">>");
        }
        _ => {
            out.push_str("<<");
            for (i, byte) in b.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{byte}");
            }
            out.push_str(">>");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use FieldValue as V;

    fn s(x: &str) -> V {
        V::LongStr(Bytes::copy_from_slice(x.as_bytes()))
    }

    fn table(pairs: &[(&str, V)]) -> FieldTable {
        FieldTable(
            pairs
                .iter()
                .map(|(k, v)| (Bytes::copy_from_slice(k.as_bytes()), v.clone()))
                .collect(),
        )
    }

    /// Binding args -> parse mode -> match against headers.
    fn hm(args: &[(&str, V)], headers: Option<&[(&str, V)]>) -> bool {
        let args = table(args);
        let mode = parse_x_match(&args).expect("valid x-match");
        let headers = headers.map(table);
        headers_match(&args, mode, headers.as_ref())
    }

    #[test]
    fn parse_modes() {
        assert_eq!(parse_x_match(&table(&[])), Ok(XMatch::All));
        assert_eq!(parse_x_match(&table(&[("a", s("b"))])), Ok(XMatch::All));
        assert_eq!(
            parse_x_match(&table(&[("x-match", s("all"))])),
            Ok(XMatch::All)
        );
        assert_eq!(
            parse_x_match(&table(&[("x-match", s("any"))])),
            Ok(XMatch::Any)
        );
        assert_eq!(
            parse_x_match(&table(&[("x-match", s("all-with-x"))])),
            Ok(XMatch::AllWithX)
        );
        assert_eq!(
            parse_x_match(&table(&[("x-match", s("any-with-x"))])),
            Ok(XMatch::AnyWithX)
        );
        // First occurrence wins, as with rabbit_misc:table_lookup.
        assert_eq!(
            parse_x_match(&table(&[("x-match", s("any")), ("x-match", s("all"))])),
            Ok(XMatch::Any)
        );
    }

    #[test]
    fn parse_errors_use_rabbitmq_wording() {
        assert_eq!(
            parse_x_match(&table(&[("x-match", s("foo"))]))
                .unwrap_err()
                .to_string(),
            "PRECONDITION_FAILED - Invalid x-match field value <<\"foo\">>; \
             expected all, any, all-with-x, or any-with-x"
        );
        assert_eq!(
            parse_x_match(&table(&[("x-match", s("ALL"))]))
                .unwrap_err()
                .to_string(),
            "PRECONDITION_FAILED - Invalid x-match field value <<\"ALL\">>; \
             expected all, any, all-with-x, or any-with-x"
        );
        assert_eq!(
            parse_x_match(&table(&[("x-match", s(""))]))
                .unwrap_err()
                .to_string(),
            "PRECONDITION_FAILED - Invalid x-match field value <<>>; \
             expected all, any, all-with-x, or any-with-x"
        );
        assert_eq!(
            parse_x_match(&table(&[("x-match", V::I8(1))]))
                .unwrap_err()
                .to_string(),
            "PRECONDITION_FAILED - Invalid x-match field type byte (value 1); expected longstr"
        );
        assert_eq!(
            parse_x_match(&table(&[(
                "x-match",
                V::ByteArray(Bytes::from_static(b"all"))
            )]))
            .unwrap_err()
            .to_string(),
            "PRECONDITION_FAILED - Invalid x-match field type binary (value <<\"all\">>); \
             expected longstr"
        );
        assert_eq!(
            parse_x_match(&table(&[("x-match", V::Void)]))
                .unwrap_err()
                .to_string(),
            "PRECONDITION_FAILED - Invalid x-match field type void (value undefined); \
             expected longstr"
        );
    }

    #[test]
    fn erlang_rendering() {
        let mut o = String::new();
        erl_binary(&mut o, "a\"b\\c\n".as_bytes());
        erl_binary(&mut o, "héllo".as_bytes());
        erl_binary(&mut o, &[0, 255]);
        assert_eq!(o, r#"<<"a\"b\\c\n">><<"héllo"/utf8>><<0,255>>"#);
        let mut o = String::new();
        erl_value(
            &mut o,
            &V::Table(table(&[(
                "k",
                V::Array(vec![V::Bool(true), V::Decimal(2, 150)]),
            )])),
        );
        assert_eq!(o, r#"[{<<"k">>,array,[{bool,true},{decimal,{2,150}}]}]"#);
    }

    #[test]
    fn all_mode() {
        let args = [
            ("x-match", s("all")),
            ("format", s("pdf")),
            ("type", s("report")),
        ];
        assert!(hm(
            &args,
            Some(&[("format", s("pdf")), ("type", s("report"))])
        ));
        assert!(hm(
            &args,
            Some(&[
                ("type", s("report")),
                ("extra", V::I32(1)),
                ("format", s("pdf"))
            ])
        ));
        assert!(!hm(&args, Some(&[("format", s("pdf"))])));
        assert!(!hm(
            &args,
            Some(&[("format", s("pdf")), ("type", s("log"))])
        ));
        assert!(!hm(&args, None));
        // Default mode is all.
        assert!(hm(&[("a", s("1"))], Some(&[("a", s("1"))])));
        assert!(!hm(&[("a", s("1")), ("b", s("2"))], Some(&[("a", s("1"))])));
    }

    #[test]
    fn any_mode() {
        let args = [
            ("x-match", s("any")),
            ("format", s("pdf")),
            ("type", s("report")),
        ];
        assert!(hm(&args, Some(&[("format", s("pdf"))])));
        assert!(hm(
            &args,
            Some(&[("type", s("report")), ("format", s("zip"))])
        ));
        assert!(!hm(
            &args,
            Some(&[("format", s("zip")), ("type", s("log"))])
        ));
        assert!(!hm(&args, Some(&[])));
        assert!(!hm(&args, None));
    }

    #[test]
    fn no_arguments_left() {
        assert!(hm(&[], None));
        assert!(hm(&[("x-match", s("all"))], None));
        assert!(hm(&[("x-match", s("all")), ("x-foo", s("bar"))], Some(&[])));
        assert!(!hm(&[("x-match", s("any"))], Some(&[("a", s("b"))])));
        assert!(!hm(
            &[("x-match", s("any")), ("x-foo", s("bar"))],
            Some(&[("x-foo", s("bar"))])
        ));
        assert!(hm(&[("x-match", s("all-with-x"))], None));
        assert!(!hm(
            &[("x-match", s("any-with-x"))],
            Some(&[("x-match", s("any-with-x"))])
        ));
    }

    #[test]
    fn x_arguments_ignored_unless_with_x() {
        let h: &[(&str, V)] = &[("x-region", s("eu")), ("kind", s("a"))];
        // all: the x- argument is skipped, so a wrong x- value does not matter.
        assert!(hm(
            &[
                ("x-match", s("all")),
                ("x-region", s("us")),
                ("kind", s("a"))
            ],
            Some(h)
        ));
        // all-with-x: it counts.
        assert!(!hm(
            &[
                ("x-match", s("all-with-x")),
                ("x-region", s("us")),
                ("kind", s("a"))
            ],
            Some(h)
        ));
        assert!(hm(
            &[
                ("x-match", s("all-with-x")),
                ("x-region", s("eu")),
                ("kind", s("a"))
            ],
            Some(h)
        ));
        // any: only the x- argument would match, and it is skipped.
        assert!(!hm(
            &[
                ("x-match", s("any")),
                ("x-region", s("eu")),
                ("kind", s("b"))
            ],
            Some(h)
        ));
        assert!(hm(
            &[
                ("x-match", s("any-with-x")),
                ("x-region", s("eu")),
                ("kind", s("b"))
            ],
            Some(h)
        ));
        // x-match itself is never compared, even in the -with-x modes.
        assert!(hm(
            &[("x-match", s("all-with-x")), ("kind", s("a"))],
            Some(h)
        ));
    }

    #[test]
    fn void_means_present() {
        let args = [("x-match", s("all")), ("trace", V::Void)];
        assert!(hm(&args, Some(&[("trace", s("anything"))])));
        assert!(hm(&args, Some(&[("trace", V::Void)])));
        assert!(hm(
            &args,
            Some(&[("trace", V::Table(FieldTable::default()))])
        ));
        assert!(!hm(&args, Some(&[("other", V::Void)])));
        assert!(!hm(&args, None));
        // A void header only satisfies a void argument.
        assert!(!hm(&[("a", s(""))], Some(&[("a", V::Void)])));
        let any = [("x-match", s("any")), ("a", V::Void), ("b", s("x"))];
        assert!(hm(&any, Some(&[("a", V::I8(0))])));
        assert!(!hm(&any, Some(&[("c", V::I8(0))])));
    }

    #[test]
    fn value_types() {
        // Integers compare by number across widths and signedness.
        assert!(hm(&[("n", V::I32(5))], Some(&[("n", V::I64(5))])));
        assert!(hm(&[("n", V::U8(5))], Some(&[("n", V::I16(5))])));
        assert!(hm(
            &[("n", V::U32(u32::MAX))],
            Some(&[("n", V::I64(u32::MAX as i64))])
        ));
        assert!(!hm(&[("n", V::I8(-1))], Some(&[("n", V::U8(255))])));
        // Integer vs float: never equal (Erlang =:=).
        assert!(!hm(&[("n", V::I32(1))], Some(&[("n", V::F64(1.0))])));
        // Floats compare by value.
        assert!(hm(&[("f", V::F32(1.5))], Some(&[("f", V::F64(1.5))])));
        assert!(!hm(&[("f", V::F32(0.1))], Some(&[("f", V::F64(0.1))])));
        // Strings vs byte arrays: both Erlang binaries.
        assert!(hm(
            &[("s", s("ab"))],
            Some(&[("s", V::ByteArray(Bytes::from_static(b"ab")))])
        ));
        // Type mismatches.
        assert!(!hm(&[("s", s("1"))], Some(&[("s", V::I32(1))])));
        assert!(!hm(&[("b", V::Bool(true))], Some(&[("b", V::I8(1))])));
        assert!(!hm(&[("b", V::Bool(true))], Some(&[("b", s("true"))])));
        assert!(hm(&[("b", V::Bool(false))], Some(&[("b", V::Bool(false))])));
        assert!(!hm(&[("t", V::Timestamp(7))], Some(&[("t", V::I64(7))])));
        assert!(hm(
            &[("t", V::Timestamp(7))],
            Some(&[("t", V::Timestamp(7))])
        ));
        assert!(hm(
            &[("d", V::Decimal(2, 314))],
            Some(&[("d", V::Decimal(2, 314))])
        ));
        assert!(!hm(
            &[("d", V::Decimal(2, 314))],
            Some(&[("d", V::Decimal(1, 314))])
        ));
        // Nested values keep their types.
        let arr = V::Array(vec![V::I32(1), s("x")]);
        assert!(hm(&[("a", arr.clone())], Some(&[("a", arr.clone())])));
        assert!(!hm(
            &[("a", arr)],
            Some(&[("a", V::Array(vec![V::I64(1), s("x")]))])
        ));
        let t = V::Table(table(&[("k", V::I32(1))]));
        assert!(hm(&[("t", t.clone())], Some(&[("t", t)])));
        // Keys are case-sensitive.
        assert!(!hm(&[("Key", s("v"))], Some(&[("key", s("v"))])));
    }

    #[test]
    fn duplicate_header_last_wins() {
        let h: &[(&str, V)] = &[("a", s("1")), ("a", s("2"))];
        assert!(hm(&[("a", s("2"))], Some(h)));
        assert!(!hm(&[("a", s("1"))], Some(h)));
    }
}
