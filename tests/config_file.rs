//! The configuration file (`--config FILE`, TOML): every flag is a key;
//! flag > environment > file > default; unknown keys and bad values stop
//! the broker at start with the key and what is allowed; `--check-config`
//! prints the effective settings; `packaging/warren.toml` is exactly what
//! `--example-config` prints.

mod common_durable;
mod common_lapin;
use common_durable::DataDir;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn warren(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
    cmd.env_remove("WARREN_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args).output().expect("warren runs")
}

fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_example_file_is_what_help_says() {
    let o = warren(&["--example-config"], &[]);
    assert!(o.status.success());
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/warren.toml"),
    )
    .unwrap();
    assert_eq!(
        stdout(&o),
        committed,
        "packaging/warren.toml is stale: target/debug/warren --example-config > packaging/warren.toml"
    );
    // Every flag is in it, and the example parses as a configuration.
    let help = stdout(&warren(&["--help"], &[]));
    for line in help.lines().map(str::trim).filter(|l| l.starts_with("--")) {
        let flag = line[2..].split([' ', ',']).next().unwrap();
        if [
            "config",
            "check-config",
            "example-config",
            "help",
            "version",
        ]
        .contains(&flag)
        {
            continue;
        }
        let key = flag.replace('-', "_");
        assert!(
            committed.contains(&format!("# {key} = ")),
            "{key} is not in packaging/warren.toml"
        );
    }
    let uncommented: String = committed
        .lines()
        .filter(|l| l.starts_with("# ") && l.contains(" = ") && !l.contains("(not set)"))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let dir = DataDir::new("cfg-example");
    let p = file(&dir.0, "all.toml", &uncommented);
    let o = warren(&["--config", p.to_str().unwrap(), "--check-config"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn flag_over_environment_over_file_over_default() {
    let dir = DataDir::new("cfg-precedence");
    let p = file(
        &dir.0,
        "w.toml",
        "port = 5700\nheartbeat = 30\nframe_max = 65536\nbind = [\"127.0.0.1\"]\nno_pin = true\n",
    );
    let o = warren(
        &[
            "--config",
            p.to_str().unwrap(),
            "--check-config",
            "--port",
            "5800",
        ],
        &[("WARREN_HEARTBEAT", "20"), ("WARREN_PORT", "5900")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "port = 5800  # flag",
        "heartbeat = 20  # environment",
        "frame_max = 65536  # file",
        "bind = \"127.0.0.1\"  # file",
        "no_pin = true  # file",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
    assert!(out.contains("segment_size = 67108864  # default"), "{out}");
}

#[test]
fn unknown_keys_and_bad_values_stop_the_start() {
    let dir = DataDir::new("cfg-bad");
    for (text, want) in [
        ("prot = 1\n", "unknown key 'prot'"),
        (
            "port = \"abc\"\n",
            "port = \"abc\": invalid value 'abc' for '--port <PORT>'",
        ),
        (
            "fsync = \"sometimes\"\n",
            "unknown fsync mode \"sometimes\" (always, interval:<ms>, never)",
        ),
        ("no_pin = 1\n", "no_pin = 1: expected true or false"),
        ("port = [\n", "w.toml: "),
    ] {
        let p = file(&dir.0, "w.toml", text);
        let o = warren(&["--config", p.to_str().unwrap(), "--check-config"], &[]);
        assert_eq!(o.status.code(), Some(2), "{text}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(want), "{want:?} not in {err:?}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    let o = warren(
        &["--config", "/nonexistent/warren.toml", "--check-config"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read /nonexistent/warren.toml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_runs_with_its_file() {
    let dir = DataDir::new("cfg-run");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = dir.0.join("data");
    let p = file(
        &dir.0,
        "w.toml",
        &format!(
            "port = {port}\nbind = [\"127.0.0.1\"]\ndata_dir = {:?}\nhttp_port = 0\nprometheus_port = 0\nno_pin = true\nlog_level = \"warn\"\n",
            data.to_str().unwrap()
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["--config", p.to_str().unwrap()])
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed().as_secs() < 20,
            "warren did not listen on the file's port"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let conn = common_lapin::connect(&common_durable::uri(port)).await;
    assert!(conn.status().connected());
    assert!(
        data.join("definitions.log").exists(),
        "the file's data_dir is used"
    );
    let _ = child.kill();
    let _ = child.wait();
}
