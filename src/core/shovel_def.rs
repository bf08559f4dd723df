//! A dynamic shovel's definition: the validation of the runtime-parameter
//! value of `PUT /api/parameters/shovel/{vhost}/{name}` (the JSON object
//! under `"value"`), with RabbitMQ's error texts in RabbitMQ's order, and
//! the parsed [`ShovelDef`] the shovel workers run.
//!
//! It follows RabbitMQ 3.13's `rabbit_shovel_parameters:validate/5` and
//! `parse/3`, `rabbit_parameter_validation` (`pv` below) and
//! `amqp_uri:parse/1`; `docs/shovels-rabbitmq.md` (sections 1 and 2) lists
//! every key, default and text, checked against a 3.10.8 oracle
//! (`docs/oracle/raw/shovels.out`).
//!
//! The error order is RabbitMQ's: first the source checks (one of
//! src-queue/src-exchange; no-ack with a numeric delete-after), then the
//! destination check (not both dest-queue and dest-exchange), then the
//! per-key errors of `pv:proplist`, which come out in *reverse* order of the
//! constraint list, with "Unrecognised terms ..." first among them. Erlang
//! terms are printed as `~tp` does ([`Term`]), including its line breaks
//! past column 80.

use crate::core::definitions_json::json_to_table;
use crate::protocol::FieldTable;
use erl_term::{tp, Term};
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
    /// The source queue's message count at start-up.
    QueueLength,
    Count(u64),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// `src-queue`, `src-queue-args` (used when the queue must be declared).
    Queue { name: String, args: FieldTable },
    /// `src-exchange`, `src-exchange-key` (default ""): a server-named
    /// exclusive queue bound to it.
    Exchange { name: String, key: String },
    /// AMQP 1.0 `src-address`.
    Address(String),
}

/// The destination. AMQP 0-9-1: `queue` (published to `""` with the queue
/// as routing key), or `exchange`/`exchange_key`, or neither (the message
/// keeps its exchange and routing key). AMQP 1.0: `address` and the maps.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Dest {
    pub queue: Option<String>,
    pub queue_args: FieldTable,
    pub exchange: Option<String>,
    pub exchange_key: Option<String>,
    /// AMQP 1.0 `dest-address`.
    pub address: Option<String>,
    /// AMQP 1.0 `dest-application-properties` (string values).
    pub application_properties: Map<String, Value>,
    /// AMQP 1.0 `dest-message-annotations` (string values).
    pub message_annotations: Map<String, Value>,
    /// AMQP 1.0 `dest-properties` (string values).
    pub properties: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ShovelDef {
    pub src_protocol: Protocol,
    /// `src-uri`, as given (credentials included), a string made a list.
    pub src_uris: Vec<String>,
    pub source: Source,
    /// `src-prefetch-count` (legacy `prefetch-count`), default 1000.
    /// RabbitMQ accepts any number (-1 and 1.5 pass its validation); here it
    /// is truncated and clamped to 0..=65535: 0 (and a negative number) is
    /// `basic.qos`'s unlimited, as in RabbitMQ.
    pub prefetch: u16,
    /// `src-consumer-args`.
    pub consumer_args: FieldTable,
    /// `src-delete-after` (legacy `delete-after`), default never.
    pub delete_after: DeleteAfter,
    pub dest_protocol: Protocol,
    /// `dest-uri`, as given.
    pub dest_uris: Vec<String>,
    pub dest: Dest,
    /// `dest-add-forward-headers` (legacy `add-forward-headers`).
    pub add_forward_headers: bool,
    /// `dest-add-timestamp-header` (legacy `add-timestamp-header`).
    pub add_timestamp_header: bool,
    /// `dest-publish-properties` (legacy `publish-properties`): keys are
    /// `P_basic` field names (`delivery_mode`, `content_type`, ...),
    /// validated: strings, or numbers for delivery_mode, priority, timestamp.
    pub publish_properties: Map<String, Value>,
    /// `ack-mode`, default on-confirm.
    pub ack_mode: AckMode,
    /// `reconnect-delay`, default 5 s. None: never restarted (RabbitMQ: a
    /// `temporary` child when the delay is not a positive integer: 0,
    /// negative, float).
    pub reconnect_delay: Option<Duration>,
}

/// `rabbit_amqqueue:declare_args()` (3.13): the names allowed in
/// src-queue-args and dest-queue-args. Their values are not checked:
/// RabbitMQ calls the checks with the wrong arguments and `flatten_errors`
/// drops their two-element errors, so any value passes.
const DECLARE_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-type",
    "x-quorum-initial-group-size",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-stream-filter-size-bytes",
    "x-initial-cluster-size",
    "x-queue-leader-locator",
];

/// `rabbit_amqqueue:consume_args()` (3.13), for src-consumer-args.
const CONSUME_ARGS: &[&str] = &["x-priority", "x-cancel-on-ha-failover", "x-stream-offset"];

/// `validate_properties`: the `P_basic` fields dest-publish-properties may
/// set, in RabbitMQ's order; true = a number, false = a binary.
const PUBLISH_PROPERTIES: &[(&str, bool)] = &[
    ("content_type", false),
    ("content_encoding", false),
    ("delivery_mode", true),
    ("priority", true),
    ("correlation_id", false),
    ("reply_to", false),
    ("expiration", false),
    ("message_id", false),
    ("timestamp", true),
    ("type", false),
    ("user_id", false),
    ("app_id", false),
    ("cluster_id", false),
];

const ACK_MODES: &[&str] = &["no-ack", "on-publish", "on-confirm"];
const PROTOCOLS: &[&str] = &["amqp10", "amqp091"];

/// Validates `value` for shovel `name`. On failure: every error text, in
/// RabbitMQ's order (the caller formats "Validation failed\n\n" + each +
/// "\n" and HTML-escapes; not done here).
///
/// `direct_vhost_ok(vhost)` is called for each direct URI (`amqp://` with
/// no host, `amqp:///vh`; the vhost is the URI's, "/" when absent) and
/// returns Err(text) when it may not be used, e.g. `user "guest" may not
/// connect to vhost "no-such-vhost"`.
///
/// Where RabbitMQ answers 500 (its validation crashes), this returns an
/// error text instead: a `src-protocol`/`dest-protocol` other than amqp091
/// and amqp10 gives `src-protocol should be one of
/// [<<"amqp10">>,<<"amqp091">>], actually was <<"x">>` (and nothing else);
/// a value, or args/properties map, that is neither an object nor an array
/// gives `<name> not a list <term>` (`pv:proplist`'s text).
pub fn validate(
    name: &str,
    value: &Value,
    direct_vhost_ok: &dyn Fn(&str) -> Result<(), String>,
) -> Result<ShovelDef, Vec<String>> {
    let items = proplist_items(name, value).map_err(|e| vec![e])?;
    let get = |key: &str| lookup(&items, key);
    let ctx = Ctx { direct_vhost_ok };
    let (src_protocol, dest_protocol) = protocols(get("src-protocol"), get("dest-protocol"), &ctx)?;
    let mut errors = Vec::new();
    if src_protocol == Protocol::Amqp091 {
        if get("src-exchange").is_some() == get("src-queue").is_some() {
            errors.push(if get("src-queue").is_some() {
                "Cannot specify 'src-exchange' and 'src-queue'".to_string()
            } else {
                "Must specify 'src-exchange' or 'src-queue'".to_string()
            });
        }
        let delete_after = get("src-delete-after").or_else(|| get("delete-after"));
        let integer = delete_after.is_some_and(|v| v.is_i64() || v.is_u64());
        if integer && get("ack-mode").and_then(Value::as_str) == Some("no-ack") {
            errors.push("Cannot specify 'no-ack' and numerical 'delete-after'".into());
        }
    }
    if dest_protocol == Protocol::Amqp091
        && get("dest-exchange").is_some()
        && get("dest-queue").is_some()
    {
        errors.push("Cannot specify 'dest-exchange' and 'dest-queue'".into());
    }
    let constraints = constraints(src_protocol, dest_protocol);
    errors.extend(proplist(name, &constraints, &items, &ctx));
    if !errors.is_empty() {
        return Err(errors);
    }
    parse(&items, src_protocol, dest_protocol)
}

// ---------------------------------------------------------------------------
// pv:proplist

/// An element of the value seen as an Erlang proplist: a JSON object gives
/// pairs (sorted by key, as `maps:to_list` of a small map), a JSON array
/// gives its elements, which no constraint matches.
enum Item<'a> {
    Pair(&'a str, &'a Value),
    Other(&'a Value),
}

impl Item<'_> {
    fn term(&self) -> Term {
        match self {
            Item::Pair(k, v) => Term::Tuple(vec![Term::Bin(k.to_string()), Term::json(v)]),
            Item::Other(v) => Term::json(v),
        }
    }
}

/// `rabbit_data_coercion:to_proplist`; anything else: `pv:proplist`'s
/// `<name> not a list <term>` (where RabbitMQ often crashes first).
fn proplist_items<'a>(name: &str, value: &'a Value) -> Result<Vec<Item<'a>>, String> {
    match value {
        Value::Object(m) => {
            let mut pairs: Vec<_> = m.iter().map(|(k, v)| Item::Pair(k, v)).collect();
            pairs.sort_by(|a, b| match (a, b) {
                (Item::Pair(a, _), Item::Pair(b, _)) => a.cmp(b),
                _ => std::cmp::Ordering::Equal,
            });
            Ok(pairs)
        }
        Value::Array(a) => Ok(a.iter().map(Item::Other).collect()),
        other => Err(tp(&format!("{name} not a list "), &Term::json(other))),
    }
}

fn lookup<'a>(items: &[Item<'a>], key: &str) -> Option<&'a Value> {
    items.iter().find_map(|i| match i {
        Item::Pair(k, v) if *k == key => Some(*v),
        _ => None,
    })
}

#[derive(Clone, Copy)]
enum Check {
    /// Anything (the queue and consumer arguments' values).
    Any,
    Uri,
    Binary,
    QueueName,
    Number,
    Boolean,
    Enum(&'static [&'static str]),
    DeleteAfter,
    Args(&'static [&'static str]),
    Amqp10Map,
    Properties,
}

struct Constraint<'a> {
    key: &'a str,
    check: Check,
    mandatory: bool,
}

struct Ctx<'a> {
    direct_vhost_ok: &'a dyn Fn(&str) -> Result<(), String>,
}

fn opt(key: &str, check: Check) -> Constraint<'_> {
    Constraint {
        key,
        check,
        mandatory: false,
    }
}

fn req(key: &str, check: Check) -> Constraint<'_> {
    Constraint {
        key,
        check,
        mandatory: true,
    }
}

/// `shovel_validation() ++ src_validation() ++ dest_validation()`.
fn constraints(src: Protocol, dest: Protocol) -> Vec<Constraint<'static>> {
    use Check::*;
    let mut c = vec![
        opt("reconnect-delay", Number),
        opt("ack-mode", Enum(ACK_MODES)),
        opt("src-protocol", Enum(PROTOCOLS)),
        opt("dest-protocol", Enum(PROTOCOLS)),
    ];
    match src {
        Protocol::Amqp10 => c.extend([
            req("src-uri", Uri),
            req("src-address", Binary),
            opt("src-prefetch-count", Number),
            opt("src-delete-after", DeleteAfter),
        ]),
        Protocol::Amqp091 => c.extend([
            req("src-uri", Uri),
            opt("src-exchange", Binary),
            opt("src-exchange-key", Binary),
            opt("src-queue", Binary),
            opt("src-queue-args", Args(DECLARE_ARGS)),
            opt("src-consumer-args", Args(CONSUME_ARGS)),
            opt("prefetch-count", Number),
            opt("src-prefetch-count", Number),
            opt("delete-after", DeleteAfter),
            opt("src-delete-after", DeleteAfter),
        ]),
    }
    match dest {
        Protocol::Amqp10 => c.extend([
            req("dest-uri", Uri),
            req("dest-address", Binary),
            opt("dest-add-forward-headers", Boolean),
            opt("dest-add-timestamp-header", Boolean),
            opt("dest-application-properties", Amqp10Map),
            opt("dest-message-annotations", Amqp10Map),
            opt("dest-properties", Amqp10Map),
        ]),
        Protocol::Amqp091 => c.extend([
            req("dest-uri", Uri),
            opt("dest-exchange", Binary),
            opt("dest-exchange-key", Binary),
            opt("dest-queue", QueueName),
            opt("dest-queue-args", Args(DECLARE_ARGS)),
            opt("add-forward-headers", Boolean),
            opt("add-timestamp-header", Boolean),
            opt("dest-add-forward-headers", Boolean),
            opt("dest-add-timestamp-header", Boolean),
            opt("publish-properties", Properties),
            opt("dest-publish-properties", Properties),
        ]),
    }
    c
}

/// `pv:proplist`: the results of the constraints in reverse order, with
/// "Unrecognised terms" (the items no constraint took) first.
fn proplist(name: &str, constraints: &[Constraint], items: &[Item], ctx: &Ctx) -> Vec<String> {
    let mut left: Vec<&Item> = items.iter().collect();
    let mut results = Vec::new();
    for c in constraints {
        let found = left
            .iter()
            .position(|i| matches!(i, Item::Pair(k, _) if *k == c.key));
        match found.map(|pos| left.remove(pos)) {
            Some(Item::Pair(key, value)) => results.push(check(c.check, key, value, ctx)),
            _ if c.mandatory => {
                results.push(vec![format!("Key \"{}\" not found in {name}", c.key)])
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if !left.is_empty() {
        let rest = Term::List(left.iter().map(|i| i.term()).collect());
        out.push(tp("Unrecognised terms ", &rest) + " in " + name);
    }
    out.extend(results.into_iter().rev().flatten());
    out
}

fn check(check: Check, key: &str, v: &Value, ctx: &Ctx) -> Vec<String> {
    let actually = |what: &str| {
        tp(
            &format!("{key} should be {what}, actually was "),
            &Term::json(v),
        )
    };
    let err = match check {
        Check::Uri => return validate_uri(key, v, ctx).into_iter().collect(),
        Check::Any => None,
        Check::Binary | Check::Enum(_) if !v.is_string() => Some(actually("binary")),
        Check::Binary => None,
        Check::QueueName => match v.as_str() {
            None => Some(actually("binary")),
            Some(s) if s.len() > 255 => Some(format!(
                "{key} should be less than 255 bytes, actually was {}",
                s.len()
            )),
            Some(_) => None,
        },
        Check::Number if !v.is_number() => Some(actually("a number")),
        Check::Number => None,
        Check::Boolean if !v.is_boolean() => Some(actually("boolean")),
        Check::Boolean => None,
        Check::Enum(options) => {
            let s = v.as_str().unwrap_or_default();
            (!options.contains(&s)).then(|| {
                let opts = Term::List(options.iter().map(|o| Term::Bin(o.to_string())).collect());
                let head = tp(&format!("{key} should be one of "), &opts) + ", actually was ";
                tp(&head, &Term::json(v))
            })
        }
        Check::DeleteAfter => {
            let ok = matches!(v.as_str(), Some("never" | "queue-length")) || v.is_u64();
            (!ok).then(|| {
                let head = format!(
                    "{key} should be a number greater than or equal to 0, \"never\" or \
                     \"queue-length\", actually was "
                );
                tp(&head, &Term::json(v))
            })
        }
        Check::Args(allowed) => return validate_args(key, v, allowed, ctx),
        Check::Amqp10Map => return validate_amqp10_map(key, v, ctx),
        Check::Properties => return validate_properties(key, v, ctx),
    };
    err.into_iter().collect()
}

/// `validate_queue_args`/`validate_consumer_args`: only the names are
/// checked (see [`DECLARE_ARGS`]). Warren also needs a field table: a value
/// `json_to_table` refuses (null, an integer beyond i64) is an error here,
/// `<key>: <reason>`, where RabbitMQ would fail later in the worker.
fn validate_args(key: &str, v: &Value, allowed: &[&str], ctx: &Ctx) -> Vec<String> {
    let items = match proplist_items(key, v) {
        Ok(items) => items,
        Err(e) => return vec![e],
    };
    let constraints: Vec<_> = allowed.iter().map(|k| opt(k, Check::Any)).collect();
    let errors = proplist(key, &constraints, &items, ctx);
    if !errors.is_empty() {
        return errors;
    }
    match v.as_object().map(json_to_table) {
        Some(Err(e)) => vec![format!("{key}: {e}")],
        _ => Vec::new(),
    }
}

/// `validate_amqp10_map`: the constraints are the map's own keys, each a
/// binary.
fn validate_amqp10_map(key: &str, v: &Value, ctx: &Ctx) -> Vec<String> {
    let items = match proplist_items(key, v) {
        Ok(items) => items,
        Err(e) => return vec![e],
    };
    let constraints: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            Item::Pair(k, _) => Some(opt(k, Check::Binary)),
            Item::Other(_) => None,
        })
        .collect();
    proplist(key, &constraints, &items, ctx)
}

/// `validate_properties`: the `P_basic` fields, strings or numbers.
fn validate_properties(key: &str, v: &Value, ctx: &Ctx) -> Vec<String> {
    let items = match proplist_items(key, v) {
        Ok(items) => items,
        Err(e) => return vec![e],
    };
    let constraints: Vec<_> = PUBLISH_PROPERTIES
        .iter()
        .map(|&(k, num)| opt(k, if num { Check::Number } else { Check::Binary }))
        .collect();
    proplist(key, &constraints, &items, ctx)
}

/// `src-protocol`/`dest-protocol` (`params:protocols/1`, which crashes on
/// an unknown value: see [`validate`]).
fn protocols(
    src: Option<&Value>,
    dest: Option<&Value>,
    ctx: &Ctx,
) -> Result<(Protocol, Protocol), Vec<String>> {
    let one = |key: &str, v: Option<&Value>| match v.map(|v| (v, v.as_str())) {
        None | Some((_, Some("amqp091"))) => Ok(Protocol::Amqp091),
        Some((_, Some("amqp10"))) => Ok(Protocol::Amqp10),
        Some((v, _)) => Err(check(Check::Enum(PROTOCOLS), key, v, ctx)),
    };
    match (one("src-protocol", src), one("dest-protocol", dest)) {
        (Ok(s), Ok(d)) => Ok((s, d)),
        (s, d) => Err(s.err().into_iter().chain(d.err()).flatten().collect()),
    }
}

// ---------------------------------------------------------------------------
// The definition

/// `params:parse_*`, on a value that passed validation.
fn parse(
    items: &[Item],
    src_protocol: Protocol,
    dest_protocol: Protocol,
) -> Result<ShovelDef, Vec<String>> {
    let get = |key: &str| lookup(items, key);
    let string = |key: &str| get(key).and_then(Value::as_str).map(str::to_string);
    let map = |key: &str| {
        get(key)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let table = |key: &str| match get(key) {
        Some(Value::Object(m)) => json_to_table(m).map_err(|e| vec![format!("{key}: {e}")]),
        _ => Ok(FieldTable::new()),
    };
    let source = match (src_protocol, string("src-queue")) {
        (Protocol::Amqp10, _) => Source::Address(string("src-address").unwrap_or_default()),
        (Protocol::Amqp091, Some(name)) => Source::Queue {
            name,
            args: table("src-queue-args")?,
        },
        (Protocol::Amqp091, None) => Source::Exchange {
            name: string("src-exchange").unwrap_or_default(),
            key: string("src-exchange-key").unwrap_or_default(),
        },
    };
    let prefetch = get("src-prefetch-count")
        .or_else(|| get("prefetch-count"))
        .and_then(Value::as_f64)
        .unwrap_or(1000.0);
    let delete_after = match get("src-delete-after").or_else(|| get("delete-after")) {
        Some(Value::String(s)) if s == "queue-length" => DeleteAfter::QueueLength,
        Some(v) => v.as_u64().map_or(DeleteAfter::Never, DeleteAfter::Count),
        None => DeleteAfter::Never,
    };
    let dest = match dest_protocol {
        Protocol::Amqp091 => Dest {
            queue: string("dest-queue"),
            queue_args: table("dest-queue-args")?,
            exchange: string("dest-exchange"),
            exchange_key: string("dest-exchange-key"),
            ..Dest::default()
        },
        Protocol::Amqp10 => Dest {
            address: string("dest-address"),
            application_properties: map("dest-application-properties"),
            message_annotations: map("dest-message-annotations"),
            properties: map("dest-properties"),
            ..Dest::default()
        },
    };
    let flag = |key: &str, legacy: &str| get(key).or_else(|| get(legacy)).and_then(Value::as_bool);
    Ok(ShovelDef {
        src_protocol,
        src_uris: uris(get("src-uri")),
        source,
        prefetch: prefetch.trunc().clamp(0.0, 65535.0) as u16,
        consumer_args: table("src-consumer-args")?,
        delete_after,
        dest_protocol,
        dest_uris: uris(get("dest-uri")),
        dest,
        add_forward_headers: flag("dest-add-forward-headers", "add-forward-headers")
            .unwrap_or(false),
        add_timestamp_header: flag("dest-add-timestamp-header", "add-timestamp-header")
            .unwrap_or(false),
        publish_properties: match get("dest-publish-properties")
            .or_else(|| get("publish-properties"))
        {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        },
        ack_mode: match string("ack-mode").as_deref() {
            Some("no-ack") => AckMode::NoAck,
            Some("on-publish") => AckMode::OnPublish,
            _ => AckMode::OnConfirm,
        },
        reconnect_delay: match get("reconnect-delay") {
            None => Some(Duration::from_secs(5)),
            Some(v) => v.as_u64().filter(|&n| n > 0).map(Duration::from_secs),
        },
    })
}

/// A URI or a list of them (nested lists flattened).
fn uris(v: Option<&Value>) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(v) = v {
        walk(v, &mut out);
    }
    out
}

mod erl_term;
mod uris;

pub use uris::strip_credentials;
use uris::validate_uri;
#[cfg(test)]
mod tests;
