//! The fuzz targets of `warren::fuzz` on stable, as CI runs them: for each
//! target, its seeds, every file under `fuzz/regressions/<target>/` (inputs
//! that once crashed), then a time-boxed run of the deterministic mutator
//! (`WARREN_FUZZ_SECS` seconds per target, default 3). Any panic fails the
//! test; the input is saved under the target directory and named in the
//! failure. The long runs are cargo-fuzz's (`scripts/fuzz.sh`).
//!
//! `WARREN_FUZZ_WRITE_SEEDS=<dir>` with `--ignored write_seeds` writes the
//! seeds as `<dir>/<target>/seed-NNN` (what `scripts/fuzz.sh` does).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use warren::fuzz::mutate::{mutate, Rng};
use warren::fuzz::{seeds::seeds, target, TARGETS};

/// Longest mutated input (libFuzzer's default `-max_len` is 4096 too).
const MAX_LEN: usize = 4096;
/// Mutated inputs kept to mutate further.
const POOL_MAX: usize = 512;

fn secs_per_target() -> Duration {
    let secs = std::env::var("WARREN_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

fn regressions(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

/// Runs `input`; on a panic saves it and fails naming it.
fn run_one(name: &str, input: &[u8], what: &str) {
    let t = target(name).expect("a target");
    if catch_unwind(AssertUnwindSafe(|| t(input))).is_ok() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-smoke-crashes");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{name}-{:016x}", fnv(input)));
    let _ = std::fs::write(&path, input);
    let hex: String = input.iter().take(256).map(|b| format!("{b:02x}")).collect();
    panic!(
        "fuzz target {name} panicked on {what}; input saved as {} ({} bytes: {hex})",
        path.display(),
        input.len()
    );
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn smoke(name: &str) {
    let seeds = seeds(name);
    assert!(!seeds.is_empty(), "no seeds for {name}");
    for (i, s) in seeds.iter().enumerate() {
        run_one(name, s, &format!("seed {i}"));
    }
    let mut pool = seeds;
    for (path, bytes) in regressions(name) {
        run_one(name, &bytes, &path.display().to_string());
        pool.push(bytes);
    }
    let corpus = pool.clone();
    let mut rng = Rng::new(fnv(name.as_bytes()));
    let deadline = Instant::now() + secs_per_target();
    let mut runs = 0u64;
    while runs % 64 != 0 || Instant::now() < deadline {
        let mut input = pool[rng.below(pool.len())].clone();
        mutate(&mut input, &mut rng, &corpus, MAX_LEN);
        run_one(name, &input, &format!("mutation {runs}"));
        runs += 1;
        if rng.one_in(8) {
            if pool.len() < POOL_MAX {
                pool.push(input);
            } else if corpus.len() < POOL_MAX {
                let at = corpus.len() + rng.below(POOL_MAX - corpus.len());
                pool[at] = input;
            }
        }
    }
    eprintln!("fuzz smoke {name}: {runs} mutated inputs");
}

macro_rules! smoke_tests {
    ($($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                smoke(stringify!($name));
            }
        )*

        #[test]
        fn every_target_has_a_smoke_test() {
            let tested = [$(stringify!($name)),*];
            for (name, _) in TARGETS {
                assert!(tested.contains(name), "no smoke test for {name}");
            }
        }
    };
}

smoke_tests!(
    frame,
    method,
    table,
    content_header,
    defs_log,
    segment_record,
    segment_scan,
    amqp10_frame,
    amqp10_value,
    amqp10_message,
    stream_scan,
    stream_offsets
);

/// Writes the seeds for cargo-fuzz (see the module doc).
#[test]
#[ignore]
fn write_seeds() {
    let root = PathBuf::from(std::env::var("WARREN_FUZZ_WRITE_SEEDS").expect("a directory"));
    for (name, _) in TARGETS {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("seed directory");
        for (i, s) in seeds(name).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), s).expect("seed file");
        }
    }
}
