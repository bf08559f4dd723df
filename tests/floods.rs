//! Floods and limits (issue 14, part 3): connection floods beyond
//! `ulimit -n` (EMFILE), half-open connections that never finish the
//! handshake, channel and consumer floods on one connection, and field
//! tables and content header frames at and over frame_max, with RabbitMQ's
//! errors where a limit is hit and the broker's memory bounded.
//!
//! The tests of this file run one at a time (`serial`): several measure the
//! resident memory of the test process, which holds the in-process broker,
//! and two open thousands of sockets.

mod common_lapin;
mod common_raw;
mod util;
use common_raw::*;
use util::*;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Resident memory of this process (the in-process broker included), bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

const MIB: f64 = 1024.0 * 1024.0;

/// Raises this process's soft descriptor limit to its hard limit; returns
/// the soft limit in force.
fn raise_nofile() -> u64 {
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
        r.rlim_cur
    }
}

/// A socket the broker has closed: EOF or reset (non-blocking read).
fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false, // (the 0-9-1 header of a refusal would come before EOF)
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// A logged-in raw client with channel 1 open.
fn raw_client(port: u16) -> Raw {
    let mut r = Raw::connect(port);
    r.handshake(131072, 0);
    r.open_channel(1);
    r
}

/// Declares `q` (auto-delete), consumes from it with no-ack on channel 1,
/// publishes `n` messages and reads them back; panics after `limit`.
fn publish_consume_round_trip(r: &mut Raw, q: &str, n: usize, limit: Duration) -> Duration {
    let t0 = Instant::now();
    r.send_method(1, 50, 10, &queue_args(q, &[0x08, 0, 0, 0, 0]));
    r.expect_method(1, 50, 11);
    // basic.consume: ticket, queue, tag "", no-local/no-ack (bit 1)/exclusive/no-wait, args
    r.send_method(1, 60, 20, &queue_args(q, &[0, 0x02, 0, 0, 0, 0]));
    r.expect_method(1, 60, 21);
    for i in 0..n {
        r.publish(1, "", q, format!("m{i}").as_bytes(), 131072);
        r.expect_method(1, 60, 60); // basic.deliver
        let (ty, _, _) = r.read_frame();
        assert_eq!(ty, 2, "content header");
        let (ty, _, body) = r.read_frame();
        assert_eq!((ty, body), (3, format!("m{i}").into_bytes()));
    }
    let took = t0.elapsed();
    assert!(
        took < limit,
        "{n} round trips took {took:?} (limit {limit:?})"
    );
    took
}

// ---------------------------------------------------------------- EMFILE

/// The `warren` binary with `RLIMIT_NOFILE` = `nofile`, on a free port.
struct Proc {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Proc {
    fn start(nofile: u64) -> Proc {
        use std::os::unix::process::CommandExt;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("warren-floods-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
        cmd.env("WARREN_CONFIG", "/dev/null"); // never /etc/warren/warren.toml
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--shards", "2", "--no-pin", "--heartbeat", "0"])
            .args(["--http-port", "0", "--prometheus-port", "0"])
            .args(["--log-level", "warn", "--fsync", "never"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(log);
        unsafe {
            cmd.pre_exec(move || {
                let r = libc::rlimit {
                    rlim_cur: nofile as libc::rlim_t,
                    rlim_max: nofile as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("warren starts");
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "warren did not listen"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Proc { child, port, dir }
    }

    /// CPU time (user + system) the broker has used, seconds.
    fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name (which is in parentheses).
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime, stime: fields 14 and 15 of the line, 12 and 13 of `rest`.
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// 1,000 connections against a broker limited to 256 descriptors: the
/// connections it has no descriptor for are closed at once (reserve
/// descriptor), the shard neither spins nor stalls, a client connected
/// before keeps publishing and consuming, warnings are rate-limited, and
/// once the flood is gone new clients connect.
#[test]
fn emfile_flood_neither_spins_nor_stalls() {
    let _g = serial();
    if raise_nofile() < 2000 {
        eprintln!("skipped: this process may open fewer than 2000 descriptors");
        return;
    }
    let p = Proc::start(256);
    let mut normal = raw_client(p.port);
    publish_consume_round_trip(&mut normal, "before-flood", 10, Duration::from_secs(5));

    let t0 = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..1000 {
        let s =
            TcpStream::connect_timeout(&([127, 0, 0, 1], p.port).into(), Duration::from_secs(5))
                .expect("flood connect");
        s.set_nonblocking(true).unwrap();
        flood.push(s);
    }
    eprintln!("1000 flood connections opened in {:?}", t0.elapsed());

    // Those the broker has no descriptor for are closed promptly, not left
    // hanging in the backlog.
    let t1 = Instant::now();
    let mut closed = vec![false; flood.len()];
    let mut n_closed = 0;
    while t1.elapsed() < Duration::from_secs(8) && n_closed < 700 {
        for (s, c) in flood.iter_mut().zip(closed.iter_mut()) {
            if !*c && closed_by_peer(s) {
                *c = true;
                n_closed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "{n_closed} flood connections closed by the broker after {:?}",
        t1.elapsed()
    );
    assert!(
        n_closed >= 700,
        "only {n_closed} of 1000 connections beyond a 256-descriptor limit were closed; log:\n{}",
        p.log()
    );

    // No spinning: over 2 s with the flood held open, well under one core.
    let c0 = p.cpu_secs();
    let w0 = Instant::now();
    let took = publish_consume_round_trip(&mut normal, "during-flood", 100, Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2).saturating_sub(w0.elapsed()));
    let cpu = (p.cpu_secs() - c0) / w0.elapsed().as_secs_f64();
    eprintln!(
        "during the flood: 100 round trips in {took:?}; broker CPU {:.1}% of one core",
        cpu * 100.0
    );
    assert!(
        cpu < 0.5,
        "broker CPU {:.0}% of a core under an EMFILE flood",
        cpu * 100.0
    );

    // The flood goes; new clients connect again, promptly.
    drop(flood);
    let t2 = Instant::now();
    for i in 0..20 {
        let mut r = Raw::connect(p.port);
        r.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        r.handshake(131072, 0);
        r.open_channel(1);
        if i == 0 {
            publish_consume_round_trip(&mut r, "after-flood", 5, Duration::from_secs(5));
        }
    }
    eprintln!("20 new clients after the flood in {:?}", t2.elapsed());
    publish_consume_round_trip(&mut normal, "after-flood-normal", 5, Duration::from_secs(5));

    // Rate-limited: at most one warning per second per shard.
    let warnings = p.log().matches("accept failed").count();
    let secs = t0.elapsed().as_secs() + 2;
    eprintln!("{warnings} accept warnings in {secs} s");
    assert!(
        warnings as u64 <= 2 * secs,
        "{warnings} accept warnings in {secs} s:\n{}",
        p.log()
    );
}

// ---------------------------------------------------------------- half-open

/// 5,000 connections that send 3 bytes of a protocol header and stop are
/// all closed by the handshake timeout (10 s) within 12 s, and a normal
/// client connected meanwhile is served promptly.
#[test]
fn half_open_connections_time_out() {
    let _g = serial();
    const N: usize = 5000;
    let limit = raise_nofile();
    // Both ends of every connection are in this process.
    if limit < (2 * N + 500) as u64 {
        eprintln!("skipped: RLIMIT_NOFILE {limit} < {}", 2 * N + 500);
        return;
    }
    let b = start_broker(2);
    let port = b.port();
    let rss0 = rss();
    let t0 = Instant::now();
    let mut socks = Vec::with_capacity(N);
    for _ in 0..N {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(b"AMQ").unwrap();
        s.set_nonblocking(true).unwrap();
        socks.push(s);
    }
    let opened = Instant::now();
    eprintln!("{N} half-open connections in {:?}", opened - t0);

    // A normal client meanwhile.
    let mut r = raw_client(port);
    let took = publish_consume_round_trip(&mut r, "half-open", 50, Duration::from_secs(5));
    eprintln!(
        "normal client: 50 round trips in {took:?}; RSS +{:.1} MiB with {N} half-open",
        (rss().saturating_sub(rss0)) as f64 / MIB
    );

    let mut open: Vec<usize> = (0..N).collect();
    while !open.is_empty() && opened.elapsed() < Duration::from_secs(13) {
        open.retain(|&i| !closed_by_peer(&mut socks[i]));
        std::thread::sleep(Duration::from_millis(50));
    }
    let all_closed = opened.elapsed();
    assert!(
        open.is_empty(),
        "{} of {N} half-open connections still open after {all_closed:?}",
        open.len()
    );
    eprintln!("all {N} closed {all_closed:?} after the last was opened");
    assert!(
        all_closed <= Duration::from_secs(12),
        "closed after {all_closed:?}"
    );
    // The normal client was not a casualty.
    publish_consume_round_trip(&mut r, "half-open-after", 5, Duration::from_secs(5));
}

// ---------------------------------------------------------------- channels and consumers

/// channel_max (2047) channels on one connection, then one more: RabbitMQ's
/// 530 NOT_ALLOWED (rabbit_reader:create_channel, method `none`); memory
/// per channel stays small.
#[test]
fn channel_flood_up_to_channel_max() {
    let _g = serial();
    let b = start_broker(1);
    let mut r = Raw::connect(b.port());
    let (channel_max, _, _) = r.login("guest", "guest");
    assert_eq!(channel_max, 2047, "channel_max offered");
    r.tune_ok_and_open(131072, 0, "/");
    r.expect_method(0, 10, 41);
    let rss0 = rss();
    let mut opens = Vec::new();
    for ch in 1..=2047u16 {
        opens.extend(frame(1, ch, &method(20, 10, &[0])));
    }
    r.send(&opens);
    for ch in 1..=2047u16 {
        r.expect_method(ch, 20, 11);
    }
    // Every channel works: basic.qos on each, pipelined.
    let mut qos = Vec::new();
    for ch in 1..=2047u16 {
        qos.extend(frame(1, ch, &method(60, 10, &qos_args(0, 10))));
    }
    r.send(&qos);
    for ch in 1..=2047u16 {
        r.expect_method(ch, 60, 11);
    }
    let grown = rss().saturating_sub(rss0);
    eprintln!(
        "2047 channels: RSS +{:.2} MiB ({} bytes per channel)",
        grown as f64 / MIB,
        grown / 2047
    );
    assert!(grown < 32 << 20, "2047 channels took {grown} bytes");
    r.send_method(2048, 20, 10, &[0]);
    let (code, text, class, m) = r.expect_connection_close();
    assert_eq!(
        (code, text.as_str(), class, m),
        (
            530,
            "NOT_ALLOWED - number of channels opened (2047) has reached the negotiated channel_max (2047)",
            0,
            0
        )
    );
    r.expect_eof();
}

/// 10,000 consumers on one channel (RabbitMQ's consumer_max_per_channel is
/// unlimited by default): all are registered, deliveries go round, memory
/// per consumer stays small.
#[test]
fn consumer_flood_on_one_channel() {
    let _g = serial();
    const N: usize = 10_000;
    let b = start_broker(1);
    let mut r = raw_client(b.port());
    r.send_method(1, 50, 10, &queue_args("cflood", &[0x08, 0, 0, 0, 0]));
    r.expect_method(1, 50, 11);
    let rss0 = rss();
    let t0 = Instant::now();
    let mut consumes = Vec::new();
    for _ in 0..N {
        consumes.extend(frame(
            1,
            1,
            &method(60, 20, &queue_args("cflood", &[0, 0x02, 0, 0, 0, 0])),
        ));
    }
    // Written from another thread: the broker answers while we still send.
    let mut w = r.s.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&consumes).unwrap());
    let mut tags = std::collections::HashSet::new();
    for _ in 0..N {
        let a = r.expect_method(1, 60, 21);
        tags.insert(Cur(&a).shortstr());
    }
    writer.join().unwrap();
    assert_eq!(tags.len(), N, "distinct consumer tags");
    let grown = rss().saturating_sub(rss0);
    eprintln!(
        "{N} consumers in {:?}: RSS +{:.2} MiB ({} bytes per consumer)",
        t0.elapsed(),
        grown as f64 / MIB,
        grown / N as u64
    );
    assert!(grown < 64 << 20, "{N} consumers took {grown} bytes");
    // queue.declare passive: message count 0, consumer count N.
    r.send_method(1, 50, 10, &queue_args("cflood", &[0x01, 0, 0, 0, 0]));
    let a = r.expect_method(1, 50, 11);
    let mut c = Cur(&a);
    c.shortstr();
    assert_eq!((c.u32(), c.u32()), (0, N as u32), "(messages, consumers)");
    // Deliveries still flow, one per consumer in turn.
    let mut seen = std::collections::HashSet::new();
    for i in 0..100 {
        r.publish(1, "", "cflood", format!("m{i}").as_bytes(), 131072);
        let a = r.expect_method(1, 60, 60);
        seen.insert(Cur(&a).shortstr());
        r.read_frame();
        r.read_frame();
    }
    assert_eq!(seen.len(), 100, "round-robin over the consumers");
}

// ---------------------------------------------------------------- big tables and frames

/// Pads a table to `len` bytes (length prefix included) with one more entry.
fn table_of_len(len: usize) -> Vec<u8> {
    // Entries of 1,000 bytes, then one entry of the remainder.
    let entry = |i: usize, n: usize| {
        [
            &shortstr(&format!("k{i:05}"))[..],
            b"S",
            &(n as u32).to_be_bytes(),
            &vec![b'v'; n],
        ]
        .concat()
    };
    let mut t = Vec::new();
    let mut i = 0;
    // key (7) + type (1) + length (4) = 12 bytes of overhead per entry
    while 4 + t.len() + 12 + 1000 + 12 <= len {
        t.extend(entry(i, 1000));
        i += 1;
    }
    let rest = len - 4 - t.len() - 12;
    t.extend(entry(i, rest));
    let out = [&(t.len() as u32).to_be_bytes()[..], &t].concat();
    assert_eq!(out.len(), len);
    out
}

/// queue.declare with an arguments table that fills the frame to frame_max
/// is accepted (and is equivalent on redeclaration); one byte more is a
/// frame over frame_max: 501 FRAME_ERROR in RabbitMQ's words.
#[test]
fn queue_declare_arguments_near_frame_max() {
    let _g = serial();
    let b = start_broker(1);
    let mut r = raw_client(b.port());
    // method payload: class, method (4) + ticket (2) + name + flags (1) + table
    let name = "bigargs";
    let fixed = 4 + 2 + 1 + name.len() + 1;
    let table = table_of_len(131072 - 8 - fixed);
    let args = [&[0, 0][..], &shortstr(name), &[0x08], &table].concat();
    let payload = method(50, 10, &args);
    assert_eq!(payload.len() + 8, 131072, "a frame of exactly frame_max");
    let rss0 = rss();
    r.send(&frame(1, 1, &payload));
    r.expect_method(1, 50, 11);
    r.send(&frame(1, 1, &payload));
    r.expect_method(1, 50, 11); // equivalent
    eprintln!(
        "queue declared with a {} byte table: RSS +{:.2} MiB",
        table.len(),
        rss().saturating_sub(rss0) as f64 / MIB
    );
    // 8 bytes over is RabbitMQ's FRAME_SIZE_FUDGE, 9 is over it.
    let table = table_of_len(131072 - 8 - fixed + 9);
    let args = [&[0, 0][..], &shortstr("bigargX"), &[0x08], &table].concat();
    r.send(&frame(1, 1, &method(50, 10, &args)));
    let (code, text, class, m) = r.expect_connection_close();
    assert_eq!(
        (code, text.as_str(), class, m),
        (
            501,
            "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,131073,131064}",
            0,
            0
        )
    );
    r.expect_eof();
}

/// The content header frame of a basic.publish whose headers table fills it
/// to exactly frame_max: accepted, delivered intact. One byte over
/// RabbitMQ's fudge: 501 FRAME_ERROR.
#[test]
fn content_header_frame_of_frame_max_and_over() {
    let _g = serial();
    let b = start_broker(1);
    let mut r = raw_client(b.port());
    r.send_method(1, 50, 10, &queue_args("bighdr", &[0x08, 0, 0, 0, 0]));
    r.expect_method(1, 50, 11);
    // class (2), weight (2), body size (8), flags (2), then the headers table
    let header = |payload_len: usize| {
        let table = table_of_len(payload_len - 14);
        [
            &[0, 60, 0, 0][..],
            &3u64.to_be_bytes(),
            &[0x20, 0x00],
            &table,
        ]
        .concat()
    };
    let h = header(131072 - 8);
    let rss0 = rss();
    let mut out = frame(1, 1, &method(60, 40, &publish_args("", "bighdr")));
    out.extend(frame(2, 1, &h));
    out.extend(frame(3, 1, b"abc"));
    r.send(&out);
    // basic.get (no-ack): the message comes back with the same header.
    r.send_method(1, 60, 70, &queue_args("bighdr", &[1]));
    r.expect_method(1, 60, 71);
    let (ty, _, got) = r.read_frame();
    assert_eq!(ty, 2);
    assert!(got == h, "content header delivered intact");
    assert_eq!(r.read_frame(), (3, 1, b"abc".to_vec()));
    eprintln!(
        "a frame_max content header published and got: RSS +{:.2} MiB",
        rss().saturating_sub(rss0) as f64 / MIB
    );
    // Over frame_max (and the fudge).
    let mut out = frame(1, 1, &method(60, 40, &publish_args("", "bighdr")));
    out.extend(frame(2, 1, &header(131072 - 8 + 9)));
    r.send(&out);
    let (code, text, _, _) = r.expect_connection_close();
    assert_eq!(
        (code, text.as_str()),
        (
            501,
            "FRAME_ERROR - type 2, all octets = <<>>: {frame_too_large,131073,131064}"
        )
    );
    r.expect_eof();
}

/// A body announced over RabbitMQ's max_message_size (128 MiB): 406
/// PRECONDITION_FAILED, the channel closes, nothing was buffered.
#[test]
fn body_over_max_message_size_is_refused() {
    let _g = serial();
    let b = start_broker(1);
    let mut r = raw_client(b.port());
    let size: u64 = 128 * 1024 * 1024 + 1;
    r.send_method(1, 60, 40, &publish_args("", "nowhere"));
    let h = [&[0, 60, 0, 0][..], &size.to_be_bytes(), &[0, 0]].concat();
    r.send(&frame(2, 1, &h));
    let a = r.expect_method(1, 20, 40); // channel.close
    let mut c = Cur(&a);
    assert_eq!(
        (c.u16(), c.shortstr(), c.u16(), c.u16()),
        (
            406,
            format!("PRECONDITION_FAILED - message size {size} is larger than configured max size 134217728"),
            60,
            40
        )
    );
}
