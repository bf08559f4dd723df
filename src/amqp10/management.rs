//! Management over AMQP 1.0: RabbitMQ 4's "HTTP over AMQP" on the link
//! pair at `/management` (`rabbit_amqp_management`), which the
//! rabbitmq-amqp-* client libraries use to declare and delete queues and
//! exchanges and to bind. A request is a message with `subject` = the HTTP
//! method, `to` = the path, `message-id`, `reply-to` `$me` and an
//! amqp-value body; the response goes back on the pair's other link with
//! `subject` = the status code and `correlation-id` = the request's id.
//!
//! The operations are the core's (`core::ops`), as the 0-9-1 methods use
//! them; what needs the queue itself (counts, delete, purge) is a request
//! to its shard, answered in `on_reply`.

use super::address;
use super::error::{cond, Amqp10Error};
use super::mapping::{from_091, to_091};
use crate::core::auth::permissions::Access;
use crate::core::definitions::{BindingDest, QueueDef};
use crate::core::error::CoreError;
use crate::core::ids::QueueRef;
use crate::core::ops::exchange::{self as xops, ExchangeSpec};
use crate::core::ops::queue::{self as qops, Declared, QueueSpec};
use crate::core::ops::Caller;
use crate::core::shard_msg::{QueueOp, QueueReply};
use crate::core::ShardCtx;
use crate::protocol::amqp10 as codec;
use crate::protocol::amqp10::{MessageId, Str, Value};
use crate::protocol::table::FieldTable;
use bytes::Bytes;

/// The management node's address.
pub const ADDRESS: &str = "/management";

/// A request, as the client sent it.
pub struct Request {
    pub id: Option<MessageId>,
    method: String,
    path: String,
    query: String,
    body: Value,
}

/// What a request leads to.
pub enum Outcome {
    /// The response: status code and body.
    Done(u16, Value),
    /// A question to a queue's shard first; `on_reply` answers.
    Ask(QueueRef, QueueOp, Then),
    /// The session must end (permission refused, as RabbitMQ 4 does).
    EndSession(Amqp10Error),
}

/// What to answer once the queue replied.
pub enum Then {
    /// GET /queues/:q, or PUT of an existing queue: its map.
    QueueInfo { def: Box<QueueDef>, vhost: String },
    /// DELETE /queues/:q, DELETE /queues/:q/messages.
    Count,
}

impl Request {
    /// Reads a request message; None if it is not one (no subject or `to`).
    pub fn parse(s: &codec::Sections) -> Option<Request> {
        let p = s.properties.as_ref()?;
        let method = p.subject.as_ref()?.as_str().to_string();
        let target = p.to.as_ref()?.as_str().to_string();
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target, String::new()),
        };
        let body = match &s.body {
            codec::Body::AmqpValue(v) => v.decode().ok()?,
            _ => Value::Null,
        };
        Some(Request {
            id: p.message_id.clone(),
            method,
            path,
            query,
            body,
        })
    }
}

/// A request's sections in the spec's order. The rabbitmq-amqp-python
/// client writes the amqp-value body before the properties, and RabbitMQ
/// takes it: sort them by their rank first (requests only; published
/// messages must be in order).
pub fn in_spec_order(payload: Bytes) -> Option<Bytes> {
    let mut d = codec::Decoder::new(payload.clone());
    let mut sections = Vec::new();
    while !d.is_empty() {
        let start = d.position();
        let descriptor = d.read_described_start().ok()?;
        d.skip_value().ok()?;
        sections.push((descriptor, start, d.position()));
    }
    if sections.windows(2).all(|w| w[0].0 <= w[1].0) {
        return Some(payload);
    }
    // Section descriptors 0x70..0x78 are in the spec's order.
    sections.sort_by_key(|s| s.0);
    let mut out = Vec::with_capacity(payload.len());
    for (_, from, to) in sections {
        out.extend_from_slice(&payload[from..to]);
    }
    Some(Bytes::from(out))
}

/// The path's segments, percent-decoded.
fn segments(path: &str) -> Option<Vec<String>> {
    path.strip_prefix('/')?
        .split('/')
        .map(|s| {
            address::decode(Bytes::copy_from_slice(s.as_bytes()))
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .collect()
}

fn text(s: impl Into<String>) -> Value {
    Value::String(Str::from(s.into()))
}

fn error(status: u16, msg: impl Into<String>) -> Outcome {
    Outcome::Done(status, text(msg))
}

/// A refusal of the core as the management API words it: permission
/// failures end the session (RabbitMQ 4), the rest are status codes.
fn refused(e: CoreError) -> Outcome {
    let status = match &e {
        CoreError::AccessRefused(d) if d.contains("refused for user") => {
            return Outcome::EndSession(e.into())
        }
        CoreError::AccessRefused(_) => 403,
        CoreError::NotFound(_) => 404,
        CoreError::ResourceLocked(_) => 400,
        CoreError::PreconditionFailed(_) => 409,
        CoreError::NotImplemented(_) => 400,
        CoreError::Internal(_) => 500,
        CoreError::Unavailable(_) => 503,
    };
    error(status, e.detail())
}

fn get<'a>(body: &'a Value, key: &str) -> Option<&'a Value> {
    match body {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn arguments(body: &Value) -> FieldTable {
    let mut t = FieldTable::new();
    if let Some(Value::Map(pairs)) = get(body, "arguments") {
        for (k, v) in pairs {
            if let (Some(k), Some(v)) = (k.as_str(), to_091(v)) {
                t.insert(k, v);
            }
        }
    }
    t
}

/// Handles one request (RabbitMQ 4's routes and status codes).
/// `exclusive` collects the queues the request declared exclusive (owned
/// by the connection, deleted when it closes).
pub fn handle(
    req: &Request,
    ctx: &mut ShardCtx,
    caller: Caller,
    exclusive: &mut Vec<QueueRef>,
) -> Outcome {
    let Some(seg) = segments(&req.path) else {
        return error(400, format!("failed to normalize URI '{}'", req.path));
    };
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    match (req.method.as_str(), seg.as_slice()) {
        ("GET", ["queues", q]) => get_queue(ctx, caller, q),
        ("PUT", ["queues", q]) => declare_queue(ctx, caller, q, &req.body, exclusive),
        ("DELETE", ["queues", q]) => match qops::use_queue(ctx, caller, Access::Configure, q) {
            Ok(l) => Outcome::Ask(
                l.queue,
                QueueOp::Delete {
                    if_unused: false,
                    if_empty: false,
                },
                Then::Count,
            ),
            Err(CoreError::NotFound(_)) => Outcome::Done(200, count(0)),
            Err(e) => refused(e),
        },
        ("DELETE", ["queues", q, "messages"]) => {
            match qops::use_queue(ctx, caller, Access::Read, q) {
                Ok(l) => Outcome::Ask(l.queue, QueueOp::Purge, Then::Count),
                Err(e) => refused(e),
            }
        }
        ("PUT", ["exchanges", x]) => declare_exchange(ctx, caller, x, &req.body),
        ("DELETE", ["exchanges", x]) => match xops::exchange_delete(&ctx.defs, caller, x, false) {
            Ok(()) | Err(CoreError::NotFound(_)) => Outcome::Done(204, Value::Null),
            Err(e) => refused(e),
        },
        ("POST", ["bindings"]) => bind(ctx, caller, &req.body),
        ("DELETE", ["bindings", b]) => unbind(ctx, caller, b),
        ("GET", ["bindings"]) => list_bindings(ctx, caller, &req.query),
        (m, _) => error(400, format!("unsupported request {} {}", m, req.path)),
    }
}

fn count(n: u32) -> Value {
    Value::Map(vec![(text("message_count"), Value::Ulong(n as u64))])
}

fn get_queue(ctx: &mut ShardCtx, caller: Caller, q: &str) -> Outcome {
    let a = caller.access;
    if [Access::Configure, Access::Write, Access::Read]
        .iter()
        .all(|&k| a.check_queue(k, q).is_err())
    {
        return refused(a.check_queue(Access::Read, q).unwrap_err());
    }
    let def = match ctx.defs.lock().queue(caller.vhost(), q) {
        Ok(d) => d.clone(),
        Err(_) => {
            return error(
                404,
                format!("queue '{}' in vhost '{}' not found", q, caller.vhost_name()),
            )
        }
    };
    Outcome::Ask(
        def.queue,
        QueueOp::Status,
        Then::QueueInfo {
            def: Box::new(def),
            vhost: caller.vhost_name().to_string(),
        },
    )
}

fn declare_queue(
    ctx: &mut ShardCtx,
    caller: Caller,
    q: &str,
    body: &Value,
    exclusive_queues: &mut Vec<QueueRef>,
) -> Outcome {
    if q.is_empty() {
        return error(400, "declare queue with empty name not allowed");
    }
    if let Value::Map(pairs) = body {
        for (k, v) in pairs {
            let known = matches!(
                k.as_str(),
                Some("durable" | "exclusive" | "auto_delete" | "arguments")
            );
            if !known {
                return error(400, format!("bad queue property {:?}: {:?}", k, v));
            }
        }
    }
    let flag =
        |key: &str, default: bool| get(body, key).and_then(Value::as_bool).unwrap_or(default);
    let spec = QueueSpec {
        name: q.to_string(),
        durable: flag("durable", true),
        exclusive: flag("exclusive", false),
        auto_delete: flag("auto_delete", false),
        arguments: arguments(body),
    };
    let exclusive = spec.exclusive;
    match qops::queue_declare(ctx, caller, spec) {
        Ok(Declared::Created { name, queue }) => {
            let def = ctx.defs.lock().queue(caller.vhost(), &name).ok().cloned();
            let Some(def) = def else {
                return error(500, "queue vanished");
            };
            if exclusive {
                exclusive_queues.push(queue);
            }
            Outcome::Done(201, queue_map(&def, caller.vhost_name(), 0, 0))
        }
        Ok(Declared::Exists { name, queue }) => {
            let def = ctx.defs.lock().queue(caller.vhost(), &name).ok().cloned();
            match def {
                Some(def) => Outcome::Ask(
                    queue,
                    QueueOp::Status,
                    Then::QueueInfo {
                        def: Box::new(def),
                        vhost: caller.vhost_name().to_string(),
                    },
                ),
                None => error(404, format!("no queue '{}'", name)),
            }
        }
        Err(e) => refused(e),
    }
}

/// The queue map RabbitMQ 4 answers GET and PUT with.
fn queue_map(def: &QueueDef, vhost: &str, messages: u32, consumers: u32) -> Value {
    let node = crate::config::node_name();
    let kind = def
        .args
        .get("x-queue-type")
        .and_then(|v| v.as_str())
        .unwrap_or("classic")
        .to_string();
    let args: Vec<(Value, Value)> = def
        .args
        .iter()
        .filter_map(|(k, v)| Some((text(String::from_utf8_lossy(k)), from_091(v, true)?)))
        .collect();
    Value::Map(vec![
        (text("leader"), text(node.clone())),
        (text("message_count"), Value::Ulong(messages as u64)),
        (text("consumer_count"), Value::Uint(consumers)),
        (text("name"), text(def.name.clone())),
        (text("vhost"), text(vhost)),
        (text("durable"), Value::Bool(def.durable)),
        (text("auto_delete"), Value::Bool(def.auto_delete)),
        (
            text("exclusive"),
            Value::Bool(def.exclusive_owner.is_some()),
        ),
        (text("type"), text(kind)),
        (text("arguments"), Value::Map(args)),
        (text("replicas"), Value::Array(vec![text(node)])),
    ])
}

fn declare_exchange(ctx: &mut ShardCtx, caller: Caller, x: &str, body: &Value) -> Outcome {
    let flag =
        |key: &str, default: bool| get(body, key).and_then(Value::as_bool).unwrap_or(default);
    let spec = ExchangeSpec {
        name: x.to_string(),
        kind: get(body, "type")
            .and_then(Value::as_str)
            .unwrap_or("direct")
            .to_string(),
        durable: flag("durable", true),
        auto_delete: flag("auto_delete", false),
        internal: flag("internal", false),
        arguments: arguments(body),
    };
    match xops::exchange_declare(&ctx.defs, caller, spec) {
        Ok(()) => Outcome::Done(204, Value::Null),
        Err(CoreError::PreconditionFailed(d)) if d.contains("exchange type") => error(400, d),
        Err(e) => refused(e),
    }
}

fn bind(ctx: &mut ShardCtx, caller: Caller, body: &Value) -> Outcome {
    let s = |k: &str| get(body, k).and_then(Value::as_str).map(str::to_string);
    let (Some(source), Some(key)) = (s("source"), s("binding_key").or(Some(String::new()))) else {
        return error(400, "missing 'source'");
    };
    let args = arguments(body);
    let r = match (s("destination_queue"), s("destination_exchange")) {
        (Some(q), _) => qops::queue_binding(ctx, caller, q, source, key, args)
            .and_then(|b| qops::queue_bind(ctx, b)),
        (None, Some(x)) => xops::exchange_binding(&ctx.defs, caller, source, x, key, args)
            .and_then(|b| xops::exchange_bind(&ctx.defs, b)),
        (None, None) => return error(400, "missing 'destination_queue' or 'destination_exchange'"),
    };
    match r {
        Ok(()) => Outcome::Done(204, Value::Null),
        // RabbitMQ 4 answers a missing end with 400.
        Err(CoreError::NotFound(d)) => error(400, d),
        Err(e) => refused(e),
    }
}

/// `src=S;dstq=Q;key=K;args=H` (or `dste=`).
fn unbind(ctx: &mut ShardCtx, caller: Caller, seg: &str) -> Outcome {
    let mut src = None;
    let mut dst = None;
    let mut key = None;
    let mut hash = String::new();
    for part in seg.split(';') {
        let Some((k, v)) = part.split_once('=') else {
            return error(400, format!("bad binding path segment '{}'", seg));
        };
        let v = address::decode(Bytes::copy_from_slice(v.as_bytes()))
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let Ok(v) = v else {
            return error(400, format!("bad binding path segment '{}'", seg));
        };
        match k {
            "src" => src = Some(v),
            "dstq" => dst = Some(BindingDest::Queue(v)),
            "dste" => dst = Some(BindingDest::Exchange(v)),
            "key" => key = Some(v),
            "args" => hash = v,
            _ => return error(400, format!("bad binding path segment '{}'", seg)),
        }
    }
    let (Some(src), Some(dst), Some(key)) = (src, dst, key) else {
        return error(400, format!("bad binding path segment '{}'", seg));
    };
    // The arguments are named by their hash: find the binding that has them.
    let args = {
        let g = ctx.defs.lock();
        g.vh(caller.vhost()).ok().and_then(|v| {
            v.bindings
                .iter()
                .find(|b| {
                    b.source == src && b.dest == dst && b.key == key && args_hash(&b.args) == hash
                })
                .map(|b| b.args.clone())
        })
    };
    let Some(args) = args else {
        return Outcome::Done(204, Value::Null);
    };
    let r = match dst {
        BindingDest::Queue(q) => qops::queue_unbind(ctx, caller, q, src, key, args),
        BindingDest::Exchange(x) => xops::exchange_binding(&ctx.defs, caller, src, x, key, args)
            .and_then(|b| xops::unbind(&ctx.defs, &b)),
    };
    match r {
        Ok(()) | Err(CoreError::NotFound(_)) => Outcome::Done(204, Value::Null),
        Err(e) => refused(e),
    }
}

/// The `args=` of a binding's location: "" without arguments, else a
/// url-safe base64 hash of them (warren's own hash; RabbitMQ's is
/// `erlang:phash2`, and clients only pass back what GET /bindings gave).
fn args_hash(args: &FieldTable) -> String {
    use base64::Engine;
    use sha2::Digest;
    if args.is_empty() {
        return String::new();
    }
    let mut raw = Vec::new();
    for (k, v) in args.iter() {
        raw.extend_from_slice(k);
        v.encode(&mut raw);
    }
    let d = sha2::Sha256::digest(&raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d[..4])
}

fn list_bindings(ctx: &mut ShardCtx, caller: Caller, query: &str) -> Outcome {
    let mut src = None;
    let mut dst = None;
    let mut key = None;
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let v = address::decode(Bytes::copy_from_slice(v.as_bytes()))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        match k {
            "src" => src = Some(v),
            "dstq" => dst = Some(BindingDest::Queue(v)),
            "dste" => dst = Some(BindingDest::Exchange(v)),
            "key" => key = Some(v),
            _ => {}
        }
    }
    let (Some(src), Some(dst)) = (src, dst) else {
        return error(400, format!("missing 'dste' or 'dstq' in query: {}", query));
    };
    let g = ctx.defs.lock();
    let Ok(v) = g.vh(caller.vhost()) else {
        return Outcome::Done(200, Value::List(Vec::new()));
    };
    let list = v
        .bindings
        .iter()
        .filter(|b| b.source == src && b.dest == dst && key.as_ref().is_none_or(|k| &b.key == k))
        .map(|b| {
            let (dkey, dname, dq) = match &b.dest {
                BindingDest::Queue(q) => ("destination_queue", q.as_str(), "dstq"),
                BindingDest::Exchange(x) => ("destination_exchange", x.as_str(), "dste"),
            };
            let mut loc = String::from("/bindings/src=");
            address::encode(b.source.as_bytes(), &mut loc);
            loc.push(';');
            loc.push_str(dq);
            loc.push('=');
            address::encode(dname.as_bytes(), &mut loc);
            loc.push_str(";key=");
            address::encode(b.key.as_bytes(), &mut loc);
            loc.push_str(";args=");
            loc.push_str(&args_hash(&b.args));
            let args: Vec<(Value, Value)> = b
                .args
                .iter()
                .filter_map(|(k, v)| Some((text(String::from_utf8_lossy(k)), from_091(v, true)?)))
                .collect();
            Value::Map(vec![
                (text("source"), text(b.source.clone())),
                (text(dkey), text(dname)),
                (text("binding_key"), text(b.key.clone())),
                (text("arguments"), Value::Map(args)),
                (text("location"), text(loc)),
            ])
        })
        .collect();
    Outcome::Done(200, Value::List(list))
}

/// The answer to a request once its queue replied.
pub fn on_reply(then: Then, reply: QueueReply) -> (u16, Value) {
    match (then, reply) {
        (
            Then::QueueInfo { def, vhost },
            QueueReply::Status {
                messages,
                consumers,
            },
        ) => (200, queue_map(&def, &vhost, messages, consumers)),
        (Then::Count, QueueReply::Deleted { messages } | QueueReply::Purged { messages }) => {
            (200, count(messages))
        }
        (Then::Count, QueueReply::Gone) => (200, count(0)),
        (_, QueueReply::Error(e)) => match refused(e) {
            Outcome::Done(s, b) => (s, b),
            _ => (403, text("access refused")),
        },
        (Then::QueueInfo { def, vhost }, _) => (
            404,
            text(format!(
                "queue '{}' in vhost '{}' not found",
                def.name, vhost
            )),
        ),
        (Then::Count, _) => (500, text("unexpected reply")),
    }
}

/// Writes a response message: properties (subject = status, correlation-id
/// = the request's message-id), application-properties `http:response`,
/// amqp-value body.
pub fn write_response(out: &mut Vec<u8>, id: Option<MessageId>, status: u16, body: &Value) {
    let props = codec::Properties {
        subject: Some(Str::from(status.to_string())),
        correlation_id: id,
        ..Default::default()
    };
    codec::write_properties(out, &props);
    let mut ap = codec::begin_map_section(out, codec::descriptor::APPLICATION_PROPERTIES);
    ap.entry(&Str::from("http:response"), &Str::from("1.1"));
    ap.finish();
    codec::write_amqp_value(out, body);
}

/// The link property `paired` must be true on both links of the pair.
pub fn check_paired(a: &codec::Attach) -> Result<(), Amqp10Error> {
    let paired = a
        .properties
        .as_ref()
        .and_then(|p| p.get("paired"))
        .and_then(Value::as_bool);
    if paired == Some(true) {
        Ok(())
    } else {
        Err(Amqp10Error::new(
            cond::INVALID_FIELD,
            "Link property 'paired' is not set to boolean value 'true'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_out_of_order_are_sorted() {
        let mut body = Vec::new();
        codec::write_amqp_value(&mut body, &Value::Null);
        let mut props = Vec::new();
        let p = codec::Properties {
            to: Some(Str::from("/queues/q")),
            subject: Some(Str::from("GET")),
            ..Default::default()
        };
        codec::write_properties(&mut props, &p);
        // The Python client's order: body first.
        let mut payload = body.clone();
        payload.extend_from_slice(&props);
        assert!(codec::Sections::parse(Bytes::from(payload.clone())).is_err());
        let sorted = in_spec_order(Bytes::from(payload)).unwrap();
        let s = codec::Sections::parse(sorted).unwrap();
        let r = Request::parse(&s).unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/queues/q"));
        // In order already: the same bytes.
        let mut ordered = props.clone();
        ordered.extend_from_slice(&body);
        let same = in_spec_order(Bytes::from(ordered.clone())).unwrap();
        assert_eq!(same.as_ref(), &ordered[..]);
        assert!(in_spec_order(Bytes::from_static(b"\x00\x53")).is_none());
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(
            segments("/queues/a%2Fb/messages"),
            Some(vec!["queues".into(), "a/b".into(), "messages".into()])
        );
        assert_eq!(segments("queues/x"), None);
        assert_eq!(segments("/queues/%zz"), None);
    }

    #[test]
    fn binding_args_hash_is_empty_without_arguments() {
        assert_eq!(args_hash(&FieldTable::new()), "");
        let mut t = FieldTable::new();
        t.insert(
            "x-match",
            crate::protocol::table::FieldValue::LongStr(Bytes::from_static(b"all")),
        );
        let h = args_hash(&t);
        assert!(
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(h, args_hash(&t.clone()));
    }
}
