//! Smoke test: runs the built `warren-loadgen throughput` against an in-process
//! broker and checks the JSON summary (something was delivered, and the
//! backlog is `sent - received`).

use std::process::Command;

/// The integer value of `"key":N` in a flat JSON object (first occurrence).
fn json_int(json: &str, key: &str) -> i64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} missing in {json}"))
        + pat.len();
    let rest = &json[at..];
    let end = rest
        .find(|c: char| c != '-' && !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not an integer in {json}"))
}

#[test]
fn throughput_against_in_process_broker() {
    let config = warren::Config::for_tests(1);
    let broker = warren::start(config).expect("broker starts");
    let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", broker.port());
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_warren-loadgen"))
        .args(["throughput", "--uri", &uri])
        .args(["--duration", "2", "--warmup", "0", "--json"])
        .output()
        .expect("loadgen runs");
    let elapsed = started.elapsed();
    broker.shutdown();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let json = stdout.trim();
    assert!(json.starts_with('{') && json.ends_with('}'), "{json}");
    assert_eq!(json.lines().count(), 1, "one JSON object: {json}");
    let sent = json_int(json, "sent");
    let received = json_int(json, "received");
    let backlog = json_int(json, "backlog");
    assert!(received > 0, "nothing delivered: {json}");
    assert!(received <= sent, "{json}");
    assert_eq!(backlog, sent - received, "{json}");
    assert!(json.contains("\"errors\":[]"), "{json}");
    assert!(json.contains("\"ok\":true"), "{json}");
    assert!(json_int(json, "queue_left") >= 0, "{json}");
    eprintln!("loadgen took {elapsed:?}: {json}");
}
