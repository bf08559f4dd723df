//! A publish whose method, header and body frames arrive back to back is taken
//! whole (`Connection::publish_whole`, one buffer for the message); the same
//! publish with a heartbeat between its frames goes frame by frame. Both must
//! give the same answers: the same message to a consumer, byte-exact, and the
//! same errors.

mod common_lapin;
mod common_raw;
mod util;
use common_lapin::*;
use common_raw::*;
use util::*;

/// The publish as one run of frames, and with heartbeats between them.
fn variants(ch: u16, args: &[u8], header: &[u8], body: &[u8]) -> [Vec<u8>; 2] {
    let m = frame(1, ch, &method(60, 40, args));
    let h = frame(2, ch, header);
    let b = if body.is_empty() {
        Vec::new()
    } else {
        frame(3, ch, body)
    };
    let hb = frame(8, 0, &[]);
    [
        [&m[..], &h, &b].concat(),
        [&m[..], &hb, &h, &hb, &b].concat(),
    ]
}

/// A content header payload: class, weight 0, body size, then `props`.
fn header(class: u16, body_size: usize, props: &[u8]) -> Vec<u8> {
    [
        &class.to_be_bytes()[..],
        &[0, 0],
        &(body_size as u64).to_be_bytes(),
        props,
    ]
    .concat()
}

/// Properties: content-type "text/plain", delivery-mode 2, headers {a: "b"}.
fn props() -> Vec<u8> {
    let flags: u16 = (1 << 15) | (1 << 13) | (1 << 12);
    let table = [&shortstr("a")[..], b"S", &1u32.to_be_bytes(), b"b"].concat();
    [
        &flags.to_be_bytes()[..],
        &shortstr("text/plain"),
        &(table.len() as u32).to_be_bytes(),
        &table,
        &[2],
    ]
    .concat()
}

/// Opens a connection and channel 1, sends `bytes`, and describes the first
/// answer: a channel or connection close (code, text, class, method).
fn first_answer(port: u16, bytes: &[u8]) -> String {
    let mut r = Raw::connect(port);
    r.handshake(131072, 0);
    r.open_channel(1);
    r.send(bytes);
    let (ty, ch, p) = r.read_frame();
    assert_eq!(ty, 1, "a method frame");
    let mut c = Cur(&p);
    let ids = (c.u16(), c.u16());
    format!(
        "channel {ch} {ids:?}: {} {} {}.{}",
        c.u16(),
        c.shortstr(),
        c.u16(),
        c.u16()
    )
}

/// Publishes `bytes` (to queue `q`, declared first) and reads the message
/// back with basic.get: (content header payload, body).
fn published_and_got(port: u16, q: &str, bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut r = Raw::connect(port);
    r.handshake(131072, 0);
    r.open_channel(1);
    r.send_method(1, 50, 10, &queue_args(q, &[0, 0, 0, 0, 0]));
    r.expect_method(1, 50, 11);
    r.send(bytes);
    r.send_method(1, 60, 70, &queue_args(q, &[1]));
    r.expect_method(1, 60, 71);
    let (ty, _, h) = r.read_frame();
    assert_eq!(ty, 2, "content header");
    let size = u64::from_be_bytes(h[4..12].try_into().unwrap()) as usize;
    let mut body = Vec::new();
    while body.len() < size {
        let (ty, _, b) = r.read_frame();
        assert_eq!(ty, 3, "content body");
        body.extend_from_slice(&b);
    }
    (h, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_and_split_publishes_answer_alike() {
    let b = start_broker(1);
    let port = b.port();
    blocking(move || {
        // The message itself, with properties and without, with a body and
        // without: byte-exact either way.
        for (i, (p, body)) in [
            (props(), &b"hello"[..]),
            (vec![0, 0], &b""[..]),
            (props(), &b""[..]),
        ]
        .into_iter()
        .enumerate()
        {
            let q = format!("whole-{i}");
            let [whole, split] =
                variants(1, &publish_args("", &q), &header(60, body.len(), &p), body);
            let a = published_and_got(port, &q, &whole);
            let s = published_and_got(port, &q, &split);
            assert_eq!(a, s, "case {i}");
            assert_eq!((&a.0[12..], &a.1[..]), (&p[..], body), "case {i}");
        }
        // Refusals.
        let bad_props = header(60, 3, &[0x80, 0]); // content-type flagged, missing
        let cases: Vec<(Vec<u8>, Vec<u8>, &[u8])> = vec![
            (publish_args("", "q"), bad_props, b"abc"),
            (
                [&[0, 0][..], &shortstr(""), &shortstr("q"), &[2]].concat(),
                header(60, 3, &[0, 0]),
                b"abc",
            ),
            (publish_args("", "q"), header(61, 3, &[0, 0]), b"abc"),
            (
                publish_args("no-such-exchange", "q"),
                header(60, 1, &[0, 0]),
                b"x",
            ),
        ];
        for (i, (args, h, body)) in cases.into_iter().enumerate() {
            let [whole, split] = variants(1, &args, &h, body);
            let a = first_answer(port, &whole);
            let s = first_answer(port, &split);
            assert_eq!(a, s, "refusal {i}");
            assert!(a.contains(" 5") || a.contains(" 4"), "refusal {i}: {a}");
        }
    })
    .await;
    assert_broker_alive(&b.uri()).await;
}
