//! A binding's `properties_key`, the last path segment that names one
//! binding in `/api/bindings/{vhost}/e/{source}/{q|e}/{dest}/{props}`, as
//! RabbitMQ makes and reads it (`rabbit_mgmt_format:pack_binding_props`,
//! `rabbit_mgmt_wm_binding:unpack`): the routing key URL-quoted
//! (`quote_plus`, with `~` written `%7E`), `~` for an empty key, and for a
//! binding with arguments `~` and a hash of them, `args_hash`: the base64url
//! of `erlang:phash2(Args, 1 bsl 32)` over RabbitMQ's term for the sorted
//! table (`[{Key, Type, Value}]`). [`phash2`] is that hash (ERTS
//! `make_hash2`) for the terms a field table becomes, so a key made by
//! RabbitMQ names the same binding here and the other way round.

use crate::protocol::{FieldTable, FieldValue};
use base64::Engine;

/// `pack_binding_props(Key, Args)`.
pub(crate) fn properties_key(key: &str, args: &FieldTable) -> String {
    if key.is_empty() && args.is_empty() {
        return "~".into();
    }
    let quoted = quote_binding(key.as_bytes());
    if args.is_empty() {
        quoted
    } else {
        format!("{quoted}~{}", quote_binding(args_hash(args).as_bytes()))
    }
}

/// `rabbit_mgmt_format:args_hash/1`.
pub(crate) fn args_hash(args: &FieldTable) -> String {
    let h = phash2(&table_term(args, true));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.to_be_bytes())
}

/// What a `{props}` path segment names: the routing key and, if the key
/// carries one, the hash of the arguments. `None`: too many `~`.
pub(crate) fn unpack(props: &str) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let tokens = tokenise(props);
    match tokens.as_slice() {
        [key] => Some((unquote(key), None)),
        [key, hash] => Some((unquote(key), Some(unquote(hash)))),
        _ => None,
    }
}

fn quote_binding(s: &[u8]) -> String {
    quote_plus(s).replace('~', "%7E")
}

/// `rabbit_http_util:quote_plus/1`.
pub(crate) fn quote_plus(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'~' | b'_' => {
                out.push(c as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{c:02X}")),
        }
    }
    out
}

/// `rabbit_http_util:unquote/1`: `+` is a space, `%XX` a byte.
fn unquote(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && hex(b[i + 1]).is_some() && hex(b[i + 2]).is_some() => {
                out.push(hex(b[i + 1]).unwrap() << 4 | hex(b[i + 2]).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// `rabbit_mgmt_format:tokenise/1`: split at each `~`; a trailing `~`
/// adds no empty token.
fn tokenise(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        match rest.find('~') {
            None => {
                out.push(rest);
                break;
            }
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + 1..];
            }
        }
    }
    out
}

/// The Erlang terms a field table is made of in RabbitMQ.
enum Term<'a> {
    Bin(&'a [u8]),
    Atom(&'static str),
    Int(i128),
    Float(f64),
    List(Vec<Term<'a>>),
    Tuple(Vec<Term<'a>>),
}

/// `[{Key, Type, Value}]`; the top level sorted by key
/// (`rabbit_misc:sort_field_table`, stable), nested tables as they are.
fn table_term(t: &FieldTable, sort: bool) -> Term<'_> {
    let mut rows: Vec<&(bytes::Bytes, FieldValue)> = t.0.iter().collect();
    if sort {
        rows.sort_by(|a, b| a.0.cmp(&b.0));
    }
    Term::List(
        rows.into_iter()
            .map(|(k, v)| Term::Tuple(vec![Term::Bin(k), Term::Atom(v.type_name()), value_term(v)]))
            .collect(),
    )
}

fn value_term(v: &FieldValue) -> Term<'_> {
    match v {
        FieldValue::Bool(b) => Term::Atom(if *b { "true" } else { "false" }),
        FieldValue::I8(x) => Term::Int(*x as i128),
        FieldValue::U8(x) => Term::Int(*x as i128),
        FieldValue::I16(x) => Term::Int(*x as i128),
        FieldValue::U16(x) => Term::Int(*x as i128),
        FieldValue::I32(x) => Term::Int(*x as i128),
        FieldValue::U32(x) => Term::Int(*x as i128),
        FieldValue::I64(x) => Term::Int(*x as i128),
        FieldValue::Timestamp(x) => Term::Int(*x as i128),
        FieldValue::F32(x) => Term::Float(*x as f64),
        FieldValue::F64(x) => Term::Float(*x),
        FieldValue::Decimal(scale, digits) => {
            Term::Tuple(vec![Term::Int(*scale as i128), Term::Int(*digits as i128)])
        }
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => Term::Bin(b),
        FieldValue::Array(items) => Term::List(
            items
                .iter()
                .map(|i| Term::Tuple(vec![Term::Atom(i.type_name()), value_term(i)]))
                .collect(),
        ),
        FieldValue::Table(t) => table_term(t, false),
        FieldValue::Void => Term::Atom("undefined"),
    }
}

const HCONST: u32 = 0x9e37_79b9;
const HCONST_2: u32 = 0x3c6e_f372;
const HCONST_3: u32 = 0xdaa6_6d2b;
const HCONST_9: u32 = 0x8ff3_4781;
const HCONST_10: u32 = 0x2e2a_c13a;
const HCONST_11: u32 = 0xcc62_3af3;
const HCONST_12: u32 = 0x6a99_b4ac;
const HCONST_13: u32 = 0x08d1_2e65;
/// The hash of `[]` from nothing (`make_hash2`'s shortcut for it).
const NIL_FIRST: u32 = 3_468_870_702;
/// `NIL_DEF`, the tag `[]` is hashed with.
const NIL_TAG: u32 = 2;

/// Bob Jenkins' mix (lookup2), as ERTS uses it.
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    macro_rules! step {
        ($x:expr, $y:expr, $z:expr, $shift:expr) => {
            $x = $x.wrapping_sub($y).wrapping_sub($z) ^ $shift;
        };
    }
    step!(*a, *b, *c, *c >> 13);
    step!(*b, *c, *a, *a << 8);
    step!(*c, *a, *b, *b >> 13);
    step!(*a, *b, *c, *c >> 12);
    step!(*b, *c, *a, *a << 16);
    step!(*c, *a, *b, *b >> 5);
    step!(*a, *b, *c, *c >> 3);
    step!(*b, *c, *a, *a << 10);
    step!(*c, *a, *b, *b >> 15);
}

fn hash2(hash: &mut u32, x: u32, y: u32, k: u32) {
    let (mut a, mut b) = (k.wrapping_add(x), k.wrapping_add(y));
    mix(&mut a, &mut b, hash);
}

fn block_hash(k: &[u8], initval: u32) -> u32 {
    let (mut a, mut b, mut c) = (HCONST, HCONST, initval);
    let word = |w: &[u8]| u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
    let mut chunks = k.chunks_exact(12);
    for ch in &mut chunks {
        a = a.wrapping_add(word(&ch[0..4]));
        b = b.wrapping_add(word(&ch[4..8]));
        c = c.wrapping_add(word(&ch[8..12]));
        mix(&mut a, &mut b, &mut c);
    }
    let rest = chunks.remainder();
    c = c.wrapping_add(k.len() as u32);
    for (i, &byte) in rest.iter().enumerate() {
        let v = byte as u32;
        match i {
            0..=3 => a = a.wrapping_add(v << (8 * i)),
            4..=7 => b = b.wrapping_add(v << (8 * (i - 4))),
            // The first byte of c is the length.
            _ => c = c.wrapping_add(v << (8 * (i - 7))),
        }
    }
    mix(&mut a, &mut b, &mut c);
    c
}

/// ERTS `atom_hash` (hashpjw) of an ASCII atom.
fn atom_hash(name: &str) -> u32 {
    let mut h: u32 = 0;
    for &v in name.as_bytes() {
        h = (h << 4).wrapping_add(v as u32);
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
            h ^= g;
        }
    }
    h
}

/// `erlang:phash2(Term, 1 bsl 32)`, i.e. ERTS `make_hash2`.
fn phash2(t: &Term) -> u32 {
    let mut h = 0;
    walk(t, &mut h);
    h
}

/// `make_hash2`'s traversal: pre-order, left to right, one running hash.
fn walk(t: &Term, h: &mut u32) {
    match t {
        Term::List(items) => {
            for i in items {
                walk(i, h);
            }
            if *h == 0 {
                *h = NIL_FIRST;
            } else {
                hash2(h, NIL_TAG, 0, HCONST_2);
            }
        }
        Term::Tuple(items) => {
            hash2(h, items.len() as u32, 0, HCONST_9);
            for i in items {
                walk(i, h);
            }
        }
        Term::Bin(b) => {
            let con = HCONST_13.wrapping_add(*h);
            *h = if b.is_empty() {
                con
            } else {
                block_hash(b, con)
            };
        }
        Term::Atom(name) => {
            let v = atom_hash(name);
            if *h == 0 {
                *h = v;
            } else {
                hash2(h, v, 0, HCONST_3);
            }
        }
        Term::Int(i) => {
            let i = *i;
            if (-(1i128 << 27)..(1i128 << 27)).contains(&i) {
                let y = i as i32;
                if y < 0 {
                    hash2(h, y.wrapping_neg() as u32, 0, HCONST);
                }
                hash2(h, y as u32, 0, HCONST);
            } else {
                let con = if i < 0 { HCONST_10 } else { HCONST_11 };
                let t = i.unsigned_abs() as u64;
                hash2(h, t as u32, (t >> 32) as u32, con);
            }
        }
        Term::Float(f) => {
            let f = if *f == 0.0 { 0.0f64 } else { *f };
            let bits = f.to_bits();
            hash2(h, (bits >> 32) as u32, bits as u32, HCONST_12);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn table(rows: Vec<(&str, FieldValue)>) -> FieldTable {
        FieldTable(
            rows.into_iter()
                .map(|(k, v)| (Bytes::copy_from_slice(k.as_bytes()), v))
                .collect(),
        )
    }

    fn s(x: &str) -> FieldValue {
        FieldValue::LongStr(Bytes::copy_from_slice(x.as_bytes()))
    }

    /// Values from `erlang:phash2(Args, 1 bsl 32)` on OTP.
    #[test]
    fn phash2_matches_erlang() {
        let h = |t: FieldTable| phash2(&table_term(&t, true));
        assert_eq!(h(table(vec![])), 3_468_870_702);
        assert_eq!(h(table(vec![("foo", s("bar"))])), 2_533_920_096);
        assert_eq!(
            h(table(vec![
                ("x-match", s("all")),
                ("k", FieldValue::I64(5))
            ])),
            4_010_335_221,
            "sorted by key before hashing"
        );
        let unsorted = table(vec![("x-match", s("all")), ("k", FieldValue::I64(5))]);
        assert_eq!(phash2(&table_term(&unsorted, false)), 1_613_463_028);
        assert_eq!(h(table(vec![("a", FieldValue::Bool(true))])), 1_802_062_121);
        assert_eq!(h(table(vec![("d", FieldValue::F64(1.5))])), 1_279_670_192);
        assert_eq!(h(table(vec![("n", FieldValue::I64(-7))])), 1_814_520_868);
        assert_eq!(
            h(table(vec![("big", FieldValue::I64(1 << 40))])),
            1_007_383_420
        );
        assert_eq!(
            h(table(vec![("neg", FieldValue::I64(-(1 << 40)))])),
            2_570_341_220
        );
        assert_eq!(
            h(table(vec![(
                "t",
                FieldValue::Table(table(vec![("x", s("y"))]))
            )])),
            3_369_206_527
        );
        assert_eq!(
            h(table(vec![(
                "arr",
                FieldValue::Array(vec![s("a"), FieldValue::I64(1)])
            )])),
            2_091_638_533
        );
        assert_eq!(
            h(table(vec![("e", FieldValue::Array(vec![]))])),
            3_769_040_234
        );
        assert_eq!(
            h(table(vec![("s", s("0123456789abcdefghij"))])),
            165_590_855
        );
    }

    #[test]
    fn keys_as_rabbitmq_packs_them() {
        let none = FieldTable::new();
        assert_eq!(properties_key("", &none), "~");
        assert_eq!(properties_key("routing", &none), "routing");
        assert_eq!(properties_key("a b~c/d", &none), "a+b%7Ec%2Fd");
        let args = table(vec![("foo", s("bar"))]);
        let key = properties_key("routing", &args);
        assert_eq!(key, format!("routing~{}", args_hash(&args)));
        assert_eq!(args_hash(&args).len(), 6);
        assert_eq!(
            unpack(&key),
            Some((b"routing".to_vec(), Some(args_hash(&args).into_bytes())))
        );
        assert_eq!(unpack("a+b%7Ec%2Fd"), Some((b"a b~c/d".to_vec(), None)));
        assert_eq!(unpack("~"), Some((Vec::new(), None)));
        assert_eq!(unpack("a~b~c"), None);
    }
}
