//! Runs the built `warren-loadgen connections`, `churn` and `fleet` against
//! an in-process broker and checks their JSON summaries.

mod common;

use common::{json_int, json_num, json_raw, run_loadgen};

#[test]
fn connections_against_in_process_broker() {
    // The broker runs in this process: its RSS is ours.
    let pid = std::process::id().to_string();
    let json = run_loadgen(&[
        "connections",
        "--connections",
        "20",
        "--channels",
        "2",
        "--hold",
        "1",
        "--settle",
        "0.2",
        "--pid",
        &pid,
    ]);
    assert!(json.contains("\"scenario\":\"connections\""), "{json}");
    assert_eq!(json_int(&json, "connections"), 20, "{json}");
    assert_eq!(json_int(&json, "channels"), 2, "{json}");
    assert_eq!(json_int(&json, "opened"), 20, "{json}");
    assert_eq!(json_int(&json, "alive"), 20, "{json}");
    assert!(json_num(&json, "open_rate") > 0.0, "{json}");
    assert!(json_num(&json, "rss_before_kb") > 0.0, "{json}");
    assert!(json_num(&json, "rss_after_kb") > 0.0, "{json}");
    // Growth may be anything (the test harness allocates too), but it is a number.
    json_num(&json, "rss_per_conn_kb");
}

#[test]
fn connections_without_pid_reports_null_rss() {
    let json = run_loadgen(&["connections", "--connections", "3", "--hold", "0.2"]);
    assert_eq!(json_int(&json, "opened"), 3, "{json}");
    for k in ["pid", "rss_before_kb", "rss_after_kb", "rss_per_conn_kb"] {
        assert_eq!(json_raw(&json, k), "null", "{k}: {json}");
    }
}

#[test]
fn churn_against_in_process_broker() {
    let json = run_loadgen(&["churn", "--duration", "1"]);
    assert!(json.contains("\"scenario\":\"churn\""), "{json}");
    for phase in ["connection", "channel", "queue", "binding"] {
        let rate = json_num(&json, &format!("{phase}_rate"));
        assert!(rate > 0.0, "{phase}_rate = {rate}: {json}");
        assert!(json_int(&json, &format!("{phase}_ops")) > 0, "{json}");
    }
}

#[test]
fn churn_count_and_phase_selection() {
    let json = run_loadgen(&[
        "churn",
        "--phases",
        "queue,binding",
        "--count",
        "50",
        "--threads",
        "2",
        "--named-queues",
    ]);
    assert_eq!(json_int(&json, "queue_ops"), 50, "{json}");
    assert_eq!(json_int(&json, "binding_ops"), 50, "{json}");
    assert_eq!(json_raw(&json, "connection_rate"), "null", "{json}");
    assert_eq!(json_raw(&json, "channel_rate"), "null", "{json}");
}

/// A small fleet: 200 publishers x 5 msg/s with confirms, 20 consumers on
/// 20 queues, two event-loop threads, 2 s measured.
#[test]
fn fleet_against_in_process_broker() {
    // The broker runs in this process: its RSS and CPU are ours.
    let pid = std::process::id().to_string();
    let json = run_loadgen(&[
        "fleet",
        "--connections",
        "200",
        "--rate-per-conn",
        "5",
        "--consumers",
        "20",
        "--duration",
        "2",
        "--warmup",
        "0.5",
        "--settle",
        "0.2",
        "--pid",
        &pid,
    ]);
    assert!(json.contains("\"scenario\":\"fleet\""), "{json}");
    assert_eq!(json_int(&json, "connections"), 200, "{json}");
    assert_eq!(json_int(&json, "consumers"), 20, "{json}");
    assert_eq!(json_int(&json, "queues"), 20, "{json}");
    assert_eq!(json_int(&json, "threads"), 2, "{json}");
    assert_eq!(json_int(&json, "opened"), 220, "{json}");
    assert_eq!(json_int(&json, "open_failed"), 0, "{json}");
    assert_eq!(json_int(&json, "lost"), 0, "{json}");
    // 1,000 msg/s for 2.5 s (warmup included): everything confirmed and
    // delivered once, nothing left.
    let published = json_int(&json, "published");
    assert!((2400..=2600).contains(&published), "{json}");
    assert_eq!(json_int(&json, "confirmed"), published, "{json}");
    assert_eq!(json_int(&json, "nacked"), 0, "{json}");
    assert_eq!(json_int(&json, "delivered"), published, "{json}");
    assert_eq!(json_raw(&json, "complete"), "true", "{json}");
    assert_eq!(json_int(&json, "queue_left"), 0, "{json}");
    let measured = json_int(&json, "measured");
    assert!((1900..=2100).contains(&measured), "{json}");
    let achieved = json_num(&json, "achieved_rate");
    assert!((900.0..=1100.0).contains(&achieved), "{json}");
    assert_eq!(json_num(&json, "target_rate"), 1000.0, "{json}");
    let (p50, p99, p999, max) = (
        json_num(&json, "p50_us"),
        json_num(&json, "p99_us"),
        json_num(&json, "p999_us"),
        json_num(&json, "max_us"),
    );
    assert!(
        p50 > 0.0 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{json}"
    );
    let (c50, c99) = (
        json_num(&json, "confirm_p50_us"),
        json_num(&json, "confirm_p99_us"),
    );
    assert!(c50 > 0.0 && c50 <= c99, "{json}");
    // --pid: memory before, after opening and at the end; CPU over the window.
    for k in ["rss_before_kb", "rss_opened_kb", "rss_end_kb"] {
        assert!(json_num(&json, k) > 0.0, "{k}: {json}");
    }
    json_num(&json, "rss_per_conn_kb");
    assert!(json_num(&json, "broker_cpu_pct") > 0.0, "{json}");
    assert!(json_num(&json, "broker_cpu_us_per_msg") > 0.0, "{json}");
    json_num(&json, "broker_wakeups_per_msg");
    assert!(json_num(&json, "loadgen_cpu_pct") >= 0.0, "{json}");
    assert!(json_num(&json, "cpu_s") > 0.0, "{json}");
}

/// Without --pid the broker figures are null; a publisher-only fleet
/// (no consumers, one queue) keeps its messages in the queue.
#[test]
fn fleet_without_pid_or_consumers() {
    let json = run_loadgen(&[
        "fleet",
        "--connections",
        "10",
        "--rate-per-conn",
        "10",
        "--consumers",
        "0",
        "--duration",
        "0.5",
        "--warmup",
        "0",
        "--settle",
        "0",
    ]);
    assert_eq!(json_int(&json, "opened"), 10, "{json}");
    assert_eq!(json_int(&json, "queues"), 1, "{json}");
    assert_eq!(json_int(&json, "delivered"), 0, "{json}");
    let published = json_int(&json, "published");
    assert_eq!(json_int(&json, "confirmed"), published, "{json}");
    assert_eq!(json_int(&json, "queue_left"), published, "{json}");
    for k in [
        "pid",
        "broker_cpu_pct",
        "broker_cpu_us_per_msg",
        "rss_before_kb",
        "rss_per_conn_kb",
        "p99_us",
    ] {
        assert_eq!(json_raw(&json, k), "null", "{k}: {json}");
    }
}
