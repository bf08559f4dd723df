//! The shard count a data directory was written with (`<data_dir>/shards`).
//!
//! Durable queues live on the shard `home % shards`, and each shard's
//! persistent messages are in its own store (`msgs/shard-<i>`). A restart with
//! another shard count would put queues on shards that do not read their
//! messages' store, so a data directory keeps the count it was created with:
//! a different `--shards` is overridden with a warning. (Moving a data
//! directory to another shard count means draining it first.)

use std::io;
use std::path::Path;

const FILE: &str = "shards";

/// The shard count to run with: the one recorded in `data_dir`, or
/// `requested` (recorded now) for a new data directory.
pub fn pin(data_dir: &Path, requested: usize) -> io::Result<usize> {
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => match s.trim().parse::<usize>() {
            Ok(n) if n > 0 => {
                if n != requested {
                    log::warn!(
                        "data directory {} was written with {} shard(s): running {} shard(s), \
                         not the {} requested",
                        data_dir.display(),
                        n,
                        n,
                        requested
                    );
                }
                Ok(n)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a shard count: {:?}", path.display(), s.trim()),
            )),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let tmp = data_dir.join("shards.tmp");
            std::fs::write(&tmp, format!("{requested}\n"))?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(data_dir)?.sync_all()?;
            Ok(requested)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_count_is_kept() {
        let tmp = crate::store::segments::test_dir("shards");
        let dir = tmp.path().join("data");
        assert_eq!(pin(&dir, 3).unwrap(), 3);
        assert_eq!(pin(&dir, 1).unwrap(), 3);
        std::fs::write(dir.join(FILE), "zero").unwrap();
        assert!(pin(&dir, 2).is_err());
    }
}
