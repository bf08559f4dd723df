//! An etcd of its own for a test (Debian's etcd-server, installed by
//! scripts/install-etcd.sh): free loopback ports, a data directory of its
//! own, killed when dropped. Use with `mod common_durable; mod
//! common_etcd;`.
#![allow(dead_code)]

use super::common_durable;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use warren::cluster::etcd::Etcd;

/// An etcd of its own on free loopback ports, killed when dropped.
pub struct EtcdProc {
    child: Child,
    pub url: String,
    _dir: common_durable::DataDir,
}

impl Drop for EtcdProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// None (and a SKIPPED line) when there is no etcd binary.
pub fn etcd() -> Option<EtcdProc> {
    if Command::new("etcd").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED: no etcd binary (scripts/install-etcd.sh installs Debian's etcd-server)"
        );
        return None;
    }
    let dir = common_durable::DataDir::new("etcd");
    let (client, peer) = (common_durable::free_port(), common_durable::free_port());
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .args(["--name", "t", "--data-dir"])
        .arg(dir.0.join("etcd"))
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("t={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd starts");
    let p = EtcdProc {
        child,
        url,
        _dir: dir,
    };
    let e = Etcd::new(std::slice::from_ref(&p.url));
    let t0 = Instant::now();
    while e.get(b"ready?").is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "etcd did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(p)
}
