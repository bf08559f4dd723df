//! Python client scripts against the broker: the venv they run in and a
//! runner. The venv is made once at `target/pyenv` (under the package root)
//! with `tests/pika/requirements.txt` (pika, python-qpid-proton) on first
//! use; an existing one that imports both is reused. Failing to make it
//! fails the tests. `scripts/pyenv.sh` makes the same venv by hand.
#![allow(dead_code)]

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
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

pub fn package_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, with pika and proton importable. Made once per test
/// binary; every test that needs it waits for the first one to finish making it.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(setup_venv) {
        Ok(python) => python,
        Err(e) => panic!("cannot set up the Python venv for the client scripts:\n{e}"),
    }
}

fn setup_venv() -> Result<PathBuf, String> {
    let target = package_dir().join("target");
    let venv = target.join("pyenv");
    let python = venv.join("bin").join("python");
    let requirements = package_dir()
        .join("tests")
        .join("pika")
        .join("requirements.txt");

    std::fs::create_dir_all(&target).map_err(|e| format!("creating {}: {e}", target.display()))?;
    // Serialise with other processes doing the same (another test run).
    let lock_path = target.join("pyenv.lock");
    let lock =
        File::create(&lock_path).map_err(|e| format!("creating {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;

    if python.exists() && imports_clients(&python) {
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
    if !imports_clients(&python) {
        return Err(format!(
            "{} still cannot import pika and proton after pip install",
            python.display()
        ));
    }
    Ok(python)
}

fn imports_clients(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import pika, proton, rabbitmq_amqp_python_client"])
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
pub fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Kills the script and anything it started (its process group).
pub fn kill_tree(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `python -u <script> <args…>` in the script's directory; panics,
/// showing its output, unless it exits 0 within `SCRIPT_TIMEOUT`. Returns
/// its standard output.
pub fn run_script(script: &Path, args: &[String]) -> String {
    use std::os::unix::process::CommandExt;

    let python = python();
    let name = script.file_name().unwrap().to_string_lossy().into_owned();
    let started = Instant::now();
    let mut child = Command::new(python)
        .arg("-u")
        .arg(script)
        .args(args)
        .current_dir(script.parent().unwrap())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} {}: {e}",
                python.display(),
                script.display()
            )
        });
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
            Err(e) => panic!("waiting for {name}: {e}"),
        }
    };
    // A grandchild still holding a pipe must not hang the test: bounded waits.
    let collect = |rx: mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(Duration::from_secs(5))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|_| "<output not closed>".to_string())
    };
    let (out, err) = (collect(stdout), collect(stderr));
    let args = args.join(" ");
    match status {
        Some(s) if s.success() => {
            println!("{name} {args}: ok in {:.2?}\n{out}", started.elapsed());
            if !err.is_empty() {
                println!("--- stderr\n{err}");
            }
            out
        }
        Some(s) => panic!(
            "{name} {args} failed ({s}) after {:.2?}\n--- stdout\n{out}\n--- stderr\n{err}",
            started.elapsed()
        ),
        None => panic!(
            "{name} {args} killed: still running after {SCRIPT_TIMEOUT:?}\n--- stdout\n{out}\n--- stderr\n{err}"
        ),
    }
}
