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

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    disk: AtomicBool,
    data_dir: PathBuf,
}

impl Alarms {
    pub fn new(memory_limit: u64, disk_free_limit: u64, data_dir: &Path) -> Alarms {
        Alarms {
            memory_limit: AtomicU64::new(memory_limit),
            disk_free_limit: AtomicU64::new(disk_free_limit),
            memory: AtomicBool::new(false),
            disk: AtomicBool::new(false),
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// An alarm is raised: publishers must not be read.
    #[inline]
    pub fn active(&self) -> bool {
        self.memory.load(Ordering::Relaxed) || self.disk.load(Ordering::Relaxed)
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

    pub fn disk_alarm(&self) -> bool {
        self.disk.load(Ordering::Relaxed)
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
}
