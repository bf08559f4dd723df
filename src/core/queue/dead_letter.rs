//! Dead-lettering (`x-dead-letter-exchange`): messages rejected without
//! requeue, expired, or dropped by a length limit are republished to the
//! queue's dead-letter exchange with an `x-death` history, as RabbitMQ 3.13
//! does (`rabbit_dead_letter`, `mc:record_death`, `mc_amqpl:protocol_state`):
//!
//! - `x-death` is an array of tables, most recent death first. Each entry is
//!   `count` (long), `reason`, `queue`, `time` (timestamp, seconds, of the
//!   first death of that kind), `exchange`, `routing-keys` (array), preceded by
//!   `original-expiration` when the message had a per-message TTL. A death in
//!   the same (queue, reason) as an earlier one increments that entry's count
//!   and moves it to the front; its other fields stay.
//! - `x-first-death-reason/-queue/-exchange` are set on the first death only,
//!   `x-last-death-reason/-queue/-exchange` on every death (3.13).
//! - The headers table is then sorted by key (RabbitMQ rebuilds it with
//!   `lists:usort`), and the `expiration` property is removed.
//! - The message is routed through the dead-letter exchange with the queue's
//!   `x-dead-letter-routing-key`, or else with its own routing keys (its
//!   routing key plus any `CC` header). A target queue the message already
//!   died in is dropped ("cycle") unless the reason is `rejected` or a
//!   `rejected` death lies between (`mc:is_death_cycle`, v2 deaths).
//!
//! Not the hot path: everything here allocates freely. The queue only collects
//! `(Message, Reason)` pairs (`Queue::dead`); its shard routes them in
//! `publish` with its own routing copy and sends `ShardMsg::Publish` to the
//! targets, on any shard (the Publish handler stores persistent messages for
//! durable targets, as for any publish).
//!
//! Message format: this module still works on the raw 0-9-1 properties
//! (decoded into `BasicProperties`, re-encoded with `x-death`), not on
//! `MessageMeta`: it needs the whole headers table, and runs only for dead
//! messages. The dead-lettered copy gets its meta decoded from its new
//! properties (`Message::from_amqp091`).

use super::super::definitions::Definitions;
use super::super::ids::{QueueRef, VhostId};
use super::super::message::{props091, Message, MessageMeta};
use super::super::outbox::Outbox;
use super::super::routing::Routing;
use super::super::shard_msg::ShardMsg;
use super::features::DeadLetterTarget;
use crate::protocol::{BasicProperties, FieldTable, FieldValue};
use bytes::Bytes;

/// Why a message was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// basic.reject / basic.nack with requeue=false.
    Rejected,
    /// Message TTL.
    Expired,
    /// Dropped by `x-max-length(-bytes)`.
    Maxlen,
    /// Returned more often than a quorum queue's `x-delivery-limit`.
    DeliveryLimit,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }

    fn parse(s: &[u8]) -> Option<&'static str> {
        // RabbitMQ's reasons (delivery_limit is a quorum-queue one).
        ["rejected", "expired", "maxlen", "delivery_limit"]
            .into_iter()
            .find(|r| r.as_bytes() == s)
    }
}

/// One `x-death` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Death {
    pub queue: Bytes,
    pub reason: &'static str,
    pub count: i64,
    /// Seconds since the epoch, of the first death of this (queue, reason).
    pub time: u64,
    pub exchange: Bytes,
    pub routing_keys: Vec<Bytes>,
    /// The message's `expiration` at that death, normalised as an integer.
    pub original_expiration: Option<Bytes>,
}

impl Death {
    fn to_value(&self) -> FieldValue {
        let s = |b: &Bytes| FieldValue::LongStr(b.clone());
        let mut t = FieldTable::new();
        if let Some(e) = &self.original_expiration {
            t.insert("original-expiration", s(e));
        }
        t.insert("count", FieldValue::I64(self.count));
        t.insert(
            "reason",
            FieldValue::LongStr(Bytes::from_static(self.reason.as_bytes())),
        );
        t.insert("queue", s(&self.queue));
        t.insert("time", FieldValue::Timestamp(self.time));
        t.insert("exchange", s(&self.exchange));
        t.insert(
            "routing-keys",
            FieldValue::Array(self.routing_keys.iter().map(s).collect()),
        );
        FieldValue::Table(t)
    }

    /// An entry of an existing `x-death` header; None if a field is missing
    /// or mistyped (RabbitMQ ignores such entries).
    fn from_value(v: &FieldValue) -> Option<Death> {
        let t = v.as_table()?;
        let bytes = |k: &str| t.get(k).and_then(FieldValue::as_bytes).cloned();
        let time = match t.get("time")? {
            FieldValue::Timestamp(ts) => *ts,
            other => u64::try_from(other.as_i64()?).ok()?,
        };
        let routing_keys = t
            .get("routing-keys")?
            .as_array()?
            .iter()
            .filter_map(|k| k.as_bytes().cloned())
            .collect();
        Some(Death {
            queue: bytes("queue")?,
            reason: Reason::parse(t.get("reason")?.as_bytes()?)?,
            count: t.get("count")?.as_i64()?,
            time,
            exchange: bytes("exchange")?,
            routing_keys,
            original_expiration: bytes("original-expiration"),
        })
    }
}

/// The message's routing keys as RabbitMQ records them: its routing key, then
/// the `CC` header's (BCC never reaches a queue).
pub fn routing_keys(msg: &Message, headers: Option<&FieldTable>) -> Vec<Bytes> {
    let mut keys = vec![msg.routing_key_bytes()];
    if let Some(FieldValue::Array(cc)) = headers.and_then(|h| h.get("CC")) {
        keys.extend(cc.iter().filter_map(|v| v.as_bytes().cloned()));
    }
    keys
}

/// The death history in `headers` (most recent first).
pub fn deaths(headers: Option<&FieldTable>) -> Vec<Death> {
    match headers
        .and_then(|h| h.get("x-death"))
        .and_then(|v| v.as_array())
    {
        Some(a) => a.iter().filter_map(Death::from_value).collect(),
        None => Vec::new(),
    }
}

/// Adds a death to a history (see the module doc): merged by (queue, reason)
/// and moved to the front, or a new entry in front.
pub fn record_death(history: &mut Vec<Death>, new: Death) {
    match history
        .iter()
        .position(|d| d.queue == new.queue && d.reason == new.reason)
    {
        Some(i) => {
            let mut d = history.remove(i);
            d.count += 1;
            history.insert(0, d);
        }
        None => history.insert(0, new),
    }
}

/// Whether routing a message with this history (new death first) to queue
/// `target` closes a cycle that no `rejected` death interrupts.
pub fn is_cycle(history: &[Death], target: &[u8]) -> bool {
    match history.iter().position(|d| d.queue == target) {
        None => false,
        Some(i) => history[..=i].iter().all(|d| d.reason != "rejected"),
    }
}

/// The parsed integer of an `expiration` property, as RabbitMQ keeps it.
fn normalised_expiration(e: &Bytes) -> Bytes {
    match props091::parse_expiration(e) {
        Ok(n) => Bytes::from(n.to_string()),
        Err(_) => e.clone(),
    }
}

/// The properties of the dead-lettered copy of a message, and its history
/// (for cycle detection). `props` are the message's raw properties.
pub fn dead_letter_properties(
    msg: &Message,
    reason: Reason,
    queue: &str,
    now_secs: u64,
) -> (Bytes, Vec<Death>) {
    let mut p = BasicProperties::decode(msg.properties_bytes()).unwrap_or_default();
    let headers = p.headers.take().unwrap_or_default();
    let mut history = deaths(Some(&headers));
    let first = history.is_empty();
    let queue_b = Bytes::copy_from_slice(queue.as_bytes());
    record_death(
        &mut history,
        Death {
            queue: queue_b.clone(),
            reason: reason.as_str(),
            count: 1,
            time: now_secs,
            exchange: msg.exchange_bytes(),
            routing_keys: routing_keys(msg, Some(&headers)),
            original_expiration: p.expiration.as_ref().map(normalised_expiration),
        },
    );
    let reason_b = Bytes::from_static(reason.as_str().as_bytes());
    // Annotation values first: RabbitMQ's usort keeps the first of equal keys.
    let mut entries: Vec<(Bytes, FieldValue)> = Vec::new();
    let mut set = |k: &'static str, v: &Bytes| {
        entries.push((
            Bytes::from_static(k.as_bytes()),
            FieldValue::LongStr(v.clone()),
        ))
    };
    if first {
        set("x-first-death-reason", &reason_b);
        set("x-first-death-queue", &queue_b);
        set("x-first-death-exchange", &msg.exchange_bytes());
    }
    set("x-last-death-reason", &reason_b);
    set("x-last-death-queue", &queue_b);
    set("x-last-death-exchange", &msg.exchange_bytes());
    entries.push((
        Bytes::from_static(b"x-death"),
        FieldValue::Array(history.iter().map(Death::to_value).collect()),
    ));
    entries.extend(headers.0);
    // A stable sort keeps the first of equal keys first; dedup keeps it.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|b, a| a.0 == b.0);
    p.headers = Some(FieldTable(entries));
    p.expiration = None;
    let mut out = Vec::new();
    p.encode(&mut out);
    (Bytes::from(out), history)
}

/// Routes the messages a queue dead-lettered and sends them to their target
/// queues (see the module doc). `queue` is the dead-lettering queue's name;
/// messages are dropped when the dead-letter exchange does not exist.
pub fn publish(
    vhost: VhostId,
    queue: &str,
    target: &DeadLetterTarget,
    dead: Vec<(Message, Reason)>,
    routing: &mut Routing,
    defs: &Definitions,
    out: &mut Outbox,
) {
    routing.sync(defs);
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut dests: Vec<QueueRef> = Vec::new();
    for (msg, reason) in dead {
        let (properties, history) = dead_letter_properties(&msg, reason, queue, now_secs);
        let keys = match &target.routing_key {
            Some(k) => vec![k.clone()],
            None => {
                let h = props091::headers(msg.properties());
                routing_keys(&msg, h.as_ref())
            }
        };
        dests.clear();
        for k in &keys {
            let mut found = Vec::new();
            if routing
                .route_dead_letter(vhost, &target.exchange, k, &properties, &mut found)
                .is_err()
            {
                break; // no such exchange: dropped
            }
            dests.extend(found);
        }
        dests.sort_unstable();
        dests.dedup();
        if reason != Reason::Rejected {
            // Queues the message already died in, and whether routing there
            // cycles (a cycle is dropped, as RabbitMQ drops it).
            dests.retain(|t| {
                let cycles = history.iter().any(|d| {
                    std::str::from_utf8(&d.queue)
                        .ok()
                        .and_then(|n| routing.queue(vhost, n))
                        .is_some_and(|lq| lq.queue == *t)
                        && is_cycle(&history, &d.queue)
                });
                if cycles {
                    log::warn!(
                        "Message dropped because of a dead letter cycle without reason \
                         'rejected' (queue '{}')",
                        queue
                    );
                }
                !cycles
            });
        }
        // New properties (x-death added, expiration removed): new meta.
        let meta = MessageMeta::from_amqp091(&properties);
        let dl = Message::from_amqp091(
            target.exchange.clone(),
            keys[0].clone(),
            properties,
            msg.body(),
        );
        for &q in &dests {
            out.push(
                q.shard,
                ShardMsg::Publish {
                    queue: q,
                    msg: dl.clone(),
                    meta,
                    confirm: None,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn death(q: &str, reason: &'static str, count: i64) -> Death {
        Death {
            queue: Bytes::copy_from_slice(q.as_bytes()),
            reason,
            count,
            time: 100,
            exchange: Bytes::from_static(b"x"),
            routing_keys: vec![Bytes::from_static(b"k")],
            original_expiration: None,
        }
    }

    fn msg(props: BasicProperties) -> Message {
        let mut raw = Vec::new();
        props.encode(&mut raw);
        Message::from_amqp091(
            Bytes::from_static(b"ex"),
            Bytes::from_static(b"rk"),
            Bytes::from(raw),
            Bytes::from_static(b"body"),
        )
    }

    #[test]
    fn deaths_merge_by_queue_and_reason_and_move_to_front() {
        let mut h = vec![];
        record_death(&mut h, death("a", "expired", 1));
        record_death(&mut h, death("b", "rejected", 1));
        record_death(&mut h, death("a", "rejected", 1));
        let order: Vec<_> = h
            .iter()
            .map(|d| (&d.queue[..], d.reason, d.count))
            .collect();
        assert_eq!(
            order,
            vec![
                (&b"a"[..], "rejected", 1),
                (&b"b"[..], "rejected", 1),
                (&b"a"[..], "expired", 1)
            ]
        );
        let mut again = death("a", "expired", 1);
        again.time = 999;
        again.exchange = Bytes::from_static(b"other");
        record_death(&mut h, again);
        assert_eq!(
            (&h[0].queue[..], h[0].reason, h[0].count),
            (&b"a"[..], "expired", 2)
        );
        // the merged entry keeps its first time and exchange
        assert_eq!((h[0].time, &h[0].exchange[..]), (100, &b"x"[..]));
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn cycles_without_rejected_are_detected() {
        // most recent first: died in b (expired), before that in a (expired)
        let h = vec![death("b", "expired", 1), death("a", "expired", 1)];
        assert!(is_cycle(&h, b"a"));
        assert!(is_cycle(&h, b"b"));
        assert!(!is_cycle(&h, b"c"));
        let h = vec![death("b", "expired", 1), death("a", "rejected", 1)];
        assert!(!is_cycle(&h, b"a"));
        assert!(is_cycle(&h, b"b"));
    }

    #[test]
    fn first_dead_lettering_writes_the_rabbitmq_headers() {
        let mut h = FieldTable::new();
        h.insert("zz", FieldValue::I32(1));
        h.insert(
            "CC",
            FieldValue::Array(vec![FieldValue::LongStr("cc1".into())]),
        );
        let m = msg(BasicProperties {
            headers: Some(h),
            expiration: Some(Bytes::from_static(b"0100")),
            delivery_mode: Some(2),
            ..Default::default()
        });
        let (raw, hist) = dead_letter_properties(&m, Reason::Expired, "q1", 1234);
        let p = BasicProperties::decode(raw).unwrap();
        assert_eq!(p.expiration, None);
        assert_eq!(p.delivery_mode, Some(2));
        let h = p.headers.unwrap();
        let keys: Vec<_> = h
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert_eq!(
            keys,
            [
                "CC",
                "x-death",
                "x-first-death-exchange",
                "x-first-death-queue",
                "x-first-death-reason",
                "x-last-death-exchange",
                "x-last-death-queue",
                "x-last-death-reason",
                "zz"
            ]
        );
        assert_eq!(
            h.get("x-first-death-reason").unwrap().as_str(),
            Some("expired")
        );
        assert_eq!(h.get("x-last-death-queue").unwrap().as_str(), Some("q1"));
        let xd = h.get("x-death").unwrap().as_array().unwrap();
        assert_eq!(xd.len(), 1);
        let e = xd[0].as_table().unwrap();
        let ekeys: Vec<_> = e
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert_eq!(
            ekeys,
            [
                "original-expiration",
                "count",
                "reason",
                "queue",
                "time",
                "exchange",
                "routing-keys"
            ]
        );
        assert_eq!(e.get("original-expiration").unwrap().as_str(), Some("100"));
        assert_eq!(e.get("count"), Some(&FieldValue::I64(1)));
        assert_eq!(e.get("time"), Some(&FieldValue::Timestamp(1234)));
        assert_eq!(e.get("exchange").unwrap().as_str(), Some("ex"));
        assert_eq!(
            e.get("routing-keys").unwrap().as_array().unwrap(),
            &[
                FieldValue::LongStr("rk".into()),
                FieldValue::LongStr("cc1".into())
            ]
        );
        assert_eq!(hist.len(), 1);
    }

    #[test]
    fn second_death_keeps_first_death_headers_and_merges() {
        let m = msg(BasicProperties::default());
        let (raw, _) = dead_letter_properties(&m, Reason::Rejected, "q1", 10);
        let m2 = Message::new(b"dlx", m.routing_key(), &raw, m.body());
        let (raw, hist) = dead_letter_properties(&m2, Reason::Expired, "q2", 20);
        let m3 = m2.with_properties(&raw);
        let (raw, hist3) = dead_letter_properties(&m3, Reason::Rejected, "q1", 30);
        assert_eq!(hist.len(), 2);
        let h = BasicProperties::decode(raw).unwrap().headers.unwrap();
        assert_eq!(h.get("x-first-death-queue").unwrap().as_str(), Some("q1"));
        assert_eq!(
            h.get("x-first-death-reason").unwrap().as_str(),
            Some("rejected")
        );
        assert_eq!(
            h.get("x-first-death-exchange").unwrap().as_str(),
            Some("ex")
        );
        assert_eq!(h.get("x-last-death-queue").unwrap().as_str(), Some("q1"));
        assert_eq!(
            h.get("x-last-death-exchange").unwrap().as_str(),
            Some("dlx")
        );
        assert_eq!(hist3[0].count, 2);
        assert_eq!(hist3[0].time, 10);
        assert_eq!(&hist3[1].queue[..], b"q2");
        let xd = h.get("x-death").unwrap().as_array().unwrap();
        assert_eq!(xd.len(), 2);
        assert_eq!(
            xd[0].as_table().unwrap().get("count"),
            Some(&FieldValue::I64(2))
        );
    }
}
