//! Helpers of tests/amqp10.rs: AMQP 1.0 clients for the broker's 1.0 front
//! end. Two kinds:
//! - `fe2o3-amqp`, a real client library: connections, sessions, senders and
//!   receivers, each operation bounded by [`TIMEOUT`];
//! - [`Raw`], a blocking socket speaking frames with warren's own codec
//!   (`warren::protocol::amqp10`), for what a library will not send (no SASL,
//!   garbage) or will not show (the broker's link `flow` after a drain).
//!
//! Every wait has a deadline, so a misbehaving broker fails a test instead of
//! hanging it.
#![allow(dead_code)]

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::delivery::Delivery;
use fe2o3_amqp::link::{CreditMode, ReceiverAttachError, SenderAttachError};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::{self, ErrorCondition};
use fe2o3_amqp::types::messaging::{
    annotations::OwnedKey, Body, Data, Message, MessageAnnotations, Outcome, Target,
};
use fe2o3_amqp::types::primitives::{Symbol, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use warren::protocol::amqp10 as codec;

/// Upper bound of one broker round trip.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long "nothing more arrives" is watched for.
pub const SHORT: Duration = Duration::from_millis(300);

/// A delivery whose body may be data, amqp-value or amqp-sequence.
pub type AnyDelivery = Delivery<Body<Value>>;

/// Awaits `fut`, panicking with `what` if it takes longer than [`TIMEOUT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {TIMEOUT:?}"),
    }
}

/// A name unique in this test process (link names, container ids).
pub fn name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------- brokers

/// An in-process broker with a test's own config, shut down when dropped
/// (`util::start_broker` takes no config).
pub struct Broker(Option<warren::BrokerHandle>);

impl Broker {
    pub fn start(config: warren::Config) -> Broker {
        let _ = env_logger::builder().is_test(true).try_init();
        Broker(Some(warren::start(config).expect("broker starts")))
    }

    pub fn port(&self) -> u16 {
        self.0.as_ref().expect("running").port()
    }

    pub fn uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.shutdown();
        }
    }
}

// ---------------------------------------------------------------- fe2o3 clients

fn plain(user: &str, pass: &str) -> SaslProfile {
    SaslProfile::Plain {
        username: user.into(),
        password: pass.into(),
    }
}

fn url(port: u16) -> String {
    format!("amqp://127.0.0.1:{port}")
}

/// A connection as `user` (SASL PLAIN), or the error that refused it.
pub async fn try_open_as(
    port: u16,
    user: &str,
    pass: &str,
) -> Result<ConnectionHandle<()>, fe2o3_amqp::connection::OpenError> {
    let b = Connection::builder()
        .container_id(name("c"))
        .sasl_profile(plain(user, pass));
    within("open", b.open(url(port).as_str())).await
}

/// A connection as guest.
pub async fn open(port: u16) -> ConnectionHandle<()> {
    try_open_as(port, "guest", "guest")
        .await
        .expect("AMQP 1.0 connection as guest")
}

/// A connection as guest that accepts frames of at most `max_frame` bytes.
pub async fn open_max_frame(port: u16, max_frame: u32) -> ConnectionHandle<()> {
    let b = Connection::builder()
        .container_id(name("c"))
        .max_frame_size(max_frame)
        .sasl_profile(plain("guest", "guest"));
    within("open", b.open(url(port).as_str()))
        .await
        .expect("AMQP 1.0 connection with a small max-frame-size")
}

pub async fn begin(c: &mut ConnectionHandle<()>) -> SessionHandle<()> {
    within("begin", Session::begin(c)).await.expect("begin")
}

/// A sender attached to `addr`, or the attach's error.
pub async fn try_sender(
    s: &mut SessionHandle<()>,
    addr: &str,
) -> Result<Sender, SenderAttachError> {
    let b = Sender::builder().name(name("tx")).target(addr);
    within("sender attach", b.attach(s)).await
}

pub async fn sender(s: &mut SessionHandle<()>, addr: &str) -> Sender {
    try_sender(s, addr)
        .await
        .unwrap_or_else(|e| panic!("sender attach to {addr}: {e:?}"))
}

/// A sender with a null target address (anonymous relay: each message's
/// `to` says where it goes).
pub async fn anonymous_sender(s: &mut SessionHandle<()>) -> Sender {
    let b = Sender::builder()
        .name(name("anon"))
        .target(Target::builder().build());
    within("anonymous sender attach", b.attach(s))
        .await
        .expect("anonymous sender attach")
}

/// A receiver on `addr` with `credit` (Auto(n): fe2o3 keeps n credits out;
/// Manual: none until `set_credit`), or the attach's error.
pub async fn try_receiver_with(
    s: &mut SessionHandle<()>,
    addr: &str,
    credit: CreditMode,
) -> Result<Receiver, ReceiverAttachError> {
    let b = Receiver::builder()
        .name(name("rx"))
        .source(addr)
        .credit_mode(credit);
    within("receiver attach", b.attach(s)).await
}

pub async fn try_receiver(
    s: &mut SessionHandle<()>,
    addr: &str,
) -> Result<Receiver, ReceiverAttachError> {
    try_receiver_with(s, addr, CreditMode::Auto(50)).await
}

pub async fn receiver(s: &mut SessionHandle<()>, addr: &str) -> Receiver {
    try_receiver(s, addr)
        .await
        .unwrap_or_else(|e| panic!("receiver attach to {addr}: {e:?}"))
}

/// Sends unsettled and returns the broker's outcome.
pub async fn send<B: fe2o3_amqp::types::messaging::SerializableBody>(
    tx: &mut Sender,
    m: Message<B>,
) -> Outcome {
    within("outcome of a transfer", tx.send(m))
        .await
        .expect("send")
}

/// Sends unsettled and asserts the broker accepted it.
pub async fn send_accepted<B: fe2o3_amqp::types::messaging::SerializableBody>(
    tx: &mut Sender,
    m: Message<B>,
) {
    let o = send(tx, m).await;
    assert!(matches!(o, Outcome::Accepted(_)), "outcome {o:?}");
}

/// A message whose body is one data section.
pub fn msg(body: &[u8]) -> Message<Data> {
    Message::builder().data(body.to_vec()).build()
}

/// The next delivery (panics after [`TIMEOUT`]).
pub async fn recv(rx: &mut Receiver) -> AnyDelivery {
    within("a delivery", rx.recv::<Body<Value>>())
        .await
        .expect("recv")
}

/// Asserts that nothing is delivered within [`SHORT`].
pub async fn recv_none(rx: &mut Receiver) {
    if let Ok(d) = tokio::time::timeout(SHORT, rx.recv::<Body<Value>>()).await {
        panic!("unexpected delivery: {d:?}");
    }
}

/// The body of a delivery made of data sections.
pub fn data(d: &AnyDelivery) -> Vec<u8> {
    match d.body() {
        Body::Data(sections) => sections.iter().flat_map(|s| s.0.to_vec()).collect(),
        other => panic!("expected a data body, got {other:?}"),
    }
}

/// A message annotation of a delivery.
pub fn annotation<'a>(d: &'a AnyDelivery, key: &str) -> Option<&'a Value> {
    annotations(d)?.get(&OwnedKey::Symbol(Symbol::from(key)))
}

pub fn annotations(d: &AnyDelivery) -> Option<&MessageAnnotations> {
    d.message().message_annotations.as_ref()
}

/// A utf8 string value.
pub fn utf8(v: &str) -> Value {
    Value::String(v.into())
}

/// The condition symbol of an error, as text.
pub fn condition(e: &definitions::Error) -> String {
    let sym = match &e.condition {
        ErrorCondition::AmqpError(c) => Symbol::from(c),
        ErrorCondition::ConnectionError(c) => Symbol::from(c),
        ErrorCondition::SessionError(c) => Symbol::from(c),
        ErrorCondition::LinkError(c) => Symbol::from(c),
        ErrorCondition::Custom(c) => c.clone(),
    };
    sym.0
}

/// Condition and description of an error.
pub fn cond_desc(e: &definitions::Error) -> (String, String) {
    (condition(e), e.description.clone().unwrap_or_default())
}

/// The error a refused link attach carried (the detach that followed our
/// attach's null-terminus reply).
pub fn refused_sender(r: Result<Sender, SenderAttachError>) -> (String, String) {
    match r {
        Err(SenderAttachError::RemoteClosedWithError(e)) => cond_desc(&e),
        Err(e) => panic!("expected a refused link, got {e:?}"),
        Ok(_) => panic!("expected a refused link, the attach succeeded"),
    }
}

pub fn refused_receiver(r: Result<Receiver, ReceiverAttachError>) -> (String, String) {
    match r {
        Err(ReceiverAttachError::RemoteClosedWithError(e)) => cond_desc(&e),
        Err(e) => panic!("expected a refused link, got {e:?}"),
        Ok(_) => panic!("expected a refused link, the attach succeeded"),
    }
}

// ---------------------------------------------------------------- raw frames

/// A blocking client speaking frames with warren's codec; every read has
/// a [`TIMEOUT`].
pub struct Raw {
    pub sock: TcpStream,
}

/// What a raw read saw.
#[derive(Debug)]
pub enum Seen {
    Frame(Box<codec::Frame>),
    /// The broker closed the socket.
    Eof,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let sock = TcpStream::connect(("127.0.0.1", port)).expect("tcp connect");
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        sock.set_nodelay(true).unwrap();
        Raw { sock }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("write");
    }

    /// Exactly `n` bytes, or None at end of stream (a reset counts as one).
    pub fn read_n(&mut self, n: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            match self.sock.read(&mut buf[got..]) {
                Ok(0) => return None,
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e} (after {got} of {n} bytes)"),
            }
        }
        Some(buf)
    }

    /// The next frame, or end of stream.
    pub fn read(&mut self) -> Seen {
        let Some(head) = self.read_n(4) else {
            return Seen::Eof;
        };
        let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        assert!(size >= 8, "frame size {size}");
        let Some(rest) = self.read_n(size - 4) else {
            return Seen::Eof;
        };
        let mut all = head;
        all.extend_from_slice(&rest);
        Seen::Frame(Box::new(
            codec::read_frame(bytes::Bytes::from(all)).expect("a frame we can decode"),
        ))
    }

    /// The next frame (panics at end of stream).
    pub fn frame(&mut self) -> codec::Frame {
        match self.read() {
            Seen::Frame(f) => *f,
            Seen::Eof => panic!("the broker closed the connection"),
        }
    }

    /// The next non-empty AMQP frame's performative (heartbeats skipped).
    pub fn perf(&mut self) -> (u16, codec::Performative) {
        loop {
            let f = self.frame();
            match f.body {
                Some(codec::FrameBody::Amqp(p)) => return (f.channel, p),
                None => continue,
                Some(other) => panic!("expected an AMQP frame, got {other:?}"),
            }
        }
    }

    /// Asserts the broker closes the socket without sending another frame.
    pub fn expect_eof(&mut self) {
        if let Seen::Frame(f) = self.read() {
            panic!("expected the socket to close, got {f:?}");
        }
    }

    /// The SASL header exchange and mechanisms, then `sasl-init` PLAIN;
    /// returns the outcome's code.
    pub fn sasl_plain(&mut self, user: &str, pass: &str) -> codec::SaslCode {
        self.send(codec::SASL_HEADER);
        assert_eq!(self.read_n(8).as_deref(), Some(&codec::SASL_HEADER[..]));
        match self.frame().body {
            Some(codec::FrameBody::Sasl(codec::SaslFrame::SaslMechanisms(_))) => {}
            other => panic!("expected sasl-mechanisms, got {other:?}"),
        }
        let init = codec::SaslInit {
            mechanism: codec::Symbol::copy_from("PLAIN").unwrap(),
            initial_response: Some(bytes::Bytes::from(format!("\0{user}\0{pass}"))),
            hostname: None,
        };
        let mut out = Vec::new();
        codec::write_sasl_frame(&mut out, &codec::SaslFrame::SaslInit(init));
        self.send(&out);
        match self.frame().body {
            Some(codec::FrameBody::Sasl(codec::SaslFrame::SaslOutcome(o))) => o.code,
            other => panic!("expected sasl-outcome, got {other:?}"),
        }
    }

    /// A raw connection as guest, opened: SASL, the AMQP header, `open`.
    pub fn opened(port: u16) -> Raw {
        let mut r = Raw::connect(port);
        assert_eq!(r.sasl_plain("guest", "guest"), codec::SaslCode::Ok);
        r.send(codec::AMQP_HEADER);
        assert_eq!(r.read_n(8).as_deref(), Some(&codec::AMQP_HEADER[..]));
        let open = codec::Open {
            container_id: codec::Str::from("raw"),
            max_frame_size: 65536,
            channel_max: 7,
            ..Default::default()
        };
        r.write(0, codec::Performative::Open(open));
        match r.perf() {
            (0, codec::Performative::Open(_)) => {}
            other => panic!("expected open, got {other:?}"),
        }
        r
    }

    pub fn write(&mut self, channel: u16, p: codec::Performative) {
        let mut out = Vec::new();
        codec::write_frame(&mut out, channel, &p, &[]);
        self.send(&out);
    }

    /// `begin` on channel 0 with generous windows; waits for the broker's.
    pub fn begin(&mut self) {
        let b = codec::Begin {
            remote_channel: None,
            next_outgoing_id: 0,
            incoming_window: 1000,
            outgoing_window: 1000,
            handle_max: 7,
            ..Default::default()
        };
        self.write(0, codec::Performative::Begin(b));
        match self.perf() {
            (0, codec::Performative::Begin(_)) => {}
            other => panic!("expected begin, got {other:?}"),
        }
    }

    /// Attaches handle 0 as a receiver of `source`; returns the broker's attach.
    pub fn attach_receiver(&mut self, source: &str) -> codec::Attach {
        self.attach(0, true, source)
    }

    /// Attaches `handle` as a receiver (`receiver`: of `addr` as source) or
    /// a sender (to `addr` as target); returns the broker's attach.
    pub fn attach(&mut self, handle: u32, receiver: bool, addr: &str) -> codec::Attach {
        let addr = Some(codec::Str::from(addr));
        let (source, target) = if receiver {
            let s = codec::Source {
                address: addr,
                ..Default::default()
            };
            (s, codec::Target::default())
        } else {
            let t = codec::Target {
                address: addr,
                ..Default::default()
            };
            (codec::Source::default(), t)
        };
        let a = codec::Attach {
            name: codec::Str::from(format!("raw-{handle}").as_str()),
            handle,
            role: receiver,
            source: Some(source),
            target: Some(codec::TargetOrCoordinator::Target(target)),
            initial_delivery_count: (!receiver).then_some(0),
            ..Default::default()
        };
        self.write(0, codec::Performative::Attach(Box::new(a)));
        match self.perf() {
            (0, codec::Performative::Attach(a)) => *a,
            other => panic!("expected attach, got {other:?}"),
        }
    }

    /// The broker's next detach (session-only flows are skipped).
    pub fn detach(&mut self) -> codec::Detach {
        loop {
            match self.perf() {
                (0, codec::Performative::Detach(d)) => return d,
                (0, codec::Performative::Flow(f)) if f.handle.is_none() => {}
                other => panic!("expected detach, got {other:?}"),
            }
        }
    }

    /// Sends one unsettled message (a data section) on `handle`.
    pub fn transfer(&mut self, handle: u32, delivery_id: u32, body: &[u8]) {
        let t = codec::Transfer {
            handle,
            delivery_id: Some(delivery_id),
            delivery_tag: Some(bytes::Bytes::copy_from_slice(&delivery_id.to_be_bytes())),
            message_format: Some(0),
            settled: Some(false),
            ..Default::default()
        };
        let mut payload = Vec::new();
        codec::write_data(&mut payload, body);
        let mut out = Vec::new();
        codec::write_transfer(&mut out, 0, &t, &payload);
        self.send(&out);
    }
}
