//! RabbitMQ's definitions file: what `rabbitmqctl export_definitions` and
//! `GET /api/definitions` produce and `import_definitions` / `load_definitions`
//! read (rabbit_definitions). A serde model only: applying it is the caller's.
//!
//! Reading is lenient, as RabbitMQ's import is: every top-level section is
//! optional, unknown keys are ignored at every level, an empty document is an
//! empty set of definitions, `tags` (users and vhosts) may be a JSON list or a
//! comma-separated string (the management export of 3.10 writes
//! `"administrator"`, 3.13 writes `["administrator"]`), and vhost `limits` may
//! be `[]` (an empty Erlang proplist) or an object. Writing produces the 3.13
//! layout (tags as lists).
//!
//! `arguments` stay JSON objects here; [`json_to_table`] and [`table_to_json`]
//! convert them to and from AMQP field tables the way RabbitMQ does
//! (rabbit_misc:to_amqp_table / amqp_table).

use crate::protocol::{FieldTable, FieldValue};
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// The `hashing_algorithm` RabbitMQ uses by default (and this file's default
/// for a user without one).
pub const DEFAULT_HASHING_ALGORITHM: &str = "rabbit_password_hashing_sha256";

/// A whole definitions file.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct DefinitionsFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbit_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    #[serde(default)]
    pub users: Vec<UserJson>,
    #[serde(default)]
    pub vhosts: Vec<VhostJson>,
    #[serde(default)]
    pub permissions: Vec<PermissionJson>,
    #[serde(default)]
    pub topic_permissions: Vec<TopicPermissionJson>,
    /// Runtime parameters (federation, shovel …), kept as they are.
    #[serde(default)]
    pub parameters: Vec<Value>,
    /// Global runtime parameters (`cluster_name`, `internal_cluster_id` …).
    #[serde(default)]
    pub global_parameters: Vec<Value>,
    /// Policies, kept as they are.
    #[serde(default)]
    pub policies: Vec<Value>,
    #[serde(default)]
    pub queues: Vec<QueueJson>,
    #[serde(default)]
    pub exchanges: Vec<ExchangeJson>,
    #[serde(default)]
    pub bindings: Vec<BindingJson>,
}

/// A user (`users`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserJson {
    pub name: String,
    /// base64(salt ‖ digest); `""`: the user cannot log in with a password.
    #[serde(default)]
    pub password_hash: String,
    /// A cleartext password, which RabbitMQ also accepts on import (hand-written
    /// files) and hashes with its default algorithm. RabbitMQ never exports
    /// it; it is written back only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The hashing module, `rabbit_password_hashing_sha256` when absent (but
    /// see [`DefinitionsFile::parse`] for files exported by RabbitMQ < 3.6).
    #[serde(default = "default_hashing_algorithm")]
    pub hashing_algorithm: String,
    #[serde(default, deserialize_with = "tags_list_or_string")]
    pub tags: Vec<String>,
    /// `max-connections`, `max-channels`.
    #[serde(default, deserialize_with = "map_or_empty_list")]
    pub limits: Map<String, Value>,
}

/// A virtual host (`vhosts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VhostJson {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "tags_list_or_string")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_queue_type: Option<String>,
    /// `{"description": …, "tags": […], "default_queue_type": …}` (3.11+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// `max-connections`, `max-queues`; `[]` on input is an empty map.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_map_or_empty_list"
    )]
    pub limits: Option<Map<String, Value>>,
}

impl VhostJson {
    /// The description, from the top level or from `metadata` (RabbitMQ's
    /// import looks at both, top level first).
    pub fn effective_description(&self) -> Option<&str> {
        self.description
            .as_deref()
            .or_else(|| self.metadata.as_ref()?.get("description")?.as_str())
    }

    /// The tags, from the top level or from `metadata` (a list, or a comma
    /// string as 3.10 writes it).
    pub fn effective_tags(&self) -> Vec<String> {
        if !self.tags.is_empty() {
            return self.tags.clone();
        }
        match self.metadata.as_ref().and_then(|m| m.get("tags")) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
            Some(Value::String(s)) => split_tags(s),
            _ => Vec::new(),
        }
    }

    /// The default queue type, from the top level or from `metadata`.
    pub fn effective_default_queue_type(&self) -> Option<&str> {
        self.default_queue_type
            .as_deref()
            .or_else(|| self.metadata.as_ref()?.get("default_queue_type")?.as_str())
    }
}

/// A user's permission in a vhost (`permissions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionJson {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// A user's topic permission on an exchange (`topic_permissions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPermissionJson {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

/// A queue (`queues`). `vhost` defaults to `/`, `durable` to true (the HTTP
/// API's default), `auto_delete` to false.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueJson {
    pub name: String,
    #[serde(default = "default_vhost")]
    pub vhost: String,
    #[serde(default = "yes")]
    pub durable: bool,
    #[serde(default)]
    pub auto_delete: bool,
    #[serde(default, deserialize_with = "map_or_empty_list")]
    pub arguments: Map<String, Value>,
    /// `classic`, `quorum`, `stream` (exports since 3.8); absent in older files.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// An exchange (`exchanges`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeJson {
    pub name: String,
    #[serde(default = "default_vhost")]
    pub vhost: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default = "yes")]
    pub durable: bool,
    #[serde(default)]
    pub auto_delete: bool,
    /// Absent in RabbitMQ's exports (internal exchanges are not exported).
    #[serde(default)]
    pub internal: bool,
    #[serde(default, deserialize_with = "map_or_empty_list")]
    pub arguments: Map<String, Value>,
}

/// A binding (`bindings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingJson {
    pub source: String,
    #[serde(default = "default_vhost")]
    pub vhost: String,
    pub destination: String,
    /// `"queue"` or `"exchange"`.
    pub destination_type: String,
    #[serde(default)]
    pub routing_key: String,
    #[serde(default, deserialize_with = "map_or_empty_list")]
    pub arguments: Map<String, Value>,
}

fn default_hashing_algorithm() -> String {
    DEFAULT_HASHING_ALGORITHM.to_string()
}

fn default_vhost() -> String {
    "/".to_string()
}

fn yes() -> bool {
    true
}

/// Splits a comma-separated tag string as RabbitMQ's `tag_list_from/1` does:
/// tokens between commas, blanks stripped, empty tokens dropped.
pub fn split_tags(s: &str) -> Vec<String> {
    s.split(',')
        .map(|t| t.trim_matches(' '))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// `tags`: a list of strings, a comma-separated string, or null.
fn tags_list_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tags {
        List(Vec<String>),
        Text(String),
        Null(()),
    }
    Ok(
        match Tags::deserialize(d).map_err(|_| {
            serde::de::Error::custom("tags must be a list of strings or a comma-separated string")
        })? {
            Tags::List(l) => l
                .iter()
                .map(|t| t.trim_matches(' '))
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
            Tags::Text(s) => split_tags(&s),
            Tags::Null(()) => Vec::new(),
        },
    )
}

/// An object; `[]` (an empty Erlang proplist) or null as the empty object.
fn map_or_empty_list<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    Ok(opt_map_or_empty_list(d)?.unwrap_or_default())
}

fn opt_map_or_empty_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Map<String, Value>>, D::Error> {
    match Value::deserialize(d)? {
        Value::Object(m) => Ok(Some(m)),
        // 3.10's CLI export writes vhost limits as `[["max-queues", 10], …]`.
        Value::Array(a) if a.iter().all(is_pair) => Ok(Some(
            a.into_iter()
                .filter_map(|p| match p {
                    Value::Array(mut kv) => {
                        let v = kv.pop()?;
                        Some((kv.pop()?.as_str()?.to_string(), v))
                    }
                    _ => None,
                })
                .collect(),
        )),
        Value::Null => Ok(None),
        other => Err(serde::de::Error::custom(format!(
            "expected an object, got {}",
            json_kind(&other)
        ))),
    }
}

/// `["name", value]`.
fn is_pair(v: &Value) -> bool {
    matches!(v, Value::Array(kv) if kv.len() == 2 && kv[0].is_string())
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl DefinitionsFile {
    /// Parses a definitions file. An empty (or blank) document is an empty set
    /// of definitions, as in RabbitMQ. Errors name the line and column.
    ///
    /// A user without `hashing_algorithm` gets RabbitMQ's choice: MD5 when the
    /// file comes from RabbitMQ 3.0–3.5 (`rabbitmq_version`, else
    /// `rabbit_version`), SHA-256 otherwise.
    pub fn parse(text: &str) -> Result<DefinitionsFile, String> {
        if text.trim().is_empty() {
            return Ok(DefinitionsFile::default());
        }
        let mut value: Value = serde_json::from_str(text)
            .map_err(|e| format!("definitions are not valid JSON: {e}"))?;
        let Value::Object(top) = &mut value else {
            return Err(format!(
                "definitions must be a JSON object, not {}",
                json_kind(&value)
            ));
        };
        let version = ["rabbitmq_version", "rabbit_version"]
            .iter()
            .find_map(|k| top.get(*k)?.as_str())
            .unwrap_or("");
        if pre_3_6(version) {
            if let Some(Value::Array(users)) = top.get_mut("users") {
                for u in users.iter_mut().filter_map(Value::as_object_mut) {
                    u.entry("hashing_algorithm")
                        .or_insert_with(|| "rabbit_password_hashing_md5".into());
                }
            }
        }
        serde_json::from_value(value).map_err(|e| format!("definitions: {e}"))
    }

    /// The file as pretty-printed JSON (3.13 layout: tags as lists).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("definitions always serialize")
    }
}

/// Versions whose exports lack `hashing_algorithm` and used MD5
/// (rabbit_auth_backend_internal:hashing_algorithm/2).
fn pre_3_6(version: &str) -> bool {
    ["3.0.", "3.1.", "3.2.", "3.3.", "3.4.", "3.5."]
        .iter()
        .any(|p| version.starts_with(p))
}

/// JSON `arguments` to an AMQP field table, as RabbitMQ's
/// `rabbit_misc:to_amqp_table/1`: objects become tables (`F`), lists arrays
/// (`A`), strings long strings (`S`), integers signed 64-bit longs (`l`),
/// other numbers doubles (`d`), booleans `t`. `null` is refused, as RabbitMQ
/// refuses it (`null_not_allowed`); so is an integer beyond the signed 64-bit
/// range. Keys come out in the map's order.
pub fn json_to_table(args: &Map<String, Value>) -> Result<FieldTable, String> {
    let mut t = FieldTable::new();
    for (k, v) in args {
        let value = json_to_value(v).map_err(|e| format!("argument '{k}': {e}"))?;
        t.0.push((Bytes::copy_from_slice(k.as_bytes()), value));
    }
    Ok(t)
}

fn json_to_value(v: &Value) -> Result<FieldValue, String> {
    Ok(match v {
        Value::Null => return Err("null is not allowed".into()),
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                FieldValue::I64(i)
            } else if n.is_u64() {
                return Err(format!("{n} does not fit a signed 64-bit integer"));
            } else {
                FieldValue::F64(n.as_f64().ok_or_else(|| format!("{n} is not a number"))?)
            }
        }
        Value::String(s) => FieldValue::LongStr(Bytes::copy_from_slice(s.as_bytes())),
        Value::Array(a) => {
            FieldValue::Array(a.iter().map(json_to_value).collect::<Result<_, _>>()?)
        }
        Value::Object(m) => FieldValue::Table(json_to_table(m)?),
    })
}

/// An AMQP field table as JSON `arguments`, as RabbitMQ's
/// `rabbit_misc:amqp_table/1`: tables become objects, arrays lists, numbers
/// (every integer type, timestamps, floats) numbers, booleans booleans.
/// Strings and byte arrays that are valid UTF-8 become strings, others
/// `"Invalid UTF-8, base64 is: …"`. Void is `null`. A decimal is its value
/// as a number (RabbitMQ prints `scale.digits`, a bug not copied here); NaN
/// and infinities, which JSON cannot hold, are `null`. A key that appears
/// twice keeps its last value, as with Erlang's `maps:from_list`.
pub fn table_to_json(t: &FieldTable) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in t.iter() {
        m.insert(String::from_utf8_lossy(k).into_owned(), value_to_json(v));
    }
    m
}

fn value_to_json(v: &FieldValue) -> Value {
    let float = |f: f64| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    match v {
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::I8(i) => (*i).into(),
        FieldValue::U8(i) => (*i).into(),
        FieldValue::I16(i) => (*i).into(),
        FieldValue::U16(i) => (*i).into(),
        FieldValue::I32(i) => (*i).into(),
        FieldValue::U32(i) => (*i).into(),
        FieldValue::I64(i) => (*i).into(),
        FieldValue::Timestamp(t) => (*t).into(),
        FieldValue::F32(f) => float(*f as f64),
        FieldValue::F64(f) => float(*f),
        FieldValue::Decimal(scale, digits) => float(*digits as f64 / 10f64.powi(*scale as i32)),
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => Value::String(utf8_safe(b)),
        FieldValue::Array(a) => Value::Array(a.iter().map(value_to_json).collect()),
        FieldValue::Table(t) => Value::Object(table_to_json(t)),
        FieldValue::Void => Value::Null,
    }
}

/// RabbitMQ's `utf8_safe/1`.
fn utf8_safe(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => format!(
            "Invalid UTF-8, base64 is: {}",
            base64::engine::general_purpose::STANDARD.encode(b)
        ),
    }
}

#[cfg(test)]
mod tests;
