//! Runs the built `warren-loadgen connections` and `churn` against an
//! in-process broker and checks their JSON summaries.

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
