//! Users, driven by lapin: refused logins (PLAIN, AMQPLAIN), imported
//! RabbitMQ password hashes, users/vhosts/permissions imported with
//! `--definitions` surviving kill -9 of the real binary, and loopback users.
//! Texts: docs/oracle/tenancy-rabbitmq-3.10.8.md §3.

mod common_lapin;
mod common_tenancy;
mod util;

use common_lapin::*;
use common_tenancy::*;
use lapin::Connection;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use warren::core::auth::password::{HashAlgo, PasswordHash};

const PLAIN_REFUSED: &str = "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.";
const AMQPLAIN_REFUSED: &str = "ACCESS_REFUSED - Login was refused using authentication mechanism AMQPLAIN. For details see the broker logfile.";

async fn connect_err(uri: &str) -> (u16, String) {
    match within(Connection::connect(uri, Default::default())).await {
        Ok(_) => panic!("connection to {uri} must be refused"),
        Err(e) => code_text(&e),
    }
}

fn start(config: warren::Config) -> warren::BrokerHandle {
    let _ = env_logger::builder().is_test(true).try_init();
    warren::start(config).expect("broker starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_are_403_login_refused() {
    deadline(60, async {
        let h = start(warren::Config::for_tests(2));
        let t = Tenancy::local(&h);
        let u = unique("u-login");
        t.put_user(&u, "right");
        t.set_permissions(&u, "/", ".*", ".*", ".*");
        let refused = (403, PLAIN_REFUSED.to_string());
        assert_eq!(connect_err(&t.uri(&u, "wrong", "/")).await, refused);
        assert_eq!(connect_err(&t.uri("nosuchuser", "x", "/")).await, refused);
        assert_eq!(connect_err(&t.uri(&u, "", "/")).await, refused);
        // AMQPLAIN: the same, naming the mechanism
        let amqplain = |uri: String| with_query(&uri, "auth_mechanism=amqplain");
        let refused = (403, AMQPLAIN_REFUSED.to_string());
        assert_eq!(
            connect_err(&amqplain(t.uri(&u, "wrong", "/"))).await,
            refused
        );
        assert_connection_usable(&connect(&amqplain(t.uri(&u, "right", "/"))).await).await;
        assert_connection_usable(&connect(&t.uri(&u, "right", "/")).await).await;
    })
    .await
}

/// A user, vhost and permission as a RabbitMQ 3.10.8 definitions file has them.
fn definitions_json(user: &str, hash: &str, vhost: &str) -> String {
    format!(
        r#"{{"rabbit_version":"3.10.8","rabbitmq_version":"3.10.8",
"users":[{{"name":"{user}","password_hash":"{hash}","hashing_algorithm":"rabbit_password_hashing_sha256","tags":["monitoring"],"limits":{{}}}}],
"vhosts":[{{"limits":[],"metadata":{{"description":"","tags":[]}},"name":"{vhost}"}}],
"permissions":[{{"configure":".*","read":".*","user":"{user}","vhost":"{vhost}","write":"^w"}}],
"topic_permissions":[],"parameters":[],"global_parameters":[],"policies":[],"queues":[],"exchanges":[],"bindings":[]}}"#
    )
}

fn sha256_hash(password: &str) -> String {
    PasswordHash::with_salt(HashAlgo::Sha256, [0x90, 0x8d, 0xc6, 0x0a], password).to_base64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_sha256_password_hash_logs_in() {
    deadline(60, async {
        let dir = std::env::temp_dir().join(unique("warren-users-import"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("defs.json");
        std::fs::write(
            &file,
            definitions_json("hashed", &sha256_hash("s3cret"), "hv"),
        )
        .unwrap();
        let h = start(warren::Config {
            definitions: Some(file),
            ..warren::Config::for_tests(2)
        });
        let t = Tenancy::local(&h);
        let c = connect(&t.uri("hashed", "s3cret", "hv")).await;
        let ch = channel(&c).await;
        // the imported permission applies: write only on ^w
        let mut errs = watch_channel(&ch);
        let _ = within(ch.basic_publish(
            "amq.direct",
            "k",
            Default::default(),
            b"m",
            Default::default(),
        ))
        .await;
        let want = refused("write", "exchange", "amq.direct", "hv", "hashed");
        assert_eq!(next_err(&mut errs).await, (403, want));
        assert_eq!(
            connect_err(&t.uri("hashed", "wrong", "hv")).await,
            (403, PLAIN_REFUSED.to_string())
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

/// The `warren` binary on a free port and `dir`.
struct Proc {
    child: Child,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Proc {
    fn start(dir: &Path, definitions: Option<&Path>) -> Proc {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
        cmd.env("WARREN_CONFIG", "/dev/null"); // never /etc/warren/warren.toml
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--shards",
                "2",
                "--no-pin",
                "--log-level",
                "warn",
                "--http-port",
                "0",
                "--prometheus-port",
                "0",
            ])
            .arg("--data-dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(d) = definitions {
            cmd.arg("--definitions").arg(d);
        }
        let child = cmd.spawn().expect("warren starts");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "warren did not listen"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Proc { child, port }
    }

    fn uri(&self, user: &str, pass: &str, vhost: &str) -> String {
        format!(
            "amqp://{user}:{pass}@127.0.0.1:{}/{}",
            self.port,
            enc(vhost)
        )
    }

    fn kill9(mut self) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_users_vhosts_and_permissions_survive_kill_9() {
    deadline(90, async {
        let dir = std::env::temp_dir().join(unique("warren-users-kill"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("defs.json");
        std::fs::write(
            &file,
            definitions_json("kuser", &sha256_hash("kpass"), "kv"),
        )
        .unwrap();
        let data = dir.join("data");
        let p = Proc::start(&data, Some(&file));
        let c = connect(&p.uri("kuser", "kpass", "kv")).await;
        assert_connection_usable(&c).await;
        drop(c);
        p.kill9();
        std::fs::remove_file(&file).unwrap(); // the restart cannot read it again
        let p = Proc::start(&data, None);
        let c = connect(&p.uri("kuser", "kpass", "kv")).await;
        let ch = channel(&c).await;
        let mut errs = watch_channel(&ch);
        let _ = within(ch.basic_publish(
            "amq.fanout",
            "",
            Default::default(),
            b"m",
            Default::default(),
        ))
        .await;
        let want = refused("write", "exchange", "amq.fanout", "kv", "kuser");
        assert_eq!(
            next_err(&mut errs).await,
            (403, want),
            "the permission survived"
        );
        assert_eq!(
            connect_err(&p.uri("kuser", "wrong", "kv")).await,
            (403, PLAIN_REFUSED.to_string())
        );
        // and guest, the default user, is still there alongside
        assert_connection_usable(&connect(&p.uri("guest", "guest", "/")).await).await;
        p.kill9();
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

/// A non-loopback IPv4 address of this machine (192.0.2.2 on eth0 here).
fn non_loopback_v4() -> Option<std::net::IpAddr> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.find(|x| *x == "inet")?;
            w.next()?
                .split('/')
                .next()?
                .parse::<std::net::IpAddr>()
                .ok()
        })
        .find(|ip| !ip.is_loopback())
        .filter(|ip| std::net::UdpSocket::bind((*ip, 0)).is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_users_connect_only_via_localhost() {
    let Some(ip) = non_loopback_v4() else {
        eprintln!("skipped: no non-loopback IPv4 address on this machine");
        return;
    };
    deadline(60, async {
        let mut config = warren::Config::for_tests(2);
        config.bind = vec!["127.0.0.1".parse().unwrap(), ip];
        config.port = free_port();
        config.loopback_users = vec!["guest".into()];
        let h = start(config);
        let t = Tenancy::local(&h);
        t.put_user("remote", "rpass");
        t.set_permissions("remote", "/", ".*", ".*", ".*");
        let remote = format!("{ip}:{}", h.port());
        // guest from a non-loopback address: refused at authentication with
        // the generic login text (RabbitMQ 3.10.8 and 3.13.7; the reason,
        // "user 'guest' can only connect via localhost", goes to the log only)
        assert_eq!(
            connect_err(&t.uri_at(&remote, "guest", "guest", "/")).await,
            (403, PLAIN_REFUSED.to_string())
        );
        assert_connection_usable(&connect(&t.uri_at(&remote, "remote", "rpass", "/")).await).await;
        assert_connection_usable(&connect(&t.uri("guest", "guest", "/")).await).await;
    })
    .await
}
