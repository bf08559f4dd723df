//! Runs the built `warren-loadgen connections` and `churn` against an
//! in-process broker and checks their JSON summaries.

use std::process::{Command, Output};

/// The text after `"key":` in a flat JSON object, up to the next `,` or `}`.
fn json_raw<'a>(json: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} missing in {json}"))
        + pat.len();
    let rest = &json[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    &rest[..end]
}

fn json_num(json: &str, key: &str) -> f64 {
    let raw = json_raw(json, key);
    raw.parse()
        .unwrap_or_else(|_| panic!("{key} is not a number ({raw}) in {json}"))
}

/// Runs the loadgen against a fresh one-shard broker; returns the output
/// and the single JSON line it printed.
fn loadgen(args: &[&str]) -> (Output, String) {
    let broker = warren::start(warren::Config::for_tests(1)).expect("broker starts");
    let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", broker.port());
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_warren-loadgen"))
        .args(args)
        .args(["--uri", &uri, "--json"])
        .output()
        .expect("loadgen runs");
    let elapsed = started.elapsed();
    broker.shutdown();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let json = stdout.trim().to_string();
    assert!(json.starts_with('{') && json.ends_with('}'), "{json}");
    assert_eq!(json.lines().count(), 1, "one JSON object: {json}");
    assert!(json.contains("\"errors\":[]"), "{json}");
    assert!(json.contains("\"ok\":true"), "{json}");
    eprintln!("loadgen {args:?} took {elapsed:?}: {json}");
    (out, json)
}

#[test]
fn connections_against_in_process_broker() {
    // The broker runs in this process: its RSS is ours.
    let pid = std::process::id().to_string();
    let (_, json) = loadgen(&[
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
    assert_eq!(json_num(&json, "connections"), 20.0, "{json}");
    assert_eq!(json_num(&json, "channels"), 2.0, "{json}");
    assert_eq!(json_num(&json, "opened"), 20.0, "{json}");
    assert_eq!(json_num(&json, "alive"), 20.0, "{json}");
    assert!(json_num(&json, "open_rate") > 0.0, "{json}");
    assert!(json_num(&json, "rss_before_kb") > 0.0, "{json}");
    assert!(json_num(&json, "rss_after_kb") > 0.0, "{json}");
    // Growth may be anything (the test harness allocates too), but it is a number.
    json_num(&json, "rss_per_conn_kb");
}

#[test]
fn connections_without_pid_reports_null_rss() {
    let (_, json) = loadgen(&["connections", "--connections", "3", "--hold", "0.2"]);
    assert_eq!(json_num(&json, "opened"), 3.0, "{json}");
    for k in ["pid", "rss_before_kb", "rss_after_kb", "rss_per_conn_kb"] {
        assert_eq!(json_raw(&json, k), "null", "{k}: {json}");
    }
}

#[test]
fn churn_against_in_process_broker() {
    let (_, json) = loadgen(&["churn", "--duration", "1"]);
    assert!(json.contains("\"scenario\":\"churn\""), "{json}");
    for phase in ["connection", "channel", "queue", "binding"] {
        let rate = json_num(&json, &format!("{phase}_rate"));
        assert!(rate > 0.0, "{phase}_rate = {rate}: {json}");
        assert!(json_num(&json, &format!("{phase}_ops")) > 0.0, "{json}");
    }
}

#[test]
fn churn_count_and_phase_selection() {
    let (_, json) = loadgen(&[
        "churn",
        "--phases",
        "queue,binding",
        "--count",
        "50",
        "--threads",
        "2",
        "--named-queues",
    ]);
    assert_eq!(json_num(&json, "queue_ops"), 50.0, "{json}");
    assert_eq!(json_num(&json, "binding_ops"), 50.0, "{json}");
    assert_eq!(json_raw(&json, "connection_rate"), "null", "{json}");
    assert_eq!(json_raw(&json, "channel_rate"), "null", "{json}");
}
