//! A small deterministic mutator for the stable fuzz run
//! (`tests/fuzz_smoke.rs`) and the live fuzzer (`warren-loadgen fuzz`): bit
//! flips, random bytes, inserted and deleted runs, duplicated runs, splices
//! from another input, and "interesting" integers (0, ±1, the edges of every
//! width, both byte orders) written at random offsets. The same seed gives
//! the same mutations.

/// The broker's xorshift64* (`core::names::Rng`), seeded: small, fast,
/// good enough to pick mutations.
#[derive(Clone, Debug)]
pub struct Rng(crate::core::names::Rng);

impl Rng {
    /// A generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        Rng(crate::core::names::Rng::seeded(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

/// Values at the edges of 8, 16, 32 and 64 bits.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    7,
    8,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX - 1,
];

/// Applies one to four random mutations to `data`, never making it longer
/// than `max_len`. `others` are inputs to splice from (may be empty).
pub fn mutate(data: &mut Vec<u8>, rng: &mut Rng, others: &[Vec<u8>], max_len: usize) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        mutate_once(data, rng, others, max_len);
    }
    data.truncate(max_len);
}

fn mutate_once(data: &mut Vec<u8>, rng: &mut Rng, others: &[Vec<u8>], max_len: usize) {
    let len = data.len();
    match rng.below(10) {
        // Flip one bit.
        0 if len > 0 => {
            let at = rng.below(len);
            data[at] ^= 1 << rng.below(8);
        }
        // Set one byte.
        1 if len > 0 => {
            let at = rng.below(len);
            data[at] = rng.byte();
        }
        // Insert a short run of random bytes (or one repeated byte).
        2 if len < max_len => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16.min(max_len - len));
            let b = rng.byte();
            let repeat = rng.one_in(2);
            let run: Vec<u8> = (0..n)
                .map(|_| if repeat { b } else { rng.byte() })
                .collect();
            data.splice(at..at, run);
        }
        // Delete a run.
        3 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(32));
            data.drain(at..at + n);
        }
        // Duplicate a run in place.
        4 if len > 0 && len < max_len => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64).min(max_len - len));
            let run = data[at..at + n].to_vec();
            let to = rng.below(len + 1);
            data.splice(to..to, run);
        }
        // Splice: our head, another input's tail (or a piece of it inserted).
        5 if !others.is_empty() => {
            let other = &others[rng.below(others.len())];
            if other.is_empty() {
                return;
            }
            let from = rng.below(other.len());
            if rng.one_in(2) {
                data.truncate(rng.below(len + 1));
                data.extend_from_slice(&other[from..]);
            } else {
                let n = 1 + rng.below((other.len() - from).min(64));
                let at = rng.below(len + 1);
                data.splice(at..at, other[from..from + n].iter().copied());
            }
        }
        // Truncate.
        6 if len > 0 => {
            data.truncate(rng.below(len));
        }
        // An interesting integer, 1, 2, 4 or 8 bytes, either byte order,
        // sometimes nudged by one.
        _ if len > 0 => {
            let width = 1 << rng.below(4);
            let mut v = INTERESTING[rng.below(INTERESTING.len())];
            match rng.below(4) {
                0 => v = v.wrapping_add(1),
                1 => v = v.wrapping_sub(1),
                _ => {}
            }
            let src = if rng.one_in(2) {
                v.to_be_bytes()[8 - width..].to_vec()
            } else {
                v.to_le_bytes()[..width].to_vec()
            };
            let at = rng.below(len);
            let n = width.min(len - at);
            data[at..at + n].copy_from_slice(&src[..n]);
        }
        _ => {
            if len < max_len {
                data.push(rng.byte());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_mutations_and_bounded() {
        let seed = vec![1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        let run = |s: u64| {
            let mut rng = Rng::new(s);
            let mut out = Vec::new();
            for _ in 0..200 {
                let mut d = seed.clone();
                mutate(&mut d, &mut rng, std::slice::from_ref(&seed), 32);
                assert!(d.len() <= 32);
                out.push(d);
            }
            out
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
