//! The management web UI (src/http/ui/) in a real browser: a broker with its
//! HTTP port runs in-process, an AMQP client (lapin) stays connected with a
//! channel open, and `tests/ui/browser_test.py` drives headless Chromium
//! through Selenium against it: login (a wrong password first), overview,
//! channels, connections (closing the client's connection from the UI),
//! creating a queue, publishing to it through the default exchange, getting
//! the message back, purge, delete, users, vhosts, permissions, limits and
//! definitions (and an API error in the banner). The script must exit 0;
//! then the client must have been disconnected.
//!
//! Needs `chromium` and `chromedriver` (Debian's chromium and chromium-driver
//! packages; `scripts/install-chromium.sh`, which `.ci/run` runs, installs
//! them): without them the test says so and passes. The script runs with the
//! venv of `scripts/ui-env.sh` (target/uienv, Selenium from
//! tests/ui/requirements.txt), made on first use; failing to make it fails
//! the test. Screenshots of every page go to `target/ui-screenshots/`.
//!
//! By hand, against any broker: `"$(scripts/ui-env.sh)" tests/ui/browser_test.py --port 15672`.

use lapin::{Connection, ConnectionProperties};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The script gives up on any one wait after 15 s; the whole run takes
/// about 20 s when all is well.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

fn package_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `name` on PATH, or at /usr/bin/`name`.
fn find_program(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(Path::new("/usr/bin").join(name)).filter(|p| p.is_file()))
}

/// The venv's python (scripts/ui-env.sh), serialised with other test runs.
fn python() -> Result<PathBuf, String> {
    let target = package_dir().join("target");
    std::fs::create_dir_all(&target).map_err(|e| format!("creating {}: {e}", target.display()))?;
    let lock_path = target.join("uienv.lock");
    let lock =
        File::create(&lock_path).map_err(|e| format!("creating {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    let out = Command::new("sh")
        .arg(package_dir().join("scripts").join("ui-env.sh"))
        .current_dir(package_dir())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("scripts/ui-env.sh could not be started: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/ui-env.sh failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let python = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !python.is_file() {
        return Err(format!("scripts/ui-env.sh printed {python:?}, not a file"));
    }
    Ok(python)
}

/// Collects everything a pipe delivers, in a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Runs the script; its exit status (None: killed at SCRIPT_TIMEOUT) and output.
fn run_script(
    python: &Path,
    args: &[String],
) -> Result<(Option<ExitStatus>, String, String), String> {
    use std::os::unix::process::CommandExt;
    let script = package_dir()
        .join("tests")
        .join("ui")
        .join("browser_test.py");
    let mut child = Command::new(python)
        .arg("-u")
        .arg(&script)
        .args(args)
        .current_dir(package_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // Selenium must use the given chromedriver, never fetch one.
        .env("SE_OFFLINE", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", script.display()))?;
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if started.elapsed() >= SCRIPT_TIMEOUT => {
                // The browser and its driver too: the whole process group.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stderr(Stdio::null())
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for the script: {e}")),
        }
    };
    let collect = |rx: mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(Duration::from_secs(10))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|_| "<output not closed>".to_string())
    };
    Ok((status, collect(stdout), collect(stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_ui_in_headless_chromium() {
    // Shown with its line breaks (an Err returned by a test is printed with
    // Debug, every newline escaped).
    if let Err(e) = ui_test().await {
        panic!("{e}");
    }
}

async fn ui_test() -> Result<(), String> {
    let (Some(chromium), Some(chromedriver)) =
        (find_program("chromium"), find_program("chromedriver"))
    else {
        println!("skipped: chromium/chromedriver not found; run scripts/install-chromium.sh");
        return Ok(());
    };
    let python = tokio::task::spawn_blocking(python)
        .await
        .map_err(|e| e.to_string())??;

    let _ = env_logger::builder().is_test(true).try_init();
    let broker = warren::start(warren::Config::for_tests(1)).expect("broker starts");
    let http_port = broker.http_port().expect("the HTTP API runs in tests");

    // A client for the Connections and Channels pages; the UI closes it.
    let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2F", broker.port());
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(
            &uri,
            ConnectionProperties::default().with_connection_name("ui-test-client".into()),
        ),
    )
    .await
    .map_err(|_| "connecting to the broker timed out".to_string())?
    .map_err(|e| format!("connecting to the broker: {e}"))?;
    let _channel = conn
        .create_channel()
        .await
        .map_err(|e| format!("opening a channel: {e}"))?;

    let node = String::from("warren@");
    let args = vec![
        "--port".to_string(),
        http_port.to_string(),
        "--screenshots".to_string(),
        package_dir()
            .join("target")
            .join("ui-screenshots")
            .display()
            .to_string(),
        "--chromium".to_string(),
        chromium.display().to_string(),
        "--chromedriver".to_string(),
        chromedriver.display().to_string(),
        "--expect-connection".to_string(),
        "--node-prefix".to_string(),
        node,
    ];
    let started = Instant::now();
    let (status, out, err) = tokio::task::spawn_blocking(move || run_script(&python, &args))
        .await
        .map_err(|e| e.to_string())??;
    let took = started.elapsed();
    match status {
        Some(s) if s.success() => println!("browser_test.py: ok in {took:.1?}\n{out}"),
        Some(s) => {
            return Err(format!(
                "browser_test.py failed ({s}) after {took:.1?}\n--- stdout\n{out}\n--- stderr\n{err}"
            ))
        }
        None => {
            return Err(format!(
                "browser_test.py killed: still running after {SCRIPT_TIMEOUT:?}\n--- stdout\n{out}\n--- stderr\n{err}"
            ))
        }
    }

    // The UI's "Force close" reached the client.
    let deadline = Instant::now() + Duration::from_secs(10);
    while conn.status().connected() {
        if Instant::now() > deadline {
            return Err("the connection closed from the UI is still open".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.shutdown();
    Ok(())
}
