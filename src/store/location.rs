//! Where a message is in a shard's segment store, and how segment files are
//! named: shared by the log that writes them (`segments.rs`) and the scan that
//! reads them back (`recover.rs`).

use std::path::{Path, PathBuf};

/// Where a publish record is: segment number, offset of its frame in the file,
/// frame length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub segment: u64,
    pub offset: u32,
    pub len: u32,
}

/// The file of segment `number`: 16 hex digits and `.seg`.
pub(crate) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016x}.seg"))
}
