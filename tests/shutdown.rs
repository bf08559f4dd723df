//! Graceful shutdown of the `warren` binary: on SIGTERM it stops accepting,
//! lets what is in flight reach the disk, closes its clients with 320
//! `CONNECTION_FORCED - broker shutdown` and exits 0; a second signal stops
//! it at once. Confirmed messages are all there after the restart.

mod common_durable;
mod common_lapin;
mod common_python;
mod common_raw;
use common_durable::{uri, DataDir, Proc};
use common_lapin::*;

use lapin::options::QueueDeclareOptions;
use lapin::BasicProperties;
use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn sigterm_closes_clients_with_320_and_exits_0() {
    let dir = DataDir::new("shutdown");
    let rt = runtime();
    let mut p = Proc::start(&dir.0);
    let port = p.port;
    let (conn, ch) = rt.block_on(async {
        let conn = connect(&uri(port)).await;
        let ch = confirm_channel(&conn).await;
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        within(ch.queue_declare("sd", durable, Default::default()))
            .await
            .unwrap();
        for _ in 0..1000 {
            let c = within(ch.basic_publish(
                "",
                "sd",
                Default::default(),
                b"m",
                BasicProperties::default().with_delivery_mode(2),
            ))
            .await
            .unwrap();
            assert!(within(c).await.unwrap().is_ack());
        }
        (conn, ch)
    });
    let watched = watch_connection(&conn);
    let t0 = Instant::now();
    p.signal(libc::SIGTERM);
    let status = p.wait_exit(Duration::from_secs(20)).expect("warren exits");
    assert!(status.success(), "exit status {status:?}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    rt.block_on(async {
        let mut watched = watched;
        let (code, text) = next_err(&mut watched).await;
        assert_eq!(
            (code, text.as_str()),
            (320, "CONNECTION_FORCED - broker shutdown")
        );
        drop(ch);
    });
    // Nothing confirmed was lost.
    let p = Proc::start(&dir.0);
    rt.block_on(async {
        let conn = connect(&uri(p.port)).await;
        assert_eq!(message_count(&channel(&conn).await, "sd").await, 1000);
    });
}

#[test]
fn a_second_signal_stops_at_once() {
    let dir = DataDir::new("shutdown-twice");
    let mut p = Proc::start(&dir.0);
    // A client that opens a connection and then stops reading: the
    // shutdown waits for its close-ok (up to its bound).
    let mut raw = common_raw::Raw::connect(p.port);
    raw.handshake(131072, 0);
    p.signal(libc::SIGTERM);
    // Signals of one kind do not queue: the second must come after the
    // first was taken, while the shutdown waits.
    std::thread::sleep(Duration::from_millis(300));
    assert!(p.wait_exit(Duration::ZERO).is_none(), "still shutting down");
    let t0 = Instant::now();
    p.signal(libc::SIGTERM);
    let status = p
        .wait_exit(Duration::from_secs(5))
        .expect("warren exits at once");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(status.code(), Some(1), "{status:?}");
}

#[test]
fn tells_systemd_it_is_ready_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = DataDir::new("sd-notify");
    std::fs::create_dir_all(&dir.0).unwrap();
    let sock_path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let port = common_durable::free_port();
    let mut child = common_durable::warren_command(port, &dir.0.join("data"))
        .env("NOTIFY_SOCKET", &sock_path)
        .args(["--log-level", "warn"])
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means listening.
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("it listens when it says so");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_clean_shutdown_is_marked_and_streams_come_back_from_their_indexes() {
    use lapin::options::{BasicAckOptions, BasicQosOptions};
    use lapin::types::{AMQPValue, FieldTable};
    let dir = DataDir::new("clean-marker");
    let rt = runtime();
    let mut p = Proc::start(&dir.0);
    let publish = |port: u16, prefix: &'static str, n: usize| {
        rt.block_on(async move {
            let conn = connect(&uri(port)).await;
            let ch = confirm_channel(&conn).await;
            let mut args = FieldTable::default();
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("stream".into()),
            );
            let durable = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            within(ch.queue_declare("clean-s", durable, args))
                .await
                .unwrap();
            for i in 0..n {
                let body = format!("{prefix}{i}");
                let c = within(ch.basic_publish(
                    "",
                    "clean-s",
                    Default::default(),
                    body.as_bytes(),
                    BasicProperties::default(),
                ))
                .await
                .unwrap();
                assert!(within(c).await.unwrap().is_ack());
            }
        })
    };
    publish(p.port, "a", 100);
    p.signal(libc::SIGTERM);
    assert!(p.wait_exit(Duration::from_secs(20)).unwrap().success());
    let marker = dir.0.join("clean-shutdown");
    assert!(marker.exists(), "a clean shutdown leaves its marker");
    let p = Proc::start(&dir.0);
    // The listener accepts before the shards have opened their stores:
    // the marker is taken during recovery, shortly after.
    let t0 = std::time::Instant::now();
    while marker.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the next start takes it"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    publish(p.port, "b", 10);
    rt.block_on(async {
        let conn = connect(&uri(p.port)).await;
        let ch = channel(&conn).await;
        within(ch.basic_qos(500, BasicQosOptions::default()))
            .await
            .unwrap();
        let mut args = FieldTable::default();
        args.insert(
            "x-stream-offset".into(),
            AMQPValue::LongString("first".into()),
        );
        let mut c = within(ch.basic_consume("clean-s", "", Default::default(), args))
            .await
            .unwrap();
        let mut bodies = Vec::new();
        for _ in 0..110 {
            let d = recv(&mut c).await;
            bodies.push(String::from_utf8_lossy(&d.data).into_owned());
            within(d.ack(BasicAckOptions::default())).await.unwrap();
        }
        let want: Vec<String> = (0..100)
            .map(|i| format!("a{i}"))
            .chain((0..10).map(|i| format!("b{i}")))
            .collect();
        assert_eq!(bodies, want);
    });
    // A kill leaves no marker.
    p.kill9();
    assert!(!marker.exists());
}

#[test]
fn pika_sees_the_320() {
    let dir = DataDir::new("shutdown-pika");
    let mut p = Proc::start(&dir.0);
    let port = p.port.to_string();
    let pid = p.pid().to_string();
    common_python::run_script(
        &common_python::package_dir().join("tests/pika/shutdown_320.py"),
        &[
            "--pub-port".into(),
            port.clone(),
            "--sub-port".into(),
            port,
            "--pid".into(),
            pid,
        ],
    );
    assert!(p.wait_exit(Duration::from_secs(20)).unwrap().success());
}
