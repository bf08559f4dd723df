//! Cluster membership through etcd (issue 20, first part): nodes started
//! with `--etcd` and the same `--cluster-name` list each other in
//! `/api/nodes` as running; a node that stops cleanly shows as stopped at
//! once (it revokes its lease), one killed with SIGKILL within a lease time
//! (5 s), and both are still listed, as RabbitMQ lists stopped members.
//! Without etcd (no binary) the test says so and skips.

mod common_durable;
mod common_etcd;
mod common_http;
use common_etcd::etcd;
use common_http::Api;

use serde_json::Value;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

struct Node {
    child: Child,
    api: Api,
    _dir: common_durable::DataDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node(name: &str, etcd_url: &str) -> Node {
    let dir = common_durable::DataDir::new(name);
    let (port, http) = (common_durable::free_port(), common_durable::free_port());
    let child = common_durable::warren_command_http(port, http, &dir.0)
        .args(["--shards", "1", "--log-level", "warn", "--node-name", name])
        .args(["--etcd", etcd_url, "--cluster-name", "t"])
        .args(["--cluster-port", "0", "--advertise-address", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("warren starts");
    common_durable::wait_listening(http);
    Node {
        child,
        api: Api::new(http),
        _dir: dir,
    }
}

/// `name → running` from `/api/nodes`.
fn nodes(api: &Api) -> Vec<(String, bool)> {
    api.get_json("/api/nodes")
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["running"] == Value::Bool(true),
            )
        })
        .collect()
}

fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn nodes_see_each_other_come_and_go() {
    let Some(e) = etcd() else { return };
    let a = node("warren@a", &e.url);
    let mut b = node("warren@b", &e.url);
    let c = node("warren@c", &e.url);
    let all_up = |api: &Api| {
        let mut n = nodes(api);
        n.sort();
        n == vec![
            ("warren@a".into(), true),
            ("warren@b".into(), true),
            ("warren@c".into(), true),
        ]
    };
    until("every node sees all three running", 20, || {
        all_up(&a.api) && all_up(&c.api)
    });
    // This node first, with its own figures; the others with the basic fields.
    let list = a.api.get_json("/api/nodes");
    assert_eq!(list[0]["name"], "warren@a");
    assert!(list[0]["mem_used"].is_number(), "{}", list[0]);
    assert_eq!(a.api.get_json("/api/nodes/warren@c")["running"], true);
    assert_eq!(a.api.get("/api/nodes/warren@nobody").status, 404);
    assert_eq!(a.api.get_json("/api/overview")["cluster_name"], "t");
    // rabbitmqctl cluster_status's shape, from warrenctl.
    let port = a.api.base.rsplit(':').next().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warrenctl"))
        .args(["--port", &port, "cluster_status"])
        .env_remove("WARREN_USER")
        .env_remove("WARREN_PASS")
        .output()
        .expect("warrenctl runs");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Cluster status of node warren@a ...\nBasics\n\nCluster name: t\n\nDisk Nodes\n\n\
         warren@a\nwarren@b\nwarren@c\n\nRunning Nodes\n\nwarren@a\nwarren@b\nwarren@c\n"
    );

    // A clean stop leaves at once: the lease is revoked.
    unsafe { libc::kill(b.child.id() as i32, libc::SIGTERM) };
    b.child.wait().unwrap();
    until("b shows as stopped", 5, || {
        nodes(&a.api).contains(&("warren@b".into(), false))
    });

    // A kill: within a lease time.
    drop(c);
    let t0 = Instant::now();
    until("c shows as stopped", 15, || {
        nodes(&a.api).contains(&("warren@c".into(), false))
    });
    println!("a killed node showed as stopped after {:?}", t0.elapsed());
    assert_eq!(nodes(&a.api).len(), 3, "stopped members stay listed");
}
