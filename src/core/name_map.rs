//! Maps keyed by names (exchanges, queues, routing keys) that the publish path
//! looks up once or twice per message, by the bytes the message carries: no
//! UTF-8 check (a name that is not UTF-8 was never declared, so it is simply
//! not found) and FxHash instead of SipHash (SipHash and the UTF-8 checks were
//! ~6% of a shard's time at full load).
//!
//! FxHash is not keyed: someone who may declare names could choose ones that
//! collide. That costs them lookups in their own vhost's maps, as it would in
//! RabbitMQ (whose ETS tables hash names with the unkeyed `phash2`).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from names (as bytes) to `V`.
pub type NameMap<V> = HashMap<Box<[u8]>, V, BuildHasherDefault<NameHasher>>;

/// FxHash (rustc's hasher): a rotate, xor and multiply per 8 bytes.
#[derive(Default, Clone, Copy)]
pub struct NameHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl NameHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for NameHasher {
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
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
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
