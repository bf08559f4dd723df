//! Validation of queue arguments (`x-…`) at declaration, with RabbitMQ's 406
//! texts (`rabbit_amqqueue:check_declare_arguments`):
//! `invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}`.
//!
//! The checks run in RabbitMQ's `declare_args()` order, so the first error
//! reported is the one RabbitMQ reports. Arguments of other queue types
//! (quorum, stream) on a classic queue are refused ("… of queue type
//! rabbit_classic_queue"); unknown arguments are accepted and ignored.
//! `x-consumer-timeout` is checked as newer RabbitMQ versions do (3.13 takes
//! any value and ignores a non-integer one). A quorum queue is kept as a
//! classic one (replication is issue 20's), but what RabbitMQ refuses for
//! that type is refused too: server-named, non-durable, exclusive,
//! auto-delete, and the arguments of the other types (after the values of
//! its own were checked, as streams).

use super::error::CoreError;
use super::message::props091::MAX_EXPIRY;
use super::vhost::resource;
use crate::protocol::{FieldTable, FieldValue};

/// What a known argument must look like (RabbitMQ's check functions).
#[derive(Clone, Copy)]
enum Rule {
    /// `check_expires_arg`: integer, not 0, within `check_expiry`.
    Expires,
    /// `check_message_ttl_arg`: integer within `check_expiry`.
    MessageTtl,
    /// `check_dlxname_arg`: a string.
    DlxName,
    /// `check_dlxrk_arg`: a string, and a dead-letter exchange is set.
    DlxRoutingKey,
    /// `check_non_neg_int_arg`.
    NonNegInt,
    /// `check_max_priority_arg`: 0..=255.
    MaxPriority,
    Overflow,
    QueueMode,
    /// `check_queue_version`: 1 or 2.
    QueueVersion,
    /// `check_bool_arg`.
    Bool,
    QueueType,
    /// `check_max_age_arg`: a longstr `check_max_age` accepts.
    MaxAge,
    /// `check_initial_cluster_size_arg`: a positive integer.
    InitialClusterSize,
    /// `check_queue_leader_locator_arg`.
    LeaderLocator,
    /// `check_dlx_strategy_arg`: at-most-once or at-least-once.
    DlxStrategy,
}

/// RabbitMQ's `declare_args()`, the validators that apply to classic queues,
/// in order.
const RULES: &[(&str, Rule)] = &[
    ("x-expires", Rule::Expires),
    ("x-message-ttl", Rule::MessageTtl),
    ("x-dead-letter-exchange", Rule::DlxName),
    ("x-dead-letter-routing-key", Rule::DlxRoutingKey),
    ("x-max-length", Rule::NonNegInt),
    ("x-max-length-bytes", Rule::NonNegInt),
    ("x-max-priority", Rule::MaxPriority),
    ("x-overflow", Rule::Overflow),
    ("x-queue-mode", Rule::QueueMode),
    ("x-queue-version", Rule::QueueVersion),
    ("x-single-active-consumer", Rule::Bool),
    ("x-consumer-timeout", Rule::NonNegInt),
    ("x-queue-type", Rule::QueueType),
];

/// The arguments of classic and quorum queues that a stream refuses ("…
/// of queue type rabbit_stream_queue"), the first in the client's table
/// order, after checking the values of its own (`STREAM_RULES`).
const NOT_FOR_STREAMS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-max-length",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-master-locator",
    "x-quorum-initial-group-size",
    "x-delivery-limit",
];

/// `rabbit_stream_queue:capabilities()`'s `queue_arguments`, with their
/// checks, in `declare_args()` order. `x-stream-filter-size-bytes` is
/// checked later, with the properties (`check_type_properties`).
const STREAM_RULES: &[(&str, Rule)] = &[
    ("x-max-length-bytes", Rule::NonNegInt),
    ("x-queue-type", Rule::QueueType),
    ("x-max-age", Rule::MaxAge),
    ("x-stream-max-segment-size-bytes", Rule::NonNegInt),
    ("x-initial-cluster-size", Rule::InitialClusterSize),
    ("x-queue-leader-locator", Rule::LeaderLocator),
];

/// `rabbit_quorum_queue:capabilities()`'s `queue_arguments`, with their
/// checks, in `declare_args()` order (`docs/quorum-rabbitmq.md` §1.2).
/// `x-delivery-limit` has no check in RabbitMQ (any value passes).
const QUORUM_RULES: &[(&str, Rule)] = &[
    ("x-expires", Rule::Expires),
    ("x-message-ttl", Rule::MessageTtl),
    ("x-dead-letter-exchange", Rule::DlxName),
    ("x-dead-letter-routing-key", Rule::DlxRoutingKey),
    ("x-dead-letter-strategy", Rule::DlxStrategy),
    ("x-max-length", Rule::NonNegInt),
    ("x-max-length-bytes", Rule::NonNegInt),
    ("x-max-in-memory-length", Rule::NonNegInt),
    ("x-max-in-memory-bytes", Rule::NonNegInt),
    ("x-overflow", Rule::Overflow),
    ("x-single-active-consumer", Rule::Bool),
    ("x-queue-type", Rule::QueueType),
    ("x-quorum-initial-group-size", Rule::InitialClusterSize),
    ("x-queue-leader-locator", Rule::LeaderLocator),
];

/// The arguments of classic queues and streams that a quorum queue refuses
/// ("… of queue type rabbit_quorum_queue"), the first in the client's
/// table order, after the values of its own were checked.
const NOT_FOR_QUORUM: &[&str] = &[
    "x-max-priority",
    "x-queue-mode",
    "x-queue-master-locator",
    "x-queue-version",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
    "x-stream-filter-size-bytes",
];

/// `rabbit_stream_queue`'s `check_max_segment_size_bytes` limit.
const MAX_SEGMENT_SIZE: i64 = 3_000_000_000;

/// Arguments of the other queue types, refused on a classic queue.
const OTHER_TYPES_ARGS: &[&str] = &[
    "x-dead-letter-strategy",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-quorum-initial-group-size",
    "x-delivery-limit",
    "x-queue-leader-locator",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
    "x-stream-filter-size-bytes",
];

/// Checks every known argument of a queue.declare.
pub fn validate(vhost: &str, queue: &str, args: &FieldTable) -> Result<(), CoreError> {
    let invalid = |key: &str, detail: String| {
        CoreError::precondition(format!(
            "invalid arg '{}' for {}: {}",
            key,
            resource(vhost, "queue", queue),
            detail
        ))
    };
    // rabbit_channel checks the dead-letter exchange's type first (r_arg).
    match args.get("x-dead-letter-exchange") {
        Some(FieldValue::LongStr(_)) | None => {}
        Some(v) => {
            return Err(CoreError::precondition(format!(
                "invalid type '{}' for arg 'x-dead-letter-exchange' in {}",
                v.type_name(),
                resource(vhost, "queue", queue)
            )))
        }
    }
    if let Some(v) = args.get("x-queue-type") {
        check(Rule::QueueType, v, args).map_err(|d| invalid("x-queue-type", d))?;
    }
    if is_stream(args) {
        for &(key, rule) in STREAM_RULES {
            let Some(v) = args.get(key) else { continue };
            check(rule, v, args).map_err(|d| invalid(key, d))?;
        }
        for (k, _) in args.iter() {
            if let Some(key) = NOT_FOR_STREAMS.iter().find(|a| a.as_bytes() == &k[..]) {
                return Err(CoreError::precondition(format!(
                    "invalid arg '{}' for {} of queue type rabbit_stream_queue",
                    key,
                    resource(vhost, "queue", queue)
                )));
            }
        }
        return Ok(());
    }
    if args.get("x-queue-type").and_then(FieldValue::as_str) == Some("quorum") {
        for &(key, rule) in QUORUM_RULES {
            let Some(v) = args.get(key) else { continue };
            check(rule, v, args).map_err(|d| invalid(key, d))?;
        }
        for (k, _) in args.iter() {
            if let Some(key) = NOT_FOR_QUORUM.iter().find(|a| a.as_bytes() == &k[..]) {
                return Err(CoreError::precondition(format!(
                    "invalid arg '{}' for {} of queue type rabbit_quorum_queue",
                    key,
                    resource(vhost, "queue", queue)
                )));
            }
        }
        return Ok(());
    }
    for &(key, rule) in RULES {
        let Some(v) = args.get(key) else { continue };
        check(rule, v, args).map_err(|d| invalid(key, d))?;
    }
    let classic = args
        .get("x-queue-type")
        .and_then(FieldValue::as_str)
        .is_none_or(|t| t == "classic");
    if classic {
        for (k, _) in args.iter() {
            if let Some(other) = OTHER_TYPES_ARGS.iter().find(|a| a.as_bytes() == &k[..]) {
                return Err(CoreError::precondition(format!(
                    "invalid arg '{}' for {} of queue type rabbit_classic_queue",
                    other,
                    resource(vhost, "queue", queue)
                )));
            }
        }
    }
    Ok(())
}

/// A stream (`x-queue-type=stream`, `core::stream`).
pub fn is_stream(args: &FieldTable) -> bool {
    args.get("x-queue-type").and_then(FieldValue::as_str) == Some("stream")
}

/// A quorum queue (`x-queue-type=quorum`): replicated when clustered
/// (`core::quorum`).
pub fn is_quorum(args: &FieldTable) -> bool {
    args.get("x-queue-type").and_then(FieldValue::as_str) == Some("quorum")
}

/// The queue type module RabbitMQ names in its errors, for the types that
/// refuse some declarations (`rabbit_queue_type:is_server_named_allowed`).
fn replicated_type(args: &FieldTable) -> Option<&'static str> {
    match args.get("x-queue-type").and_then(FieldValue::as_str) {
        Some("quorum") => Some("rabbit_quorum_queue"),
        Some("stream") => Some("rabbit_stream_queue"),
        _ => None,
    }
}

/// rabbit_channel's check on a queue.declare with an empty name, before
/// anything else: quorum and stream queues cannot be server-named.
pub fn check_server_named(args: &FieldTable) -> Result<(), CoreError> {
    match replicated_type(args) {
        Some(module) => Err(CoreError::precondition(format!(
            "Cannot declare a server-named queue for type {}",
            module
        ))),
        None => Ok(()),
    }
}

/// `rabbit_quorum_queue:declare`'s checks of a new quorum queue's properties,
/// in RabbitMQ's order. warren keeps a quorum queue as a classic one, but
/// refuses the same declarations.
pub fn check_type_properties(
    vhost: &str,
    queue: &str,
    args: &FieldTable,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
) -> Result<(), CoreError> {
    if replicated_type(args).is_none() {
        return Ok(());
    }
    // RabbitMQ makes an exclusive queue non-durable.
    let property = if auto_delete {
        "auto-delete"
    } else if exclusive {
        "exclusive-owner"
    } else if !durable {
        "non-durable"
    } else {
        return check_stream_sizes(args);
    };
    Err(CoreError::precondition(format!(
        "invalid property '{}' for {}",
        property,
        resource(vhost, "queue", queue)
    )))
}

/// `rabbit_stream_queue:declare`'s checks after the properties (3.13): the
/// segment size limit, then the filter size (no type check: RabbitMQ
/// compares any term with 16 and 255, so a string fails).
fn check_stream_sizes(args: &FieldTable) -> Result<(), CoreError> {
    if !is_stream(args) {
        return Ok(());
    }
    if let Some(n) = args
        .get("x-stream-max-segment-size-bytes")
        .and_then(FieldValue::as_i64)
    {
        if n > MAX_SEGMENT_SIZE {
            return Err(CoreError::precondition(
                "Exceeded max value for x-stream-max-segment-size-bytes",
            ));
        }
    }
    if let Some(v) = args.get("x-stream-filter-size-bytes") {
        if !matches!(v.as_i64(), Some(16..=255)) {
            // Two spaces, as RabbitMQ 3.13 writes it.
            return Err(CoreError::precondition(
                "Invalid value for  x-stream-filter-size-bytes",
            ));
        }
    }
    Ok(())
}

/// `{unacceptable_type,T}`.
fn unacceptable(v: &FieldValue) -> String {
    format!("{{unacceptable_type,{}}}", v.type_name())
}

/// `check_int_arg`.
fn int(v: &FieldValue) -> Result<i64, String> {
    v.as_i64()
        .ok_or_else(|| format!("\"expected integer, got {}\"", v.type_name()))
}

/// `check_non_neg_int_arg`.
fn non_neg(v: &FieldValue) -> Result<i64, String> {
    let n = int(v)?;
    if n < 0 {
        return Err(format!("{{value_negative,{}}}", n));
    }
    Ok(n)
}

/// `rabbit_misc:check_expiry`.
fn expiry(n: i64) -> Result<(), String> {
    if n < 0 {
        Err(format!("{{value_negative,{}}}", n))
    } else if n > MAX_EXPIRY {
        Err(format!("{{value_too_large,{}}}", n))
    } else {
        Ok(())
    }
}

/// A longstr one of `allowed`, else `bad(value)`.
fn one_of(v: &FieldValue, allowed: &[&str], bad: impl Fn(&str) -> String) -> Result<(), String> {
    let FieldValue::LongStr(b) = v else {
        return Err(unacceptable(v));
    };
    let s = String::from_utf8_lossy(b);
    if allowed.contains(&&*s) {
        Ok(())
    } else {
        Err(bad(&s))
    }
}

fn check(rule: Rule, v: &FieldValue, args: &FieldTable) -> Result<(), String> {
    match rule {
        Rule::Expires => match int(v)? {
            0 => Err("{value_zero,0}".to_string()),
            n => expiry(n),
        },
        Rule::MessageTtl => expiry(int(v)?),
        Rule::DlxName => match v {
            FieldValue::LongStr(_) => Ok(()),
            _ => Err(unacceptable(v)),
        },
        Rule::DlxRoutingKey => match v {
            FieldValue::LongStr(_) if args.get("x-dead-letter-exchange").is_none() => {
                Err("routing_key_but_no_dlx_defined".to_string())
            }
            FieldValue::LongStr(_) => Ok(()),
            _ => Err(unacceptable(v)),
        },
        Rule::NonNegInt => non_neg(v).map(|_| ()),
        Rule::MaxPriority => match non_neg(v)? {
            n if n > 255 => Err(format!("{{max_value_exceeded,{}}}", n)),
            _ => Ok(()),
        },
        Rule::Overflow => one_of(
            v,
            &["drop-head", "reject-publish", "reject-publish-dlx"],
            |_| "invalid_overflow".to_string(),
        ),
        Rule::QueueMode => one_of(v, &["default", "lazy"], |s| {
            format!("\"unsupported queue mode '{}'\"", s)
        }),
        Rule::QueueVersion => match non_neg(v)? {
            1 | 2 => Ok(()),
            n => Err(format!("\"unsupported queue version '{}'\"", n)),
        },
        Rule::Bool => match v {
            FieldValue::Bool(_) => Ok(()),
            _ => Err(unacceptable(v)),
        },
        Rule::QueueType => one_of(v, &["classic", "quorum", "stream"], |s| {
            format!("\"unsupported queue type '{}'\"", s)
        }),
        Rule::MaxAge => match v {
            FieldValue::LongStr(b) => {
                super::stream::args::parse_max_age(&String::from_utf8_lossy(b))
                    .map(|_| ())
                    .map_err(str::to_string)
            }
            _ => Err(unacceptable(v)),
        },
        Rule::InitialClusterSize => match non_neg(v)? {
            0 => Err("{value_zero,0}".to_string()),
            _ => Ok(()),
        },
        Rule::LeaderLocator => one_of(
            v,
            &["client-local", "balanced", "random", "least-leaders"],
            |_| "invalid_queue_locator_arg".to_string(),
        ),
        Rule::DlxStrategy => one_of(v, &["at-most-once", "at-least-once"], |_| {
            "invalid_dlx_strategy".to_string()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn t(k: &str, v: FieldValue) -> FieldTable {
        let mut t = FieldTable::new();
        t.insert(k, v);
        t
    }
    fn s(v: &'static str) -> FieldValue {
        FieldValue::LongStr(Bytes::from_static(v.as_bytes()))
    }
    fn err(args: &FieldTable) -> String {
        validate("/", "q", args).unwrap_err().to_string()
    }

    #[test]
    fn quorum_queue_arguments() {
        let q = |extra: &[(&str, FieldValue)]| {
            let mut t = t("x-queue-type", s("quorum"));
            for (k, v) in extra {
                t.insert(k, v.clone());
            }
            validate("/", "q", &t).map_err(|e| e.to_string())
        };
        // 3.10.8 oracle texts (docs/oracle/raw/quorum.out).
        assert_eq!(
            q(&[("x-max-priority", FieldValue::I32(1))]).unwrap_err(),
            "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'q' in vhost '/' of queue type rabbit_quorum_queue"
        );
        // A bad value of its own wins over a refused key.
        assert_eq!(
            q(&[("x-max-priority", FieldValue::I32(1)), ("x-max-length", FieldValue::I32(-1))]).unwrap_err(),
            "PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'q' in vhost '/': {value_negative,-1}"
        );
        assert_eq!(
            q(&[("x-quorum-initial-group-size", FieldValue::I32(0))]).unwrap_err(),
            "PRECONDITION_FAILED - invalid arg 'x-quorum-initial-group-size' for queue 'q' in vhost '/': {value_zero,0}"
        );
        assert_eq!(
            q(&[("x-dead-letter-strategy", s("bogus"))]).unwrap_err(),
            "PRECONDITION_FAILED - invalid arg 'x-dead-letter-strategy' for queue 'q' in vhost '/': invalid_dlx_strategy"
        );
        for ok in [
            ("x-delivery-limit", FieldValue::I32(-1)),
            ("x-delivery-limit", s("5")),
            ("x-dead-letter-strategy", s("at-least-once")),
            ("x-overflow", s("reject-publish-dlx")),
            ("x-max-in-memory-length", FieldValue::I32(3)),
            ("x-queue-leader-locator", s("balanced")),
            ("x-unknown-arg", FieldValue::I32(1)),
        ] {
            assert!(q(&[ok.clone()]).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn quorum_queue_properties() {
        let quorum = t("x-queue-type", s("quorum"));
        let text = |r: Result<(), CoreError>| r.unwrap_err().to_string();
        assert_eq!(
            text(check_type_properties(
                "/", "q", &quorum, false, false, false
            )),
            "PRECONDITION_FAILED - invalid property 'non-durable' for queue 'q' in vhost '/'"
        );
        assert!(
            text(check_type_properties("/", "q", &quorum, true, true, true))
                .contains("'auto-delete'")
        );
        assert!(
            text(check_type_properties("/", "q", &quorum, true, true, false))
                .contains("'exclusive-owner'")
        );
        assert!(check_type_properties("/", "q", &quorum, true, false, false).is_ok());
        assert!(check_type_properties("/", "q", &FieldTable::new(), false, true, true).is_ok());
        assert_eq!(
            text(check_server_named(&quorum)),
            "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue"
        );
        assert!(check_server_named(&t("x-queue-type", s("classic"))).is_ok());
    }

    #[test]
    fn rabbitmq_texts() {
        assert_eq!(
            err(&t("x-message-ttl", FieldValue::I32(-1))),
            "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}"
        );
        assert!(err(&t("x-expires", FieldValue::I32(0))).ends_with("{value_zero,0}"));
        assert!(err(&t("x-message-ttl", s("abc"))).ends_with("\"expected integer, got longstr\""));
        assert!(err(&t("x-expires", FieldValue::I64(315_360_000_001)))
            .ends_with("{value_too_large,315360000001}"));
        assert!(validate("/", "q", &t("x-message-ttl", FieldValue::I64(0))).is_ok());
        assert!(validate("/", "q", &t("x-custom", FieldValue::Void)).is_ok());
        assert!(err(&t("x-overflow", s("nope"))).ends_with(": invalid_overflow"));
        assert!(
            err(&t("x-overflow", FieldValue::I32(1))).ends_with("{unacceptable_type,signedint}")
        );
        assert!(
            err(&t("x-max-priority", FieldValue::I32(256))).ends_with("{max_value_exceeded,256}")
        );
        assert!(err(&t("x-max-priority", s("1"))).ends_with("\"expected integer, got longstr\""));
        assert!(
            err(&t("x-single-active-consumer", s("yes"))).ends_with("{unacceptable_type,longstr}")
        );
        assert_eq!(
            err(&t("x-dead-letter-exchange", FieldValue::I32(1))),
            "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"
        );
        assert!(err(&t("x-dead-letter-routing-key", s("k")))
            .ends_with(": routing_key_but_no_dlx_defined"));
        assert!(err(&t("x-consumer-timeout", FieldValue::I32(-5))).ends_with("{value_negative,-5}"));
        assert!(err(&t("x-queue-mode", s("fast"))).ends_with("\"unsupported queue mode 'fast'\""));
        assert!(err(&t("x-queue-type", s("nope"))).ends_with("\"unsupported queue type 'nope'\""));
        assert_eq!(
            err(&t("x-max-age", s("1D"))),
            "PRECONDITION_FAILED - invalid arg 'x-max-age' for queue 'q' in vhost '/' of queue type rabbit_classic_queue"
        );
    }

    #[test]
    fn stream_arguments() {
        let stream = |k: &str, v: FieldValue| {
            let mut t = t("x-queue-type", s("stream"));
            t.insert(k, v);
            t
        };
        assert!(err(&stream("x-queue-leader-locator", s("bogus")))
            .ends_with(": invalid_queue_locator_arg"));
        assert!(err(&stream("x-max-age", FieldValue::I32(3600)))
            .ends_with(": {unacceptable_type,signedint}"));
        assert!(err(&stream("x-initial-cluster-size", FieldValue::I32(0)))
            .ends_with(": {value_zero,0}"));
        assert!(err(&stream("x-max-priority", FieldValue::I32(1)))
            .ends_with("of queue type rabbit_stream_queue"));
        assert!(validate("/", "q", &stream("x-foo", FieldValue::Void)).is_ok());
        assert!(validate("/", "q", &stream("x-max-age", s("12h"))).is_ok());
    }

    #[test]
    fn first_error_in_rabbitmq_order() {
        let mut a = FieldTable::new();
        a.insert("x-max-length", FieldValue::I32(-1));
        a.insert("x-message-ttl", FieldValue::I32(-2));
        assert!(err(&a).contains("'x-message-ttl'"));
    }
}
