//! The broker's log: `--log-format json` writes one JSON object per line
//! (time, level, shard, thread, target, message); connections are logged
//! when they open (user, vhost, the client's name) and close (why); and
//! `--log-file` is reopened on SIGHUP, as logrotate needs.

mod common_durable;
mod common_lapin;
use common_durable::{free_port, uri, DataDir};
use std::process::Child;
use std::time::{Duration, Instant};

fn start(dir: &std::path::Path, port: u16, log: &std::path::Path, format: &str) -> Child {
    let child = common_durable::warren_command(port, dir)
        .args(["--log-format", format])
        .arg("--log-file")
        .arg(log)
        .spawn()
        .unwrap();
    common_durable::wait_listening(port);
    child
}

/// Waits until `path` has a line containing `what`; returns the file.
fn wait_for(path: &std::path::Path, what: &str) -> String {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no {what:?} in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_connection_events_and_sighup_reopen() {
    let dir = DataDir::new("logs");
    std::fs::create_dir_all(&dir.0).unwrap();
    let log = dir.0.join("warren.log");
    let port = free_port();
    let mut child = start(&dir.0.join("data"), port, &log, "json");
    let props = lapin::ConnectionProperties::default().with_connection_name("log-test-app".into());
    let conn = lapin::Connection::connect(&uri(port), props).await.unwrap();
    let _ = conn.close(200, "bye").await;
    let text = wait_for(&log, "client closed it");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    for l in &lines {
        for k in ["time", "level", "shard", "thread", "target", "message"] {
            assert!(l.get(k).is_some(), "{k} missing in {l}");
        }
    }
    let opened = lines
        .iter()
        .find(|l| l["message"].as_str().unwrap().contains("authenticated"))
        .expect("the open is logged");
    let m = opened["message"].as_str().unwrap();
    assert!(
        m.contains("(log-test-app)") && m.contains("user 'guest'") && m.contains("vhost '/'"),
        "{m}"
    );
    assert!(opened["shard"].is_u64(), "logged on a shard: {opened}");
    assert_eq!(opened["level"], "info");
    // logrotate: the file is moved away, SIGHUP, and the log goes on in a
    // new file at the same path.
    let rotated = dir.0.join("warren.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    wait_for(&log, "log file reopened");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = std::fs::read_to_string(&log).unwrap();
    assert!(
        after.contains("shutting down") && after.contains("stopped"),
        "{after}"
    );
    assert!(!std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("stopped"));
}

#[test]
fn text_lines_name_the_shard() {
    let dir = DataDir::new("logs-text");
    std::fs::create_dir_all(&dir.0).unwrap();
    let log = dir.0.join("warren.log");
    let port = free_port();
    let mut child = start(&dir.0.join("data"), port, &log, "text");
    let text = wait_for(&log, "message store");
    let line = text.lines().find(|l| l.contains("message store")).unwrap();
    assert!(line.contains(" INFO  shard-"), "{line}");
    assert!(line.starts_with("20") && line.contains("Z "), "{line}");
    let _ = child.kill();
    let _ = child.wait();
}
