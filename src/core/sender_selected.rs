//! Sender-selected distribution: RabbitMQ's `CC` and `BCC` headers.
//!
//! A publisher may list extra routing keys in the `CC` and `BCC` headers
//! (arrays of longstr). The message is routed through the same exchange with
//! its routing key and each of those keys (`Routing::route_keys`); `BCC` is
//! removed from the headers before anyone receives the message, `CC` stays.
//! Elements of other types are ignored; a `CC`/`BCC` header that is not an
//! array is a 406 (`rabbit_basic:header_routes`).
//!
//! Cost: this runs on every publish, so it works on the raw properties and
//! allocates nothing. Without the headers flag it is one flags check; with
//! headers it walks the table's keys (no decoding). Only a message that
//! carries `BCC` pays for one new properties buffer, spliced without the
//! entry (`strip_bcc`).
//!
//! Message format: this reads the raw 0-9-1 properties (the headers table),
//! not `MessageMeta`, which holds only whether there are headers. Cutting out
//! `BCC` leaves every field of the meta as it was (the headers stay present).

use super::error::CoreError;
use super::message::Message;
use crate::protocol::properties::{raw_has_headers, raw_property, PROP_HEADERS};
use bytes::Bytes;
use std::ops::Range;

/// Where the `BCC` entry sits in the raw properties, to cut it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BccEntry {
    /// Offset of the headers table's u32 length prefix.
    table_len_at: usize,
    /// The whole entry: key, type octet and value.
    entry: Range<usize>,
}

/// A `CC` or `BCC` header of a type other than array: RabbitMQ refuses the
/// message (`{unacceptable_type_in_header, "CC", longstr}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadHeaderType {
    pub header: &'static str,
    pub type_name: &'static str,
}

impl From<BadHeaderType> for CoreError {
    fn from(e: BadHeaderType) -> CoreError {
        CoreError::precondition(format!(
            "invalid message: {{unacceptable_type_in_header,\"{}\",{}}}",
            e.header, e.type_name
        ))
    }
}

/// Appends the keys listed in the `CC` and then the `BCC` header of `props`
/// (raw content-header properties) to `keys`, as slices of `props`. Returns
/// where the `BCC` entry is, if there is one. Malformed headers end the scan
/// quietly: the properties are passed on byte-exact, as always.
pub fn header_routes(
    msg: &Message,
    keys: &mut Vec<Bytes>,
) -> Result<Option<BccEntry>, BadHeaderType> {
    if !raw_has_headers(msg.properties()) {
        return Ok(None);
    }
    props_routes(&msg.properties_bytes(), keys)
}

/// [`header_routes`] over raw properties.
fn props_routes(props: &Bytes, keys: &mut Vec<Bytes>) -> Result<Option<BccEntry>, BadHeaderType> {
    if !raw_has_headers(props) {
        return Ok(None);
    }
    let Some(table) = raw_property(props, PROP_HEADERS) else {
        return Ok(None);
    };
    let base = table.as_ptr() as usize - props.as_ptr() as usize;
    let (mut cc, mut bcc) = (None, None);
    let mut pos = 0;
    while pos < table.len() {
        let entry_start = pos;
        let Some(&klen) = table.get(pos) else { break };
        let key_end = pos + 1 + klen as usize;
        let (Some(key), Some(&ty)) = (table.get(pos + 1..key_end), table.get(key_end)) else {
            break;
        };
        let value_at = key_end + 1;
        let Some(len) = value_len(ty, &table[value_at..]) else {
            break;
        };
        let entry = entry_start..value_at + len;
        match key {
            b"CC" if cc.is_none() => cc = Some((ty, entry)),
            b"BCC" if bcc.is_none() => bcc = Some((ty, entry)),
            _ => {}
        }
        pos = value_at + len;
    }
    // RabbitMQ looks at CC first: its error wins.
    for (name, found) in [("CC", &cc), ("BCC", &bcc)] {
        if let Some((ty, _)) = found {
            if *ty != b'A' {
                return Err(BadHeaderType {
                    header: name,
                    type_name: type_name(*ty),
                });
            }
        }
    }
    for (_, entry) in cc.iter().chain(bcc.iter()) {
        array_strings(props, base, entry, keys);
    }
    Ok(bcc.map(|(_, entry)| BccEntry {
        table_len_at: base - 4,
        entry: base + entry.start..base + entry.end,
    }))
}

/// The longstr elements of the array value of the table entry `entry`
/// (relative to the table at `base` in `props`).
fn array_strings(props: &Bytes, base: usize, entry: &Range<usize>, keys: &mut Vec<Bytes>) {
    let raw = &props[base + entry.start..base + entry.end];
    let klen = raw[0] as usize;
    // Key, type octet 'A', then the array's u32 length: the elements follow.
    let mut pos = 1 + klen + 1 + 4;
    let at = base + entry.start;
    while pos < raw.len() {
        let ty = raw[pos];
        let Some(len) = value_len(ty, &raw[pos + 1..]) else {
            return;
        };
        if ty == b'S' {
            // A longstr: u32 length, then the bytes.
            keys.push(props.slice(at + pos + 5..at + pos + 1 + len));
        }
        pos += 1 + len;
    }
}

/// `props` without the `BCC` header: one new buffer, the rest byte-exact. An
/// emptied headers table stays (empty), as RabbitMQ leaves it.
pub fn strip_bcc(props: &[u8], bcc: &BccEntry) -> Bytes {
    let BccEntry {
        table_len_at,
        entry,
    } = bcc;
    let table_len = u32::from_be_bytes(props[*table_len_at..table_len_at + 4].try_into().unwrap());
    let mut out = Vec::with_capacity(props.len() - entry.len());
    out.extend_from_slice(&props[..*table_len_at]);
    out.extend_from_slice(&(table_len - entry.len() as u32).to_be_bytes());
    out.extend_from_slice(&props[table_len_at + 4..entry.start]);
    out.extend_from_slice(&props[entry.end..]);
    Bytes::from(out)
}

/// Bytes taken by a field value of type `ty` at the start of `rest` (after
/// the type octet), if `rest` holds all of it.
fn value_len(ty: u8, rest: &[u8]) -> Option<usize> {
    let n = match ty {
        b't' | b'b' | b'B' => 1,
        b's' | b'u' => 2,
        b'I' | b'i' | b'f' => 4,
        b'D' => 5,
        b'l' | b'd' | b'T' => 8,
        b'V' => 0,
        b'S' | b'x' | b'A' | b'F' => {
            let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            4usize.checked_add(len)?
        }
        _ => return None,
    };
    (n <= rest.len()).then_some(n)
}

/// RabbitMQ's name of a field type (as in `FieldValue::type_name`).
fn type_name(ty: u8) -> &'static str {
    match ty {
        b't' => "bool",
        b'b' => "byte",
        b'B' => "unsignedbyte",
        b's' => "short",
        b'u' => "unsignedshort",
        b'I' => "signedint",
        b'i' => "unsignedint",
        b'l' => "long",
        b'f' => "float",
        b'd' => "double",
        b'D' => "decimal",
        b'S' => "longstr",
        b'A' => "array",
        b'T' => "timestamp",
        b'F' => "table",
        b'V' => "void",
        b'x' => "binary",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{BasicProperties, FieldTable, FieldValue};

    fn s(v: &str) -> FieldValue {
        FieldValue::LongStr(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn props(headers: Option<FieldTable>) -> Bytes {
        BasicProperties {
            content_type: Some(Bytes::from_static(b"text/plain")),
            headers,
            delivery_mode: Some(2),
            correlation_id: Some(Bytes::from_static(b"c1")),
            ..Default::default()
        }
        .to_bytes()
    }

    fn routes(p: &Bytes) -> (Vec<String>, Option<BccEntry>) {
        let mut keys = Vec::new();
        let bcc = props_routes(p, &mut keys).unwrap();
        let keys = keys
            .iter()
            .map(|k| String::from_utf8(k.to_vec()).unwrap())
            .collect();
        (keys, bcc)
    }

    #[test]
    fn no_headers_no_routes() {
        assert_eq!(routes(&props(None)), (vec![], None));
        let h: FieldTable = [("x", FieldValue::I32(1))].into_iter().collect();
        assert_eq!(routes(&props(Some(h))), (vec![], None));
        assert_eq!(routes(&Bytes::new()), (vec![], None));
    }

    #[test]
    fn cc_then_bcc_keys_only_longstr_elements() {
        let h: FieldTable = [
            ("a", FieldValue::I64(-3)),
            (
                "BCC",
                FieldValue::Array(vec![s("b1"), FieldValue::I32(9), s("b2")]),
            ),
            (
                "CC",
                FieldValue::Array(vec![s("c1"), FieldValue::Void, s("")]),
            ),
            ("z", s("tail")),
        ]
        .into_iter()
        .collect();
        let p = props(Some(h));
        let (keys, bcc) = routes(&p);
        assert_eq!(keys, ["c1", "", "b1", "b2"]);
        assert!(bcc.is_some());
        // Keys are slices of the properties, not copies.
        let mut raw = Vec::new();
        props_routes(&p, &mut raw).unwrap();
        assert!(p.as_ptr_range().contains(&raw[0].as_ptr()));
    }

    #[test]
    fn strip_bcc_keeps_everything_else() {
        let h: FieldTable = [
            ("a", FieldValue::I64(-3)),
            ("BCC", FieldValue::Array(vec![s("b1")])),
            ("CC", FieldValue::Array(vec![s("c1")])),
        ]
        .into_iter()
        .collect();
        let p = props(Some(h));
        let (_, bcc) = routes(&p);
        let stripped = strip_bcc(&p, &bcc.unwrap());
        let want: FieldTable = [
            ("a", FieldValue::I64(-3)),
            ("CC", FieldValue::Array(vec![s("c1")])),
        ]
        .into_iter()
        .collect();
        let mut expected = BasicProperties::decode(p.clone()).unwrap();
        expected.headers = Some(want);
        assert_eq!(BasicProperties::decode(stripped.clone()).unwrap(), expected);
        assert_eq!(stripped, expected.to_bytes());
        // Only BCC: the table stays, empty.
        let p = props(Some(
            [("BCC", FieldValue::Array(vec![]))].into_iter().collect(),
        ));
        let stripped = strip_bcc(&p, &routes(&p).1.unwrap());
        let d = BasicProperties::decode(stripped).unwrap();
        assert_eq!(d.headers, Some(FieldTable::default()));
        assert_eq!(d.correlation_id.as_deref(), Some(&b"c1"[..]));
    }

    #[test]
    fn wrong_types_are_refused_cc_first() {
        let mut keys = Vec::new();
        let p = props(Some(
            [("BCC", s("x")), ("CC", FieldValue::I32(1))]
                .into_iter()
                .collect(),
        ));
        let e = props_routes(&p, &mut keys).unwrap_err();
        assert_eq!(
            e,
            BadHeaderType {
                header: "CC",
                type_name: "signedint"
            }
        );
        assert_eq!(
            CoreError::from(e).to_string(),
            "PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,\"CC\",signedint}"
        );
        let p = props(Some([("BCC", s("x"))].into_iter().collect()));
        let e = props_routes(&p, &mut keys).unwrap_err();
        assert_eq!((e.header, e.type_name), ("BCC", "longstr"));
    }

    #[test]
    fn malformed_tables_never_panic() {
        let p = props(Some(
            [("CC", FieldValue::Array(vec![s("c1")]))]
                .into_iter()
                .collect(),
        ));
        for cut in 0..p.len() {
            let mut keys = Vec::new();
            let _ = props_routes(&p.slice(..cut), &mut keys);
        }
        let mut bad = p.to_vec();
        let at = bad.len() - 3;
        bad[at] = 0xff; // corrupt a length byte somewhere in the table
        let _ = props_routes(&Bytes::from(bad), &mut Vec::new());
    }
}
