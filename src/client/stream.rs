//! The client socket, plain TCP or TLS (`amqps://`: rustls with the ring
//! provider). The CAs trusted are, first found: the URI's `cacertfile`
//! query parameter (as RabbitMQ's shovel URIs give it), the process-wide
//! ones (`set_tls_ca`, the loadgen's `--tls-ca`), the system bundle
//! (`/etc/ssl/certs/ca-certificates.crt`).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// The TLS client configuration, set once from `--tls-ca` (`set_tls_ca`).
static TLS: OnceLock<Arc<ClientConfig>> = OnceLock::new();

/// Debian's bundle of the system's trusted CAs.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Makes the CAs in `path` (PEM) the process-wide default.
pub fn set_tls_ca(path: &Path) -> Result<(), String> {
    let _ = TLS.set(tls_config(path)?);
    Ok(())
}

/// A TLS client configuration trusting the CAs in `path` (PEM).
pub fn tls_config(path: &Path) -> Result<Arc<ClientConfig>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut io::BufReader::new(f)) {
        let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A connected socket.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// TLS over `tcp` to `host` (handshake done when the first bytes flow),
    /// trusting the CAs of `cacertfile` if given, else the defaults (above).
    pub fn tls(tcp: TcpStream, host: &str, cacertfile: Option<&str>) -> io::Result<Stream> {
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        let config = match (cacertfile, TLS.get()) {
            (Some(path), _) => tls_config(Path::new(path)).map_err(invalid)?,
            (None, Some(c)) => c.clone(),
            (None, None) => tls_config(Path::new(SYSTEM_CAS)).map_err(|e| {
                invalid(format!("amqps:// needs trusted CAs (cacertfile=...): {e}"))
            })?,
        };
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        Ok(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))))
    }

    /// One read that does not wait: plaintext rustls holds, else one
    /// recv(MSG_DONTWAIT) of ciphertext. WouldBlock: nothing there.
    pub fn read_nonblocking(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => recv_dontwait(s, buf),
            Stream::Tls(t) => {
                let StreamOwned { conn, sock } = &mut **t;
                loop {
                    match conn.reader().read(buf) {
                        Ok(n) => return Ok(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                    if conn.read_tls(&mut DontWait(sock))? == 0 {
                        return Ok(0);
                    }
                    conn.process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    while conn.wants_write() {
                        conn.write_tls(sock)?;
                    }
                }
            }
        }
    }
}

impl Stream {
    /// The socket's file descriptor (for poll(2)).
    pub fn fd(&self) -> std::os::fd::RawFd {
        match self {
            Stream::Plain(s) => s.as_raw_fd(),
            Stream::Tls(t) => t.sock.as_raw_fd(),
        }
    }

    /// One write that does not wait; WouldBlock: the socket is full. With
    /// TLS the plaintext taken may wait in rustls for the socket:
    /// [`Stream::wants_write`] says so, and [`Stream::flush_nonblocking`]
    /// pushes it.
    pub fn write_nonblocking(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => send_dontwait(s, buf),
            Stream::Tls(t) => {
                self_flush_tls(t)?;
                let n = t.conn.writer().write(buf)?;
                match self_flush_tls(t) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                    Ok(()) => {}
                }
                if n == 0 && !buf.is_empty() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            }
        }
    }

    /// TLS records are waiting for the socket.
    pub fn wants_write(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(t) => t.conn.wants_write(),
        }
    }

    /// Pushes waiting TLS records without waiting (WouldBlock: some left).
    pub fn flush_nonblocking(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(t) => self_flush_tls(t),
        }
    }
}

/// Writes rustls's waiting records with send(MSG_DONTWAIT).
fn self_flush_tls(t: &mut StreamOwned<ClientConnection, TcpStream>) -> io::Result<()> {
    let StreamOwned { conn, sock } = t;
    while conn.wants_write() {
        conn.write_tls(&mut DontWait(sock))?;
    }
    Ok(())
}

/// send(MSG_DONTWAIT | MSG_NOSIGNAL) on a blocking socket.
fn send_dontwait(s: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid readable buffer of `buf.len()` bytes.
    let n = unsafe {
        libc::send(
            s.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// recv(MSG_DONTWAIT) on a blocking socket.
fn recv_dontwait(s: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

struct DontWait<'a>(&'a TcpStream);

impl Read for DontWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        recv_dontwait(self.0, buf)
    }
}

impl Write for DontWait<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send_dontwait(self.0, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}
