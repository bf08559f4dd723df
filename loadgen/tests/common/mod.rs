//! Shared by the loadgen's integration tests: run the built binary against
//! a fresh in-process broker and read keys of its flat JSON summary.

use std::process::Command;

/// Runs `warren-loadgen <args> --uri <fresh one-shard broker> --json`;
/// returns the summary line after checking the exit status and the JSON
/// shape (one object, no errors, `"ok":true`).
pub fn run_loadgen(args: &[&str]) -> String {
    let broker = warren::start(warren::Config::for_tests(1)).expect("broker starts");
    let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", broker.port());
    let (ok, json) = run_loadgen_at(&uri, args);
    broker.shutdown();
    assert!(ok, "loadgen {args:?} failed: {json}");
    assert!(json.contains("\"errors\":[]"), "{json}");
    assert!(json.contains("\"ok\":true"), "{json}");
    json
}

/// Runs `warren-loadgen <args> --uri <uri> --json` against a broker the
/// caller started (so that several runs can share it); returns whether it
/// exited with status 0, and the summary line after checking its shape (one
/// JSON object).
pub fn run_loadgen_at(uri: &str, args: &[&str]) -> (bool, String) {
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_warren-loadgen"))
        .args(args)
        .args(["--uri", uri, "--json"])
        .output()
        .expect("loadgen runs");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json = stdout.trim().to_string();
    assert!(
        json.starts_with('{') && json.ends_with('}'),
        "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    assert_eq!(json.lines().count(), 1, "one JSON object: {json}");
    eprintln!(
        "loadgen {args:?} took {elapsed:?}, exit {:?}: {json}\n{stderr}",
        out.status
    );
    (out.status.success(), json)
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
