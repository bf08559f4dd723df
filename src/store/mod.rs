//! On-disk state. Durable definitions and persistent messages are the durability
//! issue's work; for now the broker only makes sure its data directory exists.

pub mod defs_log;

pub mod record;
mod recover;
pub mod segments;
pub mod shard_count;
pub mod syncer;

use std::io;
use std::path::Path;

/// Creates the data directory if it is missing.
pub fn ensure_data_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}
