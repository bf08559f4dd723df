//! A hand-driven AMQP 0-9-1 client on a raw socket, for inputs lapin cannot
//! produce and for checking exact frames (connection errors, confirm tags).
//!
//! Use with `mod common_raw; use common_raw::*;` next to `common_lapin`.
#![allow(dead_code)]

use crate::common_lapin::within;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Runs blocking raw-socket code off the async runtime.
pub async fn blocking<F: FnOnce() + Send + 'static>(f: F) {
    within(tokio::task::spawn_blocking(f))
        .await
        .expect("raw client panicked");
}

/// A hand-driven AMQP 0-9-1 client on a plain TCP socket, for inputs lapin cannot produce.
pub struct Raw {
    pub s: TcpStream,
}

/// A field-table value, reduced to what the tests inspect.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Bool(bool),
    Str(Vec<u8>),
    Table(Vec<(String, Val)>),
    Other,
}

impl Val {
    pub fn get(&self, key: &str) -> Option<&Val> {
        match self {
            Val::Table(t) => t.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// A read cursor over frame payloads.
pub struct Cur<'a>(pub &'a [u8]);

impl<'a> Cur<'a> {
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    pub fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    pub fn shortstr(&mut self) -> String {
        let n = self.u8() as usize;
        String::from_utf8_lossy(self.take(n)).into_owned()
    }
    pub fn longstr(&mut self) -> Vec<u8> {
        let n = self.u32() as usize;
        self.take(n).to_vec()
    }
    pub fn table(&mut self) -> Val {
        let n = self.u32() as usize;
        let mut c = Cur(self.take(n));
        let mut out = Vec::new();
        while !c.0.is_empty() {
            out.push((c.shortstr(), c.value()));
        }
        Val::Table(out)
    }
    pub fn value(&mut self) -> Val {
        let size = match self.u8() {
            b't' => return Val::Bool(self.u8() != 0),
            b'S' | b'x' => return Val::Str(self.longstr()),
            b'F' => return self.table(),
            b'A' => self.u32() as usize,
            b'V' => 0,
            b'b' | b'B' => 1,
            b's' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'D' => 5,
            b'l' | b'T' | b'd' => 8,
            other => panic!("unknown field type {:?}", other as char),
        };
        self.take(size);
        Val::Other
    }
}

pub fn frame(ty: u8, ch: u16, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    [&[ty][..], &ch.to_be_bytes(), &len, payload, &[0xCE]].concat()
}

pub fn method(class: u16, m: u16, args: &[u8]) -> Vec<u8> {
    [&class.to_be_bytes()[..], &m.to_be_bytes(), args].concat()
}

pub fn shortstr(s: &str) -> Vec<u8> {
    [&[s.len() as u8][..], s.as_bytes()].concat()
}

/// basic.publish arguments: ticket, exchange, routing key, no flags.
pub fn publish_args(exchange: &str, rk: &str) -> Vec<u8> {
    [&[0, 0][..], &shortstr(exchange), &shortstr(rk), &[0]].concat()
}

/// basic.qos arguments (global = false).
pub fn qos_args(prefetch_size: u32, prefetch_count: u16) -> Vec<u8> {
    [
        &prefetch_size.to_be_bytes()[..],
        &prefetch_count.to_be_bytes(),
        &[0],
    ]
    .concat()
}

/// queue.declare / basic.get / queue.delete arguments: ticket, queue name, then `tail`.
pub fn queue_args(q: &str, tail: &[u8]) -> Vec<u8> {
    [&[0, 0][..], &shortstr(q), tail].concat()
}

/// A frame as read: (type, channel, payload).
pub type Frame = (u8, u16, Vec<u8>);

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("tcp connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Raw { s }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write");
    }

    pub fn send_method(&mut self, ch: u16, class: u16, m: u16, args: &[u8]) {
        self.send(&frame(1, ch, &method(class, m, args)));
    }

    /// Next frame; heartbeats are skipped unless `keep_heartbeats`.
    pub fn read_frame_hb(&mut self, keep_heartbeats: bool) -> std::io::Result<Frame> {
        loop {
            let mut h = [0u8; 7];
            self.s.read_exact(&mut h)?;
            let len = u32::from_be_bytes([h[3], h[4], h[5], h[6]]) as usize;
            let mut p = vec![0u8; len + 1];
            self.s.read_exact(&mut p)?;
            assert_eq!(p.pop(), Some(0xCE), "frame end octet");
            if h[0] != 8 || keep_heartbeats {
                return Ok((h[0], u16::from_be_bytes([h[1], h[2]]), p));
            }
        }
    }

    pub fn read_frame(&mut self) -> Frame {
        self.read_frame_hb(false).expect("read frame")
    }

    /// Reads a method frame and checks its class/method ids; returns the arguments.
    pub fn expect_method(&mut self, ch: u16, class: u16, m: u16) -> Vec<u8> {
        let (ty, c, p) = self.read_frame();
        let ids = (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        );
        assert_eq!(
            (ty, c, ids),
            (1, ch, (class, m)),
            "(type, channel, (class, method))"
        );
        p[4..].to_vec()
    }

    /// Sends the protocol header; returns the connection.start arguments.
    pub fn start(&mut self) -> Vec<u8> {
        self.send(b"AMQP\x00\x00\x09\x01");
        self.expect_method(0, 10, 10)
    }

    /// Sends connection.start-ok (PLAIN, `user`/`pass`), announcing the
    /// authentication_failure_close capability like real clients do.
    pub fn start_ok(&mut self, user: &str, pass: &str) {
        let caps = [&shortstr("authentication_failure_close")[..], b"t\x01"].concat();
        let caps_len = (caps.len() as u32).to_be_bytes();
        let props = [&shortstr("capabilities")[..], b"F", &caps_len, &caps].concat();
        let resp = format!("\0{user}\0{pass}");
        let a = [
            &(props.len() as u32).to_be_bytes()[..],
            &props,
            &shortstr("PLAIN"),
            &(resp.len() as u32).to_be_bytes(),
            resp.as_bytes(),
            &shortstr("en_US"),
        ]
        .concat();
        self.send_method(0, 10, 11, &a);
    }

    /// PLAIN login; returns the connection.tune arguments (channel_max, frame_max, heartbeat).
    pub fn login(&mut self, user: &str, pass: &str) -> (u16, u32, u16) {
        self.start();
        self.start_ok(user, pass);
        let t = self.expect_method(0, 10, 30);
        let mut c = Cur(&t);
        (c.u16(), c.u32(), c.u16())
    }

    /// tune-ok with channel_max 2047 and the given values, then connection.open `vhost`.
    pub fn tune_ok_and_open(&mut self, frame_max: u32, heartbeat: u16, vhost: &str) {
        self.tune_ok_max_and_open(2047, frame_max, heartbeat, vhost);
    }

    /// tune-ok with the given values, then connection.open `vhost`.
    pub fn tune_ok_max_and_open(
        &mut self,
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
        vhost: &str,
    ) {
        let tune = [
            &channel_max.to_be_bytes()[..],
            &frame_max.to_be_bytes(),
            &heartbeat.to_be_bytes(),
        ];
        self.send_method(0, 10, 31, &tune.concat());
        self.send_method(0, 10, 40, &[&shortstr(vhost)[..], &[0, 0]].concat());
    }

    /// Full handshake with the given tune-ok values, vhost "/".
    pub fn handshake(&mut self, frame_max: u32, heartbeat: u16) {
        self.login("guest", "guest");
        self.tune_ok_and_open(frame_max, heartbeat, "/");
        self.expect_method(0, 10, 41);
    }

    pub fn open_channel(&mut self, ch: u16) {
        self.send_method(ch, 20, 10, &[0]);
        self.expect_method(ch, 20, 11);
    }

    /// Expects connection.close; answers close-ok; returns (code, text, class, method).
    pub fn expect_connection_close(&mut self) -> (u16, String, u16, u16) {
        let a = self.expect_method(0, 10, 50);
        let mut c = Cur(&a);
        let r = (c.u16(), c.shortstr(), c.u16(), c.u16());
        self.send_method(0, 10, 51, &[]);
        r
    }

    /// Expects connection.close with `code` and a text starting with `prefix`, answers it,
    /// and expects the server to close the socket.
    pub fn expect_fatal(&mut self, code: u16, prefix: &str) {
        let (c, text, _, _) = self.expect_connection_close();
        assert_eq!(c, code, "reply code (text {text:?})");
        assert!(text.starts_with(prefix), "reply text {text:?}");
        self.expect_eof();
    }

    /// Asserts the server closes the socket (EOF or reset) within the read timeout.
    pub fn expect_eof(&mut self) {
        let mut buf = [0u8; 256];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                Err(e) => panic!("server did not close the socket: {e}"),
            }
        }
    }

    pub fn publish(&mut self, ch: u16, exchange: &str, rk: &str, body: &[u8], frame_max: usize) {
        self.send(&publish_frames(ch, exchange, rk, body, frame_max));
    }
}

/// The frames of one basic.publish (no properties), to send in one write.
pub fn publish_frames(ch: u16, exchange: &str, rk: &str, body: &[u8], frame_max: usize) -> Vec<u8> {
    publish_frames_with(ch, &publish_args(exchange, rk), body, frame_max)
}

/// The frames of one basic.publish with the given method arguments.
pub fn publish_frames_with(ch: u16, args: &[u8], body: &[u8], frame_max: usize) -> Vec<u8> {
    let mut out = frame(1, ch, &method(60, 40, args));
    // class 60, weight 0, body size, no properties
    let h = [
        &[0, 60, 0, 0][..],
        &(body.len() as u64).to_be_bytes(),
        &[0, 0],
    ]
    .concat();
    out.extend(frame(2, ch, &h));
    for chunk in body.chunks(frame_max - 8) {
        out.extend(frame(3, ch, chunk));
    }
    out
}
