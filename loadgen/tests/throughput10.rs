//! Runs the built `warren-loadgen throughput10` (AMQP 1.0) against an
//! in-process two-shard broker, settled and unsettled, and checks that
//! messages flowed and were settled as they should be.

#[allow(dead_code)]
mod common;

use common::{json_int, json_raw, run_loadgen_at};

/// Runs `throughput10 <args>` for about `secs` seconds against a fresh
/// broker; returns the JSON summary after the checks every run must pass.
fn run(secs: &str, args: &[&str]) -> String {
    let broker = warren::start(warren::Config::for_tests(2)).expect("broker starts");
    let uri = format!("amqp://guest:guest@127.0.0.1:{}", broker.port());
    let mut all = vec!["throughput10", "--duration", secs, "--warmup", "0"];
    all.extend_from_slice(args);
    let (ok, json) = run_loadgen_at(&uri, &all);
    broker.shutdown();
    assert!(ok, "loadgen {all:?} failed: {json}");
    assert!(json.contains("\"errors\":[]"), "{json}");
    assert!(json.contains("\"scenario\":\"throughput10\""), "{json}");
    let sent = json_int(&json, "sent");
    let received = json_int(&json, "received");
    assert!(received > 0, "nothing delivered: {json}");
    assert!(received <= sent, "{json}");
    assert_eq!(json_int(&json, "backlog"), sent - received, "{json}");
    // What the receiver did not take is still in the queue (or, unsettled,
    // settled by the receiver while the queue was deleted).
    assert!(json_int(&json, "queue_left") + received <= sent, "{json}");
    assert_eq!(json_int(&json, "odd_bodies"), 0, "{json}");
    json
}

#[test]
fn settled() {
    let json = run("2", &["--settled"]);
    assert!(json.contains("\"settled\":true"), "{json}");
    // No outcomes, no dispositions.
    assert_eq!(json_int(&json, "confirmed"), 0, "{json}");
    assert_eq!(json_int(&json, "accepted"), 0, "{json}");
    assert_eq!(json_int(&json, "frames_per_msg"), 1, "{json}");
}

#[test]
fn unsettled() {
    let json = run("2", &["--persistent", "--durable"]);
    assert!(json.contains("\"settled\":false"), "{json}");
    let sent = json_int(&json, "sent");
    // Every message got its outcome, accepted; every one received was
    // accepted by the receiver.
    assert_eq!(json_int(&json, "confirmed"), sent, "{json}");
    assert_eq!(json_int(&json, "nacked"), 0, "{json}");
    assert_eq!(
        json_int(&json, "accepted"),
        json_int(&json, "received"),
        "{json}"
    );
    assert_ne!(json_raw(&json, "publish_median"), "null", "{json}");
}

/// Frames of at most 512 bytes both ways: 3000-byte bodies take seven.
#[test]
fn multi_frame_unsettled() {
    let json = run("1", &["--size", "3000", "--max-frame-size", "512"]);
    assert!(json_int(&json, "frames_per_msg") > 1, "{json}");
    assert!(json_int(&json, "multi_frame") > 0, "{json}");
    assert_eq!(
        json_int(&json, "accepted"),
        json_int(&json, "received"),
        "{json}"
    );
}

/// Multi-frame deliveries with a session incoming window smaller than a
/// message's frames: the broker must stop at the window's end, mid-message.
#[test]

fn multi_frame_small_window() {
    run(
        "1",
        &[
            "--size",
            "3000",
            "--max-frame-size",
            "512",
            "--incoming-window",
            "4",
        ],
    );
}
