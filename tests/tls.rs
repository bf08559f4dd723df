//! TLS (amqps) on the shards' own event loops, and the EXTERNAL mechanism.
//!
//! Every test makes its own CA, server certificate (SAN 127.0.0.1 and
//! localhost) and client certificates with rcgen in a temp dir, and starts a
//! broker in-process with `--tls-cert`/`--tls-key` (and `--tls-ca` when
//! clients show certificates). Clients: lapin (`amqps://`, whose rustls
//! picks TLS 1.3), a raw AMQP client over a rustls stream whose TLS version
//! the test picks (`TlsRaw`), pika with an `ssl.SSLContext`, and plain
//! sockets that misbehave on the TLS port.

mod common_lapin;
mod common_raw;
mod util;
use common_lapin::*;
use common_raw::{frame, method, publish_frames, shortstr, Cur, Frame};

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{options::*, BasicProperties, Connection, ConnectionProperties};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warren::config::CertLoginFrom;

// ---------------------------------------------------------------- certificates

/// A CA that signs server and client certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf certificate for `sans`, with subject `O=Warren Tests,CN=<cn>`.
    fn issue(&self, cn: &str, sans: &[&str]) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Warren Tests");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf { cert, key }
    }
}

/// A certificate and its key.
struct Leaf {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Leaf {
    /// lapin's client identity: PKCS#12 with the key (PKCS#8) and the chain.
    fn identity(&self) -> OwnedIdentity {
        let chain = vec![p12_keystore::Certificate::from_der(self.cert.der()).unwrap()];
        let kc = p12_keystore::PrivateKeyChain::new(self.key.serialize_der(), [1u8; 20], chain);
        let mut ks = p12_keystore::KeyStore::new();
        ks.add_entry("client", p12_keystore::KeyStoreEntry::PrivateKeyChain(kc));
        OwnedIdentity {
            der: ks.writer("pw").write().unwrap(),
            password: "pw".into(),
        }
    }
}

/// A temp dir with `ca.pem`, `server.pem`, `server.key`; removed on drop.
struct Pki {
    dir: PathBuf,
    ca: Arc<Ca>,
}

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("warren-tls-{}", unique("pki")));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Ca::new("Warren Test CA");
        let server = ca.issue("localhost", &["localhost", "127.0.0.1"]);
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), server.cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server.key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca: Arc::new(ca),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------- broker

/// How the TLS listener treats client certificates.
#[derive(Clone, Copy)]
enum Peer {
    /// No `--tls-ca`: none asked for.
    NotAsked,
    /// `--tls-ca`: asked for, optional.
    Optional,
    /// `--tls-ca --tls-fail-if-no-peer-cert`.
    Required,
}

struct Broker {
    handle: Option<warren::BrokerHandle>,
}

impl Broker {
    fn start(pki: &Pki, peer: Peer, login_from: CertLoginFrom) -> Broker {
        let _ = env_logger::builder().is_test(true).try_init();
        let mut config = warren::Config::for_tests(2);
        config.tls_cert = Some(pki.path("server.pem"));
        config.tls_key = Some(pki.path("server.key"));
        if !matches!(peer, Peer::NotAsked) {
            config.tls_ca = Some(pki.path("ca.pem"));
        }
        config.tls_fail_if_no_peer_cert = matches!(peer, Peer::Required);
        config.tls_cert_login_from = login_from;
        Broker {
            handle: Some(warren::start(config).expect("broker starts")),
        }
    }

    fn h(&self) -> &warren::BrokerHandle {
        self.handle.as_ref().unwrap()
    }

    fn tls_port(&self) -> u16 {
        self.h().tls_port().expect("TLS listener")
    }

    fn plain_uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.h().port())
    }

    fn tls_uri(&self) -> String {
        format!("amqps://guest:guest@127.0.0.1:{}/%2f", self.tls_port())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

/// lapin over TLS trusting `ca_pem`, with an optional client identity.
async fn try_connect_tls(
    uri: &str,
    ca_pem: String,
    identity: Option<OwnedIdentity>,
) -> Result<Connection, lapin::Error> {
    let tls = OwnedTLSConfig {
        identity,
        cert_chain: Some(ca_pem),
    };
    within(Connection::connect_with_config(
        uri,
        ConnectionProperties::default(),
        tls,
    ))
    .await
}

async fn connect_tls(uri: &str, ca_pem: String, identity: Option<OwnedIdentity>) -> Connection {
    try_connect_tls(uri, ca_pem, identity)
        .await
        .unwrap_or_else(|e| panic!("TLS connect to {uri}: {e}"))
}

/// A body of `n` bytes that shows where a corruption happened.
fn body(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

/// Publishes `bodies` on `from` to a new queue, consumes them on `to`, and
/// checks each arrives whole and in order.
async fn round_trip(from: &Connection, to: &Connection, sizes: &[usize]) {
    let pch = channel(from).await;
    let cch = channel(to).await;
    let q = temp_queue(&cch).await;
    let mut consumer = consume(&cch, &q, true).await;
    for (i, &n) in sizes.iter().enumerate() {
        let b = body(n, i as u8);
        pch.basic_publish(
            "",
            &q,
            BasicPublishOptions::default(),
            &b,
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    for (i, &n) in sizes.iter().enumerate() {
        let d = recv(&mut consumer).await;
        assert_eq!(d.data.len(), n, "message {i}: size");
        assert!(
            d.data == body(n, i as u8),
            "message {i} ({n} bytes) corrupted"
        );
    }
}

const SIZES: &[usize] = &[0, 1, 100, 16 * 1024, 70_000, 300_000, 1_000_000];

// ---------------------------------------------------------------- raw TLS client

/// A hand-driven AMQP client over rustls, with the TLS version and client
/// certificate the test picks.
struct TlsRaw {
    s: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl TlsRaw {
    fn connect(
        port: u16,
        ca: &Ca,
        version: &'static rustls::SupportedProtocolVersion,
        client: Option<&Leaf>,
    ) -> std::io::Result<TlsRaw> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert.der().clone()).unwrap();
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            Some(l) => b
                .with_client_auth_cert(
                    vec![l.cert.der().clone()],
                    rustls::pki_types::PrivateKeyDer::try_from(l.key.serialize_der()).unwrap(),
                )
                .unwrap(),
            None => b.with_no_client_auth(),
        };
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let sock = TcpStream::connect(("127.0.0.1", port))?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut raw = TlsRaw {
            s: rustls::StreamOwned::new(conn, sock),
        };
        raw.s.conn.complete_io(&mut raw.s.sock)?;
        Ok(raw)
    }

    fn version(&self) -> Option<rustls::ProtocolVersion> {
        self.s.conn.protocol_version()
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
        self.s.flush().unwrap();
    }

    fn send_method(&mut self, ch: u16, class: u16, m: u16, args: &[u8]) {
        self.send(&frame(1, ch, &method(class, m, args)));
    }

    fn read_frame(&mut self) -> std::io::Result<Frame> {
        loop {
            let mut h = [0u8; 7];
            self.s.read_exact(&mut h)?;
            let len = u32::from_be_bytes([h[3], h[4], h[5], h[6]]) as usize;
            let mut p = vec![0u8; len + 1];
            self.s.read_exact(&mut p)?;
            assert_eq!(p.pop(), Some(0xCE), "frame end octet");
            if h[0] != 8 {
                return Ok((h[0], u16::from_be_bytes([h[1], h[2]]), p));
            }
        }
    }

    fn expect_method(&mut self, ch: u16, class: u16, m: u16) -> Vec<u8> {
        let (ty, c, p) = self.read_frame().expect("read frame");
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

    /// Protocol header → connection.start; returns its mechanisms.
    fn mechanisms(&mut self) -> String {
        self.send(b"AMQP\x00\x00\x09\x01");
        let a = self.expect_method(0, 10, 10);
        let mut c = Cur(&a);
        c.u8();
        c.u8();
        c.table();
        String::from_utf8(c.longstr()).unwrap()
    }

    /// connection.start-ok with `mechanism` and `response`.
    fn start_ok(&mut self, mechanism: &str, response: &[u8]) {
        let caps = [&shortstr("authentication_failure_close")[..], b"t\x01"].concat();
        let props = [
            &shortstr("capabilities")[..],
            b"F",
            &(caps.len() as u32).to_be_bytes(),
            &caps,
        ]
        .concat();
        let a = [
            &(props.len() as u32).to_be_bytes()[..],
            &props,
            &shortstr(mechanism),
            &(response.len() as u32).to_be_bytes(),
            response,
            &shortstr("en_US"),
        ]
        .concat();
        self.send_method(0, 10, 11, &a);
    }

    /// Expects connection.close; returns (code, text).
    fn expect_close(&mut self) -> (u16, String) {
        let a = self.expect_method(0, 10, 50);
        let mut c = Cur(&a);
        (c.u16(), c.shortstr())
    }

    /// PLAIN login, tune-ok (frame_max 131072), open, channel 1.
    fn open(&mut self) {
        self.mechanisms();
        self.start_ok("PLAIN", b"\0guest\0guest");
        self.expect_method(0, 10, 30);
        let tune = [
            &2047u16.to_be_bytes()[..],
            &131072u32.to_be_bytes(),
            &0u16.to_be_bytes(),
        ];
        self.send_method(0, 10, 31, &tune.concat());
        self.send_method(0, 10, 40, &[&shortstr("/")[..], &[0, 0]].concat());
        self.expect_method(0, 10, 41);
        self.send_method(1, 20, 10, &[0]);
        self.expect_method(1, 20, 11);
    }

    /// Publishes `b` to queue `q` and gets it back with basic.get.
    fn publish_and_get(&mut self, q: &str, b: &[u8]) -> Vec<u8> {
        let declare = [&[0, 0][..], &shortstr(q), &[0], &0u32.to_be_bytes()].concat();
        self.send_method(1, 50, 10, &declare);
        self.expect_method(1, 50, 11);
        self.send(&publish_frames(1, "", q, b, 131072));
        // basic.get (no-ack); the publish is ahead of it on the channel.
        self.send_method(1, 60, 70, &[&[0, 0][..], &shortstr(q), &[1]].concat());
        self.expect_method(1, 60, 71);
        let (ty, _, h) = self.read_frame().unwrap();
        assert_eq!(ty, 2, "content header");
        let size = u64::from_be_bytes(h[4..12].try_into().unwrap()) as usize;
        let mut got = Vec::with_capacity(size);
        while got.len() < size {
            let (ty, _, p) = self.read_frame().unwrap();
            assert_eq!(ty, 3, "body frame");
            got.extend_from_slice(&p);
        }
        got
    }
}

/// Runs blocking client code off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    within(tokio::task::spawn_blocking(f))
        .await
        .expect("blocking client panicked")
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn lapin_over_tls_carries_all_sizes_beside_plain_tcp() {
    let pki = Pki::new();
    let b = Broker::start(&pki, Peer::NotAsked, CertLoginFrom::default());
    let tls = connect_tls(&b.tls_uri(), pki.ca.pem(), None).await;
    let plain = connect(&b.plain_uri()).await;
    round_trip(&tls, &tls, SIZES).await;
    round_trip(&tls, &plain, SIZES).await;
    round_trip(&plain, &tls, SIZES).await;
    // Several TLS connections, spread over both shards.
    let mut more = Vec::new();
    for _ in 0..4 {
        more.push(connect_tls(&b.tls_uri(), pki.ca.pem(), None).await);
    }
    for c in &more {
        round_trip(c, &plain, &[10, 200_000]).await;
    }
    tls.close(200, "bye").await.unwrap();
    assert_broker_alive(&b.plain_uri()).await;
}

#[tokio::test]
async fn tls12_and_tls13_both_carry_large_bodies() {
    let pki = Pki::new();
    let b = Broker::start(&pki, Peer::NotAsked, CertLoginFrom::default());
    let port = b.tls_port();
    let ca = pki.ca.clone();
    for (version, expect) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let ca = ca.clone();
        blocking(move || {
            let mut c = TlsRaw::connect(port, &ca, version, None).expect("handshake");
            assert_eq!(c.version(), Some(expect));
            c.open();
            for n in [0usize, 5, 70_000, 400_000] {
                let sent = body(n, 7);
                let q = unique("tlsv");
                assert!(
                    c.publish_and_get(&q, &sent) == sent,
                    "{expect:?}: {n} bytes"
                );
            }
        })
        .await;
    }
    assert_broker_alive(&b.plain_uri()).await;
}

#[tokio::test]
async fn client_that_does_not_trust_the_server_is_refused() {
    let pki = Pki::new();
    let b = Broker::start(&pki, Peer::NotAsked, CertLoginFrom::default());
    let stranger = Ca::new("Some Other CA");
    let r = try_connect_tls(&b.tls_uri(), stranger.pem(), None).await;
    assert!(
        r.is_err(),
        "handshake with an untrusted server certificate succeeded"
    );
    // The broker serves everyone else, TLS or not.
    let tls = connect_tls(&b.tls_uri(), pki.ca.pem(), None).await;
    assert_connection_usable(&tls).await;
    assert_broker_alive(&b.plain_uri()).await;
}

#[tokio::test]
async fn fail_if_no_peer_cert_wants_a_certificate_from_the_ca() {
    let pki = Pki::new();
    let b = Broker::start(&pki, Peer::Required, CertLoginFrom::default());
    // No certificate.
    let r = try_connect_tls(&b.tls_uri(), pki.ca.pem(), None).await;
    assert!(r.is_err(), "a client without a certificate got in");
    // A certificate of another CA.
    let other = Ca::new("Other CA").issue("guest", &["client"]);
    let r = try_connect_tls(&b.tls_uri(), pki.ca.pem(), Some(other.identity())).await;
    assert!(r.is_err(), "a certificate from an unknown CA got in");
    // A certificate of the CA.
    let mine = pki.ca.issue("alice", &["client"]);
    let c = connect_tls(&b.tls_uri(), pki.ca.pem(), Some(mine.identity())).await;
    round_trip(&c, &c, &[3, 100_000]).await;
    assert_broker_alive(&b.plain_uri()).await;
}

#[tokio::test]
async fn optional_peer_cert_lets_clients_without_one_in() {
    let pki = Pki::new();
    let b = Broker::start(&pki, Peer::Optional, CertLoginFrom::default());
    let c = connect_tls(&b.tls_uri(), pki.ca.pem(), None).await;
    assert_connection_usable(&c).await;
    let other = Ca::new("Other CA").issue("guest", &["client"]);
    let r = try_connect_tls(&b.tls_uri(), pki.ca.pem(), Some(other.identity())).await;
    assert!(r.is_err(), "a certificate from an unknown CA got in");
}

#[tokio::test]
async fn external_login_with_the_common_name() {
    let pki = Pki::new();
    let b = Broker::start(&pki, Peer::Optional, CertLoginFrom::CommonName);
    let guest = pki.ca.issue("guest", &["client"]);
    let uri = format!(
        "amqps://127.0.0.1:{}/%2f?auth_mechanism=external",
        b.tls_port()
    );
    let c = connect_tls(&uri, pki.ca.pem(), Some(guest.identity())).await;
    round_trip(&c, &c, &[42]).await;
}

#[tokio::test]
async fn external_is_offered_only_over_tls_with_a_client_certificate() {
    let pki = Pki::new();
    let b = Broker::start(&pki, Peer::Optional, CertLoginFrom::CommonName);
    let port = b.tls_port();
    let plain_port = b.h().port();
    let client = pki.ca.issue("guest", &["client"]);
    let ca = pki.ca.clone();
    let (with_cert, without_cert, plain) = blocking(move || {
        let with = TlsRaw::connect(port, &ca, &rustls::version::TLS12, Some(&client))
            .unwrap()
            .mechanisms();
        let without = TlsRaw::connect(port, &ca, &rustls::version::TLS13, None)
            .unwrap()
            .mechanisms();
        let mut raw = common_raw::Raw::connect(plain_port);
        let a = raw.start();
        let mut c = Cur(&a);
        c.u8();
        c.u8();
        c.table();
        let plain = String::from_utf8(c.longstr()).unwrap();
        (with, without, plain)
    })
    .await;
    assert_eq!(with_cert, "AMQPLAIN PLAIN EXTERNAL");
    assert_eq!(without_cert, "AMQPLAIN PLAIN");
    assert_eq!(plain, "AMQPLAIN PLAIN");
}

#[tokio::test]
async fn external_refused_for_an_unknown_name_or_without_a_certificate() {
    let pki = Pki::new();
    // distinguished_name: the login name is "CN=guest,O=Warren Tests", no such user.
    let b = Broker::start(&pki, Peer::Optional, CertLoginFrom::DistinguishedName);
    let guest = pki.ca.issue("guest", &["client"]);
    let uri = format!(
        "amqps://127.0.0.1:{}/%2f?auth_mechanism=external",
        b.tls_port()
    );
    let err = try_connect_tls(&uri, pki.ca.pem(), Some(guest.identity()))
        .await
        .expect_err("EXTERNAL as an unknown user");
    assert_amqp_error(
        &err,
        403,
        "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL.",
    );
    // EXTERNAL without a certificate (not offered, asked for anyway).
    let port = b.tls_port();
    let ca = pki.ca.clone();
    let (code, text) = blocking(move || {
        let mut c = TlsRaw::connect(port, &ca, &rustls::version::TLS13, None).unwrap();
        c.mechanisms();
        c.start_ok("EXTERNAL", b"");
        c.expect_close()
    })
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        text,
        "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL. \
         For details see the broker logfile."
    );
    assert_broker_alive(&b.plain_uri()).await;
}

#[tokio::test]
async fn plaintext_amqp_on_the_tls_port_is_closed() {
    let pki = Pki::new();
    let b = Broker::start(&pki, Peer::NotAsked, CertLoginFrom::default());
    let port = b.tls_port();
    let good = connect_tls(&b.tls_uri(), pki.ca.pem(), None).await;
    blocking(move || {
        for garbage in [&b"AMQP\x00\x00\x09\x01"[..], &[0xffu8; 300][..]] {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(garbage).unwrap();
            // At most an alert comes back, then EOF (or a reset).
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                    Err(e) => panic!("the TLS port did not close a plaintext client: {e}"),
                }
            }
            assert!(!got.starts_with(b"AMQP"), "answered in plaintext: {got:?}");
        }
    })
    .await;
    assert_connection_usable(&good).await;
    round_trip(&good, &good, &[1000]).await;
}

#[tokio::test]
async fn a_stalled_handshake_blocks_no_one() {
    let pki = Pki::new();
    let b = Broker::start(&pki, Peer::NotAsked, CertLoginFrom::default());
    let port = b.tls_port();
    // Half a ClientHello record each (the kernel spreads them over both
    // shards), then silence.
    let mut stalled = Vec::new();
    for _ in 0..6 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
            .unwrap();
        stalled.push(s);
    }
    let started = Instant::now();
    let tls = connect_tls(&b.tls_uri(), pki.ca.pem(), None).await;
    let plain = connect(&b.plain_uri()).await;
    round_trip(&tls, &plain, &[10, 100_000]).await;
    round_trip(&plain, &tls, &[10, 100_000]).await;
    for _ in 0..4 {
        let c = connect_tls(&b.tls_uri(), pki.ca.pem(), None).await;
        assert_connection_usable(&c).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "served slowly while handshakes stall: {:?}",
        started.elapsed()
    );
    drop(stalled);
}

#[test]
fn unreadable_or_bad_certificates_fail_start_with_a_message() {
    let pki = Pki::new();
    let mut config = warren::Config::for_tests(1);
    config.tls_cert = Some(pki.path("missing.pem"));
    config.tls_key = Some(pki.path("server.key"));
    let e = warren::start(config)
        .err()
        .expect("start without a certificate file");
    assert!(e.to_string().contains("missing.pem"), "{e}");

    // A key file with no key in it.
    let mut config = warren::Config::for_tests(1);
    config.tls_cert = Some(pki.path("server.pem"));
    config.tls_key = Some(pki.path("ca.pem"));
    let e = warren::start(config).err().expect("start without a key");
    assert!(e.to_string().contains("no private key"), "{e}");

    // A key that is not the certificate's.
    let other = KeyPair::generate().unwrap();
    std::fs::write(pki.path("other.key"), other.serialize_pem()).unwrap();
    let mut config = warren::Config::for_tests(1);
    config.tls_cert = Some(pki.path("server.pem"));
    config.tls_key = Some(pki.path("other.key"));
    assert!(warren::start(config).is_err(), "mismatched key accepted");

    // A CA bundle that is not PEM.
    std::fs::write(pki.path("junk.pem"), "not a certificate").unwrap();
    let mut config = warren::Config::for_tests(1);
    config.tls_cert = Some(pki.path("server.pem"));
    config.tls_key = Some(pki.path("server.key"));
    config.tls_ca = Some(pki.path("junk.pem"));
    let e = warren::start(config).err().expect("start with a junk CA");
    assert!(e.to_string().contains("junk.pem"), "{e}");

    // No TLS flags: no TLS listener.
    let h = warren::start(warren::Config::for_tests(1)).unwrap();
    assert_eq!(h.tls_port(), None);
    h.shutdown();
}

#[test]
fn every_shard_shares_the_tls_port() {
    let pki = Pki::new();
    let b = Broker::start(&pki, Peer::NotAsked, CertLoginFrom::default());
    let port = b.tls_port();
    assert_ne!(port, 0);
    assert_ne!(port, b.h().port());
    // The kernel spreads connections over the shards' sockets; every one of
    // them completes a handshake on the same port.
    for _ in 0..8 {
        let c = TlsRaw::connect(port, &pki.ca, &rustls::version::TLS13, None).expect("handshake");
        drop(c);
    }
}

// ---------------------------------------------------------------- pika

/// The pika venv's python (scripts/pyenv.sh), or None when there is no
/// python3 on this machine.
fn pika_python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("python3 not found: pika TLS test skipped");
        return None;
    }
    let out = std::process::Command::new("sh")
        .arg(root.join("scripts").join("pyenv.sh"))
        .output()
        .expect("scripts/pyenv.sh");
    assert!(
        out.status.success(),
        "scripts/pyenv.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8(out.stdout).unwrap();
    Some(PathBuf::from(path.trim()))
}

#[test]
fn pika_over_tls() {
    let Some(python) = pika_python() else {
        return;
    };
    let pki = Pki::new();
    let b = Broker::start(&pki, Peer::NotAsked, CertLoginFrom::default());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pika/tls_hello.py");
    for version in ["1.2", "1.3"] {
        let out = std::process::Command::new(&python)
            .arg(&script)
            .args(["--port", &b.tls_port().to_string()])
            .arg("--ca")
            .arg(pki.path("ca.pem"))
            .args(["--tls-version", version])
            .output()
            .expect("run tls_hello.py");
        assert!(
            out.status.success(),
            "tls_hello.py --tls-version {version} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// AMQP 1.0 over the same TLS listener, logging in with SASL EXTERNAL: the
/// client certificate's CN (`--tls-cert-login-from common_name`) names the
/// user (python-qpid-proton, tests/amqp10/tls_external.py).
#[test]
fn amqp10_over_tls_with_external() {
    let Some(python) = pika_python() else {
        return;
    };
    let pki = Pki::new();
    let b = Broker::start(&pki, Peer::Optional, CertLoginFrom::CommonName);
    let client = pki.ca.issue("guest", &["client"]);
    std::fs::write(pki.path("client.pem"), client.cert.pem()).unwrap();
    std::fs::write(pki.path("client.key"), client.key.serialize_pem()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/amqp10/tls_external.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .args(["--port", &b.tls_port().to_string()])
        .args(["--plain-port", &b.h().port().to_string()])
        .arg("--ca")
        .arg(pki.path("ca.pem"))
        .arg("--cert")
        .arg(pki.path("client.pem"))
        .arg("--key")
        .arg(pki.path("client.key"))
        .output()
        .expect("run tls_external.py");
    assert!(
        out.status.success(),
        "tls_external.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
}
