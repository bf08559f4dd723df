//! Resource alarms, as RabbitMQ's: a memory high watermark and a disk free
//! limit. While either is raised, every shard stops reading connections that
//! publish (consumers keep draining), and tells the clients that advertised the
//! `connection.blocked` capability with `connection.blocked` / `unblocked`.
//!
//! One `Alarms` is shared by all shards. Shard 0 measures (`Alarms::check`, on
//! its timer tick): the process RSS from `/proc/self/statm` against the
//! memory limit, and free space on the data directory's file system
//! (`statvfs`) against the disk limit. The other shards only read the flags,
//! one relaxed atomic load per read of a publishing connection.
//!
//! A failed write or fsync of the message store or of the definitions log
//! (disk full, quota, I/O error) raises the disk alarm too, at once and
//! whatever the free-space limit says (`Alarms::set_store_fault`): the
//! shard or the definitions that met the failure raise it, and clear it once
//! a write succeeds again. The disk alarm is raised while free space is
//! under the limit or any store is failing.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// What an alarm says to a blocked client (RabbitMQ's reasons).
pub const LOW_ON_MEMORY: &str = "low on memory";
pub const LOW_ON_DISK: &str = "low on disk";

#[derive(Debug)]
pub struct Alarms {
    /// Memory limit in bytes of RSS (0: no memory alarm).
    memory_limit: AtomicU64,
    /// Free bytes the data directory's file system must keep (0: no disk alarm).
    disk_free_limit: AtomicU64,
    memory: AtomicBool,
    /// Free space under the limit (measured).
    disk: AtomicBool,
    /// Some store cannot write (`set_store_fault`).
    store_fault: AtomicBool,
    /// Which stores cannot write, and why (changed only on a transition).
    faults: Mutex<Vec<(FaultSource, String)>>,
    data_dir: PathBuf,
}

/// What met a storage failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultSource {
    /// A shard's message store.
    Shard(u16),
    /// The definitions log.
    Definitions,
}

impl Alarms {
    pub fn new(memory_limit: u64, disk_free_limit: u64, data_dir: &Path) -> Alarms {
        Alarms {
            memory_limit: AtomicU64::new(memory_limit),
            disk_free_limit: AtomicU64::new(disk_free_limit),
            memory: AtomicBool::new(false),
            disk: AtomicBool::new(false),
            store_fault: AtomicBool::new(false),
            faults: Mutex::new(Vec::new()),
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// An alarm is raised: publishers must not be read.
    #[inline]
    pub fn active(&self) -> bool {
        self.memory.load(Ordering::Relaxed)
            || self.disk.load(Ordering::Relaxed)
            || self.store_fault.load(Ordering::Relaxed)
    }

    /// The reason sent with connection.blocked.
    pub fn reason(&self) -> &'static str {
        if self.memory.load(Ordering::Relaxed) {
            LOW_ON_MEMORY
        } else {
            LOW_ON_DISK
        }
    }

    /// Changes the memory limit at run time (RabbitMQ's
    /// `set_vm_memory_high_watermark`); the next check applies it.
    pub fn set_memory_limit(&self, bytes: u64) {
        self.memory_limit.store(bytes, Ordering::Relaxed);
    }

    pub fn set_disk_free_limit(&self, bytes: u64) {
        self.disk_free_limit.store(bytes, Ordering::Relaxed);
    }

    pub fn memory_limit(&self) -> u64 {
        self.memory_limit.load(Ordering::Relaxed)
    }

    pub fn disk_free_limit(&self) -> u64 {
        self.disk_free_limit.load(Ordering::Relaxed)
    }

    pub fn memory_alarm(&self) -> bool {
        self.memory.load(Ordering::Relaxed)
    }

    /// Free space is under the limit, or a store cannot write.
    pub fn disk_alarm(&self) -> bool {
        self.disk.load(Ordering::Relaxed) || self.store_fault.load(Ordering::Relaxed)
    }

    /// Raises (`error` is `Some`) or clears the disk alarm for one store
    /// that failed to write. Called on transitions only, never per message.
    pub fn set_store_fault(&self, source: FaultSource, error: Option<&str>) {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let had = faults.iter().position(|(s, _)| *s == source);
        match (had, error) {
            (None, Some(e)) => {
                log::error!(
                    "disk alarm set: {} cannot write: {e}; publishers are blocked",
                    source_name(source)
                );
                faults.push((source, e.to_string()));
            }
            (Some(i), None) => {
                faults.swap_remove(i);
                log::warn!(
                    "{} writes again{}",
                    source_name(source),
                    if faults.is_empty() && !self.disk.load(Ordering::Relaxed) {
                        "; disk alarm cleared"
                    } else {
                        ""
                    }
                );
            }
            _ => {}
        }
        self.store_fault
            .store(!faults.is_empty(), Ordering::Relaxed);
    }

    /// The stores that cannot write now, and their last error.
    pub fn store_faults(&self) -> Vec<(FaultSource, String)> {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Free bytes on the data directory's file system now.
    pub fn disk_free(&self) -> Option<u64> {
        free_space(&self.data_dir)
    }

    /// Measures and raises or clears the alarms (shard 0's tick).
    pub fn check(&self) {
        let limit = self.memory_limit.load(Ordering::Relaxed);
        let memory = limit != 0 && process_rss().is_some_and(|rss| rss >= limit);
        if memory != self.memory.swap(memory, Ordering::Relaxed) {
            log::warn!(
                "memory alarm {}: rss {} bytes, limit {} bytes",
                if memory { "set" } else { "cleared" },
                process_rss().unwrap_or(0),
                limit
            );
        }
        let limit = self.disk_free_limit.load(Ordering::Relaxed);
        let disk = limit != 0 && free_space(&self.data_dir).is_some_and(|free| free < limit);
        if disk != self.disk.swap(disk, Ordering::Relaxed) {
            log::warn!(
                "disk alarm {}: free {} bytes on {}, limit {} bytes",
                if disk { "set" } else { "cleared" },
                free_space(&self.data_dir).unwrap_or(0),
                self.data_dir.display(),
                limit
            );
        }
    }
}

fn source_name(s: FaultSource) -> String {
    match s {
        FaultSource::Shard(i) => format!("the message store of shard {i}"),
        FaultSource::Definitions => "the definitions log".to_string(),
    }
}

/// Resident set size of this process, bytes.
pub fn process_rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// Bytes available to unprivileged users on the file system holding `dir`.
pub fn free_space(dir: &Path) -> Option<u64> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `st` a valid out-pointer.
    let r = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    if r != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_this_process_and_file_system() {
        let rss = process_rss().expect("rss");
        assert!(rss > 0 && rss < crate::config::total_memory().expect("meminfo"));
        assert!(free_space(Path::new("/")).is_some());
        assert!(free_space(Path::new("/no/such/dir/x")).is_none());
    }

    #[test]
    fn memory_alarm_follows_the_limit() {
        let a = Alarms::new(0, 0, Path::new("/"));
        a.check();
        assert!(!a.active(), "limits 0 disable the alarms");
        a.set_memory_limit(1);
        a.check();
        assert!(a.active());
        assert_eq!(a.reason(), LOW_ON_MEMORY);
        a.set_memory_limit(u64::MAX);
        a.check();
        assert!(!a.active());
        a.set_disk_free_limit(u64::MAX);
        a.check();
        assert!(a.active());
        assert_eq!(a.reason(), LOW_ON_DISK);
    }

    #[test]
    fn a_store_fault_raises_the_disk_alarm_until_every_store_writes() {
        let a = Alarms::new(0, 0, Path::new("/"));
        a.set_store_fault(FaultSource::Shard(1), Some("No space left on device"));
        a.set_store_fault(FaultSource::Definitions, Some("No space left on device"));
        a.check();
        assert!(
            a.active() && a.disk_alarm(),
            "a measured clear leaves a fault"
        );
        assert_eq!(a.reason(), LOW_ON_DISK);
        a.set_store_fault(FaultSource::Shard(1), None);
        assert!(a.disk_alarm());
        assert_eq!(a.store_faults().len(), 1);
        a.set_store_fault(FaultSource::Definitions, None);
        a.set_store_fault(FaultSource::Definitions, None);
        assert!(!a.active() && !a.disk_alarm());
    }
}
