//! A whole publish in the read buffer: a basic.publish method frame, its
//! content header and its one body frame (or none, for an empty body), back
//! to back on one channel. The connection cuts such a run from the read buffer
//! as one `Bytes`, and the message is a single buffer over it
//! (`core::message::Layout::Wire`): no copy, one reference count per message.
//!
//! [`publish_span`] only looks; it never decides what is valid. Anything
//! unusual (other frames in between, a body in several frames, a method that
//! does not decode the plain way, a bad frame) is `Frames`, and the connection
//! handles the frames one by one as before, with the same errors.

use super::constants::{FRAME_BODY, FRAME_HEADER};
use super::frame::{check_frame, FrameHead, FRAME_OVERHEAD};

/// Where the exchange name starts: frame header (7), class and method ids
/// (4), reserved-1 (2), the exchange's length octet (1).
pub const EXCHANGE_AT: usize = 14;

/// What [`publish_span`] found at the start of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishSpan {
    /// Not a publish that can be taken whole: handle frame by frame.
    Frames,
    /// The start of one, but its header or body frame is not all buffered yet.
    Partial,
    /// All of it.
    Whole(WholePublish),
}

/// Offsets of a whole publish, from the start of its method frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WholePublish {
    /// The method, header and body frames together.
    pub len: usize,
    pub exchange_len: usize,
    pub routing_key_len: usize,
    /// Where the content header frame starts.
    pub header_at: usize,
    pub properties_len: usize,
    /// Where the body frame starts; `len` when the body is empty (no frame).
    pub body_at: usize,
    /// Where the message's parts end: the last body octet, or the
    /// properties' end for an empty body.
    pub end: usize,
}

/// Looks for a whole publish at the start of `buf`, whose first frame is
/// the complete method frame `method` (from `check_frame`).
pub fn publish_span(buf: &[u8], method: FrameHead, frame_max: u32) -> PublishSpan {
    let size = method.size as usize;
    let Some(p) = buf.get(7..7 + size) else {
        return PublishSpan::Frames;
    };
    // basic.publish: class 60, method 40, reserved-1, exchange, routing key, bits.
    if p.len() < 9 || p[..4] != [0, 60, 0, 40] {
        return PublishSpan::Frames;
    }
    let exchange_len = p[6] as usize;
    let Some(&routing_key_len) = p.get(7 + exchange_len) else {
        return PublishSpan::Frames;
    };
    let routing_key_len = routing_key_len as usize;
    if size != 9 + exchange_len + routing_key_len {
        return PublishSpan::Frames;
    }
    let header_at = method.total_len();
    let header = match check_frame(&buf[header_at..], frame_max) {
        Ok(None) => return PublishSpan::Partial,
        Ok(Some(h)) => h,
        Err(_) => return PublishSpan::Frames,
    };
    // class-id, weight, body-size, property flags.
    if header.kind != FRAME_HEADER || header.channel != method.channel || header.size < 14 {
        return PublishSpan::Frames;
    }
    let hp = &buf[header_at + 7..header_at + 7 + header.size as usize];
    if hp[..2] != [0, 60] {
        return PublishSpan::Frames;
    }
    let body_size = u64::from_be_bytes(hp[4..12].try_into().unwrap());
    let properties_len = header.size as usize - 12;
    let body_at = header_at + header.total_len();
    if body_size == 0 {
        return PublishSpan::Whole(WholePublish {
            len: body_at,
            exchange_len,
            routing_key_len,
            header_at,
            properties_len,
            body_at,
            end: body_at - 1,
        });
    }
    if frame_max != 0 && body_size + FRAME_OVERHEAD as u64 > frame_max as u64 {
        // More than one body frame: assembled by the channel.
        return PublishSpan::Frames;
    }
    let body = match check_frame(&buf[body_at..], frame_max) {
        Ok(None) => return PublishSpan::Partial,
        Ok(Some(b)) => b,
        Err(_) => return PublishSpan::Frames,
    };
    if body.kind != FRAME_BODY || body.channel != method.channel || body.size as u64 != body_size {
        return PublishSpan::Frames;
    }
    let len = body_at + body.total_len();
    PublishSpan::Whole(WholePublish {
        len,
        exchange_len,
        routing_key_len,
        header_at,
        properties_len,
        body_at,
        end: len - 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::methods::BasicPublish;
    use crate::protocol::{write_body, write_content_header, write_method, Method};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn publish(ch: u16, ex: &[u8], rk: &[u8], props: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let m = Method::from(BasicPublish {
            exchange: Bytes::copy_from_slice(ex),
            routing_key: Bytes::copy_from_slice(rk),
            ..Default::default()
        });
        write_method(&mut out, ch, &m);
        write_content_header(&mut out, ch, 60, body.len() as u64, props);
        write_body(&mut out, ch, body, 131072);
        out
    }

    fn span(buf: &[u8]) -> PublishSpan {
        let head = check_frame(buf, 131072).unwrap().unwrap();
        publish_span(buf, head, 131072)
    }

    #[test]
    fn whole_publish_offsets() {
        let buf = publish(3, b"ex", b"key", &[0x10, 0, 2], b"hello");
        let PublishSpan::Whole(w) = span(&buf) else {
            panic!("not whole")
        };
        assert_eq!(w.len, buf.len());
        assert_eq!(&buf[EXCHANGE_AT..EXCHANGE_AT + w.exchange_len], b"ex");
        let rk = EXCHANGE_AT + w.exchange_len + 1;
        assert_eq!(&buf[rk..rk + w.routing_key_len], b"key");
        let props = w.header_at + 7 + 12;
        assert_eq!(&buf[props..props + w.properties_len], &[0x10, 0, 2]);
        assert_eq!(&buf[w.body_at + 7..w.end], b"hello");
    }

    #[test]
    fn empty_body_has_no_body_frame() {
        let buf = publish(1, b"", b"", &[0, 0], b"");
        let PublishSpan::Whole(w) = span(&buf) else {
            panic!("not whole")
        };
        assert_eq!(
            (w.len, w.body_at, w.end),
            (buf.len(), buf.len(), buf.len() - 1)
        );
    }

    #[test]
    fn partial_and_frames() {
        let buf = publish(1, b"x", b"y", &[0, 0], b"body");
        let method_len = check_frame(&buf, 0).unwrap().unwrap().total_len();
        for cut in method_len..buf.len() {
            assert_eq!(span(&buf[..cut]), PublishSpan::Partial, "cut at {cut}");
        }
        // A heartbeat between method and header: frame by frame.
        let mut odd = buf[..method_len].to_vec();
        odd.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0xCE]);
        odd.extend_from_slice(&buf[method_len..]);
        assert_eq!(span(&odd), PublishSpan::Frames);
        // Header on another channel.
        let mut other = buf.clone();
        other[method_len + 2] = 9;
        assert_eq!(span(&other), PublishSpan::Frames);
        // A body larger than one frame.
        let big = publish(1, b"", b"q", &[0, 0], &vec![7u8; 200_000]);
        assert_eq!(span(&big), PublishSpan::Frames);
    }

    proptest! {
        /// Whatever follows a method frame, `publish_span` never panics, and a
        /// `Whole` lies inside the buffer with its parts in order.
        #[test]
        fn never_panics(tail in proptest::collection::vec(any::<u8>(), 0..300), ex in 0usize..4, cut in 0usize..400) {
            let mut buf = publish(1, &b"abc"[..ex.min(3)], b"k", &[0, 0], b"b");
            let method_len = check_frame(&buf, 0).unwrap().unwrap().total_len();
            buf.truncate(method_len + cut.min(buf.len() - method_len));
            buf.extend_from_slice(&tail);
            let head = check_frame(&buf, 4096).unwrap().unwrap();
            if let PublishSpan::Whole(w) = publish_span(&buf, head, 4096) {
                prop_assert!(w.len <= buf.len());
                prop_assert!(EXCHANGE_AT + w.exchange_len < w.header_at);
                prop_assert!(w.header_at + 19 + w.properties_len <= w.body_at.max(w.end));
                prop_assert!(w.end < w.len);
            }
        }
    }
}
