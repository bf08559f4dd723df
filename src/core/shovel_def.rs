//! STUB: replaced by the real module at merge (branch shoveldef).
use crate::protocol::FieldTable;
use serde_json::{Map, Value};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Amqp091,
    Amqp10,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    OnConfirm,
    OnPublish,
    NoAck,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteAfter {
    Never,
    QueueLength,
    Count(u64),
}
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Queue { name: String, args: FieldTable },
    Exchange { name: String, key: String },
    Address(String),
}
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Dest {
    pub queue: Option<String>,
    pub queue_args: FieldTable,
    pub exchange: Option<String>,
    pub exchange_key: Option<String>,
    pub address: Option<String>,
    pub application_properties: Map<String, Value>,
    pub message_annotations: Map<String, Value>,
    pub properties: Map<String, Value>,
}
#[derive(Clone, Debug, PartialEq)]
pub struct ShovelDef {
    pub src_protocol: Protocol,
    pub src_uris: Vec<String>,
    pub source: Source,
    pub prefetch: u16,
    pub consumer_args: FieldTable,
    pub delete_after: DeleteAfter,
    pub dest_protocol: Protocol,
    pub dest_uris: Vec<String>,
    pub dest: Dest,
    pub add_forward_headers: bool,
    pub add_timestamp_header: bool,
    pub publish_properties: Map<String, Value>,
    pub ack_mode: AckMode,
    pub reconnect_delay: Option<Duration>,
}

pub fn validate(
    _name: &str,
    value: &Value,
    _direct_vhost_ok: &dyn Fn(&str) -> Result<(), String>,
) -> Result<ShovelDef, Vec<String>> {
    let s = |k: &str| value.get(k).and_then(|v| v.as_str()).map(String::from);
    let src_uris = vec![s("src-uri").ok_or_else(|| vec!["no src-uri".to_string()])?];
    let dest_uris = vec![s("dest-uri").ok_or_else(|| vec!["no dest-uri".to_string()])?];
    let source = match s("src-queue") {
        Some(name) => Source::Queue {
            name,
            args: FieldTable::new(),
        },
        None => Source::Exchange {
            name: s("src-exchange").unwrap_or_default(),
            key: s("src-exchange-key").unwrap_or_default(),
        },
    };
    Ok(ShovelDef {
        src_protocol: Protocol::Amqp091,
        src_uris,
        source,
        prefetch: value
            .get("src-prefetch-count")
            .and_then(|v| v.as_u64())
            .unwrap_or(1000) as u16,
        consumer_args: FieldTable::new(),
        delete_after: match value.get("src-delete-after") {
            Some(Value::String(s)) if s == "queue-length" => DeleteAfter::QueueLength,
            Some(Value::Number(n)) => DeleteAfter::Count(n.as_u64().unwrap_or(0)),
            _ => DeleteAfter::Never,
        },
        dest_protocol: Protocol::Amqp091,
        dest_uris,
        dest: Dest {
            queue: s("dest-queue"),
            exchange: s("dest-exchange"),
            exchange_key: s("dest-exchange-key"),
            ..Dest::default()
        },
        add_forward_headers: value
            .get("dest-add-forward-headers")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        add_timestamp_header: false,
        publish_properties: Map::new(),
        ack_mode: match s("ack-mode").as_deref() {
            Some("on-publish") => AckMode::OnPublish,
            Some("no-ack") => AckMode::NoAck,
            _ => AckMode::OnConfirm,
        },
        reconnect_delay: match value.get("reconnect-delay").and_then(|v| v.as_u64()) {
            Some(0) => None,
            Some(n) => Some(Duration::from_secs(n)),
            None => Some(Duration::from_secs(5)),
        },
    })
}

pub fn strip_credentials(uri: &str) -> String {
    uri.to_string()
}
