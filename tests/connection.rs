//! Connection-level tests: handshake (server properties, tune), authentication and vhost
//! errors, heartbeats, channels, frame_max, and hand-made malformed input on a raw socket
//! (bad frame end, unopened channel, bad protocol header, out-of-order content, oversized
//! frames). After every bad input a fresh connection must still work.
//!
//! Validated against RabbitMQ 3.10 with `WARREN_TEST_EXTERNAL_URI`.

mod common_lapin;
mod common_raw;
mod util;
use common_lapin::*;
use common_raw::*;
use util::*;

use lapin::{options::*, Channel};
use std::io::Read;
use std::time::Duration;

// ---------------------------------------------------------------- local helpers
// (shared ones — deadline, uniq, with_query, connect, channel, within, assert_broker_alive, … —
// come from tests/common_lapin)

/// `uri` with another vhost (path) and/or password.
fn with_vhost_and_password(uri: &str, vhost: &str, password: Option<&str>) -> String {
    let (scheme, rest) = uri.split_once("://").unwrap();
    let (auth, hostpath) = rest.rsplit_once('@').unwrap();
    let host = hostpath.split(['/', '?']).next().unwrap();
    let (user, pass) = auth.split_once(':').unwrap();
    format!(
        "{scheme}://{user}:{}@{host}/{vhost}",
        password.unwrap_or(pass)
    )
}

// ---------------------------------------------------------------- handshake

// RabbitMQ also advertises direct_reply_to; warren adds it when that extension
// is implemented (advertise only what works).
const CAPABILITIES: [&str; 8] = [
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "authentication_failure_close",
    "per_consumer_qos",
    "consumer_priorities",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_properties_and_capabilities() {
    let b = start_broker(1);
    let port = b.port();
    blocking(move || {
        let mut r = Raw::connect(port);
        let start = r.start();
        let mut c = Cur(&start);
        assert_eq!((c.u8(), c.u8()), (0, 9), "version-major/minor");
        let props = c.table();
        let mechanisms = String::from_utf8(c.longstr()).unwrap();
        let locales = String::from_utf8(c.longstr()).unwrap();
        let caps = props.get("capabilities").expect("capabilities table");
        for cap in CAPABILITIES {
            assert_eq!(caps.get(cap), Some(&Val::Bool(true)), "capability {cap}");
        }
        let product = props.get("product").cloned();
        assert_eq!(product, Some(Val::Str(b"RabbitMQ".to_vec())));
        for key in [
            "version",
            "platform",
            "cluster_name",
            "copyright",
            "information",
        ] {
            assert!(
                matches!(props.get(key), Some(Val::Str(_))),
                "property {key}"
            );
        }
        let mechs: Vec<&str> = mechanisms.split(' ').collect();
        assert!(mechs.contains(&"PLAIN"), "mechanisms {mechanisms:?}");
        assert!(mechs.contains(&"AMQPLAIN"), "mechanisms {mechanisms:?}");
        assert!(
            locales.split(' ').any(|l| l == "en_US"),
            "locales {locales:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_offers_rabbitmq_defaults() {
    let b = start_broker(1);
    let port = b.port();
    blocking(move || {
        let mut r = Raw::connect(port);
        // channel_max, frame_max, heartbeat
        assert_eq!(r.login("guest", "guest"), (2047, 131072, 60));
    })
    .await;
    // lapin with its defaults takes the server's values
    let c = connect(&b.uri()).await;
    let cfg = c.configuration();
    let negotiated = (cfg.channel_max(), cfg.frame_max(), cfg.heartbeat());
    assert_eq!(negotiated, (2047, 131072, 60));
    within(c.close(200, "bye")).await.unwrap();
    // smaller client values win
    let q = "channel_max=64&frame_max=16384&heartbeat=30";
    let c = connect(&with_query(&b.uri(), q)).await;
    let cfg = c.configuration();
    let negotiated = (cfg.channel_max(), cfg.frame_max(), cfg.heartbeat());
    assert_eq!(negotiated, (64, 16384, 30));
    assert_connection_usable(&c).await;
}

const LOGIN_REFUSED: &str =
    "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_403_access_refused() {
    deadline(60, async {
        let b = start_broker(1);
        let uri = with_vhost_and_password(&b.uri(), "%2f", Some("definitely-wrong"));
        let err = within(lapin::Connection::connect(&uri, Default::default()))
            .await
            .expect_err("login with a wrong password must fail");
        assert_amqp_error(&err, 403, LOGIN_REFUSED);
        // the same on the wire: a connection.close 403 in reply to start-ok
        let port = b.port();
        blocking(move || {
            let mut r = Raw::connect(port);
            r.start();
            r.start_ok("guest", "nope");
            r.expect_fatal(403, LOGIN_REFUSED);
        })
        .await;
        assert_broker_alive(&b.uri()).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_vhost_is_530_not_allowed() {
    deadline(60, async {
        let b = start_broker(1);
        let vhost = uniq("no-such-vhost");
        let uri = with_vhost_and_password(&b.uri(), &vhost, None);
        let err = within(lapin::Connection::connect(&uri, Default::default()))
            .await
            .expect_err("unknown vhost must fail");
        let expected = format!("NOT_ALLOWED - vhost {vhost} not found");
        assert_eq!(amqp_error(&err), Some((530, expected.clone())));
        // on the wire: connection.close 530 naming connection.open (10/40)
        let port = b.port();
        blocking(move || {
            let mut r = Raw::connect(port);
            r.login("guest", "guest");
            r.tune_ok_and_open(131072, 0, &vhost);
            assert_eq!(r.expect_connection_close(), (530, expected, 10, 40));
            r.expect_eof();
        })
        .await;
        assert_broker_alive(&b.uri()).await;
    })
    .await
}

// ---------------------------------------------------------------- heartbeats

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_one_second_keeps_idle_connection_alive() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&with_query(&b.uri(), "heartbeat=1")).await;
        assert_eq!(c.configuration().heartbeat(), 1);
        let ch = channel(&c).await;
        // A fixed wait, not a poll: idle for a few heartbeat intervals, the
        // connection must NOT be dropped. That holds however long we wait.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            c.status().connected(),
            "connection dropped while idle with heartbeats"
        );
        within(ch.basic_qos(5, BasicQosOptions::default()))
            .await
            .unwrap();
        assert_connection_usable(&c).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sends_heartbeats_and_drops_a_silent_peer() {
    let b = start_broker(1);
    let port = b.port();
    blocking(move || {
        let mut r = Raw::connect(port);
        r.handshake(131072, 1);
        let t0 = std::time::Instant::now();
        let mut beats = 0;
        // we never send anything: the server must keep beating, then give up on us
        while let Ok(f) = r.read_frame_hb(true) {
            assert_eq!(f, (8, 0, vec![]), "only heartbeats expected");
            beats += 1;
            assert!(
                t0.elapsed() < Duration::from_secs(9),
                "silent peer not dropped"
            );
        }
        let lived = t0.elapsed();
        assert!(beats >= 2, "only {beats} heartbeats before the close");
        assert!(
            lived >= Duration::from_millis(1500),
            "dropped too early: {lived:?}"
        );
    })
    .await;
    assert_broker_alive(&b.uri()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_open_close_many_times() {
    deadline(120, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        for i in 0..300 {
            let ch = channel(&c).await;
            if i % 50 == 0 {
                within(ch.basic_qos(10, BasicQosOptions::default()))
                    .await
                    .unwrap();
            }
            within(ch.close(200, "bye")).await.unwrap();
        }
        assert_connection_usable(&c).await;
    })
    .await
}

/// channel_max bounds how many channels are open at once, not the channel
/// numbers (rabbit_reader:create_channel): aiormq opens channel 65535 on a
/// connection that negotiated 2047.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_max_limits_open_channels_not_their_numbers() {
    let b = start_broker(1);
    let port = b.port();
    blocking(move || {
        let mut r = Raw::connect(port);
        r.login("guest", "guest");
        r.tune_ok_max_and_open(2, 131072, 0, "/");
        r.expect_method(0, 10, 41);
        r.open_channel(65535);
        r.send_method(65535, 50, 10, &queue_args("", &[0x08, 0, 0, 0, 0]));
        r.expect_method(65535, 50, 11); // server-named auto-delete queue
        r.open_channel(7);
        r.send_method(8, 20, 10, &[0]);
        let (code, text, _, _) = r.expect_connection_close();
        assert_eq!(code, 530, "reply text {text:?}");
        assert_eq!(
            text,
            "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)"
        );
        r.expect_eof();
    })
    .await;
    assert_broker_alive(&b.uri()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_channels_at_once() {
    deadline(120, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let mut chans: Vec<Channel> = Vec::new();
        for _ in 0..100 {
            chans.push(channel(&c).await);
        }
        let ids: std::collections::BTreeSet<u16> = chans.iter().map(|c| c.id()).collect();
        assert_eq!(ids.len(), 100);
        // every channel answers its own synchronous method
        for (i, ch) in chans.iter().enumerate() {
            within(ch.basic_qos(i as u16 + 1, BasicQosOptions::default()))
                .await
                .unwrap();
        }
        for ch in &chans {
            within(ch.close(200, "bye")).await.unwrap();
        }
        assert_connection_usable(&c).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_max_4096_raw_round_trip() {
    let b = start_broker(1);
    let port = b.port();
    let q = uniq("fm4096");
    blocking(move || {
        let mut r = Raw::connect(port);
        r.handshake(4096, 0);
        r.open_channel(1);
        r.send_method(1, 50, 10, &queue_args(&q, &[0, 0, 0, 0, 0])); // queue.declare
        r.expect_method(1, 50, 11);
        let body: Vec<u8> = (0..3 * 4096 + 17).map(|i| (i % 253) as u8).collect();
        r.publish(1, "", &q, &body, 4096);
        // basic.get (no_ack) until the message is there
        let mut attempts = 0;
        loop {
            r.send_method(1, 60, 70, &queue_args(&q, &[1]));
            let (ty, ch, p) = r.read_frame();
            assert_eq!((ty, ch), (1, 1));
            if p[..4] == [0, 60, 0, 71] {
                break;
            }
            assert_eq!(p[..4], [0, 60, 0, 72], "get-ok or get-empty");
            attempts += 1;
            assert!(attempts < 200, "message never arrived");
            std::thread::sleep(Duration::from_millis(20));
        }
        let (ty, _, h) = r.read_frame();
        assert_eq!(ty, 2, "content header");
        assert_eq!(h[4..12], (body.len() as u64).to_be_bytes());
        let (mut got, mut frames) = (Vec::new(), 0);
        while got.len() < body.len() {
            let (ty, _, chunk) = r.read_frame();
            assert_eq!(ty, 3, "content body");
            assert!(
                chunk.len() + 8 <= 4096,
                "body frame of {} bytes",
                chunk.len() + 8
            );
            got.extend(chunk);
            frames += 1;
        }
        assert_eq!(frames, 4);
        assert!(got == body, "body corrupted at frame_max 4096");
        r.send_method(1, 50, 40, &queue_args(&q, &[0])); // queue.delete
        r.expect_method(1, 50, 41);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_is_answered() {
    let b = start_broker(1);
    let port = b.port();
    blocking(move || {
        let mut r = Raw::connect(port);
        r.handshake(131072, 0);
        r.open_channel(1);
        r.send_method(1, 20, 40, &[0, 200, 0, 0, 0, 0, 0]); // channel.close 200 ""
        r.expect_method(1, 20, 41);
        r.send_method(0, 10, 50, &[0, 200, 0, 0, 0, 0, 0]); // connection.close 200 ""
        r.expect_method(0, 10, 51);
        // after close-ok it is the client's turn to close the socket
    })
    .await;
}

// ---------------------------------------------------------------- malformed input

/// Runs `f` on a raw connection (handshake done, channel 1 open if `open`), then checks
/// that a fresh lapin connection still works.
async fn raw_case<F: FnOnce(&mut Raw) + Send + 'static>(b: &TestBroker, open: bool, f: F) {
    let port = b.port();
    blocking(move || {
        let mut r = Raw::connect(port);
        r.handshake(131072, 0);
        if open {
            r.open_channel(1);
        }
        f(&mut r);
    })
    .await;
    assert_broker_alive(&b.uri()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frame_end_type_or_size_is_501() {
    let b = start_broker(1);
    raw_case(&b, false, |r| {
        let mut f = frame(1, 1, &method(20, 10, &[0]));
        *f.last_mut().unwrap() = 0x00;
        r.send(&f);
        r.expect_fatal(501, "FRAME_ERROR");
    })
    .await;
    raw_case(&b, false, |r| {
        r.send(&frame(9, 0, b"zz")); // no such frame type
        r.expect_fatal(501, "FRAME_ERROR");
    })
    .await;
    // a body frame larger than the negotiated frame_max (131072)
    raw_case(&b, true, |r| {
        r.send_method(1, 60, 40, &publish_args("", "x"));
        r.send(&frame(2, 1, &[0, 60, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]));
        r.send(&frame(3, 1, &vec![7u8; 140_000]));
        r.expect_fatal(501, "FRAME_ERROR");
    })
    .await;
}

/// A body frame whose payload (not whole frame) is frame_max passes, as
/// RabbitMQ allows 8 bytes over (FRAME_SIZE_FUDGE): amqpstorm sends those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_frame_with_a_frame_max_payload_is_accepted() {
    let b = start_broker(1);
    let q = uniq("fudge");
    raw_case(&b, true, move |r| {
        r.send_method(1, 50, 10, &queue_args(&q, &[0x04, 0, 0, 0, 0])); // exclusive
        r.expect_method(1, 50, 11);
        r.send_method(1, 60, 40, &publish_args("", &q));
        r.send(&frame(2, 1, &[0, 60, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]));
        r.send(&frame(3, 1, &vec![7u8; 131072]));
        r.send_method(1, 60, 70, &queue_args(&q, &[1])); // basic.get, no-ack
        r.expect_method(1, 60, 71);
        let (ty, _, header) = r.read_frame();
        assert_eq!(ty, 2, "content header");
        let size = u64::from_be_bytes(header[4..12].try_into().unwrap());
        assert_eq!(size, 131072, "body size");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_on_unopened_or_closed_channel_is_504() {
    let b = start_broker(1);
    raw_case(&b, false, |r| {
        r.send_method(3, 60, 10, &qos_args(0, 1)); // basic.qos on channel 3
        let expected = "CHANNEL_ERROR - expected 'channel.open'".to_string();
        assert_eq!(r.expect_connection_close(), (504, expected, 60, 10));
        r.expect_eof();
    })
    .await;
    raw_case(&b, true, |r| {
        r.send_method(1, 20, 40, &[0, 200, 0, 0, 0, 0, 0]);
        r.expect_method(1, 20, 41);
        r.send_method(1, 60, 10, &qos_args(0, 1));
        let (code, _, class, m) = r.expect_connection_close();
        assert_eq!((code, class, m), (504, 60, 10));
        r.expect_eof();
    })
    .await;
    // channel.open on an already open channel
    raw_case(&b, true, |r| {
        r.send_method(1, 20, 10, &[0]);
        let expected = "CHANNEL_ERROR - second 'channel.open' seen".to_string();
        assert_eq!(r.expect_connection_close(), (504, expected, 20, 10));
        r.expect_eof();
    })
    .await;
}

/// Once the client answers the broker's connection.close, the broker closes
/// the socket at once (rabbit_reader's terminate_connection): clients that
/// wait for the EOF must not wait for a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_closes_right_after_close_ok() {
    let b = start_broker(1);
    raw_case(&b, false, |r| {
        r.send_method(3, 60, 10, &qos_args(0, 1)); // 504 on an unopened channel
        assert_eq!(r.expect_connection_close().0, 504);
        let t0 = std::time::Instant::now();
        r.expect_eof();
        let waited = t0.elapsed();
        assert!(waited < Duration::from_secs(1), "EOF after {waited:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_protocol_header_gets_supported_version() {
    let b = start_broker(1);
    let port = b.port();
    blocking(move || {
        // exactly 8 bytes each, so no unread input makes the server's close a reset
        for garbage in [
            &b"GET / HT"[..],
            b"AMQP\x00\x00\x09\x00",
            b"AMQP\x01\x01\x00\x0a",
        ] {
            let mut r = Raw::connect(port);
            r.send(garbage);
            // the reply, then EOF (or a reset once the reply is in)
            let (mut buf, mut chunk) = (Vec::new(), [0u8; 64]);
            loop {
                match r.s.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                    Err(e) => panic!("reply to {garbage:?}: {e} after {buf:?}"),
                }
            }
            assert_eq!(buf, b"AMQP\x00\x00\x09\x01", "reply to {garbage:?}");
        }
    })
    .await;
    assert_broker_alive(&b.uri()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_frames_out_of_order_are_505() {
    let b = start_broker(1);
    // a body frame with no publish before it
    raw_case(&b, true, |r| {
        r.send(&frame(3, 1, b"hello"));
        r.expect_fatal(505, "UNEXPECTED_FRAME");
    })
    .await;
    // a content header with no publish before it
    raw_case(&b, true, |r| {
        r.send(&frame(2, 1, &[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0]));
        r.expect_fatal(505, "UNEXPECTED_FRAME");
    })
    .await;
    // a method where the content header of a publish should be
    raw_case(&b, true, |r| {
        r.send_method(1, 60, 40, &publish_args("", "x"));
        r.send_method(1, 60, 40, &publish_args("", "x"));
        let (code, text, class, m) = r.expect_connection_close();
        assert_eq!((code, class, m), (505, 60, 40), "{text}");
        assert!(text.starts_with("UNEXPECTED_FRAME"), "{text}");
        r.expect_eof();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_prefetch_size_is_540_not_implemented() {
    let b = start_broker(1);
    raw_case(&b, true, |r| {
        r.send_method(1, 60, 10, &qos_args(1000, 10));
        let expected = "NOT_IMPLEMENTED - prefetch_size!=0 (1000)".to_string();
        assert_eq!(r.expect_connection_close(), (540, expected, 60, 10));
        r.expect_eof();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_methods_and_torn_frames_do_not_hurt_the_broker() {
    let b = start_broker(1);
    // RabbitMQ 3.10 just drops the socket for an unknown method id; any close is fine
    raw_case(&b, true, |r| {
        r.send_method(1, 60, 99, &[]);
        match r.read_frame_hb(false) {
            Ok((1, 0, p)) => assert_eq!(p[..4], [0, 10, 0, 50], "only connection.close"),
            Ok(other) => panic!("unexpected frame {other:?}"),
            Err(_) => {}
        }
    })
    .await;
    // Method arguments that cannot be decoded: 501 with the arguments
    // quoted as Erlang prints a binary, for the frame's class and method
    // (RabbitMQ 3.10.8 answers both cases byte for byte so).
    raw_case(&b, true, |r| {
        r.send_method(1, 50, 10, &[0, 0, 0, 0]); // queue.declare cut short
        let close = r.expect_connection_close();
        assert_eq!(
            close,
            (
                501,
                "FRAME_ERROR - cannot decode <<0,0,0,0>>".into(),
                50,
                10
            )
        );
        r.expect_eof();
    })
    .await;
    raw_case(&b, true, |r| {
        // a queue name whose length byte (200) runs past the frame's end
        r.send_method(1, 50, 10, &[0, 0, 200, b'a', b'b', b'c']);
        let close = r.expect_connection_close();
        assert_eq!(
            close,
            (
                501,
                "FRAME_ERROR - cannot decode <<0,0,200,97,98,99>>".into(),
                50,
                10
            )
        );
        r.expect_eof();
    })
    .await;
    // half a frame, then the socket goes away
    raw_case(&b, true, |r| {
        let f = frame(1, 1, &method(60, 10, &qos_args(0, 1)));
        r.send(&f[..f.len() / 2]);
    })
    .await;
    // a frame header announcing a huge payload, then the socket goes away
    raw_case(&b, true, |r| {
        r.send(&[1, 0, 1, 0xFF, 0xFF, 0xFF, 0xF0, 0, 60])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_after_a_channel_error_are_discarded_until_close_ok() {
    let b = start_broker(1);
    let q = uniq("missing");
    raw_case(&b, true, move |r| {
        r.send_method(1, 60, 70, &queue_args(&q, &[1])); // basic.get from a missing queue
        let a = r.expect_method(1, 20, 40);
        let mut c = Cur(&a);
        let expected = no_queue(&q);
        assert_eq!((c.u16(), c.shortstr()), (404, expected));
        // before close-ok: these must be ignored, neither answered nor fatal
        r.send_method(1, 60, 70, &queue_args(&q, &[1]));
        r.send_method(1, 60, 10, &qos_args(0, 1));
        r.send_method(1, 20, 41, &[]);
        // the channel number can be reused
        r.open_channel(1);
        r.send_method(1, 60, 10, &qos_args(0, 1));
        r.expect_method(1, 60, 11);
    })
    .await;
}
