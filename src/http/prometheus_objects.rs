//! The per-object families of RabbitMQ's `prometheus_rabbitmq_core_metrics_collector`
//! (3.13): queues (`queue_coarse_metrics`, `queue_consumer_count`,
//! `queue_metrics`, `channel_queue_exchange_metrics`), channels
//! (`channel_metrics`, `channel_exchange_metrics`, `channel_queue_metrics`)
//! and connections (`connection_coarse_metrics`, `connection_metrics`). Per
//! object, a queue is labelled `vhost`, `queue`; a channel `channel` (its
//! name, where RabbitMQ puts the channel process's pid); a connection
//! `channel` too (RabbitMQ's label for connections, with its name).
//! Aggregated, each family is one sum without labels.
//!
//! Where RabbitMQ breaks channel counters down by exchange or queue
//! (`channel_messages_published_total{channel,exchange,vhost}`,
//! `queue_messages_published_total{channel,queue_vhost,queue,…}`), warren
//! counts per channel and per queue only: those families carry `channel`,
//! and `vhost`, `queue`.

use super::prometheus_text::{labels, Out, ScrapeData};
use crate::core::ids::VhostId;
use crate::core::latency::Histogram;
use crate::core::stats::MsgStats;
use crate::core::stats::QueueSnap;

/// Objects of one kind: their label strings and the per-object value of
/// each metric.
struct Objects<'a, T> {
    items: Vec<(&'a T, String)>,
    per_object: bool,
}

impl<T> Objects<'_, T> {
    /// A family: per object one sample, or one sum.
    fn metric(&self, out: &mut Out, name: &str, kind: &str, help: &str, f: impl Fn(&T) -> u64) {
        out.family(name, kind, help);
        if self.per_object {
            for (item, l) in &self.items {
                out.sample(name, l, f(item));
            }
        } else {
            let sum: u64 = self.items.iter().map(|(i, _)| f(i)).sum();
            out.sample(name, "", sum);
        }
    }
}

/// Writes the object families the endpoint wants.
pub(super) fn render(
    out: &mut Out,
    d: &ScrapeData,
    per_object: bool,
    wanted: &dyn Fn(&str) -> bool,
    vhost_ok: &dyn Fn(VhostId) -> bool,
) {
    let vhost_name = |id: VhostId| d.vhosts.get(&id).map_or("", |n| &**n);
    let queues = Objects {
        items: d
            .snaps
            .iter()
            .flat_map(|s| &s.queues)
            .filter(|q| vhost_ok(q.vhost))
            .map(|q| {
                let l = if per_object {
                    labels(&[("vhost", vhost_name(q.vhost)), ("queue", &q.name)])
                } else {
                    String::new()
                };
                (q, l)
            })
            .collect(),
        per_object,
    };
    if wanted("queue_coarse_metrics") {
        let q = &queues;
        q.metric(
            out,
            "queue_messages_ready",
            "gauge",
            "Messages ready to be delivered to consumers",
            |q| q.messages_ready,
        );
        q.metric(
            out,
            "queue_messages_unacked",
            "gauge",
            "Messages delivered to consumers but not yet acknowledged",
            |q| q.messages_unacked,
        );
        q.metric(
            out,
            "queue_messages",
            "gauge",
            "Sum of ready and unacknowledged messages - total queue depth",
            |q| q.messages_ready + q.messages_unacked,
        );
    }
    if wanted("queue_metrics") || wanted("queue_consumer_count") {
        queues.metric(
            out,
            "queue_consumers",
            "gauge",
            "Consumers on a queue",
            |q| q.consumers as u64,
        );
    }
    if wanted("queue_metrics") {
        let q = &queues;
        q.metric(
            out,
            "queue_process_memory_bytes",
            "gauge",
            "Memory in bytes used by the Erlang queue process",
            |q| q.memory,
        );
        q.metric(
            out,
            "queue_messages_ram",
            "gauge",
            "Ready and unacknowledged messages stored in memory",
            |q| q.messages_ready - q.messages_paged_out + q.messages_unacked,
        );
        q.metric(
            out,
            "queue_messages_ready_ram",
            "gauge",
            "Ready messages stored in memory",
            |q| q.messages_ready - q.messages_paged_out,
        );
        q.metric(
            out,
            "queue_messages_unacked_ram",
            "gauge",
            "Unacknowledged messages stored in memory",
            |q| q.messages_unacked,
        );
        q.metric(
            out,
            "queue_messages_bytes",
            "gauge",
            "Size in bytes of ready and unacknowledged messages",
            |q| q.bytes_ready + q.bytes_unacked,
        );
        q.metric(
            out,
            "queue_messages_ready_bytes",
            "gauge",
            "Size in bytes of ready messages",
            |q| q.bytes_ready,
        );
        q.metric(
            out,
            "queue_messages_unacked_bytes",
            "gauge",
            "Size in bytes of all unacknowledged messages",
            |q| q.bytes_unacked,
        );
        q.metric(
            out,
            "queue_messages_paged_out",
            "gauge",
            "Messages paged out to disk",
            |q| q.messages_paged_out,
        );
        // Streams (RabbitMQ 3.13's `rabbitmq_stream_segments`, and the
        // readers' lag, which RabbitMQ reports for its stream protocol).
        let streams = Objects {
            items: q
                .items
                .iter()
                .filter(|(s, _)| s.stream.is_some())
                .map(|(s, l)| (*s, l.clone()))
                .collect(),
            per_object,
        };
        if !streams.items.is_empty() {
            streams.metric(
                out,
                "stream_segments",
                "gauge",
                "Segment files of a stream",
                |q| q.stream.as_deref().map_or(0, |s| s.segments),
            );
            streams.metric(
                out,
                "stream_consumer_max_offset_lag",
                "gauge",
                "Messages the furthest-behind consumer of a stream has yet to read",
                |q| {
                    let readers = q.stream.as_deref().map_or(&[][..], |s| &s.readers[..]);
                    readers.iter().map(|r| r.offset_lag).max().unwrap_or(0)
                },
            );
        }
    }
    if per_object
        || wanted("channel_metrics")
        || wanted("channel_exchange_metrics")
        || wanted("channel_queue_metrics")
    {
        channels(out, d, per_object, wanted);
    }
    if wanted("connection_coarse_metrics") || wanted("connection_metrics") {
        connections(out, d, per_object, wanted);
    }
    if wanted("channel_queue_exchange_metrics") {
        queues.metric(
            out,
            "queue_messages_published_total",
            "counter",
            "Total number of messages published to queues",
            |q| q.stats.publish,
        );
    }
    if wanted("queue_delivery_metrics") {
        let q = &queues;
        q.metric(
            out,
            "queue_messages_delivered_total",
            "counter",
            "Total number of messages delivered from queues (consumed or got)",
            |q| q.stats.deliver_get(),
        );
        q.metric(
            out,
            "queue_messages_acked_total",
            "counter",
            "Total number of delivered messages acknowledged",
            |q| q.stats.ack,
        );
        q.metric(
            out,
            "queue_messages_redelivered_total",
            "counter",
            "Total number of messages delivered again after a requeue",
            |q| q.stats.redeliver,
        );
    }
    if wanted("queue_latency_metrics") {
        latency(
            out,
            &queues,
            "queue_time_in_queue_seconds",
            "Time messages waited in queues before their first delivery (warren)",
            |q| &q.time_in_queue,
        );
        latency(
            out,
            &queues,
            "queue_publish_to_confirm_seconds",
            "Time from a message reaching its queue to the publisher confirm (warren)",
            |q| &q.confirm_latency,
        );
    }
}

/// warren's latency histograms (`core::latency`) as Prometheus histograms
/// in seconds: per object, only for queues that measured something (an
/// idle queue adds no 23 lines to the scrape); aggregated, one node-wide
/// histogram.
fn latency(
    out: &mut Out,
    queues: &Objects<'_, QueueSnap>,
    name: &str,
    help: &str,
    h: impl Fn(&QueueSnap) -> &Histogram,
) {
    out.family(name, "histogram", help);
    let bucket = format!("{name}_bucket");
    let (sum, count) = (format!("{name}_sum"), format!("{name}_count"));
    let mut write = |l: &str, hist: &Histogram| {
        let sep = if l.is_empty() { "" } else { "," };
        for (le, c) in hist.cumulative() {
            let le = le.map_or_else(|| "+Inf".to_string(), |us| format!("{}", us as f64 / 1e6));
            out.sample(&bucket, &format!("{l}{sep}le=\"{le}\""), c);
        }
        out.sample(&sum, l, hist.sum_us as f64 / 1e6);
        out.sample(&count, l, hist.count());
    };
    if queues.per_object {
        for (q, l) in &queues.items {
            let hist = h(q);
            if hist.count() > 0 {
                write(l, hist);
            }
        }
    } else {
        let mut all = Histogram::default();
        for (q, _) in &queues.items {
            all.add(h(q));
        }
        write("", &all);
    }
}

fn channels(out: &mut Out, d: &ScrapeData, per_object: bool, wanted: &dyn Fn(&str) -> bool) {
    let chans = Objects {
        items: d
            .snaps
            .iter()
            .flat_map(|s| &s.channels)
            .map(|c| {
                let l = if per_object {
                    labels(&[("channel", &format!("{} ({})", c.connection, c.number))])
                } else {
                    String::new()
                };
                (c, l)
            })
            .collect(),
        per_object,
    };
    let c = &chans;
    if wanted("channel_metrics") {
        c.metric(
            out,
            "channel_consumers",
            "gauge",
            "Consumers on a channel",
            |c| c.consumer_count as u64,
        );
        c.metric(
            out,
            "channel_messages_unacked",
            "gauge",
            "Delivered but not yet acknowledged messages",
            |c| c.messages_unacknowledged,
        );
        c.metric(
            out,
            "channel_messages_unconfirmed",
            "gauge",
            "Published but not yet confirmed messages",
            |c| c.messages_unconfirmed,
        );
        c.metric(
            out,
            "channel_messages_uncommitted",
            "gauge",
            "Messages received in a transaction but not yet committed",
            |_| 0,
        );
        c.metric(
            out,
            "channel_acks_uncommitted",
            "gauge",
            "Message acknowledgements in a transaction not yet committed",
            |_| 0,
        );
        c.metric(
            out,
            "consumer_prefetch",
            "gauge",
            "Limit of unacknowledged messages for each consumer",
            |c| c.prefetch_count as u64,
        );
        c.metric(
            out,
            "channel_prefetch",
            "gauge",
            "Total limit of unacknowledged messages for all consumers on a channel",
            |c| c.global_prefetch_count as u64,
        );
    }
    let s = |f: fn(&MsgStats) -> u64| move |c: &crate::core::stats::ChannelSnap| f(&c.stats);
    if wanted("channel_exchange_metrics") {
        c.metric(
            out,
            "channel_messages_published_total",
            "counter",
            "Total number of messages published into an exchange on a channel",
            s(|m| m.publish),
        );
        c.metric(
            out,
            "channel_messages_confirmed_total",
            "counter",
            "Total number of messages published into an exchange and confirmed on the channel",
            s(|m| m.confirm),
        );
        c.metric(out, "channel_messages_unroutable_returned_total", "counter", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", s(|m| m.return_unroutable));
        c.metric(out, "channel_messages_unroutable_dropped_total", "counter", "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", s(|m| m.drop_unroutable));
    }
    if wanted("channel_queue_metrics") {
        c.metric(
            out,
            "channel_get_ack_total",
            "counter",
            "Total number of messages fetched with basic.get in manual acknowledgement mode",
            s(|m| m.get),
        );
        c.metric(
            out,
            "channel_get_total",
            "counter",
            "Total number of messages fetched with basic.get in automatic acknowledgement mode",
            s(|m| m.get_no_ack),
        );
        c.metric(
            out,
            "channel_messages_delivered_ack_total",
            "counter",
            "Total number of messages delivered to consumers in manual acknowledgement mode",
            s(|m| m.deliver),
        );
        c.metric(
            out,
            "channel_messages_delivered_total",
            "counter",
            "Total number of messages delivered to consumers in automatic acknowledgement mode",
            s(|m| m.deliver_no_ack),
        );
        c.metric(
            out,
            "channel_messages_redelivered_total",
            "counter",
            "Total number of messages redelivered to consumers",
            s(|m| m.redeliver),
        );
        c.metric(
            out,
            "channel_messages_acked_total",
            "counter",
            "Total number of messages acknowledged by consumers",
            s(|m| m.ack),
        );
        c.metric(
            out,
            "channel_get_empty_total",
            "counter",
            "Total number of times basic.get operations fetched no message",
            s(|m| m.get_empty),
        );
    }
}

fn connections(out: &mut Out, d: &ScrapeData, per_object: bool, wanted: &dyn Fn(&str) -> bool) {
    let conns = Objects {
        items: d
            .snaps
            .iter()
            .flat_map(|s| &s.connections)
            .map(|c| {
                // RabbitMQ labels connection metrics `channel` too.
                let l = if per_object {
                    labels(&[("channel", &c.name)])
                } else {
                    String::new()
                };
                (c, l)
            })
            .collect(),
        per_object,
    };
    let c = &conns;
    if wanted("connection_coarse_metrics") {
        c.metric(
            out,
            "connection_incoming_bytes_total",
            "counter",
            "Total number of bytes received on a connection",
            |c| c.recv_oct,
        );
        c.metric(
            out,
            "connection_outgoing_bytes_total",
            "counter",
            "Total number of bytes sent on a connection",
            |c| c.send_oct,
        );
    }
    if wanted("connection_metrics") {
        c.metric(
            out,
            "connection_incoming_packets_total",
            "counter",
            "Total number of packets received on a connection",
            |c| c.recv_cnt,
        );
        c.metric(
            out,
            "connection_outgoing_packets_total",
            "counter",
            "Total number of packets sent on a connection",
            |c| c.send_cnt,
        );
        c.metric(
            out,
            "connection_pending_packets",
            "gauge",
            "Number of packets waiting to be sent on a connection",
            |c| c.send_pend,
        );
        c.metric(
            out,
            "connection_channels",
            "gauge",
            "Channels on a connection",
            |c| c.channels as u64,
        );
    }
}
