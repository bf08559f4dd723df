//! The broker binary's log (part of the `warren` binary, not the library):
//! `--log-format text|json`, one event per line with its time, level,
//! shard (or thread) and source, and `--log-file PATH`, reopened on SIGHUP
//! so that logrotate can move it away. Without a file, stderr.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `2026-12-05T00:00:00.000Z INFO  shard-0 warren::…] message`
    Text,
    /// One JSON object per line: time, level, shard, thread, target,
    /// message.
    Json,
}

/// The log file, reopened by `reopen`.
pub struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogFile {
    /// Opens the file at its path again (after logrotate moved it).
    pub fn reopen(&self) -> io::Result<()> {
        let f = open(&self.path)?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = f;
        Ok(())
    }
}

struct ToFile(Arc<LogFile>);

impl Write for ToFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0
            .file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flush()
    }
}

/// The shard a thread serves (`warren-shard-<i>`), or None.
fn shard_of(thread: &str) -> Option<u16> {
    thread.strip_prefix("warren-shard-")?.parse().ok()
}

/// Sets the log up; returns the log file (for `reopen`) if there is one.
pub fn init(
    level: &str,
    format: Format,
    file: Option<&Path>,
) -> Result<Option<Arc<LogFile>>, String> {
    let mut b = env_logger::Builder::new();
    b.parse_filters(level);
    let log_file = match file {
        Some(p) => {
            let f =
                open(p).map_err(|e| format!("cannot open the log file {}: {e}", p.display()))?;
            let lf = Arc::new(LogFile {
                path: p.to_path_buf(),
                file: Mutex::new(f),
            });
            b.target(env_logger::Target::Pipe(Box::new(ToFile(lf.clone()))));
            Some(lf)
        }
        None => None,
    };
    b.format(move |buf, record| {
        let time = buf.timestamp_millis().to_string();
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("-");
        let shard = shard_of(name);
        match format {
            Format::Text => {
                let who = shard.map_or_else(|| name.to_string(), |s| format!("shard-{s}"));
                writeln!(
                    buf,
                    "{time} {:<5} {who} {}] {}",
                    record.level(),
                    record.target(),
                    record.args()
                )
            }
            Format::Json => {
                let line = serde_json::json!({
                    "time": time,
                    "level": record.level().as_str().to_ascii_lowercase(),
                    "shard": shard,
                    "thread": name,
                    "target": record.target(),
                    "message": record.args().to_string(),
                });
                writeln!(buf, "{line}")
            }
        }
    });
    b.try_init().map_err(|e| e.to_string())?;
    Ok(log_file)
}
