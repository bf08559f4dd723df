//! Cluster nodes for a test: warren processes joined through one etcd
//! (`common_etcd`), each with its own data directory and ports, its log
//! in `<data dir>/warren.log`. Use with `mod common_durable; mod
//! common_etcd; mod common_http; mod common_cluster;`.
#![allow(dead_code)]

pub mod qq;

use super::common_durable::{self, free_port, DataDir};
use super::common_http::Api;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// One warren node, killed when dropped.
pub struct Node {
    pub name: String,
    pub child: Option<Child>,
    pub port: u16,
    pub http: u16,
    pub api: Api,
    pub dir: DataDir,
    etcd: String,
}

impl Node {
    /// Starts node `name` of cluster `t` on free ports.
    pub fn start(name: &str, etcd_url: &str) -> Node {
        let dir = DataDir::new(name);
        let mut n = Node {
            name: name.to_string(),
            child: None,
            port: free_port(),
            http: free_port(),
            api: Api::new(0),
            dir,
            etcd: etcd_url.to_string(),
        };
        n.api = Api::new(n.http);
        n.restart();
        n
    }

    /// Starts the process again (same ports, same data) after `stop` or
    /// `kill`.
    pub fn restart(&mut self) {
        let _ = std::fs::create_dir_all(&self.dir.0);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.0.join("warren.log"))
            .expect("log file");
        let child = common_durable::warren_command_http(self.port, self.http, &self.dir.0)
            .args([
                "--shards",
                "1",
                "--log-level",
                "info",
                "--node-name",
                &self.name,
            ])
            .args(["--etcd", &self.etcd, "--cluster-name", "t"])
            .args(["--cluster-port", "0", "--advertise-address", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("warren starts");
        self.child = Some(child);
        common_durable::wait_listening(self.http);
    }

    pub fn uri(&self) -> String {
        common_durable::uri(self.port)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// The node's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("warren.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Nodes `warren@a`, `warren@b` and `warren@c`, started at once (so
/// their first start races to create the defaults in the empty cluster).
pub fn three(etcd_url: &str) -> Vec<Node> {
    let starts: Vec<_> = ["warren@a", "warren@b", "warren@c"]
        .into_iter()
        .map(|n| {
            let u = etcd_url.to_string();
            std::thread::spawn(move || Node::start(n, &u))
        })
        .collect();
    starts.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Polls `f` until it holds, failing after `secs` seconds.
pub fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
