//! Helpers of the durability tests (tests/durable_*.rs): a data directory that
//! outlives one broker but not the test, and an in-process broker on it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use warren::{BrokerHandle, Config};

/// A data directory for one test, removed at the end.
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn new(tag: &str) -> DataDir {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let d =
            std::env::temp_dir().join(format!("warren-durable-{tag}-{}-{n:x}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        DataDir(d)
    }

    /// The definitions log.
    pub fn log(&self) -> PathBuf {
        self.0.join("definitions.log")
    }

    /// The segment files of every shard's message store.
    pub fn segments(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(shards) = std::fs::read_dir(self.0.join("msgs")) else {
            return out;
        };
        for shard in shards.flatten() {
            for f in std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if f.path().extension().is_some_and(|e| e == "seg") {
                    out.push(f.path());
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An in-process broker on `dir` (kept after shutdown).
///
/// The definitions log's lock belongs to the open file; a test of the same
/// binary that spawns a process forks with it open, and until that child
/// reaches `exec` (which closes it) the lock of a broker just shut down is
/// still held. So a restart retries while the lock is busy, up to a deadline.
pub fn start_in(dir: &Path, shards: usize) -> BrokerHandle {
    let _ = env_logger::builder().is_test(true).try_init();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match warren::start(Config::for_tests_in(dir.to_path_buf(), shards)) {
            Ok(b) => return b,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("broker starts: {:?}", e),
        }
    }
}

/// The guest URI of a broker on 127.0.0.1:`port`.
pub fn uri(port: u16) -> String {
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
}

/// The `warren` binary as the tests run it, on `port` and `dir`: loopback
/// only, no pinning, no HTTP servers, and never the machine's
/// /etc/warren/warren.toml.
pub fn warren_command(port: u16, dir: &Path) -> Command {
    warren_command_http(port, 0, dir)
}

/// [`warren_command`] with the management API on `http_port`.
pub fn warren_command_http(port: u16, http_port: u16, dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warren"));
    c.env("WARREN_CONFIG", "/dev/null")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--no-pin",
        ])
        .args([
            "--http-port",
            &http_port.to_string(),
            "--prometheus-port",
            "0",
        ])
        .arg("--data-dir")
        .arg(dir);
    c
}

/// Waits until something listens on 127.0.0.1:`port` (panics after 20 s).
pub fn wait_listening(port: u16) {
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "warren did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `warren` binary on a free port and `dir` (a child process, so a
/// test can SIGKILL it).
pub struct Proc {
    child: Child,
    pub port: u16,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Proc {
    pub fn start(dir: &Path) -> Proc {
        let port = free_port();
        let child = warren_command(port, dir)
            .args(["--shards", "2", "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("warren starts");
        wait_listening(port);
        Proc { child, port }
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends signal `sig` (`libc::SIGTERM` …) to the broker.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits up to `timeout` for the broker to exit; its status, if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if t0.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
