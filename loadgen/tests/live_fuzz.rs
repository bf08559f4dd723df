//! The live fuzzer against an in-process broker: `warren-loadgen fuzz` sends
//! mutated sessions over 8 connections for about 10 seconds while its canary
//! publishes, consumes and opens new connections; then the broker must still
//! serve a normal client (a short `throughput` run).

#[allow(dead_code)]
mod common;

use common::{json_int, run_loadgen_at};

#[test]
fn mutated_sessions_leave_other_clients_alone() {
    let broker = warren::start(warren::Config::for_tests(2)).expect("broker starts");
    let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", broker.port());
    // The broker runs in this process: its RSS is ours.
    let pid = std::process::id().to_string();
    let (ok, json) = run_loadgen_at(
        &uri,
        &[
            "fuzz",
            "--duration",
            "10",
            "--connections",
            "8",
            "--seed",
            "14",
            "--pid",
            &pid,
            "--rss-limit-mb",
            "1024",
        ],
    );
    assert!(ok, "live fuzz failed: {json}");
    assert!(json.contains("\"errors\":[]"), "{json}");
    assert!(json_int(&json, "sessions") > 50, "{json}");
    assert!(json_int(&json, "frames") > 500, "{json}");
    assert!(json_int(&json, "canary_messages") > 0, "{json}");
    let (ok, json) = run_loadgen_at(&uri, &["throughput", "--duration", "1", "--warmup", "0"]);
    assert!(ok, "a normal client after the fuzzing: {json}");
    assert!(json_int(&json, "received") > 0, "{json}");
    broker.shutdown();
}
