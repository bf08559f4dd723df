//! The `warren` binary refuses to start with one line that says what is
//! wrong and a non-zero exit, never a panic: port in use, data directory
//! locked by another broker, unwritable, in another data format, and an
//! unreadable TLS certificate.

mod common_durable;
use common_durable::{DataDir, Proc};
use std::path::Path;
use std::process::Command;

/// Runs warren with `args` on `dir`; its exit code and stderr.
fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        // Never the machine's /etc/warren/warren.toml.
        .env("WARREN_CONFIG", "/dev/null")
        .args([
            "--http-port",
            "0",
            "--prometheus-port",
            "0",
            "--log-level",
            "error",
        ])
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("warren runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "a panic: {err}");
    (out.status.code(), err)
}

fn one_line_with(code: Option<i32>, err: &str, want: &[&str]) {
    assert_eq!(code, Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    for w in want {
        assert!(lines[0].contains(w), "{w:?} not in {:?}", lines[0]);
    }
}

#[test]
fn port_in_use() {
    let dir = DataDir::new("start-port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, err) = run(&dir.0, &["--port", &port, "--bind", "127.0.0.1"]);
    one_line_with(
        code,
        &err,
        &[
            "cannot listen on 127.0.0.1:",
            "Address already in use",
            "another port",
        ],
    );
}

#[test]
fn data_dir_of_a_running_broker() {
    let dir = DataDir::new("start-locked");
    let _p = Proc::start(&dir.0);
    let (code, err) = run(&dir.0, &["--port", "0", "--bind", "127.0.0.1"]);
    one_line_with(code, &err, &["locked", "another broker"]);
}

#[test]
fn data_dir_in_another_format() {
    let dir = DataDir::new("start-format");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.0.join("format"), "warren data format 99\n").unwrap();
    let (code, err) = run(&dir.0, &["--port", "0", "--bind", "127.0.0.1"]);
    one_line_with(code, &err, &["data format 99", "reads format 1"]);
}

#[test]
fn unwritable_data_dir() {
    // root writes anywhere: a path under a regular file cannot be created
    // by anyone.
    let dir = DataDir::new("start-unwritable");
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let (code, err) = run(&file.join("data"), &["--port", "0", "--bind", "127.0.0.1"]);
    one_line_with(code, &err, &["cannot create data dir"]);
}

#[test]
fn unreadable_certificate() {
    let dir = DataDir::new("start-cert");
    let (code, err) = run(
        &dir.0,
        &[
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ],
    );
    one_line_with(code, &err, &["cannot read /nonexistent/cert.pem"]);
}
