//! Messages in the management API's JSON: the `properties` object
//! (RabbitMQ's `rabbit_mgmt_format:to_basic_properties` for a publish,
//! `basic_properties` for a get) over the 0-9-1 content-header properties
//! (`protocol::properties::BasicProperties`, its generated codec), and the
//! payload with its `payload_encoding` (`rabbit_mgmt_wm_exchange_publish`,
//! `rabbit_mgmt_wm_queue_get`).

use crate::core::definitions_json::{json_to_table, table_to_json};
use crate::protocol::BasicProperties;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};

/// Why a request's message did not convert: RabbitMQ's `{error, Reason}`
/// term as JSON (`["not_int","delivery_mode"]`), the 400's `reason`.
pub(crate) type Refused = Value;

fn err(a: &str, b: &str) -> Refused {
    json!([a, b])
}

/// The `properties` of a publish as encoded content-header properties.
/// Unknown keys are ignored; `headers` is a table, `delivery_mode`,
/// `priority` and `timestamp` integers, the rest strings.
pub(crate) fn properties_from_json(v: &Value) -> Result<Bytes, Refused> {
    let empty = Map::new();
    let m = match v {
        Value::Object(m) => m,
        Value::Array(a) if a.is_empty() => &empty,
        Value::Null => &empty,
        _ => return Err(json!("properties must be an object")),
    };
    let mut p = BasicProperties::default();
    let string = |key: &str| -> Result<Option<Bytes>, Refused> {
        match m.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(Bytes::copy_from_slice(s.as_bytes()))),
            Some(_) => Err(err("not_string", key)),
        }
    };
    let int = |key: &str, max: u64| -> Result<Option<u64>, Refused> {
        match m.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(x) if x <= max => Ok(Some(x)),
                _ => Err(err("not_int", key)),
            },
            Some(_) => Err(err("not_int", key)),
        }
    };
    p.content_type = string("content_type")?;
    p.content_encoding = string("content_encoding")?;
    p.headers = match m.get("headers") {
        None => None,
        Some(Value::Object(h)) => Some(json_to_table(h).map_err(|e| json!(e))?),
        Some(Value::Array(a)) if a.is_empty() => Some(Default::default()),
        Some(_) => return Err(json!("headers must be an object")),
    };
    p.delivery_mode = int("delivery_mode", u8::MAX as u64)?.map(|x| x as u8);
    p.priority = int("priority", u8::MAX as u64)?.map(|x| x as u8);
    p.correlation_id = string("correlation_id")?;
    p.reply_to = string("reply_to")?;
    p.expiration = string("expiration")?;
    p.message_id = string("message_id")?;
    p.timestamp = int("timestamp", u64::MAX)?;
    p.kind = string("type")?;
    p.user_id = string("user_id")?;
    p.app_id = string("app_id")?;
    p.cluster_id = string("cluster_id")?;
    let mut out = Vec::new();
    p.encode(&mut out);
    Ok(Bytes::from(out))
}

/// A message's properties as a get shows them: the set ones only, `headers`
/// as a JSON table; none at all is `[]` (an empty Erlang proplist).
pub(crate) fn properties_to_json(raw: &[u8]) -> Value {
    let Ok(p) = BasicProperties::decode(Bytes::copy_from_slice(raw)) else {
        return json!([]);
    };
    let mut m = Map::new();
    let text = |b: &Bytes| Value::String(String::from_utf8_lossy(b).into_owned());
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    put("content_type", p.content_type.as_ref().map(text));
    put("content_encoding", p.content_encoding.as_ref().map(text));
    put(
        "headers",
        p.headers.as_ref().map(|h| Value::Object(table_to_json(h))),
    );
    put("delivery_mode", p.delivery_mode.map(|x| json!(x)));
    put("priority", p.priority.map(|x| json!(x)));
    put("correlation_id", p.correlation_id.as_ref().map(text));
    put("reply_to", p.reply_to.as_ref().map(text));
    put("expiration", p.expiration.as_ref().map(text));
    put("message_id", p.message_id.as_ref().map(text));
    put("timestamp", p.timestamp.map(|x| json!(x)));
    put("type", p.kind.as_ref().map(text));
    put("user_id", p.user_id.as_ref().map(text));
    put("app_id", p.app_id.as_ref().map(text));
    put("cluster_id", p.cluster_id.as_ref().map(text));
    if m.is_empty() {
        json!([])
    } else {
        Value::Object(m)
    }
}

/// The body of a publish: `payload` in `payload_encoding` `string` or
/// `base64`.
pub(crate) fn payload_from_json(payload: &Value, encoding: &Value) -> Result<Bytes, Refused> {
    let Value::String(payload) = payload else {
        return Err(json!("payload_not_string"));
    };
    match encoding {
        Value::String(e) if e == "string" => Ok(Bytes::copy_from_slice(payload.as_bytes())),
        Value::String(e) if e == "base64" => base64::engine::general_purpose::STANDARD
            .decode(payload)
            .map(Bytes::from)
            .map_err(|_| err("not_base64", payload)),
        Value::String(e) => Err(err("unsupported_encoding", e)),
        other => Err(json!(["unsupported_encoding", other])),
    }
}

/// The body of a got message: as a string under `auto` when it is valid
/// UTF-8, else base64 (always under `base64`); cut to `truncate` bytes
/// first. Returns (payload, payload_encoding).
pub(crate) fn payload_to_json(
    body: &[u8],
    auto: bool,
    truncate: Option<usize>,
) -> (Value, &'static str) {
    let body = match truncate {
        Some(n) if n < body.len() => &body[..n],
        _ => body,
    };
    match std::str::from_utf8(body) {
        Ok(s) if auto => (Value::String(s.to_string()), "string"),
        _ => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            "base64",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip() {
        let v = json!({
            "content_type": "text/plain",
            "delivery_mode": 2,
            "priority": 3,
            "headers": {"a": 1, "b": "x", "c": {"d": true}},
            "timestamp": 1700000000,
            "type": "kind",
            "unknown": "ignored"
        });
        let raw = properties_from_json(&v).unwrap();
        let back = properties_to_json(&raw);
        assert_eq!(
            back,
            json!({
                "content_type": "text/plain",
                "delivery_mode": 2,
                "priority": 3,
                "headers": {"a": 1, "b": "x", "c": {"d": true}},
                "timestamp": 1700000000,
                "type": "kind"
            })
        );
        assert_eq!(
            properties_to_json(&properties_from_json(&json!({})).unwrap()),
            json!([])
        );
        assert_eq!(
            properties_from_json(&json!({"delivery_mode": "2"})),
            Err(json!(["not_int", "delivery_mode"]))
        );
        assert_eq!(
            properties_from_json(&json!({"app_id": 1})),
            Err(json!(["not_string", "app_id"]))
        );
    }

    #[test]
    fn payloads() {
        assert_eq!(
            payload_from_json(&json!("aGk="), &json!("base64")).unwrap(),
            "hi"
        );
        assert_eq!(
            payload_from_json(&json!("hi"), &json!("string")).unwrap(),
            "hi"
        );
        assert_eq!(
            payload_from_json(&json!("hi"), &json!("rot13")),
            Err(json!(["unsupported_encoding", "rot13"]))
        );
        assert_eq!(
            payload_to_json(b"hello", true, Some(2)),
            (json!("he"), "string")
        );
        assert_eq!(
            payload_to_json(&[0xff, 0], true, None),
            (json!("/wA="), "base64")
        );
        assert_eq!(
            payload_to_json(b"hi", false, None),
            (json!("aGk="), "base64")
        );
    }
}
