//! Shared by the loadgen's integration tests: run the built binary against
//! a fresh in-process broker and read keys of its flat JSON summary.

use std::process::Command;

/// Runs `warren-loadgen <args> --uri <fresh one-shard broker> --json`;
/// returns the summary line after checking the exit status and the JSON
/// shape (one object, no errors, `"ok":true`).
pub fn run_loadgen(args: &[&str]) -> String {
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
    let stdout = String::from_utf8_lossy(&out.stdout);
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
    json
}

/// The text after the first `"key":` in a flat JSON object, up to the next
/// `,` or `}` (a number, `null`, `true`, `false` or a simple string).
pub fn json_raw<'a>(json: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} missing in {json}"))
        + pat.len();
    let rest = &json[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    &rest[..end]
}

/// The integer value of `"key":N` (first occurrence).
pub fn json_int(json: &str, key: &str) -> i64 {
    let raw = json_raw(json, key);
    raw.parse()
        .unwrap_or_else(|_| panic!("{key} is not an integer ({raw}) in {json}"))
}

/// The numeric value of `"key":N` (first occurrence).
pub fn json_num(json: &str, key: &str) -> f64 {
    let raw = json_raw(json, key);
    raw.parse()
        .unwrap_or_else(|_| panic!("{key} is not a number ({raw}) in {json}"))
}
