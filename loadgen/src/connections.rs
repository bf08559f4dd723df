//! `warren-loadgen connections`: opens `--connections` idle connections with
//! `--channels` channels each, holds them for `--hold` seconds and, with
//! `--pid`, reports how much the broker's resident memory grew per
//! connection.
//!
//! Sequence: read the broker's VmRSS (`/proc/PID/status`) if `--pid` is
//! given; `--threads` threads open the connections in parallel (full
//! handshake with [`Conn::open`], which negotiates heartbeat 0 so idle
//! connections need no heartbeat traffic, plus channel.open for channels
//! 2..=M); `--settle` seconds after the last one is open, VmRSS is read
//! again; then the connections are held (`--hold 0`: until Ctrl-C) while
//! every second each socket is checked for a close from the broker; at the
//! end all are closed politely (connection.close / close-ok).
//!
//! The open rate is connections (with their channels) fully open per second
//! of the opening phase. `rss_per_conn_kb = (after - before) / opened`; the
//! broker's allocator may keep memory of earlier runs, so measure on a
//! freshly started broker for a first-allocation figure.
//!
//! Each connection is one file descriptor of the loadgen, so at start the
//! loadgen raises its RLIMIT_NOFILE soft limit to the hard limit (the usual
//! soft limit of 1024 would stop it short of 1,000 connections); raise the
//! hard limit (`ulimit -Hn`) for more connections than it allows. Ctrl-C
//! stops opening or holding early and still prints the summary.
//!
//! Exit status: 0 if every connection opened and stayed open, 1 otherwise,
//! 2 on bad arguments.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warren::protocol::constants::{FRAME_HEARTBEAT, FRAME_METHOD};
use warren::protocol::methods::ChannelOpen;
use warren::protocol::Method;

use crate::client::{ClientError, Conn, CLOSE_TIMEOUT};
use crate::report::{self, group, JsonObject, Report};
use crate::uri::AmqpUri;
use crate::workers::Halt;
use crate::CommonArgs;

/// Flags of `connections`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Channels per connection (channels 1..=N).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub channels: u16,
    /// Threads opening connections in parallel.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: u64,
    /// Seconds to hold the connections once open (0 = until Ctrl-C).
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
    /// Seconds to wait after the last connection opened before reading the
    /// broker's memory again.
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
    /// The broker's process id: report its VmRSS (from /proc/PID/status)
    /// before and after opening (for RabbitMQ: the beam.smp process).
    #[arg(long)]
    pub pid: Option<u32>,
}

/// Set by SIGINT (see [`catch_sigint`]).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
    // A second Ctrl-C kills the process as usual.
    // SAFETY: signal() is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
}

/// Makes the first Ctrl-C set a flag instead of killing the process.
pub fn catch_sigint() {
    // SAFETY: installs a handler that only stores an atomic and resets itself.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Raises the RLIMIT_NOFILE soft limit to the hard limit; returns the soft
/// limit in effect afterwards (None if it cannot be read).
pub fn raise_nofile_limit() -> Option<u64> {
    // SAFETY: getrlimit/setrlimit only read/write the struct they are given.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        Some(lim.rlim_cur as u64)
    }
}

/// VmRSS of process `pid` in KiB, from /proc/PID/status.
pub fn vm_rss_kb(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS in {path} (a kernel thread or a zombie?)"))
}

/// State shared by the opening threads.
struct Opening {
    /// Next connection index to claim.
    next: AtomicUsize,
    /// Connections fully open (with all their channels).
    opened: AtomicU64,
    halt: Halt,
}

impl Opening {
    fn stopped(&self) -> bool {
        self.halt.stopped() || interrupted()
    }
}

/// One connection with channels 1..=`channels` open.
fn open_one(uri: &AmqpUri, i: usize, channels: u16) -> Result<Conn, ClientError> {
    let mut c = Conn::open(uri, &format!("warren-loadgen idle {i}"))?;
    for ch in 2..=channels {
        match c.call(ch, ChannelOpen::default().into())? {
            Method::ChannelOpenOk(_) => {}
            m => {
                return Err(ClientError::Protocol(format!(
                    "expected channel.open-ok on channel {ch}, got {}",
                    m.name()
                )))
            }
        }
    }
    Ok(c)
}

/// Opening thread: claims connection indexes until all are claimed.
fn opener(uri: &AmqpUri, n: usize, channels: u16, st: &Opening) -> Vec<Conn> {
    let mut mine = Vec::new();
    while !st.stopped() {
        let i = st.next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        match open_one(uri, i, channels) {
            Ok(c) => {
                mine.push(c);
                st.opened.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                st.halt.fail(format!("connection {i}: {e}"));
                break;
            }
        }
    }
    mine
}

/// Reads whatever the broker sent on an idle connection. Err: the
/// connection is gone (closed by the broker, or a socket error).
fn check_idle(c: &mut Conn) -> Result<(), ClientError> {
    while c.poll()? {
        while let Some(f) = c.next_frame()? {
            match f.kind {
                // Heartbeats are off, but answer one if a broker sends it anyway.
                FRAME_HEARTBEAT => c.write_all(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, 0xCE])?,
                FRAME_METHOD => {
                    c.other_method(&f)?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Checks every held connection, dropping those the broker closed.
/// Returns the first error seen.
fn check_all(conns: &mut Vec<Conn>) -> (usize, Option<String>) {
    let before = conns.len();
    let mut first = None;
    conns.retain_mut(|c| match check_idle(c) {
        Ok(()) => true,
        Err(e) => {
            first.get_or_insert_with(|| e.to_string());
            false
        }
    });
    (before - conns.len(), first)
}

/// Closes all connections, `threads` at a time.
fn close_all(conns: Vec<Conn>, threads: usize) {
    let per = conns.len().div_ceil(threads.max(1)).max(1);
    let mut chunks = Vec::new();
    let mut it = conns.into_iter();
    loop {
        let chunk: Vec<Conn> = it.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    std::thread::scope(|s| {
        for chunk in chunks {
            s.spawn(move || {
                for c in chunk {
                    c.close(CLOSE_TIMEOUT, |_, _| {});
                }
            });
        }
    });
}

/// Sleeps up to `secs` (0 = until Ctrl-C) in short naps, calling `tick`
/// with the elapsed whole seconds once per second.
fn hold_for(secs: f64, mut tick: impl FnMut(u64)) {
    let t0 = Instant::now();
    let end = (secs > 0.0).then(|| t0 + Duration::from_secs_f64(secs));
    let mut next = 1u64;
    loop {
        if interrupted() {
            return;
        }
        let now = Instant::now();
        if end.is_some_and(|e| now >= e) {
            return;
        }
        let next_at = t0 + Duration::from_secs(next);
        if now >= next_at {
            tick(next);
            next += 1;
            continue;
        }
        let mut until = next_at;
        if let Some(e) = end {
            until = until.min(e);
        }
        std::thread::sleep(
            until
                .saturating_duration_since(now)
                .min(Duration::from_millis(100)),
        );
    }
}

/// Runs the scenario; returns the process exit code.
pub fn run(args: Args) -> i32 {
    let Some(uri) = args.common.validate(
        args.hold >= 0.0 && args.settle >= 0.0,
        "--hold and --settle must be >= 0",
    ) else {
        return 2;
    };
    let nofile = raise_nofile_limit();
    if let Some(limit) = nofile {
        if args.connections as u64 + 32 > limit {
            eprintln!(
                "warren-loadgen: warning: open-file limit is {limit} (hard limit): \
                 not enough for {} connections; raise it with ulimit -Hn",
                args.connections
            );
        }
    }
    let rss_before = match args.pid.map(vm_rss_kb).transpose() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warren-loadgen: --pid: {e}");
            return 2;
        }
    };
    catch_sigint();

    // Open.
    let st = Arc::new(Opening {
        next: AtomicUsize::new(0),
        opened: AtomicU64::new(0),
        halt: Halt::default(),
    });
    let threads = (args.threads as usize).min(args.connections.max(1));
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for t in 0..threads {
        let (uri, st2) = (uri.clone(), st.clone());
        let (n, ch) = (args.connections, args.channels);
        match std::thread::Builder::new()
            .name(format!("opener-{t}"))
            .spawn(move || opener(&uri, n, ch, &st2))
        {
            Ok(h) => handles.push(h),
            Err(e) => st.halt.fail(format!("cannot start thread opener-{t}: {e}")),
        }
    }
    let mut prev = 0u64;
    let mut tick = 1u64;
    while !handles.iter().all(|h| h.is_finished()) {
        let next_at = t0 + Duration::from_secs(tick);
        let now = Instant::now();
        if now >= next_at {
            let opened = st.opened.load(Ordering::Relaxed);
            eprintln!(
                "t={tick}s opened {}/{} ({}/s)",
                group(opened),
                group(args.connections as u64),
                group(opened - prev)
            );
            prev = opened;
            tick += 1;
        } else {
            std::thread::sleep((next_at - now).min(Duration::from_millis(20)));
        }
    }
    let open_secs = t0.elapsed().as_secs_f64();
    let mut conns: Vec<Conn> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    let opened = conns.len() as u64;
    let open_rate = opened as f64 / open_secs.max(1e-9);
    eprintln!(
        "opened {} connections x {} channel{} in {open_secs:.2} s ({}/s)",
        group(opened),
        args.channels,
        if args.channels == 1 { "" } else { "s" },
        report::rate(open_rate)
    );

    // Settle, then measure the broker.
    let mut errors = st.halt.errors();
    if !interrupted() {
        hold_for(args.settle, |_| {});
    }
    let rss_after = match args.pid.map(vm_rss_kb).transpose() {
        Ok(r) => r,
        Err(e) => {
            errors.push(format!("--pid: {e}"));
            None
        }
    };
    if let (Some(b), Some(a)) = (rss_before, rss_after) {
        let growth = a as i64 - b as i64;
        eprintln!(
            "broker rss {} KiB -> {} KiB ({}{} KiB)",
            group(b),
            group(a),
            if growth >= 0 { "+" } else { "" },
            report::group_i(growth)
        );
    }

    // Hold.
    let mut lost = 0;
    let mut lost_reason = None;
    if !interrupted() && errors.is_empty() {
        if args.hold == 0.0 {
            eprintln!("holding until Ctrl-C");
        }
        let pid = args.pid;
        hold_for(args.hold, |t| {
            let (n, why) = check_all(&mut conns);
            lost += n;
            if lost_reason.is_none() {
                lost_reason = why;
            }
            let rss = pid
                .and_then(|p| vm_rss_kb(p).ok())
                .map(|r| format!(", broker rss {} KiB", group(r)))
                .unwrap_or_default();
            eprintln!(
                "t={t}s holding {} connections{rss}",
                group(conns.len() as u64)
            );
        });
    }
    let (n, why) = check_all(&mut conns);
    lost += n;
    if lost > 0 {
        errors.push(format!(
            "{lost} connections were closed by the broker while held (first: {})",
            why.or(lost_reason).unwrap_or_default()
        ));
    }
    let alive = conns.len() as u64;
    let hold_secs = t0.elapsed().as_secs_f64() - open_secs;
    close_all(conns, threads);

    let s = Summary {
        args: &args,
        uri: &uri,
        opened,
        open_secs,
        open_rate,
        hold_secs,
        alive,
        rss_before,
        rss_after,
        nofile,
        interrupted: interrupted(),
        errors: &errors,
    };
    report::finish(&s, args.common.json)
}

struct Summary<'a> {
    args: &'a Args,
    uri: &'a AmqpUri,
    opened: u64,
    open_secs: f64,
    open_rate: f64,
    /// From the last open to the start of closing (settle included).
    hold_secs: f64,
    alive: u64,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
    nofile: Option<u64>,
    interrupted: bool,
    errors: &'a [String],
}

impl Summary<'_> {
    fn rss_growth(&self) -> Option<i64> {
        Some(self.rss_after? as i64 - self.rss_before? as i64)
    }

    fn rss_per_conn(&self) -> Option<f64> {
        (self.opened > 0).then_some(())?;
        Some(self.rss_growth()? as f64 / self.opened as f64)
    }
}

impl Report for Summary<'_> {
    fn ok(&self) -> bool {
        self.errors.is_empty()
            && self.opened == self.args.connections as u64
            && self.alive == self.opened
    }

    fn errors(&self) -> &[String] {
        self.errors
    }

    fn table(&self) -> String {
        let a = self.args;
        let mut rows: Vec<(&str, String)> = vec![
            ("broker", self.uri.to_string()),
            (
                "connections",
                format!(
                    "{} x {} channel{} (heartbeat off)",
                    group(a.connections as u64),
                    a.channels,
                    if a.channels == 1 { "" } else { "s" }
                ),
            ),
            (
                "opened",
                format!(
                    "{} in {:.2} s with {} threads",
                    group(self.opened),
                    self.open_secs,
                    a.threads
                ),
            ),
            (
                "open rate",
                format!("{} conn/s", report::rate(self.open_rate)),
            ),
            (
                "held",
                format!(
                    "{:.1} s, {} still open at the end{}",
                    self.hold_secs,
                    group(self.alive),
                    if self.interrupted {
                        " (interrupted)"
                    } else {
                        ""
                    }
                ),
            ),
        ];
        if let (Some(pid), Some(b)) = (a.pid, self.rss_before) {
            rows.push(("broker pid", pid.to_string()));
            rows.push(("rss before", format!("{} KiB", group(b))));
            if let Some(after) = self.rss_after {
                rows.push(("rss after", format!("{} KiB", group(after))));
            }
            if let (Some(g), Some(per)) = (self.rss_growth(), self.rss_per_conn()) {
                rows.push((
                    "rss growth",
                    format!("{} KiB, {per:.1} KiB per connection", report::group_i(g)),
                ));
            }
        }
        if let Some(n) = self.nofile {
            rows.push(("loadgen nofile", group(n)));
        }
        rows.push(("result", if self.ok() { "ok" } else { "FAILED" }.into()));
        report::table("connections", rows)
    }

    fn json(&self) -> String {
        let a = self.args;
        let mut o = JsonObject::new();
        o.str("scenario", "connections")
            .str("uri", &self.uri.to_string())
            .int("connections", a.connections as i64)
            .int("channels", a.channels as i64)
            .int("threads", a.threads as i64)
            .int("opened", self.opened as i64)
            .num("open_s", self.open_secs, 3)
            .num("open_rate", self.open_rate, 1)
            .num("hold_s", self.hold_secs, 3)
            .int("alive", self.alive as i64)
            .bool("interrupted", self.interrupted)
            .opt_int("pid", a.pid.map(i64::from))
            .opt_int("rss_before_kb", self.rss_before.map(|v| v as i64))
            .opt_int("rss_after_kb", self.rss_after.map(|v| v as i64))
            .opt_int("rss_growth_kb", self.rss_growth())
            .opt_num("rss_per_conn_kb", self.rss_per_conn(), 2)
            .opt_int("nofile_limit", self.nofile.map(|v| v as i64));
        self.json_tail(&mut o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_rss_and_nofile() {
        let rss = vm_rss_kb(std::process::id()).unwrap();
        assert!(rss > 0);
        assert!(vm_rss_kb(u32::MAX).is_err());
        let limit = raise_nofile_limit().unwrap();
        assert!(limit > 0);
    }
}
