//! The six RabbitMQ tutorials (python/pika, the official client examples) as
//! self-checking scripts in `tests/pika/`, run against a real broker.
//!
//! Each `tests/pika/tutorialN_*.py` runs the tutorial's producer(s) and
//! consumer(s), checks what arrived and exits 0 (or non-zero with a message).
//! Producers connect to `--pub-port`, consumers to `--sub-port`: every tutorial
//! runs once on a 1-shard broker and once on a 2-shard broker with producers on
//! shard 0 and consumers on shard 1 (cross-shard routing).
//!
//! The scripts need pika: on first use a venv is made at `target/pyenv` (under
//! the package root) with `tests/pika/requirements.txt` installed; an existing
//! venv that imports pika is reused. Failing to make it fails the tests.
//!
//! Against RabbitMQ (how the scripts are checked):
//! `WARREN_TEST_EXTERNAL_URI=amqp://guest:guest@127.0.0.1:5672/%2f cargo test --test pika_tutorials`
//! (both ports are then 5672). A script can also be run by hand:
//! `target/pyenv/bin/python tests/pika/tutorial1_hello.py --pub-port 5672 --sub-port 5672`.

mod util;
use util::*;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// A script still running after this is killed and its test fails (the scripts
/// themselves give up after 30 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn package_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scripts_dir() -> PathBuf {
    package_dir().join("tests").join("pika")
}

/// The venv's python, with pika importable. Made once per test binary; every
/// test that needs it waits for the first one to finish making it.
fn python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(setup_venv) {
        Ok(python) => python,
        Err(e) => panic!("cannot set up the Python venv for the pika tests:\n{e}"),
    }
}

fn setup_venv() -> Result<PathBuf, String> {
    let target = package_dir().join("target");
    let venv = target.join("pyenv");
    let python = venv.join("bin").join("python");
    let requirements = scripts_dir().join("requirements.txt");

    std::fs::create_dir_all(&target).map_err(|e| format!("creating {}: {e}", target.display()))?;
    // Serialise with other processes doing the same (another test run).
    let lock_path = target.join("pyenv.lock");
    let lock =
        File::create(&lock_path).map_err(|e| format!("creating {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;

    if python.exists() && imports_pika(&python) {
        return Ok(python);
    }
    if !python.exists() {
        run_setup_step(
            Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg("--clear")
                .arg(&venv),
            "python3 -m venv target/pyenv",
        )?;
    }
    run_setup_step(
        Command::new(venv.join("bin").join("pip"))
            .args(["install", "-q", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
        "target/pyenv/bin/pip install -q -r tests/pika/requirements.txt",
    )?;
    if !imports_pika(&python) {
        return Err(format!(
            "{} still cannot import pika after pip install",
            python.display()
        ));
    }
    Ok(python)
}

fn imports_pika(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import pika"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn run_setup_step(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .current_dir(package_dir())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{what}` could not be started: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{what}` failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Collects everything a pipe delivers, in a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Kills the script and anything it started (its process group).
fn kill_tree(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `tests/pika/<script> --pub-port <pub_port> --sub-port <sub_port>`;
/// panics, showing its output, unless it exits 0 within SCRIPT_TIMEOUT.
fn run_tutorial(script: &str, pub_port: u16, sub_port: u16) {
    use std::os::unix::process::CommandExt;

    let python = python();
    let path = scripts_dir().join(script);
    let started = Instant::now();
    let mut child = Command::new(python)
        .arg("-u")
        .arg(&path)
        .args([
            "--pub-port",
            &pub_port.to_string(),
            "--sub-port",
            &sub_port.to_string(),
        ])
        .current_dir(scripts_dir())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} {}: {e}", python.display(), path.display()));
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());

    let status: Option<ExitStatus> = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= SCRIPT_TIMEOUT => {
                kill_tree(&mut child);
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {script}: {e}"),
        }
    };
    // A grandchild still holding a pipe must not hang the test: bounded waits.
    let collect = |rx: mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(Duration::from_secs(5))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|_| "<output not closed>".to_string())
    };
    let (out, err) = (collect(stdout), collect(stderr));
    let ports = format!("--pub-port {pub_port} --sub-port {sub_port}");
    match status {
        Some(s) if s.success() => {
            println!("{script} {ports}: ok in {:.2?}\n{out}", started.elapsed());
            if !err.is_empty() {
                println!("--- stderr\n{err}");
            }
        }
        Some(s) => panic!(
            "{script} {ports} failed ({s}) after {:.2?}\n--- stdout\n{out}\n--- stderr\n{err}",
            started.elapsed()
        ),
        None => panic!(
            "{script} {ports} killed: still running after {SCRIPT_TIMEOUT:?}\n--- stdout\n{out}\n--- stderr\n{err}"
        ),
    }
}

/// All on one shard: producers and consumers on the same port.
fn one_shard(script: &str) {
    let broker = start_broker(1);
    run_tutorial(script, broker.port(), broker.port());
}

/// Producers on shard 0, consumers on shard 1.
fn cross_shard(script: &str) {
    let broker = start_broker(2);
    run_tutorial(script, broker.shard_port(0), broker.shard_port(1));
}

#[test]
fn tutorial1_hello_world() {
    one_shard("tutorial1_hello.py");
}

#[test]
fn tutorial1_hello_world_cross_shard() {
    cross_shard("tutorial1_hello.py");
}

#[test]
fn tutorial2_work_queues() {
    one_shard("tutorial2_work_queues.py");
}

#[test]
fn tutorial2_work_queues_cross_shard() {
    cross_shard("tutorial2_work_queues.py");
}

#[test]
fn tutorial3_publish_subscribe() {
    one_shard("tutorial3_pubsub.py");
}

#[test]
fn tutorial3_publish_subscribe_cross_shard() {
    cross_shard("tutorial3_pubsub.py");
}

#[test]
fn tutorial4_routing() {
    one_shard("tutorial4_routing.py");
}

#[test]
fn tutorial4_routing_cross_shard() {
    cross_shard("tutorial4_routing.py");
}

#[test]
fn tutorial5_topics() {
    one_shard("tutorial5_topics.py");
}

#[test]
fn tutorial5_topics_cross_shard() {
    cross_shard("tutorial5_topics.py");
}

#[test]
fn tutorial6_rpc() {
    one_shard("tutorial6_rpc.py");
}

#[test]
fn tutorial6_rpc_cross_shard() {
    cross_shard("tutorial6_rpc.py");
}
