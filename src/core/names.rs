//! Server-generated names: `amq.gen-…` queues and `amq.ctag-…` consumer tags,
//! each with 22 characters of URL-safe base64 of 128 random bits, as RabbitMQ.

/// xorshift64* — names need to be unique, not unpredictable.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A reproducible generator for `seed` (any value, 0 included): the
    /// fuzzers' mutations. splitmix64 of the seed, so nearby seeds give
    /// unrelated streams.
    pub fn seeded(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn new(salt: u64) -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let addr = &salt as *const u64 as u64;
        Rng((t ^ addr.rotate_left(17) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `prefix` followed by 22 base64url characters.
    pub fn name(&mut self, prefix: &str) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bits = [self.next_u64(), self.next_u64()];
        let mut s = String::with_capacity(prefix.len() + 22);
        s.push_str(prefix);
        for i in 0..22 {
            let w = &mut bits[i / 11];
            s.push(ALPHABET[(*w & 63) as usize] as char);
            *w >>= 6;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_rabbitmq_shape_and_differ() {
        let mut r = Rng::new(7);
        let a = r.name("amq.gen-");
        let b = r.name("amq.gen-");
        assert_eq!(a.len(), 30);
        assert!(a.starts_with("amq.gen-"));
        assert_ne!(a, b);
        assert!(a[8..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
