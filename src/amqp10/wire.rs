//! The front end's view of the AMQP 1.0 codec (`protocol::amqp10`): the
//! frames it reads, as one enum, and the frames it writes, as functions
//! taking what differs from RabbitMQ 4's defaults. Everything else in the
//! front end speaks these, not the generated structs, when it writes.

use super::error::Amqp10Error;
use crate::protocol::amqp10 as codec;
use bytes::Bytes;

pub use codec::{
    Attach, Begin, Close, Detach, Disposition, End, Flow, Header, MessageId, Performative,
    Properties, ReceiverSettleMode, SaslCode, Sections, SenderSettleMode, Transfer,
};

pub const AMQP_HEADER: [u8; 8] = *codec::AMQP_HEADER;
pub const SASL_HEADER: [u8; 8] = *codec::SASL_HEADER;

/// `role`: the link end that sends.
pub const ROLE_SENDER: bool = false;
/// `role`: the link end that receives.
pub const ROLE_RECEIVER: bool = true;
pub const RCV_SETTLE_SECOND: ReceiverSettleMode = ReceiverSettleMode::Second;
pub const SND_SETTLED: SenderSettleMode = SenderSettleMode::Settled;

/// RabbitMQ 4's version, as its `open` says it: the rabbitmq-amqp-*
/// clients refuse a broker below 4.0.0.
pub const RABBITMQ_VERSION: &str = "4.0.5";

// ---- reading ----

/// One frame as the connection handles it.
pub enum InFrame {
    /// An empty frame (a heartbeat).
    Empty,
    Sasl(SaslIn),
    Amqp {
        channel: u16,
        perf: Performative,
        /// A transfer's message bytes (a slice of the frame).
        payload: Bytes,
    },
}

/// A SASL frame from the client.
pub enum SaslIn {
    Init(super::connection::SaslInit),
    Other,
}

fn frame_error(e: codec::FrameError) -> Amqp10Error {
    Amqp10Error::new(e.condition(), e.description())
}

/// `Ok(Some(len))` when `buf` starts with a whole frame.
#[inline]
pub fn check_frame(buf: &[u8], max: u32) -> Result<Option<usize>, Amqp10Error> {
    codec::check_frame(buf, max).map_err(frame_error)
}

/// Decodes one whole frame.
pub fn decode_frame(frame: Bytes) -> Result<InFrame, Amqp10Error> {
    let f = codec::read_frame(frame).map_err(frame_error)?;
    Ok(match f.body {
        None => InFrame::Empty,
        Some(codec::FrameBody::Sasl(codec::SaslFrame::SaslInit(i))) => {
            InFrame::Sasl(SaslIn::Init(super::connection::SaslInit {
                mechanism: i.mechanism.as_bytes().to_vec(),
                initial_response: i.initial_response,
            }))
        }
        Some(codec::FrameBody::Sasl(_)) => InFrame::Sasl(SaslIn::Other),
        Some(codec::FrameBody::Amqp(perf)) => InFrame::Amqp {
            channel: f.channel,
            perf,
            payload: f.payload,
        },
    })
}

/// A target's address (None: null target, or none at all).
pub fn target_address(a: &Attach) -> Option<Bytes> {
    match &a.target {
        Some(codec::TargetOrCoordinator::Target(t)) => t.address.as_ref().map(|s| s.to_bytes()),
        _ => None,
    }
}

/// The client attached a transaction coordinator.
pub fn is_coordinator(a: &Attach) -> bool {
    matches!(&a.target, Some(codec::TargetOrCoordinator::Coordinator(_)))
}

pub fn source_address(a: &Attach) -> Option<Bytes> {
    a.source
        .as_ref()
        .and_then(|s| s.address.as_ref())
        .map(|s| s.to_bytes())
}

/// An outcome, ours or the client's, in the terms the front end uses.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Accepted,
    Released,
    Rejected(Option<Amqp10Error>),
    Modified {
        delivery_failed: bool,
        undeliverable_here: bool,
        annotations: Option<codec::Fields>,
    },
}

/// The outcome a disposition's state carries (None: no state, or
/// `received`).
pub fn outcome(state: &Option<codec::DeliveryState>) -> Option<Outcome> {
    use codec::DeliveryState as S;
    match state.as_ref()? {
        S::Accepted(_) => Some(Outcome::Accepted),
        S::Released(_) => Some(Outcome::Released),
        S::Rejected(_) => Some(Outcome::Rejected(None)),
        S::Modified(m) => Some(Outcome::Modified {
            delivery_failed: m.delivery_failed.unwrap_or(false),
            undeliverable_here: m.undeliverable_here.unwrap_or(false),
            annotations: m.message_annotations.clone(),
        }),
        _ => None,
    }
}

// ---- writing ----

fn error(e: &Amqp10Error) -> codec::Error {
    codec::Error {
        condition: codec::Symbol::copy_from(e.condition)
            .unwrap_or_else(|| codec::Symbol::from_static("amqp:internal-error")),
        description: (!e.description.is_empty()).then(|| codec::Str::from(e.description.as_str())),
        info: None,
    }
}

fn write(out: &mut Vec<u8>, channel: u16, p: &Performative) {
    codec::write_frame(out, channel, p, &[]);
}

pub fn write_sasl_mechanisms(out: &mut Vec<u8>, mechs: &[&'static str]) {
    let f = codec::SaslMechanisms {
        sasl_server_mechanisms: mechs
            .iter()
            .map(|m| codec::Symbol::from_static(m))
            .collect(),
    };
    codec::write_sasl_frame(out, &codec::SaslFrame::SaslMechanisms(f));
}

pub fn write_sasl_outcome(out: &mut Vec<u8>, code: SaslCode) {
    let f = codec::SaslOutcome {
        code,
        additional_data: None,
    };
    codec::write_sasl_frame(out, &codec::SaslFrame::SaslOutcome(f));
}

/// Our `open`, as RabbitMQ 4 sends it: its capabilities and properties.
pub fn write_server_open(out: &mut Vec<u8>, max_frame: u32, channel_max: u16, idle_ms: u32) {
    let node = crate::config::node_name();
    let sym = |s: &'static str| codec::Value::Symbol(codec::Symbol::from_static(s));
    let s = |v: &str| codec::Value::String(codec::Str::from(v));
    let props = codec::Fields(vec![
        (sym("node"), s(&node)),
        (sym("cluster_name"), s(&node)),
        (sym("product"), s("RabbitMQ")),
        (sym("version"), s(RABBITMQ_VERSION)),
        (sym("platform"), s("Rust")),
        (sym("copyright"), s("warren authors")),
        (
            sym("information"),
            s("warren: an AMQP broker compatible with RabbitMQ"),
        ),
        (sym("warren_version"), s(env!("CARGO_PKG_VERSION"))),
    ]);
    let open = codec::Open {
        container_id: codec::Str::from(node.as_str()),
        hostname: None,
        max_frame_size: max_frame,
        channel_max,
        idle_time_out: (idle_ms != 0).then_some(idle_ms),
        outgoing_locales: Vec::new(),
        incoming_locales: Vec::new(),
        offered_capabilities: vec![
            codec::Symbol::from_static("LINK_PAIR_V1_0"),
            codec::Symbol::from_static("ANONYMOUS-RELAY"),
        ],
        desired_capabilities: Vec::new(),
        properties: Some(props),
    };
    write(out, 0, &Performative::Open(open));
}

pub fn write_close(out: &mut Vec<u8>, e: Option<&Amqp10Error>) {
    write(
        out,
        0,
        &Performative::Close(Close {
            error: e.map(error),
        }),
    );
}

pub fn write_end(out: &mut Vec<u8>, channel: u16, e: Option<&Amqp10Error>) {
    write(
        out,
        channel,
        &Performative::End(End {
            error: e.map(error),
        }),
    );
}

pub fn write_detach(
    out: &mut Vec<u8>,
    channel: u16,
    handle: u32,
    closed: bool,
    e: Option<&Amqp10Error>,
) {
    let d = Detach {
        handle,
        closed,
        error: e.map(error),
    };
    write(out, channel, &Performative::Detach(d));
}

pub fn write_empty_frame(out: &mut Vec<u8>) {
    codec::write_heartbeat(out);
}

/// What our `begin` says.
pub struct BeginOut {
    pub remote_channel: u16,
    pub next_outgoing_id: u32,
    pub incoming_window: u32,
    pub outgoing_window: u32,
    pub handle_max: u32,
}

pub fn write_begin(out: &mut Vec<u8>, channel: u16, b: BeginOut) {
    let begin = Begin {
        remote_channel: Some(b.remote_channel),
        next_outgoing_id: b.next_outgoing_id,
        incoming_window: b.incoming_window,
        outgoing_window: b.outgoing_window,
        handle_max: b.handle_max,
        offered_capabilities: Vec::new(),
        desired_capabilities: Vec::new(),
        properties: None,
    };
    write(out, channel, &Performative::Begin(begin));
}

/// A link's part of a flow.
#[derive(Clone, Copy, Debug)]
pub struct LinkFlow {
    pub handle: u32,
    pub delivery_count: u32,
    pub link_credit: u32,
    pub drain: bool,
    pub echo: bool,
}

/// What our `flow` says.
#[derive(Clone, Copy, Debug)]
pub struct FlowOut {
    pub next_incoming_id: u32,
    pub incoming_window: u32,
    pub next_outgoing_id: u32,
    pub outgoing_window: u32,
    pub link: Option<LinkFlow>,
}

pub fn write_flow(out: &mut Vec<u8>, channel: u16, f: FlowOut) {
    let flow = Flow {
        next_incoming_id: Some(f.next_incoming_id),
        incoming_window: f.incoming_window,
        next_outgoing_id: f.next_outgoing_id,
        outgoing_window: f.outgoing_window,
        handle: f.link.map(|l| l.handle),
        delivery_count: f.link.map(|l| l.delivery_count),
        link_credit: f.link.map(|l| l.link_credit),
        available: None,
        drain: f.link.is_some_and(|l| l.drain),
        echo: f.link.is_some_and(|l| l.echo),
        properties: None,
    };
    write(out, channel, &Performative::Flow(flow));
}

/// Our answer to the client's attach: the same link with our `role`. A
/// refused link (`keep` false) has our terminus null (2.6.3), and a
/// detach with the error follows.
pub fn write_attach_reply(
    out: &mut Vec<u8>,
    channel: u16,
    a: &Attach,
    role: bool,
    keep: bool,
    initial_delivery_count: u32,
) {
    let ours_is_source = role == ROLE_SENDER;
    let mut source = a.source.clone();
    let mut snd_settle_mode = a.snd_settle_mode;
    if ours_is_source {
        // We send: mixed is unsettled (RabbitMQ 4), and the source names
        // what happens to deliveries left unsettled (released).
        if snd_settle_mode != SenderSettleMode::Settled {
            snd_settle_mode = SenderSettleMode::Unsettled;
        }
        if let Some(s) = source.as_mut() {
            s.default_outcome = Some(codec::Outcome::Released(codec::Released {}));
            s.outcomes = [
                "amqp:accepted:list",
                "amqp:rejected:list",
                "amqp:released:list",
                "amqp:modified:list",
            ]
            .into_iter()
            .map(codec::Symbol::from_static)
            .collect();
            s.distribution_mode = Some(codec::Symbol::from_static("move"));
        }
    }
    let reply = Attach {
        name: a.name.clone(),
        handle: a.handle,
        role,
        snd_settle_mode,
        rcv_settle_mode: ReceiverSettleMode::First,
        source: if ours_is_source && !keep {
            None
        } else {
            source
        },
        target: if !ours_is_source && !keep {
            None
        } else {
            a.target.clone()
        },
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: ours_is_source.then_some(initial_delivery_count),
        max_message_size: if ours_is_source {
            a.max_message_size
        } else {
            Some(super::session::MAX_MESSAGE_SIZE)
        },
        offered_capabilities: Vec::new(),
        desired_capabilities: Vec::new(),
        properties: None,
    };
    write(out, channel, &Performative::Attach(Box::new(reply)));
}

fn state(o: &Outcome) -> codec::DeliveryState {
    use codec::DeliveryState as S;
    match o {
        Outcome::Accepted => S::Accepted(codec::Accepted {}),
        Outcome::Released => S::Released(codec::Released {}),
        Outcome::Rejected(e) => S::Rejected(codec::Rejected {
            error: e.as_ref().map(error),
        }),
        Outcome::Modified {
            delivery_failed,
            undeliverable_here,
            annotations,
        } => S::Modified(codec::Modified {
            delivery_failed: Some(*delivery_failed),
            undeliverable_here: Some(*undeliverable_here),
            message_annotations: annotations.clone(),
        }),
    }
}

pub fn write_disposition(
    out: &mut Vec<u8>,
    channel: u16,
    role: bool,
    first: u32,
    last: u32,
    settled: bool,
    o: &Outcome,
) {
    let d = Disposition {
        role,
        first,
        last: (last != first).then_some(last),
        settled,
        state: Some(state(o)),
        batchable: false,
    };
    write(out, channel, &Performative::Disposition(d));
}

/// The ids of a delivery we send.
#[derive(Clone, Copy, Debug)]
pub struct TransferOut {
    pub handle: u32,
    pub delivery_id: u32,
    pub settled: bool,
}

/// The transfer performative of an outgoing delivery, written field by
/// field (a `Transfer` value would allocate its delivery-tag): handle,
/// delivery-id, delivery-tag (the delivery-id's 4 bytes, as RabbitMQ),
/// message-format 0, settled, more. A continuation frame (`first` false)
/// carries the handle and `more` only.
fn put_transfer(out: &mut Vec<u8>, t: TransferOut, first: bool, more: bool) {
    use crate::protocol::amqp10::encode::{
        list_begin, list_end, put_bool, put_descriptor, put_uint,
    };
    put_descriptor(out, Transfer::DESCRIPTOR_CODE);
    let at = list_begin(out);
    put_uint(out, t.handle);
    if first {
        put_uint(out, t.delivery_id);
        out.extend_from_slice(&[codec::code::VBIN8, 4]);
        out.extend_from_slice(&t.delivery_id.to_be_bytes());
        put_uint(out, 0);
        put_bool(out, t.settled);
    } else {
        out.extend_from_slice(&[codec::code::NULL; 4]);
    }
    put_bool(out, more);
    list_end(out, at, 6);
}

/// Writes one delivery whose message is `head` then `body`, in as many
/// transfer frames as `max_frame` needs; returns how many. Allocates
/// nothing beyond `out`'s growth.
pub fn write_transfer(
    out: &mut Vec<u8>,
    channel: u16,
    t: TransferOut,
    head: &[u8],
    body: &[u8],
    max_frame: u32,
) -> u32 {
    write_transfer_part(out, channel, t, head, body, max_frame, 0, u32::MAX).0
}

/// Writes the frames of a delivery from byte `from` of its message
/// (`head` then `body`), at most `max_frames` of them (the peer's session
/// window); the first frame of the delivery (`from` 0) carries its ids.
/// Returns the frames written and where the next one starts (the message's
/// length when all of it is out).
#[allow(clippy::too_many_arguments)]
pub fn write_transfer_part(
    out: &mut Vec<u8>,
    channel: u16,
    t: TransferOut,
    head: &[u8],
    body: &[u8],
    max_frame: u32,
    from: usize,
    max_frames: u32,
) -> (u32, usize) {
    let total = head.len() + body.len();
    let max = max_frame as usize;
    let mut sent = from;
    let mut frames = 0u32;
    while frames < max_frames {
        let first = sent == 0;
        let at = out.len();
        out.extend_from_slice(&[0, 0, 0, 0, 2, 0]);
        out.extend_from_slice(&channel.to_be_bytes());
        let perf_at = out.len();
        put_transfer(out, t, first, true);
        let room = max.saturating_sub(out.len() - at).max(1);
        let left = total - sent;
        if left <= room {
            // The last frame: more = false (an encoding of the same length).
            out.truncate(perf_at);
            put_transfer(out, t, first, false);
        }
        let n = left.min(room);
        copy_range(out, head, body, sent, n);
        sent += n;
        let size = (out.len() - at) as u32;
        out[at..at + 4].copy_from_slice(&size.to_be_bytes());
        frames += 1;
        if sent >= total {
            break;
        }
    }
    (frames, sent)
}

/// Appends bytes `from..from + n` of `head ++ body`.
fn copy_range(out: &mut Vec<u8>, head: &[u8], body: &[u8], from: usize, n: usize) {
    let end = from + n;
    if from < head.len() {
        out.extend_from_slice(&head[from..end.min(head.len())]);
    }
    if end > head.len() {
        let b0 = from.saturating_sub(head.len());
        out.extend_from_slice(&body[b0..end - head.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfers(out: &[u8]) -> Vec<(Transfer, Bytes)> {
        let mut v = Vec::new();
        let mut buf = Bytes::copy_from_slice(out);
        while !buf.is_empty() {
            let n = check_frame(&buf, u32::MAX).unwrap().unwrap();
            let f = buf.split_to(n);
            match decode_frame(f).unwrap() {
                InFrame::Amqp {
                    perf: Performative::Transfer(t),
                    payload,
                    ..
                } => v.push((t, payload)),
                _ => panic!("not a transfer"),
            }
        }
        v
    }

    #[test]
    fn a_delivery_goes_out_in_parts_as_the_window_allows() {
        let head = vec![1u8; 10];
        let body = vec![2u8; 3000];
        let t = TransferOut {
            handle: 0,
            delivery_id: 9,
            settled: true,
        };
        let mut out = Vec::new();
        let mut from = 0;
        let mut calls = 0;
        while from < head.len() + body.len() {
            let (n, next) = write_transfer_part(&mut out, 0, t, &head, &body, 512, from, 2);
            assert!((1..=2).contains(&n));
            from = next;
            calls += 1;
        }
        assert!(calls > 1);
        let whole = {
            let mut w = Vec::new();
            write_transfer(&mut w, 0, t, &head, &body, 512);
            w
        };
        assert_eq!(out, whole, "parts make the same frames as one call");
    }

    #[test]
    fn a_large_delivery_is_split_at_max_frame() {
        let head = vec![1u8; 100];
        let body: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        for max in [512u32, 1000, 4096, 5200, 1 << 20] {
            let mut out = Vec::new();
            let t = TransferOut {
                handle: 3,
                delivery_id: 7,
                settled: false,
            };
            let n = write_transfer(&mut out, 1, t, &head, &body, max);
            let fs = transfers(&out);
            assert_eq!(fs.len() as u32, n);
            let mut all = Vec::new();
            for (i, (t, p)) in fs.iter().enumerate() {
                assert_eq!(t.more, i + 1 < fs.len(), "max {}", max);
                assert_eq!(t.delivery_id.is_some(), i == 0);
                all.extend_from_slice(p);
            }
            let mut want = head.clone();
            want.extend_from_slice(&body);
            assert_eq!(all, want, "max {}", max);
            let mut b = Bytes::from(out);
            while !b.is_empty() {
                let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                assert!(len <= max, "frame of {} > {}", len, max);
                let _ = b.split_to(len as usize);
            }
        }
    }
}
