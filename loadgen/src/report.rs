//! Shared by every scenario: per-worker counters, the process's CPU time,
//! the broker's CPU time from its scheduler statistics ([`SchedStat`]),
//! number formatting for the human-readable output, a tiny hand-written
//! JSON object writer for `--json`, and the final [`Report`] (table or JSON
//! on stdout, errors on stderr, exit status).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counters of one worker thread. Each has a single writer (its worker,
/// which `store`s its local running totals) and is read by the reporter;
/// the alignment keeps workers off each other's cache lines.
#[derive(Default, Debug)]
#[repr(align(128))]
pub struct Counters {
    /// Messages fully written to the socket.
    pub published: AtomicU64,
    /// Publisher confirms resolved (acked or nacked).
    pub confirmed: AtomicU64,
    /// Of those, nacked.
    pub nacked: AtomicU64,
    /// basic.deliver frames received.
    pub delivered: AtomicU64,
}

impl Counters {
    #[inline]
    pub fn set(c: &AtomicU64, v: u64) {
        c.store(v, Ordering::Relaxed);
    }
}

/// The sum of all workers' counters at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    pub at: Instant,
    pub published: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub delivered: u64,
}

impl Snapshot {
    pub fn take<'a>(all: impl IntoIterator<Item = &'a Counters>) -> Snapshot {
        let mut s = Snapshot {
            at: Instant::now(),
            published: 0,
            confirmed: 0,
            nacked: 0,
            delivered: 0,
        };
        for c in all {
            s.published += c.published.load(Ordering::Relaxed);
            s.confirmed += c.confirmed.load(Ordering::Relaxed);
            s.nacked += c.nacked.load(Ordering::Relaxed);
            s.delivered += c.delivered.load(Ordering::Relaxed);
        }
        s
    }

    /// Rates per second from `earlier` to `self`: (publish, confirm, deliver).
    pub fn rates_since(&self, earlier: &Snapshot) -> Rates {
        let secs = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        Rates {
            secs,
            publish: (self.published - earlier.published) as f64 / secs,
            confirm: (self.confirmed - earlier.confirmed) as f64 / secs,
            deliver: (self.delivered - earlier.delivered) as f64 / secs,
        }
    }

    /// Deliveries expected from what was sent: each message reaches
    /// `fanout` queues (1 through the default exchange).
    pub fn expected(&self, fanout: u64) -> u64 {
        self.published * fanout
    }

    /// Expected but not (yet) seen by a consumer. Negative if consumers got
    /// messages that were in the queues before the run.
    pub fn backlog(&self, fanout: u64) -> i64 {
        self.expected(fanout) as i64 - self.delivered as i64
    }
}

/// Message rates over an interval.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rates {
    pub secs: f64,
    pub publish: f64,
    pub confirm: f64,
    pub deliver: f64,
}

/// CPU time of this process (all threads), in seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTime {
    pub user: f64,
    pub sys: f64,
}

impl CpuTime {
    /// The CPU time used so far (zero if it cannot be read).
    pub fn now() -> CpuTime {
        // SAFETY: getrusage only writes the struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        if rc != 0 {
            return CpuTime::default();
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        CpuTime {
            user: tv(ru.ru_utime),
            sys: tv(ru.ru_stime),
        }
    }

    pub fn total(&self) -> f64 {
        self.user + self.sys
    }
}

/// "0.12 s user + 0.34 s sys".
impl std::fmt::Display for CpuTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} s user + {:.2} s sys", self.user, self.sys)
    }
}

/// The scheduler statistics of a process (the broker, `--pid`), per
/// thread, from `/proc/PID/task/*/schedstat`: field 1 is the time the
/// thread spent on a CPU in nanoseconds, field 3 the number of times it was
/// scheduled in (its timeslices). Unlike utime/stime in `/proc/PID/stat`,
/// which are sampled in clock ticks (10 ms at HZ=100, and only for the
/// thread a tick happens to hit), the run time is the scheduler's own
/// nanosecond accounting: precise over a window of a few seconds, however
/// short the broker's bursts of work are.
///
/// Two readings make a [`BrokerCpu`] (see [`SchedStat::since`]). Threads
/// are matched by id: a thread started in between counts from zero, one
/// that exited in between is lost (its last figures are unknown).
#[derive(Clone, Debug)]
pub struct SchedStat {
    pub at: Instant,
    /// Thread id -> (ns on CPU, times scheduled in).
    threads: HashMap<u32, (u64, u64)>,
}

impl SchedStat {
    /// Reads every thread of process `pid`.
    pub fn read(pid: u32) -> Result<SchedStat, String> {
        let dir = format!("/proc/{pid}/task");
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot read {dir}: {e}"))?;
        let at = Instant::now();
        let mut threads = HashMap::new();
        for entry in entries.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // A thread may exit between the listing and the read.
            let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
                continue;
            };
            if let Some(v) = parse_schedstat(&text) {
                threads.insert(tid, v);
            }
        }
        if threads.is_empty() {
            return Err(format!(
                "no readable {dir}/*/schedstat (kernel without CONFIG_SCHED_INFO?)"
            ));
        }
        Ok(SchedStat { at, threads })
    }

    /// The broker's CPU use from `earlier` to `self`, while `msgs` messages
    /// went through it.
    pub fn since(&self, earlier: &SchedStat, msgs: u64) -> BrokerCpu {
        let (mut cpu_ns, mut slices) = (0u64, 0u64);
        for (tid, &(c, n)) in &self.threads {
            let (c0, n0) = earlier.threads.get(tid).copied().unwrap_or((0, 0));
            cpu_ns += c.saturating_sub(c0);
            slices += n.saturating_sub(n0);
        }
        let secs = self.at.duration_since(earlier.at).as_secs_f64();
        let per_msg = |v: f64| (msgs > 0).then(|| v / msgs as f64);
        BrokerCpu {
            secs,
            cpu_pct: if secs > 0.0 {
                cpu_ns as f64 / 1e9 / secs * 100.0
            } else {
                0.0
            },
            us_per_msg: per_msg(cpu_ns as f64 / 1e3),
            wakeups_per_msg: per_msg(slices as f64),
            msgs,
        }
    }
}

/// Fields 1 and 3 of a schedstat line: "run_ns wait_ns timeslices".
fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut f = text.split_ascii_whitespace();
    let run = f.next()?.parse().ok()?;
    let slices = f.nth(1)?.parse().ok()?;
    Some((run, slices))
}

/// The broker's CPU use over a measured window (two [`SchedStat`]s).
#[derive(Clone, Copy, Debug)]
pub struct BrokerCpu {
    /// Length of the window.
    pub secs: f64,
    /// CPU time over the window in percent of one core (200 = two cores busy).
    pub cpu_pct: f64,
    /// CPU microseconds per message of the window (None without messages).
    pub us_per_msg: Option<f64>,
    /// Times a broker thread was scheduled in, per message.
    pub wakeups_per_msg: Option<f64>,
    /// Messages the figures are divided by.
    pub msgs: u64,
}

impl BrokerCpu {
    /// "37.5% of a core over 10.0 s; 12.30 us and 1.05 wakeups per message
    /// (100,000)".
    pub fn describe(&self) -> String {
        let mut s = format!("{:.1}% of a core over {:.1} s", self.cpu_pct, self.secs);
        if let (Some(us), Some(w)) = (self.us_per_msg, self.wakeups_per_msg) {
            let _ = write!(
                s,
                "; {us:.2} us and {w:.2} wakeups per message ({})",
                group(self.msgs)
            );
        }
        s
    }
}

/// `1234567` -> `"1,234,567"`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Like [`group`], for signed values.
pub fn group_i(n: i64) -> String {
    if n < 0 {
        format!("-{}", group(n.unsigned_abs()))
    } else {
        group(n as u64)
    }
}

/// A rate rounded to a whole number of messages, grouped.
pub fn rate(r: f64) -> String {
    group(r.max(0.0).round() as u64)
}

/// The median of `v` (the mean of the middle two for an even count); None
/// if empty.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// "off" for 0, else "1,000 <unit>" (an optional limit such as `--confirm`).
pub fn off_or(n: u64, unit: &str) -> String {
    if n == 0 {
        "off".to_string()
    } else {
        format!("{} {unit}", group(n))
    }
}

/// The summary table: a "warren-loadgen <scenario>" title line, then one
/// "  label  value" line per row.
pub fn table(scenario: &str, rows: Vec<(&str, String)>) -> String {
    let mut out = format!("warren-loadgen {scenario}\n");
    for (k, v) in rows {
        out += &format!("  {k:<14} {v}\n");
    }
    out
}

/// Builds one JSON object by hand, keys in insertion order.
pub struct JsonObject {
    buf: String,
    first: bool,
}

impl Default for JsonObject {
    fn default() -> Self {
        JsonObject::new()
    }
}

impl JsonObject {
    pub fn new() -> JsonObject {
        JsonObject {
            buf: String::from("{"),
            first: true,
        }
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.buf.push(',');
        }
        self.first = false;
        push_str(&mut self.buf, k);
        self.buf.push(':');
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        push_str(&mut self.buf, v);
        self
    }

    pub fn int(&mut self, k: &str, v: i64) -> &mut Self {
        self.key(k);
        let _ = write!(self.buf, "{v}");
        self
    }

    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k);
        self.buf.push_str(if v { "true" } else { "false" });
        self
    }

    /// A float with `decimals` places (non-finite values become null).
    pub fn num(&mut self, k: &str, v: f64, decimals: usize) -> &mut Self {
        self.key(k);
        if v.is_finite() {
            let _ = write!(self.buf, "{v:.decimals$}");
        } else {
            self.buf.push_str("null");
        }
        self
    }

    /// Already-encoded JSON (a nested object or array).
    pub fn raw(&mut self, k: &str, json: &str) -> &mut Self {
        self.key(k);
        self.buf.push_str(json);
        self
    }

    /// An integer, or null for `None`.
    pub fn opt_int(&mut self, k: &str, v: Option<i64>) -> &mut Self {
        match v {
            Some(v) => self.int(k, v),
            None => self.raw(k, "null"),
        }
    }

    /// A float with `decimals` places, or null for `None`.
    pub fn opt_num(&mut self, k: &str, v: Option<f64>, decimals: usize) -> &mut Self {
        match v {
            Some(v) => self.num(k, v, decimals),
            None => self.raw(k, "null"),
        }
    }

    /// An array of strings.
    pub fn strs<S: AsRef<str>>(&mut self, k: &str, items: &[S]) -> &mut Self {
        let items: Vec<String> = items.iter().map(|s| json_str(s.as_ref())).collect();
        self.raw(k, &json_array(&items))
    }

    /// The loadgen's own CPU time: `cpu_user_s`, `cpu_sys_s`, `cpu_s`.
    pub fn cpu(&mut self, cpu: &CpuTime) -> &mut Self {
        self.num("cpu_user_s", cpu.user, 3)
            .num("cpu_sys_s", cpu.sys, 3)
            .num("cpu_s", cpu.total(), 3)
    }

    /// The broker's CPU over the measured window (`--pid`):
    /// `broker_cpu_pct`, `broker_cpu_us_per_msg`, `broker_wakeups_per_msg`
    /// (null without a reading).
    pub fn broker_cpu(&mut self, c: Option<&BrokerCpu>) -> &mut Self {
        self.opt_num("broker_cpu_pct", c.map(|c| c.cpu_pct), 2)
            .opt_num("broker_cpu_us_per_msg", c.and_then(|c| c.us_per_msg), 3)
            .opt_num(
                "broker_wakeups_per_msg",
                c.and_then(|c| c.wakeups_per_msg),
                3,
            )
    }

    pub fn finish(&mut self) -> String {
        let mut s = std::mem::take(&mut self.buf);
        s.push('}');
        s
    }
}

/// A JSON array of already-encoded values.
pub fn json_array(items: &[String]) -> String {
    format!("[{}]", items.join(","))
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::new();
    push_str(&mut out, s);
    out
}

fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A scenario's final report.
pub trait Report {
    /// The table printed without `--json` (see [`table`]).
    fn table(&self) -> String;
    /// The one-line JSON object printed with `--json`; it ends with
    /// [`Report::json_tail`].
    fn json(&self) -> String;
    /// Whether the run succeeded: exit status 0, and `"ok"` in the JSON.
    fn ok(&self) -> bool;
    /// The errors met: printed on stderr, and `"errors"` in the JSON.
    fn errors(&self) -> &[String];

    /// Ends `o` with the `errors` and `ok` keys.
    fn json_tail(&self, o: &mut JsonObject) -> String {
        o.strs("errors", self.errors())
            .bool("ok", self.ok())
            .finish()
    }
}

/// Prints `r` on stdout (one JSON line with `--json`, else the table) and
/// its errors on stderr; returns the exit status: 0 if ok, else 1.
pub fn finish(r: &impl Report, json: bool) -> i32 {
    if json {
        println!("{}", r.json());
    } else {
        print!("{}", r.table());
    }
    for e in r.errors() {
        eprintln!("warren-loadgen: error: {e}");
    }
    if r.ok() {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(812345678), "812,345,678");
        assert_eq!(group_i(-1234), "-1,234");
        assert_eq!(rate(810500.4), "810,500");
    }

    #[test]
    fn json() {
        let mut o = JsonObject::new();
        o.str("a\"b", "x\ny\u{1}")
            .int("n", -3)
            .num("r", 1.23456, 2)
            .num("nan", f64::NAN, 1)
            .bool("t", true)
            .raw("arr", &json_array(&["1".into(), json_str("s")]))
            .opt_int("i", None)
            .opt_num("f", Some(0.5), 1)
            .strs("s", &["x", "y\""]);
        assert_eq!(
            o.finish(),
            r#"{"a\"b":"x\ny\u0001","n":-3,"r":1.23,"nan":null,"t":true,"arr":[1,"s"],"i":null,"f":0.5,"s":["x","y\""]}"#
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0]), Some(3.0));
        assert_eq!(median(vec![5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn cpu_time_moves() {
        let cpu = CpuTime::now();
        assert!(cpu.user >= 0.0 && cpu.sys >= 0.0);
        assert_eq!(cpu.total(), cpu.user + cpu.sys);
    }

    #[test]
    fn schedstat() {
        assert_eq!(parse_schedstat("153508 1273409 2\n"), Some((153508, 2)));
        assert_eq!(parse_schedstat("1 2"), None);
        let a = SchedStat::read(std::process::id()).unwrap();
        // Burn a little CPU so that the window has some.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 20 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let b = SchedStat::read(std::process::id()).unwrap();
        let c = b.since(&a, 10);
        assert!(c.cpu_pct > 0.0, "{c:?}");
        assert!(c.us_per_msg.unwrap() > 0.0, "{c:?}");
        assert!(b.since(&a, 0).us_per_msg.is_none());
        assert!(SchedStat::read(u32::MAX).is_err());
    }

    #[test]
    fn table_and_limits() {
        assert_eq!(off_or(0, "msg/s"), "off");
        assert_eq!(off_or(2500, "msg/s"), "2,500 msg/s");
        assert_eq!(
            table("x", vec![("broker", "b".into()), ("result", "ok".into())]),
            "warren-loadgen x\n  broker         b\n  result         ok\n"
        );
    }
}
