//! Quorum queues in the Prometheus endpoint (issue 20): RabbitMQ's Raft
//! families (`rabbitmq_raft_*`, the `ra_metrics` table, which the
//! "RabbitMQ-Quorum-Queues-Raft" dashboard reads), mapped onto warren's
//! replication, and warren's own per-follower lag.
//!
//! | RabbitMQ | warren |
//! |---|---|
//! | `raft_term_total` | the queue's epoch (one per election) |
//! | `raft_log_last_written_index` | the leader's last seq |
//! | `raft_log_commit_index` | the watermark: every in-sync member holds it |
//! | `raft_log_last_applied_index` | the leader's last seq (applied at once) |
//! | `raft_log_snapshot_index` | 0 (warren keeps no Raft log) |
//!
//! A node reports the queues it leads, per queue (`vhost`, `queue`
//! labels) in `/metrics/per-object` and `/metrics/detailed?family=ra_metrics`,
//! summed in `/metrics`, with RabbitMQ's types and help texts
//! (`tests/prometheus.rs` checks them against 3.10.8's).
//! `warren_quorum_follower_lag_messages{vhost,queue,follower}`
//! is what each follower has not synced yet.

use super::prometheus_text::{labels, Out, ScrapeData};
use super::ClusterView;

/// One quorum queue this node leads.
pub(crate) struct QuorumFigures {
    pub vhost: String,
    pub queue: String,
    pub epoch: u64,
    pub last: u64,
    pub commit: u64,
    /// (follower, messages it has not synced).
    pub lag: Vec<(String, u64)>,
}

/// The quorum queues this node leads, from the quorum view and the link.
pub(crate) fn collect(c: &ClusterView) -> Vec<QuorumFigures> {
    let (view, _) = c.quorum.view();
    let me = c.membership.node();
    let mut out: Vec<QuorumFigures> = view
        .queues
        .iter()
        .filter(|(_, q)| q.leader == me)
        .map(|(id, q)| {
            let lag = c.quorum.lag(*id).unwrap_or_default();
            QuorumFigures {
                vhost: q.vhost.clone(),
                queue: q.name.clone(),
                epoch: q.epoch,
                last: lag.last,
                commit: lag.commit,
                lag: lag
                    .followers
                    .iter()
                    .map(|(n, synced)| (n.clone(), lag.last.saturating_sub(*synced)))
                    .collect(),
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.vhost, &a.queue).cmp(&(&b.vhost, &b.queue)));
    out
}

/// A family's name, type, help, and value of one queue.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&QuorumFigures) -> u64,
);

/// The Raft families, per queue or summed, and the followers' lag.
pub(crate) fn render(out: &mut Out, d: &ScrapeData, per_object: bool) {
    let families: [Family; 5] = [
        (
            "raft_term_total",
            "counter",
            "Current Raft term number",
            |q| q.epoch,
        ),
        (
            "raft_log_snapshot_index",
            "gauge",
            "Raft log snapshot index",
            |_| 0,
        ),
        (
            "raft_log_last_applied_index",
            "gauge",
            "Raft log last applied index",
            |q| q.last,
        ),
        (
            "raft_log_commit_index",
            "gauge",
            "Raft log commit index",
            |q| q.commit,
        ),
        (
            "raft_log_last_written_index",
            "gauge",
            "Raft log last written index",
            |q| q.last,
        ),
    ];
    for (name, kind, help, f) in families {
        out.family(name, kind, help);
        if per_object {
            for q in &d.quorum {
                let l = labels(&[("vhost", &q.vhost), ("queue", &q.queue)]);
                out.sample(name, &l, f(q));
            }
        } else if !d.quorum.is_empty() {
            out.sample(name, "", d.quorum.iter().map(f).sum::<u64>());
        }
    }
    let prefix = out.prefix;
    out.prefix = "warren_";
    out.family(
        "quorum_follower_lag_messages",
        "gauge",
        "Messages of a quorum queue this node leads that a follower has not synced yet",
    );
    for q in &d.quorum {
        for (follower, lag) in &q.lag {
            let l = labels(&[
                ("vhost", &q.vhost),
                ("queue", &q.queue),
                ("follower", follower),
            ]);
            out.sample("quorum_follower_lag_messages", &l, *lag);
        }
    }
    out.prefix = prefix;
}

#[cfg(test)]
mod tests {
    use super::super::prometheus_text::{render, Endpoint, NodeFigures};
    use super::*;

    fn data() -> ScrapeData {
        ScrapeData {
            node: "warren@a".into(),
            cluster: "c1".into(),
            snaps: Vec::new(),
            vhosts: Default::default(),
            figures: NodeFigures::default(),
            shovels: Vec::new(),
            quorum: vec![QuorumFigures {
                vhost: "/".into(),
                queue: "qq".into(),
                epoch: 3,
                last: 120,
                commit: 100,
                lag: vec![("warren@b".into(), 20), ("warren@c".into(), 0)],
            }],
        }
    }

    #[test]
    fn raft_families_per_queue_and_summed() {
        let per = render(&data(), &Endpoint::PerObject);
        assert!(
            per.contains("rabbitmq_raft_term_total{vhost=\"/\",queue=\"qq\"} 3"),
            "{per}"
        );
        assert!(per.contains("rabbitmq_raft_log_commit_index{vhost=\"/\",queue=\"qq\"} 100"));
        assert!(per.contains("rabbitmq_raft_log_last_written_index{vhost=\"/\",queue=\"qq\"} 120"));
        assert!(per.contains(
            "warren_quorum_follower_lag_messages{vhost=\"/\",queue=\"qq\",follower=\"warren@b\"} 20"
        ));
        assert!(per.contains("rabbitmq_identity_info{"));
        assert!(per.contains("rabbitmq_cluster=\"c1\""));
        let agg = render(&data(), &Endpoint::Aggregated);
        assert!(agg.contains("rabbitmq_raft_term_total 3"), "{agg}");
        assert!(agg.contains("rabbitmq_raft_log_commit_index 100"));
    }
}
