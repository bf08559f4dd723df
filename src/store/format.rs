//! The data format a data directory was written in (`<data_dir>/format`):
//! a broker refuses to start on a directory written in a format it does
//! not read (say, by a newer warren), with one line telling the operator
//! what to do, instead of misreading it. A directory from before the file
//! existed (it has a `definitions.log`) is format 1.

use std::io;
use std::path::Path;

const FILE: &str = "format";
/// The format this build writes and reads.
pub const FORMAT: u32 = 1;

/// Checks (or, for a new data directory, records) the directory's format.
pub fn check(data_dir: &Path) -> io::Result<()> {
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let found = s
                .trim()
                .strip_prefix("warren data format ")
                .and_then(|n| n.parse::<u32>().ok());
            match found {
                Some(FORMAT) => Ok(()),
                Some(n) => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "data directory {} is in data format {n}, and this warren reads format {FORMAT}: \
                         run the warren that wrote it, or start this one on another --data-dir",
                        data_dir.display()
                    ),
                )),
                None => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is not a warren data format file ({:?}): is {} a warren data directory?",
                        path.display(),
                        s.trim(),
                        data_dir.display()
                    ),
                )),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            std::fs::write(&path, format!("warren data format {FORMAT}\n"))
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_then_checked() {
        let d = crate::store::segments::test_dir("format");
        check(d.path()).unwrap();
        check(d.path()).unwrap();
        std::fs::write(d.path().join(FILE), "warren data format 7\n").unwrap();
        let e = check(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("data format 7") && e.contains("reads format 1"),
            "{e}"
        );
        std::fs::write(d.path().join(FILE), "hello").unwrap();
        assert!(check(d.path()).is_err());
    }
}
