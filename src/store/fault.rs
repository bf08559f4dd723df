//! Fault injection for tests: make the next writes or fsyncs of the stores
//! under one directory fail, as a full disk or a failing device would.
//!
//! Real faults are tested too (`tests/disk_faults.rs` fills a size-limited
//! tmpfs), but a tmpfs never fails an `fdatasync`, and not every machine lets
//! a test mount one. The stores call [`check`] before each `pwrite` of a
//! segment, each `fdatasync` round and each definitions-log append: one
//! relaxed atomic load when nothing is armed, and never per message (writes
//! are per batch).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// What to make fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A `pwrite` of a segment, or a definitions-log append.
    Write,
    /// An `fdatasync` round of the message store.
    Sync,
}

struct Armed {
    dir: PathBuf,
    op: Op,
    /// Failures left; `u64::MAX`: until `clear`.
    left: u64,
    errno: i32,
}

static ANY: AtomicBool = AtomicBool::new(false);
static ARMED: Mutex<Vec<Armed>> = Mutex::new(Vec::new());

/// Makes the next `count` `op`s of the stores under `dir` fail with `errno`
/// (`libc::ENOSPC`, `libc::EIO`, …); `u64::MAX` keeps failing until [`clear`].
pub fn inject(dir: &Path, op: Op, count: u64, errno: i32) {
    let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
    armed.push(Armed {
        dir: dir.to_path_buf(),
        op,
        left: count,
        errno,
    });
    ANY.store(true, Ordering::Release);
}

/// Removes every fault armed for stores under `dir`.
pub fn clear(dir: &Path) {
    let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
    armed.retain(|a| a.dir != dir);
    ANY.store(!armed.is_empty(), Ordering::Release);
}

/// Fails if a fault is armed for `op` on a store at `path`.
#[inline]
pub(crate) fn check(path: &Path, op: Op) -> io::Result<()> {
    if !ANY.load(Ordering::Relaxed) {
        return Ok(());
    }
    check_armed(path, op)
}

#[cold]
fn check_armed(path: &Path, op: Op) -> io::Result<()> {
    let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
    let Some(i) = armed
        .iter()
        .position(|a| a.op == op && a.left > 0 && path.starts_with(&a.dir))
    else {
        return Ok(());
    };
    let a = &mut armed[i];
    if a.left != u64::MAX {
        a.left -= 1;
    }
    let errno = a.errno;
    if a.left == 0 {
        armed.swap_remove(i);
        ANY.store(!armed.is_empty(), Ordering::Release);
    }
    Err(io::Error::from_raw_os_error(errno))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_hit_only_their_directory_and_run_out() {
        let dir = Path::new("/tmp/warren-fault-test-a");
        inject(dir, Op::Write, 2, libc::ENOSPC);
        let other = Path::new("/tmp/warren-fault-test-b/x");
        assert!(check(other, Op::Write).is_ok());
        let inside = dir.join("msgs/shard-0");
        assert!(check(&inside, Op::Sync).is_ok());
        let e = check(&inside, Op::Write).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(check(&inside, Op::Write).is_err());
        assert!(check(&inside, Op::Write).is_ok(), "two failures only");
        inject(dir, Op::Sync, u64::MAX, libc::EIO);
        assert!(check(&inside, Op::Sync).is_err());
        assert!(check(&inside, Op::Sync).is_err());
        clear(dir);
        assert!(check(&inside, Op::Sync).is_ok());
    }
}
