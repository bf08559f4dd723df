//! The cluster transport's bytes on the wire: the handshake messages, the
//! frame header and HMAC-SHA256 (the format is described in the parent
//! module's documentation). Pure functions over byte slices, so that every
//! parser here is tested, and fuzzed, without a socket.
//!
//! Each parser is a two-step one, as in mini-redis: `check_*` looks at
//! buffered input and says whether a whole message is there (`Ok(None)`:
//! not yet, read more) without allocating; only then is it taken apart.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The first 8 bytes each side sends: the protocol and its version.
pub const MAGIC: [u8; 8] = *b"WRNCLU01";
/// The acceptor's random challenge.
pub const NONCE_LEN: usize = 16;
/// The acceptor's first message: magic and nonce.
pub const CHALLENGE_LEN: usize = MAGIC.len() + NONCE_LEN;
/// HMAC-SHA256 output.
pub const MAC_LEN: usize = 32;
/// Longest node name a hello may carry.
pub const MAX_NAME: usize = 255;
/// Longest hello: magic, u16 name length, name, MAC.
pub const MAX_HELLO: usize = MAGIC.len() + 2 + MAX_NAME + MAC_LEN;
/// The acceptor's one-byte verdict on a hello.
pub const ACCEPTED: u8 = 1;
pub const REFUSED: u8 = 0;

/// A frame's header: u32 big-endian length of kind and payload, then the kind.
pub const HEADER_LEN: usize = 5;
/// Largest value of a frame's length field (kind and payload). A peer that
/// announces more is broken or hostile, and its connection is closed before
/// a byte of the frame is buffered.
pub const MAX_FRAME: usize = 64 << 20;
/// Largest payload a frame can carry.
pub const MAX_PAYLOAD: usize = MAX_FRAME - 1;
/// Kind of the empty frame an idle outbound connection sends every second;
/// the receiver only notes that the connection is alive.
pub const KIND_HEARTBEAT: u8 = 0;

/// Why buffered input is not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The length field exceeds [`MAX_FRAME`].
    TooLarge(u32),
    /// The length field is 0: not even a kind byte.
    Empty,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes (the maximum is {MAX_FRAME})"),
            FrameError::Empty => f.write_str("frame of length 0 (no kind byte)"),
        }
    }
}

/// Whether `buf` starts with a whole frame: `Ok(Some(n))`, its size in
/// bytes (header included); `Ok(None)`, not yet. A bad length is an error
/// as soon as the 4 length bytes are in, whatever follows. Allocates nothing.
pub fn check_frame(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(len) = length_field(buf) else {
        return Ok(None);
    };
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len as usize > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let total = 4 + len as usize;
    Ok((buf.len() >= total).then_some(total))
}

/// The size of the frame `buf` starts with, once its length field is in
/// (so that a reader can make room for all of it), at most `4 + MAX_FRAME`.
pub fn declared_size(buf: &[u8]) -> Option<usize> {
    length_field(buf).map(|len| 4 + (len as usize).min(MAX_FRAME))
}

/// Kind and payload of the frame of `size` bytes at the start of `buf`, as
/// [`check_frame`] found it.
pub fn split_frame(buf: &[u8], size: usize) -> (u8, &[u8]) {
    (buf[4], &buf[HEADER_LEN..size])
}

/// Appends a frame's header; the caller appends the payload.
pub fn put_header(out: &mut Vec<u8>, kind: u8, payload_len: usize) {
    debug_assert!(payload_len <= MAX_PAYLOAD);
    out.extend_from_slice(&(payload_len as u32 + 1).to_be_bytes());
    out.push(kind);
}

fn length_field(buf: &[u8]) -> Option<u32> {
    let b: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// Why a handshake message is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not `WRNCLU01`: not a warren node, or another version.
    Magic,
    /// The node name is empty or longer than [`MAX_NAME`] bytes.
    NameLength(usize),
    /// The node name is not UTF-8.
    NameNotUtf8,
    /// The MAC does not match: the peer has another secret.
    WrongSecret,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Magic => f.write_str("bad magic (not a warren cluster node?)"),
            HandshakeError::NameLength(n) => write!(f, "node name of {n} bytes"),
            HandshakeError::NameNotUtf8 => f.write_str("node name is not UTF-8"),
            HandshakeError::WrongSecret => f.write_str("wrong cluster secret"),
        }
    }
}

/// The acceptor's challenge.
pub fn challenge(nonce: &[u8; NONCE_LEN]) -> [u8; CHALLENGE_LEN] {
    let mut out = [0; CHALLENGE_LEN];
    out[..MAGIC.len()].copy_from_slice(&MAGIC);
    out[MAGIC.len()..].copy_from_slice(nonce);
    out
}

/// The nonce of a whole challenge at the start of `buf`; `Ok(None)`: not
/// all of it yet.
pub fn check_challenge(buf: &[u8]) -> Result<Option<[u8; NONCE_LEN]>, HandshakeError> {
    check_magic(buf)?;
    let Some(nonce) = buf.get(MAGIC.len()..CHALLENGE_LEN) else {
        return Ok(None);
    };
    let mut out = [0; NONCE_LEN];
    out.copy_from_slice(nonce);
    Ok(Some(out))
}

/// Appends the connector's hello: who it is, proven by the MAC of the
/// challenge and the name under the shared secret.
pub fn put_hello(out: &mut Vec<u8>, secret: &[u8], nonce: &[u8; NONCE_LEN], name: &str) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&hmac_sha256(secret, &[nonce, name.as_bytes()]));
}

/// Whether `buf` starts with a whole hello: `Ok(Some(n))`, its size.
/// Refuses a bad magic or name length as soon as those bytes are in.
pub fn check_hello(buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
    check_magic(buf)?;
    let Some(len) = buf.get(MAGIC.len()..MAGIC.len() + 2) else {
        return Ok(None);
    };
    let len = u16::from_be_bytes([len[0], len[1]]) as usize;
    if len == 0 || len > MAX_NAME {
        return Err(HandshakeError::NameLength(len));
    }
    let total = MAGIC.len() + 2 + len + MAC_LEN;
    Ok((buf.len() >= total).then_some(total))
}

/// The node name of a whole hello of `size` bytes (from [`check_hello`])
/// if its MAC proves the same secret; the comparison takes constant time.
pub fn verify_hello<'a>(
    buf: &'a [u8],
    size: usize,
    secret: &[u8],
    nonce: &[u8; NONCE_LEN],
) -> Result<&'a str, HandshakeError> {
    let name_end = size - MAC_LEN;
    let name = &buf[MAGIC.len() + 2..name_end];
    let mac = hmac_sha256(secret, &[nonce, name]);
    if !bool::from(mac.as_slice().ct_eq(&buf[name_end..size])) {
        return Err(HandshakeError::WrongSecret);
    }
    std::str::from_utf8(name).map_err(|_| HandshakeError::NameNotUtf8)
}

/// Compares what is there of the magic, so that a stranger is refused at
/// its first bytes rather than when it has sent a whole message.
fn check_magic(buf: &[u8]) -> Result<(), HandshakeError> {
    let n = buf.len().min(MAGIC.len());
    if buf[..n] == MAGIC[..n] {
        Ok(())
    } else {
        Err(HandshakeError::Magic)
    }
}

/// HMAC-SHA256 (RFC 2104) of the concatenation of `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..MAC_LEN].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc4231() {
        // Test cases 1, 2 (split into two parts) and 6 (key longer than a block).
        let c1 = hmac_sha256(&[0x0b; 20], &[b"Hi There"]);
        assert_eq!(
            hex(&c1),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        let c2 = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex(&c2),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let c6 = hmac_sha256(
            &[0xaa; 131],
            &[b"Test Using Larger Than Block-Size Key - Hash Key First"],
        );
        assert_eq!(
            hex(&c6),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_header(&mut v, kind, payload.len());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn frame_check_on_partial_input() {
        let f = frame(7, b"hello");
        for cut in 0..f.len() {
            assert_eq!(check_frame(&f[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(check_frame(&f), Ok(Some(f.len())));
        let mut two = f.clone();
        two.extend_from_slice(&frame(0, b""));
        assert_eq!(check_frame(&two), Ok(Some(f.len())));
        assert_eq!(split_frame(&two, f.len()), (7, &b"hello"[..]));
        assert_eq!(check_frame(&two[f.len()..]), Ok(Some(HEADER_LEN)));
        assert_eq!(split_frame(&two[f.len()..], HEADER_LEN), (0, &b""[..]));
    }

    #[test]
    fn frame_check_refuses_bad_lengths() {
        let max = (MAX_FRAME as u32).to_be_bytes();
        assert_eq!(check_frame(&max), Ok(None));
        assert_eq!(declared_size(&max), Some(4 + MAX_FRAME));
        let over = (MAX_FRAME as u32 + 1).to_be_bytes();
        assert_eq!(
            check_frame(&over),
            Err(FrameError::TooLarge(MAX_FRAME as u32 + 1))
        );
        assert_eq!(check_frame(&[0xff; 4]), Err(FrameError::TooLarge(u32::MAX)));
        assert_eq!(check_frame(&[0, 0, 0, 0, 9]), Err(FrameError::Empty));
    }

    #[test]
    fn handshake_round_trip_and_refusals() {
        let nonce = [3u8; NONCE_LEN];
        let c = challenge(&nonce);
        assert_eq!(check_challenge(&c[..5]), Ok(None));
        assert_eq!(check_challenge(&c), Ok(Some(nonce)));
        assert_eq!(check_challenge(b"HTTP/1.1"), Err(HandshakeError::Magic));
        assert_eq!(check_challenge(b"WRX"), Err(HandshakeError::Magic));

        let mut hello = Vec::new();
        put_hello(&mut hello, b"secret", &nonce, "node-a");
        for cut in 0..hello.len() {
            assert_eq!(check_hello(&hello[..cut]), Ok(None), "cut at {cut}");
        }
        let n = check_hello(&hello).unwrap().unwrap();
        assert_eq!(n, hello.len());
        assert_eq!(verify_hello(&hello, n, b"secret", &nonce), Ok("node-a"));
        assert_eq!(
            verify_hello(&hello, n, b"other", &nonce),
            Err(HandshakeError::WrongSecret)
        );
        assert_eq!(
            verify_hello(&hello, n, b"secret", &[4; NONCE_LEN]),
            Err(HandshakeError::WrongSecret)
        );

        let mut long = MAGIC.to_vec();
        long.extend_from_slice(&256u16.to_be_bytes());
        assert_eq!(check_hello(&long), Err(HandshakeError::NameLength(256)));
        let mut empty = MAGIC.to_vec();
        empty.extend_from_slice(&[0, 0]);
        assert_eq!(check_hello(&empty), Err(HandshakeError::NameLength(0)));
    }
}
