//! Maps keyed by names (exchanges, queues, routing keys) that the publish path
//! looks up once or twice per message, by the bytes the message carries: no
//! UTF-8 check (a name that is not UTF-8 was never declared, so it is simply
//! not found) and FxHash instead of SipHash (SipHash and the UTF-8 checks were
//! ~6% of a shard's time at full load).
//!
//! Names are chosen by clients, so the hash starts from a seed drawn once per
//! process (`NameHashing`): which names collide is not known in advance.
//! Publishing alone cannot flood a map (a lookup walks one chain); declaring
//! many colliding names would need the seed. [`FxHasher`] unseeded is also
//! the hasher of the topic trie's scratch sets, whose keys the broker picks.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// A map from names (as bytes) to `V`.
pub type NameMap<V> = HashMap<Box<[u8]>, V, NameHashing>;

/// FxHash (rustc's hasher): a rotate, xor and multiply per 8 bytes.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64)
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64)
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64)
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i)
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`FxHasher`]s that start from the process's seed.
#[derive(Clone, Copy)]
pub struct NameHashing(u64);

impl Default for NameHashing {
    fn default() -> NameHashing {
        static SEED: OnceLock<u64> = OnceLock::new();
        NameHashing(*SEED.get_or_init(|| {
            // std's RandomState draws its keys from the OS.
            std::collections::hash_map::RandomState::new().hash_one(0u64)
        }))
    }
}

impl BuildHasher for NameHashing {
    type Hasher = FxHasher;

    #[inline]
    fn build_hasher(&self) -> FxHasher {
        FxHasher(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_bytes() {
        let mut m: NameMap<u32> = NameMap::default();
        for (i, name) in ["", "a", "amq.direct", "a-much-longer-queue-name-1234567"]
            .iter()
            .enumerate()
        {
            m.insert(name.as_bytes().into(), i as u32);
        }
        assert_eq!(m.get(&b"amq.direct"[..]), Some(&2));
        assert_eq!(m.get(&b"a-much-longer-queue-name-1234567"[..]), Some(&3));
        assert_eq!(m.get(&b""[..]), Some(&0));
        assert_eq!(m.get(&b"amq.direc"[..]), None);
        assert_eq!(m.get(&[0xff, 0xfe][..]), None);
    }
}
