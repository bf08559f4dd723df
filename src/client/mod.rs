//! A minimal blocking AMQP 0-9-1 client connection over std TCP, built on the
//! broker's own codec (`crate::protocol`), shared by the load generator
//! (`loadgen/`) and the shovels (`crate::shovel`).
//!
//! It is made for a few long-lived connections with hot loops, not as a
//! general client library: one thread owns one
//! [`Conn`]; setup (handshake, declares, consume) goes through the synchronous
//! [`Conn::call`], while the hot loops of the scenarios read big chunks with
//! [`Conn::fill`] / [`Conn::poll`], walk the frames in place with
//! [`Conn::next_frame`] (no allocation: a [`Frame`] is a window of the read
//! buffer) and write pre-encoded bytes straight to [`Conn::stream`].
//!
//! The socket has a short read and write timeout ([`IO_TICK`]) so that loops
//! blocked on the network still notice a stop flag.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::protocol::constants::{self, FRAME_HEARTBEAT, FRAME_METHOD};
use crate::protocol::methods::*;
use crate::protocol::{check_frame, write_method, FieldTable, FieldValue, Method, PROTOCOL_HEADER};
use bytes::Bytes;

pub mod amqp10;
pub mod stream;
pub mod uri;

use stream::Stream;
use uri::AmqpUri;

/// Read/write timeout of the socket: how often a blocked loop looks at its flags.
pub const IO_TICK: Duration = Duration::from_millis(100);

/// How long setup calls (handshake, declare, consume) may wait for their reply.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a final connection.close may wait for close-ok.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The channel every scenario works on.
pub const CHANNEL: u16 = 1;

/// Initial read buffer size (grown if a single frame is larger).
pub const READ_BUF: usize = 256 * 1024;

/// Why a connection or one of its calls failed.
#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    /// The broker sent connection.close (hard error).
    ConnectionClosed {
        code: u16,
        text: String,
        method: String,
    },
    /// The broker sent channel.close (soft error).
    ChannelClosed {
        code: u16,
        text: String,
        method: String,
    },
    /// AMQP 1.0: the broker sent close, end or detach (described: what
    /// ended, the error condition and description).
    Ended(String),
    /// Anything else unexpected from the broker.
    Protocol(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "I/O error: {e}"),
            ClientError::ConnectionClosed { code, text, method } => {
                write!(f, "connection closed by broker: {code} {text}{method}")
            }
            ClientError::ChannelClosed { code, text, method } => {
                write!(f, "channel closed by broker: {code} {text}{method}")
            }
            ClientError::Ended(s) => f.write_str(s),
            ClientError::Protocol(s) => write!(f, "protocol error: {s}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl From<ClientError> for String {
    fn from(e: ClientError) -> String {
        e.to_string()
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A complete frame in the read buffer; [`Conn::payload`] gives its payload.
/// Valid until the next [`Conn::fill`] / [`Conn::poll`].
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub kind: u8,
    pub channel: u16,
    start: usize,
    len: usize,
}

/// `(class-id, method-id)` of a method frame payload (0, 0 if too short).
#[inline]
pub fn method_id(payload: &[u8]) -> (u16, u16) {
    match payload.get(..4) {
        Some(p) => (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        ),
        None => (0, 0),
    }
}

/// One open connection with channel [`CHANNEL`] open.
pub struct Conn {
    /// The socket (plain or TLS); scenarios write pre-encoded frames to it
    /// directly.
    pub stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Negotiated frame_max (0 = unlimited).
    pub frame_max: u32,
    /// Negotiated heartbeat interval in seconds (0 = off): the URI's
    /// `heartbeat` query parameter against the broker's, as RabbitMQ's
    /// clients negotiate it. The caller sends and watches heartbeats.
    pub heartbeat: u16,
    /// The broker's connection.start server-properties.
    pub server_properties: FieldTable,
    /// Set by connection.blocked, cleared by connection.unblocked.
    pub blocked: bool,
    out: Vec<u8>,
}

impl Conn {
    /// Connects, runs the handshake (PLAIN; heartbeats only if the URI asks
    /// for them, `?heartbeat=N`) and opens channel 1.
    /// `name` becomes the `connection_name` client property.
    pub fn open(uri: &AmqpUri, name: &str) -> Result<Conn> {
        Conn::open_with(uri, client_properties(name))
    }

    /// [`Conn::open`] with the client-properties given in full.
    pub fn open_with(uri: &AmqpUri, client_properties: FieldTable) -> Result<Conn> {
        let stream = open_stream(uri)?;
        let mut c = Conn {
            stream,
            buf: vec![0; READ_BUF],
            start: 0,
            end: 0,
            frame_max: 0,
            heartbeat: 0,
            server_properties: FieldTable::new(),
            blocked: false,
            out: Vec::with_capacity(512),
        };
        c.write_all(PROTOCOL_HEADER)?;
        let start = match c.wait_method(0, "connection.start")? {
            Method::ConnectionStart(s) => s,
            m => return Err(unexpected(&m, "connection.start")),
        };
        if !start
            .mechanisms
            .split(|&b| b == b' ')
            .any(|m| m == b"PLAIN")
        {
            return Err(ClientError::Protocol(format!(
                "broker does not offer PLAIN (mechanisms: {})",
                String::from_utf8_lossy(&start.mechanisms)
            )));
        }
        c.server_properties = start.server_properties;
        let mut response = Vec::with_capacity(uri.user.len() + uri.password.len() + 2);
        response.push(0);
        response.extend_from_slice(uri.user.as_bytes());
        response.push(0);
        response.extend_from_slice(uri.password.as_bytes());
        c.send(
            0,
            &ConnectionStartOk {
                client_properties,
                mechanism: Bytes::from_static(b"PLAIN"),
                response: Bytes::from(response),
                locale: Bytes::from_static(b"en_US"),
            }
            .into(),
        )?;
        let tune = match c.wait_method(0, "connection.tune") {
            Ok(Method::ConnectionTune(t)) => t,
            Ok(m) => return Err(unexpected(&m, "connection.tune")),
            Err(ClientError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(ClientError::Protocol(format!(
                    "broker closed the connection after start-ok (wrong credentials for user {:?}?)",
                    uri.user
                )))
            }
            Err(e) => return Err(e),
        };
        c.frame_max = tune.frame_max;
        let wanted: u16 = uri
            .query_param("heartbeat")
            .and_then(|h| h.parse().ok())
            .unwrap_or(0);
        // As amqp_client negotiates, except that no `heartbeat` (0) turns
        // them off: the loadgen's loops do not send them.
        c.heartbeat = match (wanted, tune.heartbeat) {
            (0, _) => 0,
            (w, 0) => w,
            (w, server) => w.min(server),
        };
        c.send(
            0,
            &ConnectionTuneOk {
                channel_max: tune.channel_max,
                frame_max: tune.frame_max,
                heartbeat: c.heartbeat,
            }
            .into(),
        )?;
        match c.call(
            0,
            ConnectionOpen {
                virtual_host: Bytes::copy_from_slice(uri.vhost.as_bytes()),
                ..Default::default()
            }
            .into(),
        )? {
            Method::ConnectionOpenOk(_) => {}
            m => return Err(unexpected(&m, "connection.open-ok")),
        }
        match c.call(CHANNEL, ChannelOpen::default().into())? {
            Method::ChannelOpenOk(_) => {}
            m => return Err(unexpected(&m, "channel.open-ok")),
        }
        Ok(c)
    }

    /// Encodes and writes one method frame.
    pub fn send(&mut self, channel: u16, m: &Method) -> Result<()> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        write_method(&mut out, channel, m);
        let r = self.write_all(&out);
        self.out = out;
        r
    }

    /// Sends a synchronous method and waits for the next method on `channel`
    /// (its reply). Heartbeats, content frames and methods of other channels
    /// in between are skipped; connection.close / channel.close become errors.
    pub fn call(&mut self, channel: u16, m: Method) -> Result<Method> {
        self.send(channel, &m)?;
        self.wait_method(channel, &format!("reply to {}", m.name()))
    }

    /// Reads until a method arrives on `channel` (see [`Conn::call`]).
    fn wait_method(&mut self, channel: u16, what: &str) -> Result<Method> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            while let Some(f) = self.next_frame()? {
                if f.kind != FRAME_METHOD {
                    continue;
                }
                let m = self.decode(&f)?;
                self.control(&m)?;
                if f.channel == channel {
                    return Ok(m);
                }
            }
            if Instant::now() > deadline {
                return Err(ClientError::Protocol(format!(
                    "timed out after {}s waiting for {what}",
                    CALL_TIMEOUT.as_secs()
                )));
            }
            self.fill()?;
        }
    }

    /// Decodes a method frame (copies the payload: for setup and rare frames).
    pub fn decode(&self, f: &Frame) -> Result<Method> {
        Method::decode(Bytes::copy_from_slice(self.payload(f)))
            .map_err(|e| ClientError::Protocol(format!("undecodable method from broker: {e}")))
    }

    /// Reacts to the methods any loop must handle: connection.close and
    /// channel.close (answered, then returned as errors) and
    /// connection.blocked / unblocked (tracked in [`Conn::blocked`]).
    pub fn control(&mut self, m: &Method) -> Result<()> {
        match m {
            Method::ConnectionClose(c) => {
                let _ = self.send(0, &ConnectionCloseOk::default().into());
                Err(ClientError::ConnectionClosed {
                    code: c.reply_code,
                    text: String::from_utf8_lossy(&c.reply_text).into_owned(),
                    method: culprit(c.class_id, c.method_id),
                })
            }
            Method::ChannelClose(c) => {
                let _ = self.send(CHANNEL, &ChannelCloseOk::default().into());
                Err(ClientError::ChannelClosed {
                    code: c.reply_code,
                    text: String::from_utf8_lossy(&c.reply_text).into_owned(),
                    method: culprit(c.class_id, c.method_id),
                })
            }
            Method::ConnectionBlocked(b) => {
                if !self.blocked {
                    log::warn!(
                        "connection blocked by broker: {}",
                        String::from_utf8_lossy(&b.reason)
                    );
                }
                self.blocked = true;
                Ok(())
            }
            Method::ConnectionUnblocked(_) => {
                self.blocked = false;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Handles a method frame the hot loop did not want: decodes it and runs
    /// [`Conn::control`]. Returns the method for the caller to inspect.
    pub fn other_method(&mut self, f: &Frame) -> Result<Method> {
        let m = self.decode(f)?;
        self.control(&m)?;
        Ok(m)
    }

    /// Opens channel [`CHANNEL`] again after the broker closed it.
    pub fn reopen_channel(&mut self) -> Result<()> {
        match self.call(CHANNEL, ChannelOpen::default().into())? {
            Method::ChannelOpenOk(_) => Ok(()),
            m => Err(unexpected(&m, "channel.open-ok")),
        }
    }

    /// Declares a queue (not exclusive, not auto-delete). With `use_existing`
    /// it is first declared passively, and an existing queue is used as it
    /// is (whatever its flags); only a missing one is created.
    pub fn declare_queue(&mut self, name: &str, durable: bool, use_existing: bool) -> Result<()> {
        self.declare_queue_with(name, durable, use_existing, FieldTable::new())
    }

    /// `declare_queue` with arguments (`x-queue-type=stream` …).
    pub fn declare_queue_with(
        &mut self,
        name: &str,
        durable: bool,
        use_existing: bool,
        arguments: FieldTable,
    ) -> Result<()> {
        if use_existing {
            match self.queue_len(name) {
                Ok(_) => return Ok(()),
                Err(ClientError::ChannelClosed { code: 404, .. }) => self.reopen_channel()?,
                Err(e) => return Err(e),
            }
        }
        let q = QueueDeclare {
            queue: Bytes::copy_from_slice(name.as_bytes()),
            durable,
            arguments,
            ..Default::default()
        };
        match self.call(CHANNEL, q.into())? {
            Method::QueueDeclareOk(_) => Ok(()),
            m => Err(unexpected(&m, "queue.declare-ok")),
        }
    }

    /// Messages ready in an existing queue (passive queue.declare).
    pub fn queue_len(&mut self, name: &str) -> Result<u32> {
        let passive = QueueDeclare {
            queue: Bytes::copy_from_slice(name.as_bytes()),
            passive: true,
            ..Default::default()
        };
        match self.call(CHANNEL, passive.into())? {
            Method::QueueDeclareOk(ok) => Ok(ok.message_count),
            m => Err(unexpected(&m, "queue.declare-ok")),
        }
    }

    /// Deletes a queue; returns the messages it still held.
    pub fn delete_queue(&mut self, name: &str) -> Result<u32> {
        let del = QueueDelete {
            queue: Bytes::copy_from_slice(name.as_bytes()),
            ..Default::default()
        };
        match self.call(CHANNEL, del.into())? {
            Method::QueueDeleteOk(ok) => Ok(ok.message_count),
            m => Err(unexpected(&m, "queue.delete-ok")),
        }
    }

    /// Declares an exchange of type `kind` (not auto-delete, not internal).
    pub fn declare_exchange(&mut self, name: &str, kind: &str, durable: bool) -> Result<()> {
        let ex = ExchangeDeclare {
            exchange: Bytes::copy_from_slice(name.as_bytes()),
            kind: Bytes::copy_from_slice(kind.as_bytes()),
            durable,
            ..Default::default()
        };
        match self.call(CHANNEL, ex.into())? {
            Method::ExchangeDeclareOk(_) => Ok(()),
            m => Err(unexpected(&m, "exchange.declare-ok")),
        }
    }

    pub fn delete_exchange(&mut self, name: &str) -> Result<()> {
        let del = ExchangeDelete {
            exchange: Bytes::copy_from_slice(name.as_bytes()),
            ..Default::default()
        };
        match self.call(CHANNEL, del.into())? {
            Method::ExchangeDeleteOk(_) => Ok(()),
            m => Err(unexpected(&m, "exchange.delete-ok")),
        }
    }

    pub fn bind_queue(
        &mut self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: FieldTable,
    ) -> Result<()> {
        let bind = QueueBind {
            queue: Bytes::copy_from_slice(queue.as_bytes()),
            exchange: Bytes::copy_from_slice(exchange.as_bytes()),
            routing_key: Bytes::copy_from_slice(routing_key.as_bytes()),
            arguments,
            ..Default::default()
        };
        match self.call(CHANNEL, bind.into())? {
            Method::QueueBindOk(_) => Ok(()),
            m => Err(unexpected(&m, "queue.bind-ok")),
        }
    }

    /// The payload of a frame returned by [`Conn::next_frame`].
    #[inline]
    pub fn payload(&self, f: &Frame) -> &[u8] {
        &self.buf[f.start..f.start + f.len]
    }

    /// The next complete frame in the read buffer, if any (no I/O).
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        let avail = &self.buf[self.start..self.end];
        match check_frame(avail, 0) {
            Ok(Some(h)) => {
                let f = Frame {
                    kind: h.kind,
                    channel: h.channel,
                    start: self.start + 7,
                    len: h.size as usize,
                };
                self.start += h.total_len();
                Ok(Some(f))
            }
            Ok(None) => {
                if avail.len() >= 7 {
                    // Make room for a frame bigger than the buffer.
                    let need =
                        8 + u32::from_be_bytes([avail[3], avail[4], avail[5], avail[6]]) as usize;
                    if need > self.buf.len() {
                        self.buf.resize(need, 0);
                    }
                }
                Ok(None)
            }
            Err(_) if avail.starts_with(b"AMQP") => Err(ClientError::Protocol(format!(
                "broker rejected the protocol header and answered {:?}",
                &avail[..avail.len().min(8)]
            ))),
            Err(e) => Err(ClientError::Protocol(format!("bad frame from broker: {e}"))),
        }
    }

    /// Moves unread bytes to the front if that makes room.
    #[inline]
    fn compact(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && (self.end == self.buf.len() || self.start >= self.buf.len() / 2)
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// One blocking read (at most [`IO_TICK`]). Ok(false): timed out.
    /// End of stream is an error.
    pub fn fill(&mut self) -> Result<bool> {
        self.compact();
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(eof()),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(false)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One non-blocking read (MSG_DONTWAIT). Ok(false): nothing was there.
    pub fn poll(&mut self) -> Result<bool> {
        self.compact();
        loop {
            match self.stream.read_nonblocking(&mut self.buf[self.end..]) {
                Ok(0) => return Err(eof()),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes all of `data`, retrying through write timeouts for at most
    /// [`CALL_TIMEOUT`] (the broker not reading that long is an error).
    pub fn write_all(&mut self, data: &[u8]) -> Result<()> {
        write_all_within(&mut self.stream, data)
    }

    /// Closes the connection politely: sends connection.close and reads until
    /// close-ok (or `timeout`), handing every other frame to `on_frame`
    /// (e.g. late publisher confirms). Errors are not interesting here: the
    /// socket is dropped either way.
    pub fn close(mut self, timeout: Duration, mut on_frame: impl FnMut(&Conn, &Frame)) {
        let close = ConnectionClose {
            reply_code: constants::REPLY_SUCCESS,
            reply_text: Bytes::from_static(b"loadgen done"),
            ..Default::default()
        };
        if self.send(0, &close.into()).is_err() {
            return;
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            loop {
                match self.next_frame() {
                    Ok(Some(f)) => {
                        if f.kind == FRAME_METHOD
                            && f.channel == 0
                            && matches!(
                                method_id(self.payload(&f)),
                                (10, 51) | (10, 50) // close-ok, or close crossing ours
                            )
                        {
                            return;
                        }
                        if f.kind != FRAME_HEARTBEAT {
                            on_frame(&self, &f);
                        }
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

/// The socket to `uri`'s broker: TCP without Nagle, with [`IO_TICK`]
/// timeouts, TLS for `amqps://` (both protocols' clients start here).
pub fn open_stream(uri: &AmqpUri) -> Result<Stream> {
    let tcp = connect(&uri.addr())?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(IO_TICK))?;
    tcp.set_write_timeout(Some(IO_TICK))?;
    Ok(if uri.tls {
        Stream::tls(tcp, &uri.host, uri.query_param("cacertfile"))?
    } else {
        Stream::Plain(tcp)
    })
}

/// Declares a server-named exclusive queue; returns its name.
impl Conn {
    pub fn declare_exclusive(&mut self) -> Result<String> {
        let q = QueueDeclare {
            exclusive: true,
            ..Default::default()
        };
        match self.call(CHANNEL, q.into())? {
            Method::QueueDeclareOk(ok) => Ok(String::from_utf8_lossy(&ok.queue).into_owned()),
            m => Err(unexpected(&m, "queue.declare-ok")),
        }
    }
}

/// Connects to the first address of `addr` that answers (10 s each).
pub fn connect(addr: &str) -> Result<TcpStream> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(ClientError::Io(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"))
    })))
}

/// The broker closed the socket (an `UnexpectedEof` I/O error).
pub fn eof() -> ClientError {
    ClientError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "broker closed the socket",
    ))
}

/// "expected `wanted`, got `m`": a reply that is not the one asked for.
pub fn unexpected(m: &Method, wanted: &str) -> ClientError {
    ClientError::Protocol(format!("expected {wanted}, got {}", m.name()))
}

/// " (in basic.publish)" for a close that names a method, else "".
fn culprit(class_id: u16, method_id: u16) -> String {
    match crate::protocol::methods::method_name(class_id, method_id) {
        Some(n) => format!(" (in {n})"),
        None => String::new(),
    }
}

/// client-properties of connection.start-ok: product, version and the
/// capabilities RabbitMQ clients announce.
pub fn client_properties(name: &str) -> FieldTable {
    client_properties_of("warren-loadgen", name)
}

/// [`client_properties`] with another `product`.
pub fn client_properties_of(product: &str, name: &str) -> FieldTable {
    let s = |v: &str| FieldValue::LongStr(Bytes::copy_from_slice(v.as_bytes()));
    let mut caps = FieldTable::new();
    for cap in [
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "exchange_exchange_bindings",
        "authentication_failure_close",
    ] {
        caps.insert(cap, FieldValue::Bool(true));
    }
    let mut t = FieldTable::new();
    t.insert("product", s(product));
    t.insert("version", s(env!("CARGO_PKG_VERSION")));
    t.insert("platform", s("Rust"));
    t.insert("connection_name", s(name));
    t.insert("capabilities", FieldValue::Table(caps));
    t
}

/// Writes all of `data` to `stream`, retrying through write timeouts for at
/// most [`CALL_TIMEOUT`] (the broker not reading that long is an error).
/// Both protocols' clients write with it.
pub fn write_all_within(stream: &mut Stream, data: &[u8]) -> Result<()> {
    let mut off = 0;
    let deadline = Instant::now() + CALL_TIMEOUT;
    while off < data.len() {
        match stream.write(&data[off..]) {
            Ok(0) => return Err(eof()),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() > deadline {
                    return Err(ClientError::Protocol(format!(
                        "broker did not read for {}s",
                        CALL_TIMEOUT.as_secs()
                    )));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
