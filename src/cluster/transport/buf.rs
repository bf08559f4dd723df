//! The transport's two buffers: [`ReadBuf`], an inbound connection's input,
//! from which frames are handed out as borrowed slices (no allocation per
//! frame); and [`OutBuf`], a peer's encoded output, which outlives the
//! connections to that peer so that frames sent while it is connecting or
//! reconnecting go out once it is up.

use super::wire::{self, FrameError, HEADER_LEN, MAX_FRAME, MAX_PAYLOAD};
use std::io::{self, Read, Write};

/// Input of one connection: `buf[lo..hi]` is read and not yet parsed.
/// `buf` is kept at its full length (initialised once), so a read needs no
/// zeroing; it grows to fit a frame larger than it and shrinks back once
/// that frame is consumed.
pub struct ReadBuf {
    buf: Vec<u8>,
    lo: usize,
    hi: usize,
    /// The size `buf` is grown to before reading, and shrunk back to.
    target: usize,
}

/// Smallest buffer: room for a frame header, so that a frame's declared
/// size is always seen and made room for.
const MIN_TARGET: usize = 16;

/// What one [`ReadBuf::fill`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filled {
    /// This many bytes were read.
    Read(usize),
    /// Nothing to read now (`WouldBlock`).
    Drained,
    /// The peer closed its side.
    Closed,
}

impl ReadBuf {
    /// A buffer that allocates `target` bytes at its first read.
    pub fn new(target: usize) -> ReadBuf {
        ReadBuf {
            buf: Vec::new(),
            lo: 0,
            hi: 0,
            target: target.max(MIN_TARGET),
        }
    }

    /// Changes the size the buffer keeps (a connection past its handshake
    /// reads in larger chunks than one in it).
    pub fn set_target(&mut self, target: usize) {
        self.target = target.max(MIN_TARGET);
    }

    /// The unparsed input.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.lo..self.hi]
    }

    /// Drops the first `n` unparsed bytes (a handshake message).
    pub fn consume(&mut self, n: usize) {
        self.lo = (self.lo + n).min(self.hi);
        self.settle();
    }

    /// One `read` of at most `max` bytes (at least 1) into the free space
    /// after making room for the frame being received.
    pub fn fill(&mut self, r: &mut impl Read, max: usize) -> io::Result<Filled> {
        self.make_room();
        let end = self.buf.len().min(self.hi + max.max(1));
        if end == self.hi {
            // Only when a caller reads again without taking what it read: a
            // read into no room would look like the peer closing.
            return Err(io::Error::other("input buffer full"));
        }
        loop {
            return match r.read(&mut self.buf[self.hi..end]) {
                Ok(0) => Ok(Filled::Closed),
                Ok(n) => {
                    self.hi += n;
                    Ok(Filled::Read(n))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Filled::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// The next whole frame, as kind and payload borrowed from the buffer;
    /// `Ok(None)` when the rest is incomplete. Allocates nothing.
    pub fn next_frame(&mut self) -> Result<Option<(u8, &[u8])>, FrameError> {
        let Some(size) = wire::check_frame(&self.buf[self.lo..self.hi])? else {
            self.settle();
            return Ok(None);
        };
        let start = self.lo;
        self.lo += size;
        Ok(Some(wire::split_frame(&self.buf[start..], size)))
    }

    /// Moves the unparsed tail to the front when the buffer is full, and
    /// grows it when the frame being received does not fit.
    fn make_room(&mut self) {
        let want = wire::declared_size(self.data())
            .unwrap_or(0)
            .max(self.target);
        if self.buf.len() < want {
            // A fresh zeroed allocation (calloc, untouched pages) rather
            // than `resize`, which would write every new byte.
            let mut grown = vec![0; want];
            grown[..self.hi - self.lo].copy_from_slice(self.data());
            self.buf = grown;
            self.hi -= self.lo;
            self.lo = 0;
        } else if self.hi == self.buf.len() && self.lo > 0 {
            self.buf.copy_within(self.lo..self.hi, 0);
            self.hi -= self.lo;
            self.lo = 0;
        }
    }

    /// Rewinds an empty buffer, so that the next read starts at the front.
    fn settle(&mut self) {
        if self.lo == self.hi {
            self.lo = 0;
            self.hi = 0;
        }
    }

    /// Gives back the memory a large frame took, once the buffer is empty.
    /// Called at a tick, not after each frame: a peer that sends frames
    /// larger than the target one after another keeps its buffer rather
    /// than allocating (and faulting in) one per frame.
    pub fn shrink_if_idle(&mut self) {
        if self.lo == self.hi && self.buf.len() > self.target {
            self.buf = Vec::new();
            self.lo = 0;
            self.hi = 0;
        }
    }
}

/// A peer's output: whole frames, encoded back to back. `buf[..sent]` went
/// to the current connection. `buf[0]` always starts a frame, so that when
/// a connection is lost the frame it was in the middle of can be skipped
/// and the rest sent on the next one.
#[derive(Default)]
pub struct OutBuf {
    buf: Vec<u8>,
    sent: usize,
}

/// Written bytes are dropped from the front once this many have piled up
/// (and they are at least half the buffer), so that a buffer that never
/// empties does not grow without end, and a compaction moves little.
const COMPACT_AT: usize = 1 << 20;

impl OutBuf {
    /// Bytes buffered and not yet written.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Appends one frame.
    pub fn push(&mut self, kind: u8, payload: &[u8]) {
        wire::put_header(&mut self.buf, kind, payload.len());
        self.buf.extend_from_slice(payload);
    }

    /// A writer that appends one frame whose payload the caller encodes.
    pub fn writer(&mut self, kind: u8) -> FrameWriter<'_> {
        let start = self.buf.len();
        wire::put_header(&mut self.buf, kind, 0);
        FrameWriter {
            buf: &mut self.buf,
            start,
        }
    }

    /// Writes until everything is written or `WouldBlock`. `Ok(true)`:
    /// bytes were written.
    pub fn write_to(&mut self, w: &mut impl Write) -> io::Result<bool> {
        let mut wrote = false;
        while self.sent < self.buf.len() {
            match w.write(&self.buf[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    wrote = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
        } else if self.sent >= COMPACT_AT && self.sent >= self.buf.len() / 2 {
            let cut = self.boundary(false);
            self.buf.drain(..cut);
            self.sent -= cut;
        }
        Ok(wrote)
    }

    /// The connection was lost: what it took is gone (or arrived; nobody
    /// knows), and so is the rest of a frame it took part of. Whole frames
    /// after that stay for the next connection.
    pub fn connection_lost(&mut self) {
        let cut = self.boundary(true);
        self.buf.drain(..cut);
        self.sent = 0;
    }

    /// Gives back a large buffer's memory once it is empty.
    pub fn shrink_if_idle(&mut self, keep: usize) {
        if self.buf.is_empty() && self.buf.capacity() > keep {
            self.buf = Vec::new();
        }
    }

    /// The frame boundary at or before `sent` (`after` false), or at or
    /// after it (`after` true), walking the headers from `buf[0]`. The walk
    /// covers only bytes that are then dropped, so each frame is walked
    /// over once.
    fn boundary(&self, after: bool) -> usize {
        let mut at = 0;
        while at < self.sent {
            // Our own headers: the length is at most MAX_FRAME.
            let Some(size) = wire::declared_size(&self.buf[at..]) else {
                break;
            };
            if at + size > self.sent && !after {
                break;
            }
            at += size;
        }
        at.min(self.buf.len())
    }
}

/// One frame being encoded straight into a peer's [`OutBuf`]. The length
/// is written when the writer is dropped; a payload over [`MAX_PAYLOAD`]
/// drops the whole frame instead (a bug in the caller: it is logged).
pub struct FrameWriter<'a> {
    buf: &'a mut Vec<u8>,
    /// Where this frame's header starts.
    start: usize,
}

impl FrameWriter<'_> {
    /// Appends bytes to the payload.
    pub fn put(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn put_u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn put_u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    pub fn put_u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    pub fn put_u64(&mut self, v: u64) {
        self.put(&v.to_be_bytes());
    }

    /// Reserves room for `additional` more payload bytes.
    pub fn reserve(&mut self, additional: usize) {
        self.buf.reserve(additional);
    }

    /// The payload's length so far.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start - HEADER_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the frame: nothing of it is sent.
    pub fn cancel(self) {
        self.buf.truncate(self.start);
        std::mem::forget(self);
    }
}

impl Write for FrameWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.put(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for FrameWriter<'_> {
    fn drop(&mut self) {
        let len = self.len();
        if len > MAX_PAYLOAD {
            log::error!("cluster: dropped a frame of {len} bytes (the maximum is {MAX_FRAME})");
            self.buf.truncate(self.start);
            return;
        }
        let field = (len as u32 + 1).to_be_bytes();
        self.buf[self.start..self.start + 4].copy_from_slice(&field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: a seeded generator, so a failure repeats.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Hands out its bytes in reads of random sizes, with `WouldBlock` in between.
    struct Chopped<'a> {
        data: &'a [u8],
        rng: Rng,
    }
    impl Read for Chopped<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.rng.below(4) == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = out.len().min(self.data.len()).min(1 + self.rng.below(3000));
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Random frames (mostly small, some spanning many reads) encoded by
    /// `OutBuf` come out of `ReadBuf` equal and in order, whatever the split.
    #[test]
    fn frames_survive_random_splits() {
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut frames = Vec::new();
            let mut out = OutBuf::default();
            for i in 0..300 {
                let len = match rng.below(20) {
                    0 => rng.below(300_000),
                    1 => 0,
                    _ => rng.below(200),
                };
                let payload: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
                let kind = rng.below(256) as u8;
                if i % 2 == 0 {
                    out.push(kind, &payload);
                } else {
                    let mut w = out.writer(kind);
                    w.put(&payload);
                }
                frames.push((kind, payload));
            }
            let mut wire = Vec::new();
            out.write_to(&mut wire).unwrap();
            let mut src = Chopped {
                data: &wire,
                rng: Rng(seed),
            };
            let mut rbuf = ReadBuf::new(1 + rng.below(70_000));
            let mut got = Vec::new();
            loop {
                match rbuf.fill(&mut src, 1 + rng.below(100_000)).unwrap() {
                    Filled::Closed => break,
                    Filled::Drained | Filled::Read(_) => {}
                }
                while let Some((kind, payload)) = rbuf.next_frame().unwrap() {
                    got.push((kind, payload.to_vec()));
                }
            }
            assert_eq!(rbuf.data(), b"", "seed {seed}");
            assert!(got == frames, "seed {seed}: frames differ");
        }
    }

    /// Random bytes never make the parser panic, and a frame it finds
    /// lies within the buffer.
    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x1234_5678);
        for _ in 0..5_000 {
            let len = rng.below(64);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if rng.below(2) == 0 && len >= 4 {
                // A plausible small length, so that whole frames occur too.
                bytes[..3].fill(0);
            }
            if let Ok(Some(n)) = wire::check_frame(&bytes) {
                assert!((HEADER_LEN..=bytes.len()).contains(&n));
            }
            let mut rbuf = ReadBuf::new(1 + rng.below(40));
            let mut src = Chopped {
                data: &bytes,
                rng: Rng(rng.next() | 1),
            };
            'read: loop {
                match rbuf.fill(&mut src, 1 + rng.below(64)).unwrap() {
                    Filled::Closed => break,
                    Filled::Drained | Filled::Read(_) => {}
                }
                loop {
                    match rbuf.next_frame() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'read,
                    }
                }
            }
        }
    }

    /// A short writer: takes a random number of bytes, or blocks.
    struct Trickle {
        got: Vec<u8>,
        rng: Rng,
    }
    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.rng.below(3) == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(1 + self.rng.below(5000));
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// After a lost connection, the next one starts at a frame boundary:
    /// what it receives parses into a suffix of the frames, each whole.
    #[test]
    fn lost_connection_resumes_at_a_frame_boundary() {
        let mut rng = Rng(99);
        for round in 0..200 {
            let mut out = OutBuf::default();
            let frames: Vec<Vec<u8>> = (0..50)
                .map(|i| vec![i as u8; rng.below(if round % 10 == 0 { 400_000 } else { 900 })])
                .collect();
            for f in &frames {
                out.push(1, f);
            }
            let mut first = Trickle {
                got: Vec::new(),
                rng: Rng(round + 1),
            };
            for _ in 0..rng.below(8) {
                out.write_to(&mut first).unwrap();
            }
            out.connection_lost();
            let mut second = Trickle {
                got: Vec::new(),
                rng: Rng(round + 7),
            };
            while out.pending() > 0 {
                out.write_to(&mut second).unwrap();
            }
            let mut rest = &second.got[..];
            let mut got = Vec::new();
            while let Some(n) = wire::check_frame(rest).unwrap() {
                got.push(rest[HEADER_LEN..n].to_vec());
                rest = &rest[n..];
            }
            assert!(rest.is_empty(), "round {round}: a partial frame");
            assert!(frames.ends_with(&got), "round {round}: not a suffix");
        }
    }

    #[test]
    fn frame_writer_patches_length_and_refuses_oversize() {
        let mut out = OutBuf::default();
        {
            let mut w = out.writer(9);
            w.put_u32(7);
            w.put(b"xy");
        }
        out.writer(3).cancel();
        let mut wire = Vec::new();
        out.write_to(&mut wire).unwrap();
        assert_eq!(wire, [0, 0, 0, 7, 9, 0, 0, 0, 7, b'x', b'y']);
        {
            let mut w = out.writer(1);
            w.put(&vec![0; MAX_PAYLOAD + 1]);
        }
        assert_eq!(out.pending(), 0);
    }
}
