//! The cluster transport (`src/cluster/transport.rs`) between real sockets
//! on 127.0.0.1: each node is a `Transport` driven by its own thread and
//! `mio::Poll` loop, as the cluster thread will drive it. Frames arrive
//! whole and in order (a million small ones, and frames of many MiB), in
//! both directions at once; a wrong secret is refused; a restarted peer is
//! reconnected; a removed peer is disconnected. Every check waits on a
//! condition with a deadline, never on a fixed sleep.

use mio::{Events, Poll, Token, Waker};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use warren::cluster::transport::{hmac_sha256, Incoming, SendResult, Transport, MAX_PAYLOAD};

const WAKER: Token = Token(0);
const TOKEN_BASE: usize = 1;
/// The kind of every test frame; its payload is a u64 sequence number per
/// (sender, receiver) and then bytes derived from it.
const KIND: u8 = 7;
/// The driver stops producing while this much waits for a peer.
const WINDOW: usize = 4 << 20;
const DEADLINE: Duration = Duration::from_secs(15);

// ---- a logger that keeps the lines, so that tests can wait for warnings ----

static LOG: OnceLock<Mutex<Vec<String>>> = OnceLock::new();

struct Capture;
impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let line = format!("{} {}", r.level(), r.args());
            eprintln!("{line}");
            LOG.get_or_init(Default::default).lock().unwrap().push(line);
        }
    }
    fn flush(&self) {}
}

fn init_log() {
    if log::set_logger(&Capture).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

fn log_lines(pattern: &[&str]) -> usize {
    let lines = LOG.get_or_init(Default::default).lock().unwrap();
    lines
        .iter()
        .filter(|l| pattern.iter().all(|p| l.contains(p)))
        .count()
}

// ---- the driver: one thread, one Poll, one Transport ----

/// Frames received from one sender.
#[derive(Default, Debug)]
struct FromStats {
    count: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    largest: usize,
}

/// What a node's driver saw, for the test thread to wait on.
#[derive(Default)]
struct Seen {
    /// "up b", "down b", in order.
    events: Vec<String>,
    frames: HashMap<String, FromStats>,
    /// Anything wrong: a frame out of order or corrupted, a refused send.
    errors: Vec<String>,
    /// Snapshots, each loop iteration.
    up: Vec<String>,
    inbound: Vec<String>,
    pending: HashMap<String, usize>,
}

enum Cmd {
    Peers(Vec<(String, SocketAddr)>),
    /// `count` frames with payloads of `size` bytes to `to`.
    Burst {
        to: String,
        count: u64,
        size: usize,
    },
    /// One frame with a payload of each size.
    Big {
        to: String,
        sizes: Vec<usize>,
    },
    Stop,
}

/// Sending work, done as the window allows.
enum Job {
    Small {
        to: String,
        left: u64,
        size: usize,
    },
    Big {
        to: String,
        sizes: VecDeque<usize>,
        payload: Option<Vec<u8>>,
    },
}

struct Node {
    name: String,
    addr: SocketAddr,
    tx: Sender<Cmd>,
    waker: Arc<Waker>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<JoinHandle<()>>,
}

impl Node {
    fn start(name: &str, secret: &str) -> Node {
        Node::start_on(name, secret, "127.0.0.1:0".parse().unwrap())
    }

    fn start_on(name: &str, secret: &str, addr: SocketAddr) -> Node {
        init_log();
        let listener = TcpListener::bind(addr).expect("bind the cluster port");
        let addr = listener.local_addr().unwrap();
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).unwrap());
        let t = Transport::new(
            listener,
            name.into(),
            secret.into(),
            poll.registry(),
            TOKEN_BASE,
        )
        .unwrap();
        assert_eq!(t.local_addr().unwrap(), addr);
        let (tx, rx) = channel();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        let thread = std::thread::Builder::new()
            .name(format!("node {name}"))
            .spawn(move || drive(t, poll, rx, shared))
            .unwrap();
        Node {
            name: name.into(),
            addr,
            tx,
            waker,
            seen,
            thread: Some(thread),
        }
    }

    fn cmd(&self, c: Cmd) {
        self.tx.send(c).unwrap();
        self.waker.wake().unwrap();
    }

    fn peers(&self, nodes: &[&Node]) {
        self.cmd(Cmd::Peers(
            nodes.iter().map(|n| (n.name.clone(), n.addr)).collect(),
        ));
    }

    fn burst(&self, to: &str, count: u64, size: usize) {
        self.cmd(Cmd::Burst {
            to: to.into(),
            count,
            size,
        });
    }

    fn seen<R>(&self, f: impl FnOnce(&Seen) -> R) -> R {
        f(&self.seen.lock().unwrap())
    }

    fn received_from(&self, from: &Node) -> u64 {
        self.seen(|s| s.frames.get(&from.name).map_or(0, |f| f.count))
    }

    fn events(&self) -> Vec<String> {
        self.seen(|s| s.events.clone())
    }

    fn errors(&self) -> Vec<String> {
        self.seen(|s| s.errors.clone())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Stop);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn drive(mut t: Transport, mut poll: Poll, rx: Receiver<Cmd>, seen: Arc<Mutex<Seen>>) {
    let mut events = Events::with_capacity(256);
    let mut jobs: VecDeque<Job> = VecDeque::new();
    let mut seq: HashMap<String, u64> = HashMap::new();
    let mut peers: Vec<String> = Vec::new();
    let mut next_tick = Instant::now();
    loop {
        let can_send = jobs
            .front()
            .is_some_and(|j| t.pending_bytes(job_to(j)) < WINDOW);
        let timeout = if can_send || t.has_deferred() {
            Duration::ZERO
        } else {
            next_tick.saturating_duration_since(Instant::now())
        };
        poll.poll(&mut events, Some(timeout)).unwrap();
        {
            let mut s = seen.lock().unwrap();
            let mut sink = |inc: Incoming<'_>| record(&mut s, inc);
            for ev in events.iter() {
                if t.owns(ev.token()) {
                    t.handle_event(ev, &mut sink);
                }
            }
            t.run_deferred(&mut sink);
        }
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Cmd::Stop => return,
                Cmd::Peers(p) => {
                    peers = p.iter().map(|(n, _)| n.clone()).collect();
                    t.set_peers(&p);
                }
                Cmd::Burst { to, count, size } => jobs.push_back(Job::Small {
                    to,
                    left: count,
                    size,
                }),
                Cmd::Big { to, sizes } => jobs.push_back(Job::Big {
                    to,
                    sizes: sizes.into(),
                    payload: None,
                }),
            }
        }
        if let Err(e) = produce(&mut t, &mut jobs, &mut seq) {
            seen.lock().unwrap().errors.push(e);
            jobs.pop_front();
        }
        t.flush();
        let now = Instant::now();
        if now >= next_tick {
            t.tick(now);
            next_tick = now + Duration::from_millis(100);
        }
        let mut s = seen.lock().unwrap();
        s.up = peers.iter().filter(|p| t.peer_up(p)).cloned().collect();
        s.inbound = t.inbound_nodes().map(String::from).collect();
        s.pending = peers
            .iter()
            .map(|p| (p.clone(), t.pending_bytes(p)))
            .collect();
    }
}

fn job_to(j: &Job) -> &str {
    match j {
        Job::Small { to, .. } | Job::Big { to, .. } => to,
    }
}

/// The test payload's bytes after the sequence number.
fn filler(seq: u64, i: usize) -> u8 {
    (seq as u8).wrapping_add(i as u8)
}

fn payload(seq: u64, size: usize) -> Vec<u8> {
    let mut p = seq.to_be_bytes().to_vec();
    p.extend((0..size - 8).map(|i| filler(seq, i)));
    p
}

/// Sends from the first job while the peer's window has room; small
/// frames alternate between `send` and `frame_mut`.
fn produce(
    t: &mut Transport,
    jobs: &mut VecDeque<Job>,
    seq: &mut HashMap<String, u64>,
) -> Result<(), String> {
    while let Some(job) = jobs.front_mut() {
        let to = job_to(job).to_owned();
        let next = seq.entry(to.clone()).or_insert(0);
        let done = match job {
            Job::Small { left, size, .. } => {
                while *left > 0 && t.pending_bytes(&to) < WINDOW {
                    if *next % 2 == 0 {
                        let r = t.send(&to, KIND, &payload(*next, *size));
                        if !matches!(r, SendResult::Queued | SendResult::NotConnected) {
                            return Err(format!("send to {to}: {r:?}"));
                        }
                    } else {
                        let Some(mut w) = t.frame_mut(&to, KIND) else {
                            return Err(format!("frame_mut to {to}: None"));
                        };
                        w.put_u64(*next);
                        for i in 0..*size - 8 {
                            w.put_u8(filler(*next, i));
                        }
                    }
                    *next += 1;
                    *left -= 1;
                }
                *left == 0
            }
            Job::Big {
                sizes, payload: p, ..
            } => {
                while let Some(&size) = sizes.front() {
                    let body = p.get_or_insert_with(|| payload(*next, size));
                    match t.send(&to, KIND, body) {
                        SendResult::Queued | SendResult::NotConnected => {}
                        SendResult::Full => return Ok(()),
                        r => return Err(format!("send {size} bytes to {to}: {r:?}")),
                    }
                    *p = None;
                    sizes.pop_front();
                    *next += 1;
                }
                true
            }
        };
        if !done {
            return Ok(());
        }
        jobs.pop_front();
    }
    Ok(())
}

/// The sink: checks each frame's order and bytes as it arrives (the
/// payload is only borrowed).
fn record(s: &mut Seen, inc: Incoming<'_>) {
    match inc {
        Incoming::PeerUp(n) => s.events.push(format!("up {n}")),
        Incoming::PeerDown(n) => s.events.push(format!("down {n}")),
        Incoming::Frame {
            from,
            kind,
            payload,
        } => {
            let Some(seq) = payload
                .get(..8)
                .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
            else {
                return s.errors.push(format!("short frame from {from}"));
            };
            if kind != KIND
                || !payload[8..]
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == filler(seq, i))
            {
                s.errors.push(format!(
                    "frame {seq} from {from} is corrupted (kind {kind})"
                ));
            }
            let f = s.frames.entry(from.to_owned()).or_default();
            if f.last_seq.is_some_and(|last| seq <= last) {
                let msg = format!("frame {seq} from {from} after {:?}", f.last_seq);
                s.errors.push(msg);
            }
            f.count += 1;
            f.first_seq.get_or_insert(seq);
            f.last_seq = Some(seq);
            f.largest = f.largest.max(payload.len());
        }
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn wait_up(a: &Node, b: &Node) {
    wait_for(&format!("{} to reach {}", a.name, b.name), || {
        a.seen(|s| s.up.contains(&b.name))
    });
}

// ---- the tests ----

#[test]
fn a_million_small_frames_and_large_ones_arrive_in_order() {
    let (a, b) = (Node::start("a1", "s"), Node::start("b1", "s"));
    a.peers(&[&b]);
    wait_up(&a, &b);
    const N: u64 = 1_000_000;
    const SIZE: usize = 32;
    let start = Instant::now();
    a.burst("b1", N, SIZE);
    wait_for("a million frames", || {
        b.received_from(&a) == N || !b.errors().is_empty()
    });
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(b.errors(), Vec::<String>::new());
    let wire = (SIZE + 5) as f64 * N as f64;
    eprintln!(
        "cluster transport, {N} frames of {SIZE} bytes a1 -> b1 in {secs:.2} s: {:.0} frames/s, {:.1} MB/s of payload ({:.1} MB/s on the wire)",
        N as f64 / secs,
        SIZE as f64 * N as f64 / secs / 1e6,
        wire / secs / 1e6
    );
    let start = Instant::now();
    a.cmd(Cmd::Big {
        to: b.name.clone(),
        sizes: vec![3 << 20, 9 << 20 | 12_345, MAX_PAYLOAD],
    });
    wait_for("the large frames", || {
        b.received_from(&a) == N + 3 || !b.errors().is_empty()
    });
    let mib = ((3 << 20) + (9 << 20 | 12_345) + MAX_PAYLOAD) as f64 / (1 << 20) as f64;
    let secs = start.elapsed().as_secs_f64();
    eprintln!("cluster transport, 3 large frames ({mib:.0} MiB, encoded, sent and checked) in {secs:.2} s: {:.0} MiB/s", mib / secs);
    b.seen(|s| {
        let f = &s.frames["a1"];
        assert_eq!(
            (f.first_seq, f.last_seq, f.largest),
            (Some(0), Some(N + 2), MAX_PAYLOAD)
        );
    });
    assert_eq!(b.errors(), Vec::<String>::new());
    assert_eq!(a.errors(), Vec::<String>::new());
    assert_eq!(a.events(), ["up b1"]);
}

#[test]
fn both_directions_at_once() {
    let (a, b) = (Node::start("a2", "s"), Node::start("b2", "s"));
    a.peers(&[&b]);
    b.peers(&[&a]);
    const N: u64 = 200_000;
    // Sent at once, before either connection is up: buffered meanwhile.
    a.burst("b2", N, 100);
    b.burst("a2", N, 60);
    wait_for("both ways", || {
        b.received_from(&a) == N && a.received_from(&b) == N
    });
    for n in [&a, &b] {
        assert_eq!(n.errors(), Vec::<String>::new());
        assert_eq!(
            n.seen(|s| s.frames.values().next().unwrap().last_seq),
            Some(N - 1)
        );
    }
    assert_eq!(a.events(), ["up b2"]);
    assert_eq!(b.events(), ["up a2"]);
}

#[test]
fn a_wrong_secret_is_refused() {
    let (a, b) = (Node::start("a3", "right"), Node::start("b3", "wrong"));
    a.peers(&[&b]);
    a.burst("b3", 10, 16);
    // Two refusals: the second dial after a backoff was refused too.
    let refused = [
        "WARN",
        "refused a connection from 127.0.0.1:",
        "\"a3\"",
        "wrong cluster secret",
    ];
    wait_for("two refusals", || log_lines(&refused) >= 2);
    wait_for("a3's warning", || {
        log_lines(&["WARN", "node b3", "refused our handshake"]) >= 1
    });
    assert_eq!(a.events(), Vec::<String>::new());
    assert!(a.seen(|s| s.up.is_empty() && s.pending["b3"] > 0));
    assert_eq!(b.seen(|s| (s.frames.len(), s.inbound.len())), (0, 0));
    // The connector warns once per outage, not at every redial.
    assert_eq!(log_lines(&["WARN", "node b3", "refused our handshake"]), 1);
}

#[test]
fn a_restarted_peer_is_reconnected() {
    let a = Node::start("a4", "s");
    let b = Node::start("b4", "s");
    let b_addr = b.addr;
    a.peers(&[&b]);
    b.peers(&[&a]);
    a.burst("b4", 1000, 40);
    wait_for("the first frames", || b.received_from(&a) == 1000);
    wait_up(&b, &a);
    drop(b);
    wait_for("a4 to see b4 down", || a.events().len() == 2);
    assert_eq!(a.events(), ["up b4", "down b4"]);
    // Sent while b4 is away: kept for the next connection.
    a.burst("b4", 500, 40);
    wait_for("the frames to wait in a4's buffer", || {
        a.seen(|s| s.pending["b4"] > 0)
    });
    let b = Node::start_on("b4", "s", b_addr);
    b.peers(&[&a]);
    wait_for("a4 to see b4 up again", || a.events().len() == 3);
    assert_eq!(a.events(), ["up b4", "down b4", "up b4"]);
    a.burst("b4", 1000, 40);
    wait_for("the frames after the restart", || {
        b.received_from(&a) == 1500
    });
    b.seen(|s| {
        let f = &s.frames["a4"];
        assert_eq!((f.first_seq, f.last_seq), (Some(1000), Some(2499)));
    });
    assert_eq!(b.errors(), Vec::<String>::new());
    assert_eq!(a.errors(), Vec::<String>::new());
}

#[test]
fn a_removed_peer_is_disconnected() {
    let (a, b, c) = (
        Node::start("a5", "s"),
        Node::start("b5", "s"),
        Node::start("c5", "s"),
    );
    for (n, others) in [(&a, [&b, &c]), (&b, [&a, &c]), (&c, [&a, &b])] {
        n.peers(&others);
    }
    for (n, m) in [(&a, &b), (&a, &c), (&b, &a), (&b, &c), (&c, &a), (&c, &b)] {
        wait_up(n, m);
    }
    a.peers(&[&c]);
    wait_for("a5 to report b5 down", || {
        a.events().contains(&"down b5".to_string())
    });
    wait_for("b5 to lose its inbound connection from a5", || {
        b.seen(|s| s.inbound == ["c5"])
    });
    assert!(a.seen(|s| s.up == ["c5"] && !s.pending.contains_key("b5")));
    // a5 no longer knows b5, still talks to c5, and b5 still reaches a5.
    a.burst("b5", 1, 16);
    wait_for("the refused send", || !a.errors().is_empty());
    assert_eq!(a.errors(), ["send to b5: NoSuchPeer"]);
    a.burst("c5", 100, 16);
    b.burst("a5", 100, 16);
    wait_for("frames after the removal", || {
        c.received_from(&a) == 100 && a.received_from(&b) == 100
    });
    assert_eq!(b.received_from(&a), 0);
    let mut events = a.events();
    events.sort();
    assert_eq!(events, ["down b5", "up b5", "up c5"]);
}

/// A raw socket speaks the handshake: a good hello is accepted; a second
/// connection from the same node replaces the first; an oversized frame
/// closes the connection; a bad magic is refused with a 0.
#[test]
fn raw_handshake_and_oversized_frame() {
    let b = Node::start("b6", "sesame");
    let connect = || {
        let s = TcpStream::connect(b.addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s
    };
    let challenge = |s: &mut TcpStream| {
        let mut c = [0u8; 24];
        s.read_exact(&mut c).unwrap();
        assert_eq!(&c[..8], b"WRNCLU01");
        c[8..].to_vec()
    };
    let handshake = || {
        let mut s = connect();
        let nonce = challenge(&mut s);
        let mut hello = b"WRNCLU01".to_vec();
        hello.extend_from_slice(&[0, 3]);
        hello.extend_from_slice(b"raw");
        hello.extend_from_slice(&hmac_sha256(b"sesame", &[&nonce, b"raw"]));
        s.write_all(&hello).unwrap();
        let mut verdict = [9u8];
        s.read_exact(&mut verdict).unwrap();
        assert_eq!(verdict, [1]);
        s
    };
    let frames_from_raw = || b.seen(|s| s.frames.get("raw").map_or(0, |f| f.count));

    let mut first = handshake();
    let mut frame = vec![0, 0, 0, 9, KIND];
    frame.extend_from_slice(&payload(0, 8));
    first.write_all(&frame).unwrap();
    wait_for("the raw frame", || frames_from_raw() == 1);

    let mut s = handshake();
    let mut rest = Vec::new();
    let _ = first.read_to_end(&mut rest);
    assert_eq!(rest, b"", "the first connection is closed");
    frame[5..13].copy_from_slice(&1u64.to_be_bytes());
    s.write_all(&frame).unwrap();
    wait_for("the second raw frame", || frames_from_raw() == 2);
    assert_eq!(b.seen(|s| s.inbound.clone()), ["raw"]);

    s.write_all(&[0x04, 0, 0, 1, KIND]).unwrap();
    let _ = s.read_to_end(&mut rest);
    assert_eq!(rest, b"");
    wait_for("the oversized frame's warning", || {
        log_lines(&["WARN", "node raw", "frame of 67108865 bytes"]) == 1
    });

    let mut s = connect();
    challenge(&mut s);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert_eq!(rest, [0]);
    wait_for("the bad magic's warning", || {
        log_lines(&["WARN", "refused a connection from 127.0.0.1:", "bad magic"]) >= 1
    });
    assert_eq!(b.errors(), Vec::<String>::new());
}

/// An idle connection outlives the 5 s silence timeout (heartbeats keep
/// it alive), while one that never completes its handshake is closed.
#[test]
fn heartbeats_keep_idle_connections_and_handshakes_time_out() {
    let (a, b) = (Node::start("a7", "s"), Node::start("b7", "s"));
    a.peers(&[&b]);
    wait_up(&a, &b);
    wait_for("b7's inbound connection", || {
        b.seen(|s| s.inbound == ["a7"])
    });
    let idle_since = Instant::now();
    let mut mute = TcpStream::connect(b.addr).unwrap();
    mute.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut challenge = [0u8; 24];
    mute.read_exact(&mut challenge).unwrap();
    let mut rest = Vec::new();
    let _ = mute.read_to_end(&mut rest);
    assert!(rest.is_empty());
    let local = mute.local_addr().unwrap().to_string();
    assert_eq!(log_lines(&["INFO", &local, "handshake timed out"]), 1);
    assert!(idle_since.elapsed() > Duration::from_secs(5));
    assert_eq!(a.events(), ["up b7"]);
    assert_eq!(b.seen(|s| s.inbound.clone()), ["a7"]);
}
