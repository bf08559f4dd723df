//! RabbitMQ's salted password hashes, as the internal auth backend stores them
//! (rabbit_password, rabbit_password_hashing_sha256/_sha512/_md5,
//! rabbit_auth_backend_internal).
//!
//! A stored hash is `salt ‖ H(salt ‖ UTF-8 password)`, with a 4-byte random
//! salt; definitions files carry it base64-encoded in `password_hash`, and the
//! module name in `hashing_algorithm`. So the hash RabbitMQ documents for the
//! password `test12` and the salt `908DC60A` is
//! `kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR` (SHA-256).
//!
//! An **empty** hash means the user has no password: RabbitMQ creates users
//! without one for x509 (EXTERNAL) or external-backend logins, and
//! `rabbitmqctl clear_password` stores `<<"">>`. Its login check only compares
//! when the stored value splits into `<<Salt:4/binary, Hash/binary>>`, so no
//! password ever matches an empty hash. A blank password is refused before
//! any hashing ("attempted to log in with a blank password"); [`PasswordHash::verify`]
//! refuses it too.

use base64::Engine as _;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Bytes of salt in front of every digest (`rabbit_password:generate_salt/0`:
/// a random 32-bit integer).
pub const SALT_LEN: usize = 4;

/// A password hashing function RabbitMQ knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlgo {
    /// `rabbit_password_hashing_sha256`, RabbitMQ's default since 3.6.0.
    Sha256,
    /// `rabbit_password_hashing_sha512`.
    Sha512,
    /// `rabbit_password_hashing_md5`: users created before 3.6.0 (a user
    /// record without an algorithm is taken to be MD5).
    Md5,
}

impl HashAlgo {
    /// The algorithm of a `hashing_algorithm` value: RabbitMQ's module names
    /// (`rabbit_password_hashing_sha256` …) or the short names `sha256`,
    /// `sha512`, `md5`. Anything else (a custom module) is `None`.
    pub fn from_rabbit(name: &str) -> Option<HashAlgo> {
        match name {
            "rabbit_password_hashing_sha256" | "sha256" => Some(HashAlgo::Sha256),
            "rabbit_password_hashing_sha512" | "sha512" => Some(HashAlgo::Sha512),
            "rabbit_password_hashing_md5" | "md5" => Some(HashAlgo::Md5),
            _ => None,
        }
    }

    /// The module name RabbitMQ exports in `hashing_algorithm`.
    pub fn rabbit_name(self) -> &'static str {
        match self {
            HashAlgo::Sha256 => "rabbit_password_hashing_sha256",
            HashAlgo::Sha512 => "rabbit_password_hashing_sha512",
            HashAlgo::Md5 => "rabbit_password_hashing_md5",
        }
    }

    /// Bytes of digest this function produces (32, 64 or 16).
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgo::Sha256 => 32,
            HashAlgo::Sha512 => 64,
            HashAlgo::Md5 => 16,
        }
    }

    /// `H(salt ‖ password)` (`rabbit_password:salted_hash/3`).
    pub fn salted_digest(self, salt: &[u8], password: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(salt: &[u8], password: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update(salt);
            d.update(password);
            d.finalize().to_vec()
        }
        match self {
            HashAlgo::Sha256 => run::<Sha256>(salt, password),
            HashAlgo::Sha512 => run::<Sha512>(salt, password),
            HashAlgo::Md5 => run::<Md5>(salt, password),
        }
    }
}

/// A user's stored password: the algorithm and `salt ‖ digest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordHash {
    pub algo: HashAlgo,
    /// `salt ‖ digest`; empty = no password can log in.
    pub hash: Vec<u8>,
}

impl PasswordHash {
    /// Hashes `password` with SHA-256 (RabbitMQ's default) and a fresh random
    /// salt.
    pub fn new(password: &str) -> PasswordHash {
        PasswordHash::with_salt(HashAlgo::Sha256, random_salt(), password)
    }

    /// Hashes `password` with `algo` and a random salt.
    pub fn new_with(algo: HashAlgo, password: &str) -> PasswordHash {
        PasswordHash::with_salt(algo, random_salt(), password)
    }

    /// Hashes `password` with a given salt (tests, known vectors).
    pub fn with_salt(algo: HashAlgo, salt: [u8; SALT_LEN], password: &str) -> PasswordHash {
        let mut hash = Vec::with_capacity(SALT_LEN + algo.digest_len());
        hash.extend_from_slice(&salt);
        hash.extend_from_slice(&algo.salted_digest(&salt, password.as_bytes()));
        PasswordHash { algo, hash }
    }

    /// Reads a `password_hash` value of a definitions file. `""` is the empty
    /// hash (no password login). Otherwise the value must be standard base64
    /// (padding optional) of exactly `4 + digest` bytes for `algo`.
    ///
    /// RabbitMQ itself stores any decoded value and merely never matches a
    /// malformed one at login; refusing it here tells the operator at import
    /// instead of leaving a user that can never log in.
    pub fn from_base64(algo: HashAlgo, b64: &str) -> Result<PasswordHash, String> {
        let text = b64.trim();
        if text.is_empty() {
            return Ok(PasswordHash::none());
        }
        let hash = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|e| format!("password_hash is not valid base64: {e}"))?;
        let want = SALT_LEN + algo.digest_len();
        if hash.len() != want {
            return Err(format!(
                "password_hash decodes to {} bytes, but {} needs {} (4 bytes of salt + {} of digest)",
                hash.len(),
                algo.rabbit_name(),
                want,
                algo.digest_len()
            ));
        }
        Ok(PasswordHash { algo, hash })
    }

    /// The `password_hash` value of a definitions file (standard base64 with
    /// padding; `""` for the empty hash).
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.hash)
    }

    /// The empty hash: the user exists but no password logs it in
    /// (certificate or external-backend users; `clear_password`).
    pub fn none() -> PasswordHash {
        PasswordHash {
            algo: HashAlgo::Sha256,
            hash: Vec::new(),
        }
    }

    /// Whether this is the empty hash.
    pub fn is_none(&self) -> bool {
        self.hash.is_empty()
    }

    /// Whether `password` is this user's password. The digests are compared in
    /// constant time. False for the empty hash, for a blank password (RabbitMQ
    /// refuses those before hashing) and for a stored value too short to hold
    /// a salt.
    pub fn verify(&self, password: &str) -> bool {
        if password.is_empty() || self.hash.len() < SALT_LEN {
            return false;
        }
        let (salt, digest) = self.hash.split_at(SALT_LEN);
        let computed = self.algo.salted_digest(salt, password.as_bytes());
        // ct_eq on slices of different lengths is false (in constant time
        // with respect to the contents).
        computed.as_slice().ct_eq(digest).into()
    }
}

/// Four random bytes from the operating system.
fn random_salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).expect("the operating system's random source failed");
    salt
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Vectors computed by hand with Python's hashlib:
    /// `base64(salt + hashlib.new(algo, salt + pw.encode()).digest())`.
    /// The first is the example of RabbitMQ's own documentation.
    const VECTORS: &[(HashAlgo, [u8; 4], &str, &str)] = &[
        (HashAlgo::Sha256, [0x90, 0x8D, 0xC6, 0x0A], "test12",
         "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"),
        (HashAlgo::Sha256, [1, 2, 3, 4], "guest",
         "AQIDBEMMOXwY6PKx/JKP9PAqfsb4ozuD0Ta3pxxa9gEYBMmD"),
        (HashAlgo::Sha256, [0xde, 0xad, 0xbe, 0xef], "pässwörd",
         "3q2+72IetiGe+jtveBW6kVa/DWDP+1xZ5pnq7kQO6le3GBXB"),
        (HashAlgo::Sha512, [0x90, 0x8D, 0xC6, 0x0A], "test12",
         "kI3GChuNuIYf8lRbCCxZjgjKwsY19ns6+uFO0zcXRBGA/XGJPYD8OWMy7EB8TaOmAzjP2azv84GbINYwX2cDWb4DHnc="),
        (HashAlgo::Sha512, [0xde, 0xad, 0xbe, 0xef], "pässwörd",
         "3q2+72iqmxC4gufJTsplheY4bhEj5qMn4kSo4TJiQ+rG8ki5xck9fgUm3UhlVOSRE5mvzlpanU0X/ZCxCKy9OgmX1kY="),
        (HashAlgo::Md5, [0x90, 0x8D, 0xC6, 0x0A], "test12", "kI3GChNpte2FApYFXScl+0dIluk="),
        (HashAlgo::Md5, [1, 2, 3, 4], "guest", "AQIDBH/JkOf0oGZ5yhQgSBXkHS0="),
    ];

    #[test]
    fn known_vectors() {
        for &(algo, salt, pw, b64) in VECTORS {
            let h = PasswordHash::with_salt(algo, salt, pw);
            assert_eq!(h.to_base64(), b64, "{algo:?} {pw}");
            let back = PasswordHash::from_base64(algo, b64).unwrap();
            assert_eq!(back, h);
            assert!(back.verify(pw));
            assert!(!back.verify("wrong"));
            assert!(!back.verify(&format!("{pw} ")));
        }
    }

    #[test]
    fn algorithm_names() {
        for algo in [HashAlgo::Sha256, HashAlgo::Sha512, HashAlgo::Md5] {
            assert_eq!(HashAlgo::from_rabbit(algo.rabbit_name()), Some(algo));
            assert_eq!(algo.salted_digest(b"salt", b"pw").len(), algo.digest_len());
        }
        assert_eq!(HashAlgo::from_rabbit("sha256"), Some(HashAlgo::Sha256));
        assert_eq!(HashAlgo::from_rabbit("sha512"), Some(HashAlgo::Sha512));
        assert_eq!(HashAlgo::from_rabbit("md5"), Some(HashAlgo::Md5));
        assert_eq!(HashAlgo::from_rabbit("my_custom_hashing"), None);
        assert_eq!(HashAlgo::from_rabbit(""), None);
    }

    #[test]
    fn the_algorithm_matters() {
        let b64 = "kI3GChNpte2FApYFXScl+0dIluk="; // md5 of test12
        let md5 = PasswordHash::from_base64(HashAlgo::Md5, b64).unwrap();
        assert!(md5.verify("test12"));
        // The same bytes read as SHA-256 have the wrong length.
        assert!(PasswordHash::from_base64(HashAlgo::Sha256, b64).is_err());
        let forced = PasswordHash {
            algo: HashAlgo::Sha256,
            hash: md5.hash.clone(),
        };
        assert!(!forced.verify("test12"));
    }

    #[test]
    fn empty_hash_never_logs_in() {
        let none = PasswordHash::none();
        assert!(none.is_none());
        assert_eq!(none.to_base64(), "");
        assert!(!none.verify("guest"));
        assert!(!none.verify(""));
        assert_eq!(
            PasswordHash::from_base64(HashAlgo::Sha256, "").unwrap(),
            none
        );
        assert!(PasswordHash::from_base64(HashAlgo::Md5, "  ")
            .unwrap()
            .is_none());
        // A stored value too short for a salt (RabbitMQ: no match).
        let short = PasswordHash {
            algo: HashAlgo::Sha256,
            hash: vec![1, 2],
        };
        assert!(!short.verify("x"));
        // Salt only, no digest.
        let salt_only = PasswordHash {
            algo: HashAlgo::Sha256,
            hash: vec![1, 2, 3, 4],
        };
        assert!(!salt_only.verify("x"));
    }

    #[test]
    fn blank_password_is_refused() {
        let h = PasswordHash::with_salt(HashAlgo::Sha256, [9, 9, 9, 9], "");
        assert!(!h.verify(""));
    }

    #[test]
    fn bad_base64_and_lengths() {
        let e = PasswordHash::from_base64(HashAlgo::Sha256, "not base64!").unwrap_err();
        assert!(e.contains("base64"), "{e}");
        let e = PasswordHash::from_base64(HashAlgo::Sha256, "AQIDBA==").unwrap_err();
        assert!(e.contains("4 bytes") && e.contains("36"), "{e}");
        // Unpadded input is accepted.
        let b64 = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR";
        let h = PasswordHash::from_base64(HashAlgo::Sha256, b64).unwrap();
        let unpadded =
            PasswordHash::from_base64(HashAlgo::Md5, "kI3GChNpte2FApYFXScl+0dIluk").unwrap();
        assert!(h.verify("test12") && unpadded.verify("test12"));
    }

    #[test]
    fn new_uses_sha256_and_random_salts() {
        let a = PasswordHash::new("guest");
        let b = PasswordHash::new("guest");
        assert_eq!(a.algo, HashAlgo::Sha256);
        assert_eq!(a.hash.len(), 36);
        assert!(a.verify("guest") && b.verify("guest"));
        assert_ne!(a.hash, b.hash, "two salts collided (1 in 2^32)");
        let m = PasswordHash::new_with(HashAlgo::Sha512, "guest");
        assert_eq!(m.hash.len(), 68);
        assert!(m.verify("guest"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn new_verifies_its_own_password(p in "\\PC{1,40}", other in "\\PC{1,40}") {
            let h = PasswordHash::new(&p);
            prop_assert!(h.verify(&p));
            if other != p {
                prop_assert!(!h.verify(&other));
            }
            let back = PasswordHash::from_base64(h.algo, &h.to_base64()).unwrap();
            prop_assert_eq!(back, h);
        }

        #[test]
        fn from_base64_never_panics(s in "\\PC{0,120}", algo in 0..3u8) {
            let algo = [HashAlgo::Sha256, HashAlgo::Sha512, HashAlgo::Md5][algo as usize];
            let _ = PasswordHash::from_base64(algo, &s);
        }

        #[test]
        fn from_base64_never_panics_on_base64ish(s in "[A-Za-z0-9+/=]{0,100}") {
            if let Ok(h) = PasswordHash::from_base64(HashAlgo::Sha256, &s) {
                prop_assert!(h.hash.is_empty() || h.hash.len() == 36);
            }
        }
    }
}
