//! Redeclaration checks: a declare of an existing queue or exchange must ask
//! for the same thing, or it is RabbitMQ's "inequivalent arg" 406, with
//! RabbitMQ's rendering of the two values.

use crate::core::definitions::QueueDef;
use crate::core::error::{CoreError, CoreResult};
use crate::core::vhost::resource;
use crate::protocol::{FieldTable, FieldValue};

/// Queue arguments RabbitMQ compares on redeclaration.
const EQUIVALENCE_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
];

/// A stream's: `rabbit_stream_queue`'s queue arguments (RabbitMQ compares
/// the arguments of the existing queue's type, so a stream ignores a TTL
/// given again, and not its retention).
const STREAM_EQUIVALENCE_ARGS: &[&str] = &[
    "x-max-length-bytes",
    "x-queue-type",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
    "x-queue-leader-locator",
];

/// RabbitMQ's "inequivalent arg" 406 for a flag or type.
pub fn inequivalent(
    vhost: &str,
    arg: &str,
    kind: &str,
    name: &str,
    received: &str,
    current: &str,
) -> CoreError {
    CoreError::precondition(format!(
        "inequivalent arg '{}' for {}: received '{}' but current is '{}'",
        arg,
        resource(vhost, kind, name),
        received,
        current
    ))
}

/// A queue.declare of the existing queue `q`: same durable and auto-delete
/// flags, and the same value of every argument RabbitMQ compares.
pub fn check_queue_equivalent(
    vhost: &str,
    q: &QueueDef,
    durable: bool,
    auto_delete: bool,
    arguments: &FieldTable,
) -> CoreResult<()> {
    let b = |v: bool| if v { "true" } else { "false" };
    if q.durable != durable {
        return Err(inequivalent(
            vhost,
            "durable",
            "queue",
            &q.name,
            b(durable),
            b(q.durable),
        ));
    }
    if q.auto_delete != auto_delete {
        return Err(inequivalent(
            vhost,
            "auto_delete",
            "queue",
            &q.name,
            b(auto_delete),
            b(q.auto_delete),
        ));
    }
    let keys = if crate::core::queue_args::is_stream(&q.args) {
        STREAM_EQUIVALENCE_ARGS
    } else {
        EQUIVALENCE_ARGS
    };
    check_args(vhost, "queue", &q.name, keys, arguments, &q.args)
}

/// The arguments `keys` of a redeclaration (`new`) against the existing
/// object's (`cur`): the first that differs is the 406. RabbitMQ shows bare
/// values when both sides have one, typed values when one side is missing.
pub fn check_args(
    vhost: &str,
    kind: &str,
    name: &str,
    keys: &[&str],
    new: &FieldTable,
    cur: &FieldTable,
) -> CoreResult<()> {
    for key in keys {
        let (n, c) = (new.get(key), cur.get(key));
        if !same_arg(n, c) {
            let (received, current) = match (n, c) {
                (Some(n), Some(c)) => (format!("'{}'", shown(n)), format!("'{}'", shown(c))),
                _ => (describe(n), describe(c)),
            };
            return Err(CoreError::precondition(format!(
                "inequivalent arg '{}' for {}: received {} but current is {}",
                key,
                resource(vhost, kind, name),
                received,
                current
            )));
        }
    }
    Ok(())
}

/// Integer arguments compare by value whatever their wire type, as in RabbitMQ.
pub fn same_arg(a: Option<&FieldValue>, b: Option<&FieldValue>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x == y,
        },
        _ => false,
    }
}

/// A value as RabbitMQ prints it bare.
pub fn shown(v: &FieldValue) -> String {
    match (v.as_str(), v.as_i64(), v.as_bool()) {
        (Some(s), _, _) => s.to_string(),
        (_, Some(i), _) => i.to_string(),
        (_, _, Some(b)) => b.to_string(),
        _ => format!("{:?}", v),
    }
}

/// A value with its type, or `none`.
pub fn describe(v: Option<&FieldValue>) -> String {
    match v {
        None => "none".to_string(),
        Some(v) => format!("the value '{}' of type '{}'", shown(v), v.type_name()),
    }
}
