//! Smoke tests: run the built `warren-loadgen` scenarios (`throughput`,
//! `throughput` through a fanout exchange, `latency`) for about two seconds
//! each against an in-process broker and check their JSON summaries.

mod common;

use common::{json_int, json_num, run_loadgen};

#[test]
fn throughput_against_in_process_broker() {
    let json = run_loadgen(&["throughput", "--duration", "2", "--warmup", "0"]);
    let sent = json_int(&json, "sent");
    let received = json_int(&json, "received");
    let backlog = json_int(&json, "backlog");
    assert!(received > 0, "nothing delivered: {json}");
    assert!(received <= sent, "{json}");
    assert_eq!(backlog, sent - received, "{json}");
    assert_eq!(json_int(&json, "expected"), sent, "{json}");
    assert!(json_int(&json, "queue_left") >= 0, "{json}");
    assert!(json.contains("\"exchange_type\":\"default\""), "{json}");
}

/// Every message reaches both queues: deliveries are twice the sends.
#[test]
fn throughput_fanout_two_queues() {
    let json = run_loadgen(&[
        "throughput",
        "--exchange-type",
        "fanout",
        "--queues",
        "2",
        "--consumers",
        "2",
        "--rate",
        "10000",
        "--duration",
        "2",
        "--warmup",
        "0",
    ]);
    let sent = json_int(&json, "sent");
    let expected = json_int(&json, "expected");
    let received = json_int(&json, "received");
    let backlog = json_int(&json, "backlog");
    assert_eq!(json_int(&json, "queues"), 2, "{json}");
    assert_eq!(json_int(&json, "fanout"), 2, "{json}");
    assert!(json.contains("\"exchange_type\":\"fanout\""), "{json}");
    assert!(sent > 0, "{json}");
    assert_eq!(expected, 2 * sent, "{json}");
    assert_eq!(backlog, expected - received, "{json}");
    assert!(received <= expected, "{json}");
    // Rate-capped far below what the broker moves: (nearly) everything
    // arrives twice, and what did not is still in the queues.
    assert!(received * 10 >= expected * 9, "{json}");
    assert_eq!(json_int(&json, "queue_left"), backlog, "{json}");
}

#[test]
fn latency_against_in_process_broker() {
    let json = run_loadgen(&[
        "latency",
        "--rate",
        "2000",
        "--duration",
        "2",
        "--warmup",
        "0.5",
    ]);
    assert!(json.contains("\"scenario\":\"latency\""), "{json}");
    let sent = json_int(&json, "sent");
    let received = json_int(&json, "received");
    assert!(received > 0, "nothing delivered: {json}");
    assert!(received <= sent, "{json}");
    assert_eq!(json_int(&json, "rate"), 2000, "{json}");
    assert!(json_int(&json, "measured") > 0, "{json}");
    let (p50, p90, p99, p999, max) = (
        json_num(&json, "p50_us"),
        json_num(&json, "p90_us"),
        json_num(&json, "p99_us"),
        json_num(&json, "p999_us"),
        json_num(&json, "max_us"),
    );
    assert!(p50 > 0.0, "{json}");
    assert!(
        p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
        "{json}"
    );
    let mean = json_num(&json, "mean_us");
    assert!(mean > 0.0 && mean <= max, "{json}");
}
