//! A minimal blocking AMQP 1.0 client connection over std TCP, built on the
//! broker's own codec (`crate::protocol::amqp10`), for the loadgen's
//! `throughput10` and the shovels' AMQP 1.0 endpoints.
//!
//! One thread owns one [`Conn10`]: the SASL PLAIN exchange, `open` (vhost
//! as `hostname = "vhost:NAME"`, as RabbitMQ 4 wants it), one session on
//! channel [`CHANNEL`] with its flow-control state ([`Session`], spec
//! 2.5.6), and link attaches. The hot loops walk frames with
//! [`Conn10::next_frame`]: each frame is split off the read buffer without
//! a copy and decoded, a transfer's payload a slice of it, and transfers
//! and flows update the session state as they pass. Small frames (flows,
//! dispositions) are gathered in [`Conn10::out`] and written by
//! [`Conn10::flush`]; the sender writes its pre-encoded batches straight
//! to [`Conn10::stream`].
//!
//! As with the 0-9-1 [`Conn`](super::Conn), the socket has a short
//! read and write timeout ([`IO_TICK`]) so that loops blocked on the
//! network still notice a stop flag.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use crate::protocol::amqp10::{
    check_frame, read_frame, role, write_frame, write_heartbeat, write_sasl_frame, Attach, Begin,
    Close, Error, Flow, Frame, FrameBody, Open, Performative, ReceiverSettleMode, SaslCode,
    SaslFrame, SaslInit, SenderSettleMode, Source, Str, Symbol, Target, TargetOrCoordinator,
    AMQP_HEADER, SASL_HEADER,
};
use bytes::{Bytes, BytesMut};

use super::stream::Stream;
use super::uri::AmqpUri;
use super::{ClientError, Result, CALL_TIMEOUT};
use crate::client;

/// The channel of the connection's one session.
pub const CHANNEL: u16 = 0;

/// The largest frame the broker may send before `open` settles the size
/// (RabbitMQ's handshake limit; the spec's is 512).
const HANDSHAKE_FRAME_MAX: u32 = 8192;

/// Bytes offered to each read (zeroed first: the price of a safe read into
/// a `BytesMut` whose frames are then split off without a copy).
const READ_CHUNK: usize = 64 * 1024;

/// Session flow control (2.5.6), in transfer frames.
#[derive(Debug, Default)]
pub struct Session {
    /// The transfer-id of our next transfer frame.
    pub next_outgoing_id: u32,
    /// Transfer frames the broker still takes: its incoming window, counted
    /// from its last flow's next-incoming-id.
    pub remote_incoming_window: u32,
    /// The transfer-id of the broker's next transfer frame.
    pub next_incoming_id: u32,
    /// Transfer frames we still take before the broker must stop.
    pub incoming_window: u32,
    /// The incoming window we advertise, renewed to this by every flow.
    pub max_incoming_window: u32,
    /// Our next delivery-id (one sequence for the session's links).
    pub next_delivery_id: u32,
}

impl Session {
    /// Half of our incoming window is used: time to renew it.
    pub fn window_low(&self) -> bool {
        self.incoming_window <= self.max_incoming_window / 2
    }
}

/// The link part of a flow we send.
#[derive(Clone, Copy, Debug)]
pub struct LinkFlow {
    pub handle: u32,
    pub delivery_count: u32,
    pub link_credit: u32,
}

/// One AMQP 1.0 connection with its session begun.
pub struct Conn10 {
    /// The socket (plain or TLS); the sender writes its batches to it.
    pub stream: Stream,
    /// Bytes read and not yet walked; frames are split off its front.
    rbuf: BytesMut,
    /// Small frames waiting for [`Conn10::flush`].
    pub out: Vec<u8>,
    /// Our max-frame-size: the largest frame the broker may send us.
    max_frame_in: u32,
    /// The broker's max-frame-size: the largest frame we may send.
    pub max_frame_out: u32,
    /// Half the broker's idle-time-out: write an empty frame when nothing
    /// was written for this long.
    heartbeat: Option<Duration>,
    last_write: Instant,
    pub session: Session,
}

impl Conn10 {
    /// Connects, runs SASL PLAIN with the URI's credentials, opens the
    /// connection (advertising `max_frame_size`) on the URI's vhost and
    /// begins the session with `incoming_window`. `name` is the
    /// container-id.
    pub fn open(
        uri: &AmqpUri,
        name: &str,
        max_frame_size: u32,
        incoming_window: u32,
    ) -> Result<Conn10> {
        let stream = client::open_stream(uri)?;
        let mut c = Conn10 {
            stream,
            rbuf: BytesMut::with_capacity(2 * READ_CHUNK),
            out: Vec::with_capacity(4096),
            max_frame_in: HANDSHAKE_FRAME_MAX,
            max_frame_out: HANDSHAKE_FRAME_MAX,
            heartbeat: None,
            last_write: Instant::now(),
            session: Session {
                incoming_window,
                max_incoming_window: incoming_window,
                ..Session::default()
            },
        };
        c.sasl_plain(uri)?;
        c.write_all(AMQP_HEADER)?;
        c.expect_header(AMQP_HEADER, "the AMQP protocol header")?;
        let open = Open {
            container_id: Str::from(name),
            hostname: Some(Str::from(format!("vhost:{}", uri.vhost))),
            max_frame_size,
            channel_max: CHANNEL,
            ..Open::default()
        };
        c.send(&Performative::Open(open))?;
        let theirs = match c.wait_performative("open")? {
            Performative::Open(o) => o,
            p => return Err(unexpected(&p, "open")),
        };
        c.max_frame_in = max_frame_size;
        c.max_frame_out = theirs.max_frame_size;
        c.heartbeat = theirs
            .idle_time_out
            .filter(|&ms| ms > 0)
            .map(|ms| Duration::from_millis(ms as u64 / 2));
        let begin = Begin {
            remote_channel: None,
            next_outgoing_id: 0,
            incoming_window,
            outgoing_window: u32::MAX,
            ..Begin::default()
        };
        c.send(&Performative::Begin(begin))?;
        let theirs = match c.wait_performative("begin")? {
            Performative::Begin(b) => b,
            p => return Err(unexpected(&p, "begin")),
        };
        c.session.next_incoming_id = theirs.next_outgoing_id;
        // Counted from our next-outgoing-id, 0.
        c.session.remote_incoming_window = theirs.incoming_window;
        Ok(c)
    }

    /// The SASL layer: header, mechanisms (PLAIN must be offered), init
    /// with "\0user\0password", outcome.
    fn sasl_plain(&mut self, uri: &AmqpUri) -> Result<()> {
        self.write_all(SASL_HEADER)?;
        self.expect_header(SASL_HEADER, "the SASL protocol header")?;
        let mechanisms = match self.wait_sasl("sasl-mechanisms")? {
            SaslFrame::SaslMechanisms(m) => m.sasl_server_mechanisms,
            f => {
                return Err(ClientError::Protocol(format!(
                    "expected sasl-mechanisms, got {f:?}"
                )))
            }
        };
        if !mechanisms.iter().any(|m| m == "PLAIN") {
            let offered: Vec<&str> = mechanisms.iter().map(Symbol::as_str).collect();
            return Err(ClientError::Protocol(format!(
                "broker does not offer SASL PLAIN (mechanisms: {})",
                offered.join(" ")
            )));
        }
        let mut response = Vec::with_capacity(uri.user.len() + uri.password.len() + 2);
        response.push(0);
        response.extend_from_slice(uri.user.as_bytes());
        response.push(0);
        response.extend_from_slice(uri.password.as_bytes());
        let init = SaslInit {
            mechanism: Symbol::from_static("PLAIN"),
            initial_response: Some(Bytes::from(response)),
            hostname: None,
        };
        write_sasl_frame(&mut self.out, &SaslFrame::SaslInit(init));
        self.flush()?;
        match self.wait_sasl("sasl-outcome")? {
            SaslFrame::SaslOutcome(o) if o.code == SaslCode::Ok => Ok(()),
            SaslFrame::SaslOutcome(o) => Err(ClientError::Protocol(format!(
                "login refused for user {:?} (sasl-outcome {:?})",
                uri.user, o.code
            ))),
            f => Err(ClientError::Protocol(format!(
                "expected sasl-outcome, got {f:?}"
            ))),
        }
    }

    /// Reads the broker's 8-byte protocol header, which must be `want`.
    fn expect_header(&mut self, want: &[u8; 8], what: &str) -> Result<()> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        while self.rbuf.len() < 8 {
            if Instant::now() > deadline {
                return Err(timeout(what));
            }
            self.fill()?;
        }
        let got = self.rbuf.split_to(8);
        if &got[..] != want {
            return Err(ClientError::Protocol(format!(
                "expected {what} {want:?}, the broker answered {:?}",
                &got[..]
            )));
        }
        Ok(())
    }

    fn wait_sasl(&mut self, what: &str) -> Result<SaslFrame> {
        match self.wait_frame(what)?.body {
            Some(FrameBody::Sasl(f)) => Ok(f),
            b => Err(ClientError::Protocol(format!("expected {what}, got {b:?}"))),
        }
    }

    /// The next performative, after [`Conn10::control`] had its say.
    pub fn wait_performative(&mut self, what: &str) -> Result<Performative> {
        let f = self.wait_frame(what)?;
        self.control(&f)?;
        match f.body {
            Some(FrameBody::Amqp(p)) => Ok(p),
            b => Err(ClientError::Protocol(format!("expected {what}, got {b:?}"))),
        }
    }

    /// Reads until a frame (not a heartbeat) arrives, for at most
    /// [`CALL_TIMEOUT`].
    pub fn wait_frame(&mut self, what: &str) -> Result<Frame> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            if let Some(f) = self.next_frame()? {
                return Ok(f);
            }
            if Instant::now() > deadline {
                return Err(timeout(what));
            }
            self.fill()?;
        }
    }

    /// The next whole frame in the read buffer, decoded (no I/O, no copy).
    /// Heartbeats are skipped. A transfer counts against our incoming
    /// window (a transfer beyond it is an error: the broker broke the
    /// window); a flow updates the broker's incoming window.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            let len = match check_frame(&self.rbuf, self.max_frame_in) {
                Ok(Some(len)) => len,
                Ok(None) => return Ok(None),
                Err(e) => return Err(ClientError::Protocol(format!("bad frame from broker: {e}"))),
            };
            let bytes = self.rbuf.split_to(len).freeze();
            let f = read_frame(bytes).map_err(|e| {
                ClientError::Protocol(format!("undecodable frame from broker: {e}"))
            })?;
            match &f.body {
                None => continue,
                Some(FrameBody::Amqp(Performative::Transfer(_))) => self.count_incoming()?,
                Some(FrameBody::Amqp(Performative::Flow(fl))) => self.on_session_flow(fl),
                _ => {}
            }
            return Ok(Some(f));
        }
    }

    fn count_incoming(&mut self) -> Result<()> {
        let s = &mut self.session;
        if s.incoming_window == 0 {
            return Err(ClientError::Protocol(format!(
                "session window violation by the broker: transfer {} arrived with our incoming window at 0",
                s.next_incoming_id
            )));
        }
        s.incoming_window -= 1;
        s.next_incoming_id = s.next_incoming_id.wrapping_add(1);
        Ok(())
    }

    /// The broker's session state: how many more transfer frames it takes.
    fn on_session_flow(&mut self, f: &Flow) {
        let s = &mut self.session;
        let their_next_in = f.next_incoming_id.unwrap_or(0);
        let room = their_next_in
            .wrapping_add(f.incoming_window)
            .wrapping_sub(s.next_outgoing_id);
        // Above the window it "wrapped below 0": we are past its window.
        s.remote_incoming_window = if room > f.incoming_window { 0 } else { room };
    }

    /// Turns a close, end or detach from the broker into an error (a close
    /// is answered first); everything else is left to the caller.
    pub fn control(&mut self, f: &Frame) -> Result<()> {
        let what = match &f.body {
            Some(FrameBody::Amqp(Performative::Close(c))) => {
                let _ = self.send(&Performative::Close(Close { error: None }));
                format!("broker closed the connection: {}", describe(&c.error))
            }
            Some(FrameBody::Amqp(Performative::End(e))) => {
                format!("broker ended the session: {}", describe(&e.error))
            }
            Some(FrameBody::Amqp(Performative::Detach(d))) => {
                format!("broker detached link {}: {}", d.handle, describe(&d.error))
            }
            Some(FrameBody::Sasl(s)) => format!("unexpected SASL frame {s:?}"),
            _ => return Ok(()),
        };
        Err(ClientError::Ended(what))
    }

    /// Attaches a link and returns the broker's attach. A refused link (the
    /// broker's attach without the terminus asked for, then a detach with
    /// the error: 2.6.3) is an error with the broker's words. Frames after
    /// the attach (a sender's first credit) stay in the buffer.
    pub fn attach(&mut self, a: Attach) -> Result<Attach> {
        let (handle, ours) = (a.handle, a.role);
        self.send(&Performative::Attach(Box::new(a)))?;
        let reply = loop {
            match self.wait_performative("attach")? {
                Performative::Attach(r) if r.handle == handle => break *r,
                _ => {}
            }
        };
        let refused = if ours == role::SENDER {
            reply.target.is_none()
        } else {
            reply.source.is_none()
        };
        if refused {
            // The detach with the reason follows (control makes it an error).
            loop {
                self.wait_performative("the detach of a refused link")?;
            }
        }
        Ok(reply)
    }

    /// Appends a flow to [`Conn10::out`]: our session state with the
    /// incoming window renewed, and `link`'s state if given.
    pub fn queue_flow(&mut self, link: Option<LinkFlow>) {
        let s = &mut self.session;
        s.incoming_window = s.max_incoming_window;
        let f = Flow {
            next_incoming_id: Some(s.next_incoming_id),
            incoming_window: s.max_incoming_window,
            next_outgoing_id: s.next_outgoing_id,
            outgoing_window: u32::MAX,
            handle: link.map(|l| l.handle),
            delivery_count: link.map(|l| l.delivery_count),
            link_credit: link.map(|l| l.link_credit),
            ..Flow::default()
        };
        write_frame(&mut self.out, CHANNEL, &Performative::Flow(f), &[]);
    }

    /// Appends `p` to [`Conn10::out`] (channel [`CHANNEL`], no payload).
    pub fn queue(&mut self, p: &Performative) {
        write_frame(&mut self.out, CHANNEL, p, &[]);
    }

    /// Writes one frame now.
    pub fn send(&mut self, p: &Performative) -> Result<()> {
        self.queue(p);
        self.flush()
    }

    /// Writes what [`Conn10::out`] holds.
    pub fn flush(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let r = self.write_all(&out);
        self.out = out;
        self.out.clear();
        r
    }

    /// An empty frame if nothing was written for half the broker's
    /// idle-time-out (it closes connections that stay silent).
    pub fn heartbeat(&mut self) -> Result<()> {
        match self.heartbeat {
            Some(every) if self.last_write.elapsed() >= every => {
                write_heartbeat(&mut self.out);
                self.flush()
            }
            _ => Ok(()),
        }
    }

    /// Bytes went out on [`Conn10::stream`] (for the heartbeat).
    #[inline]
    pub fn wrote(&mut self) {
        self.last_write = Instant::now();
    }

    /// One blocking read (at most [`IO_TICK`]). Ok(false): timed out.
    pub fn fill(&mut self) -> Result<bool> {
        self.read_more(false)
    }

    /// One read that does not wait. Ok(false): nothing was there.
    pub fn poll(&mut self) -> Result<bool> {
        self.read_more(true)
    }

    fn read_more(&mut self, nonblocking: bool) -> Result<bool> {
        let n = self.rbuf.len();
        self.rbuf.resize(n + READ_CHUNK, 0);
        let r = loop {
            let dst = &mut self.rbuf[n..];
            let r = if nonblocking {
                self.stream.read_nonblocking(dst)
            } else {
                self.stream.read(dst)
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => break r,
            }
        };
        let got = match r {
            Ok(0) => Err(client::eof()),
            Ok(got) => Ok(got),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(e.into()),
        };
        self.rbuf.truncate(n + got.as_ref().copied().unwrap_or(0));
        got.map(|got| got > 0)
    }

    /// Writes all of `data`, retrying through write timeouts for at most
    /// [`CALL_TIMEOUT`].
    pub fn write_all(&mut self, data: &[u8]) -> Result<()> {
        client::write_all_within(&mut self.stream, data)?;
        self.wrote();
        Ok(())
    }

    /// Closes the connection politely: sends close and reads until the
    /// broker's close (or `timeout`), handing every other frame to
    /// `on_frame` (late outcomes). Errors end it quietly: the socket is
    /// dropped either way.
    pub fn close(mut self, timeout: Duration, mut on_frame: impl FnMut(&Frame)) {
        if self
            .send(&Performative::Close(Close { error: None }))
            .is_err()
        {
            return;
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            loop {
                match self.next_frame() {
                    Ok(Some(f)) => {
                        if matches!(f.body, Some(FrameBody::Amqp(Performative::Close(_)))) {
                            return;
                        }
                        on_frame(&f);
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
            if self.fill().is_err() {
                return;
            }
        }
    }
}

/// An attach of link `name` on `handle`: as a sender (`role::SENDER`) to
/// target `address`, or as a receiver from source `address`; deliveries
/// sent `settled` or not, settled by the receiver first.
pub fn link_attach(name: &str, handle: u32, ours: bool, address: &str, settled: bool) -> Attach {
    let address = Some(Str::from(address));
    let (source, target) = if ours == role::SENDER {
        (
            Source::default(),
            Target {
                address,
                ..Target::default()
            },
        )
    } else {
        (
            Source {
                address,
                ..Source::default()
            },
            Target::default(),
        )
    };
    Attach {
        name: Str::from(name),
        handle,
        role: ours,
        snd_settle_mode: if settled {
            SenderSettleMode::Settled
        } else {
            SenderSettleMode::Unsettled
        },
        rcv_settle_mode: ReceiverSettleMode::First,
        source: Some(source),
        target: Some(TargetOrCoordinator::Target(target)),
        initial_delivery_count: (ours == role::SENDER).then_some(0),
        ..Attach::default()
    }
}

/// "amqp:not-found: no queue 'q' in vhost '/'", or "no error".
pub fn describe(e: &Option<Error>) -> String {
    match e {
        None => "no error".into(),
        Some(e) => match &e.description {
            Some(d) => format!("{}: {d}", e.condition.as_str()),
            None => e.condition.as_str().to_string(),
        },
    }
}

fn unexpected(p: &Performative, wanted: &str) -> ClientError {
    ClientError::Protocol(format!("expected {wanted}, got {p}"))
}

fn timeout(what: &str) -> ClientError {
    ClientError::Protocol(format!(
        "timed out after {}s waiting for {what}",
        CALL_TIMEOUT.as_secs()
    ))
}
