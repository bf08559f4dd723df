//! On-disk state: the definitions log (`defs_log`), the per-shard message
//! store (`segments`, `location`, `record`, `recover`, `syncer`), queues' page files
//! (`page_file`, scratch), the pinned shard count (`shard_count`) and
//! test-only fault injection (`fault`).

pub mod clean;
pub mod defs_log;
pub mod defs_record;
pub mod fault;
pub mod format;
pub mod location;
pub mod page_file;
pub mod record;
pub(crate) mod recover;
pub mod segments;
pub mod shard_count;
pub mod stream_chunk;
pub mod stream_log;
pub mod syncer;

use std::io;
use std::path::Path;

/// Creates the data directory if it is missing.
pub fn ensure_data_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}
