//! The sessions `warren-loadgen fuzz` sends: valid client sessions recorded
//! as frame lists (built with the broker's own codec, exactly as a client
//! writes them), and their mutations.
//!
//! A session is the protocol header, the handshake (start-ok with PLAIN,
//! tune-ok, connection.open), then channel work (channel.open,
//! confirm.select, queue.declare, basic.qos, basic.publish with header and
//! body, basic.consume, basic.ack, queue.delete, channel.close) and
//! connection.close. Its queues are exclusive, bounded (`x-max-length`) and
//! expire, so a mutated session leaves little behind.
//!
//! [`mutate_session`] changes a session at the frame level (drop, duplicate,
//! swap, truncate, garbage after the handshake, a frame's type, channel or
//! size field) and inside frames (`warren::fuzz::mutate`); with one chance
//! in two the handshake is left intact, so that the mutations reach the
//! channel code.

use bytes::Bytes;
use warren::fuzz::mutate::{mutate, Rng};
use warren::protocol::methods::*;
use warren::protocol::{
    write_body, write_content_header, write_method, BasicProperties, FieldTable, FieldValue,
    Method, PROTOCOL_HEADER,
};

/// Frames (the protocol header first) of one session, and how many of them
/// make up the handshake (header, start-ok, tune-ok, open).
pub struct Session {
    pub frames: Vec<Vec<u8>>,
    pub handshake: usize,
}

fn s(v: &str) -> Bytes {
    Bytes::copy_from_slice(v.as_bytes())
}

fn method(channel: u16, m: impl Into<Method>) -> Vec<u8> {
    let mut out = Vec::new();
    write_method(&mut out, channel, &m.into());
    out
}

/// A valid session as a client would write it, for `user`/`password` on
/// `vhost`; `n` picks the queue name and the message count.
pub fn record(user: &str, password: &str, vhost: &str, n: u64) -> Session {
    let mut frames = vec![PROTOCOL_HEADER.to_vec()];
    let mut props = FieldTable::new();
    props.insert("product", FieldValue::LongStr(s("warren-loadgen fuzz")));
    let mut caps = FieldTable::new();
    caps.insert("publisher_confirms", FieldValue::Bool(true));
    caps.insert("consumer_cancel_notify", FieldValue::Bool(true));
    props.insert("capabilities", FieldValue::Table(caps));
    let mut response = vec![0];
    response.extend_from_slice(user.as_bytes());
    response.push(0);
    response.extend_from_slice(password.as_bytes());
    frames.push(method(
        0,
        ConnectionStartOk {
            client_properties: props,
            mechanism: s("PLAIN"),
            response: Bytes::from(response),
            locale: s("en_US"),
        },
    ));
    frames.push(method(
        0,
        ConnectionTuneOk {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 0,
        },
    ));
    frames.push(method(
        0,
        ConnectionOpen {
            virtual_host: s(vhost),
            ..Default::default()
        },
    ));
    let handshake = frames.len();
    let queue = s(&format!("fuzz-q-{}", n % 8));
    let mut args = FieldTable::new();
    args.insert("x-max-length", FieldValue::I32(100));
    args.insert("x-expires", FieldValue::I32(10_000));
    frames.push(method(1, ChannelOpen::default()));
    frames.push(method(1, ConfirmSelect::default()));
    frames.push(method(
        1,
        QueueDeclare {
            queue: queue.clone(),
            exclusive: true,
            auto_delete: true,
            arguments: args,
            ..Default::default()
        },
    ));
    frames.push(method(
        1,
        BasicQos {
            prefetch_count: 5,
            ..Default::default()
        },
    ));
    let properties = BasicProperties {
        content_type: Some(s("text/plain")),
        delivery_mode: Some(1 + (n % 2) as u8),
        priority: Some(1),
        expiration: Some(s("60000")),
        headers: Some(
            [("x-fuzz", FieldValue::I64(n as i64))]
                .into_iter()
                .collect(),
        ),
        message_id: Some(s("m")),
        ..Default::default()
    }
    .to_bytes();
    for i in 0..1 + n % 3 {
        frames.push(method(
            1,
            BasicPublish {
                routing_key: queue.clone(),
                mandatory: i == 1,
                ..Default::default()
            },
        ));
        let body = vec![b'a' + i as u8; 10 + 90 * i as usize];
        let mut header = Vec::new();
        write_content_header(&mut header, 1, 60, body.len() as u64, &properties);
        frames.push(header);
        // Small body frames: several per message.
        let mut bodies = Vec::new();
        write_body(&mut bodies, 1, &body, 48);
        frames.push(bodies);
    }
    frames.push(method(
        1,
        BasicConsume {
            queue: queue.clone(),
            consumer_tag: s("fuzz"),
            ..Default::default()
        },
    ));
    frames.push(method(
        1,
        BasicAck {
            delivery_tag: 1,
            multiple: true,
        },
    ));
    frames.push(method(
        1,
        QueueDelete {
            queue,
            ..Default::default()
        },
    ));
    frames.push(method(1, ChannelClose::default()));
    frames.push(method(0, ConnectionClose::default()));
    Session { frames, handshake }
}

/// Applies one to four frame-level or byte-level mutations to `s`.
pub fn mutate_session(s: &mut Session, rng: &mut Rng) {
    let first = if rng.one_in(2) { s.handshake } else { 0 };
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let n = s.frames.len();
        if n <= first {
            break;
        }
        let i = first + rng.below(n - first);
        match rng.below(10) {
            0 => {
                s.frames.remove(i);
            }
            1 => {
                let f = s.frames[i].clone();
                s.frames.insert(i, f);
            }
            2 => {
                let j = first + rng.below(n - first);
                s.frames.swap(i, j);
            }
            3 => s.frames.truncate(i),
            4 => {
                let len = 1 + rng.below(64);
                s.frames.insert(i, (0..len).map(|_| rng.byte()).collect());
            }
            // The frame type, channel or size field.
            5 if s.frames[i].len() >= 7 => {
                let f = &mut s.frames[i];
                match rng.below(3) {
                    0 => f[0] = [1, 2, 3, 4, 8, 0, 255][rng.below(7)],
                    1 => f[1..3].copy_from_slice(&[0u16, 1, 2, 0xffff][rng.below(4)].to_be_bytes()),
                    _ => {
                        let size = u32::from_be_bytes([f[3], f[4], f[5], f[6]]);
                        let v = match rng.below(4) {
                            0 => size.wrapping_add(1 + rng.below(8) as u32),
                            1 => size.wrapping_sub(1 + rng.below(8) as u32),
                            2 => 131_072 + rng.below(16) as u32,
                            _ => u32::MAX - rng.below(16) as u32,
                        };
                        f[3..7].copy_from_slice(&v.to_be_bytes());
                    }
                }
            }
            // Inside the payload, framing left alone (or not, one time in 4).
            _ => {
                let f = &mut s.frames[i];
                if f.len() > 8 && !rng.one_in(4) {
                    let mut payload = f[7..f.len() - 1].to_vec();
                    mutate(&mut payload, rng, &[], 4096);
                    let mut g = f[..3].to_vec();
                    g.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                    g.extend_from_slice(&payload);
                    g.push(0xCE);
                    *f = g;
                } else {
                    mutate(f, rng, &[], 4096);
                }
            }
        }
    }
}
