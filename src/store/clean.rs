//! The clean-shutdown marker (`<data_dir>/clean-shutdown`): written after a
//! graceful shutdown synced every store, taken (read and removed) at the
//! next start. With it, recovery trusts what a clean shutdown left synced
//! (streams' indexes: `StreamLog::open_with`) instead of reading it
//! through; without it (a crash, `kill -9`), everything is checked.

use std::io;
use std::path::Path;

const FILE: &str = "clean-shutdown";

/// Records a clean shutdown (synced, with the directory).
pub fn write(data_dir: &Path) -> io::Result<()> {
    let path = data_dir.join(FILE);
    let f = std::fs::File::create(&path)?;
    f.sync_all()?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// Whether the last run ended cleanly; the marker is removed, so that a
/// crash of this run is not taken for a clean end.
pub fn take(data_dir: &Path) -> bool {
    let path = data_dir.join(FILE);
    if !path.exists() {
        return false;
    }
    match std::fs::remove_file(&path).and_then(|_| std::fs::File::open(data_dir)?.sync_all()) {
        Ok(()) => true,
        Err(e) => {
            log::warn!(
                "cannot remove {}: {e}; recovering as after a crash",
                path.display()
            );
            false
        }
    }
}
