//! One shovel's run, from connecting to stopping: RabbitMQ's
//! `rabbit_shovel_worker` start sequence (connect the source, connect the
//! destination, declare the destination and select confirms, declare the
//! source, qos, work out what remains, consume), then the forwarding loop
//! (`forward.rs`) until it stops, fails or has moved what it had to.
//!
//! A run ends with an [`Exit`]; the supervisor (`mod.rs`) decides about
//! restarting. Dropping the connections returns every unacknowledged
//! source message to its queue: that is what makes a crash lose nothing.

use super::forward::Forwarder;
use super::forward10::{End, Forwarder10, Link10, HANDLE};
use super::status::Cell;
use crate::client::amqp10::{link_attach, Conn10, LinkFlow};
use crate::client::uri::AmqpUri;
use crate::client::{unexpected, ClientError, Conn, CHANNEL};
use crate::core::auth::internal;
use crate::core::shovel_def::{
    strip_credentials, AckMode, DeleteAfter, Protocol, ShovelDef, Source,
};
use crate::protocol::amqp10::{role, Attach};
use crate::protocol::methods::*;
use crate::protocol::{FieldTable, Method};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Our AMQP 1.0 max-frame-size and session incoming window (frames).
const MAX_FRAME_10: u32 = 131_072;
const INCOMING_WINDOW_10: u32 = 8192;

/// Heartbeat interval (s) of network connections whose URI names none.
const DEFAULT_HEARTBEAT: &str = "10";

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop (the definition changed or went, the broker stops).
    Stopped,
    /// `src-delete-after` reached: the shovel removes its definition.
    Done,
    /// Failed; the reason is shown in the status and the run is retried
    /// after `reconnect-delay`.
    Failed(String),
}

/// What a run needs besides its definition.
pub struct RunCtx {
    pub vhost: String,
    pub name: String,
    /// This broker's AMQP listener, for direct `amqp://` URIs.
    pub local: SocketAddr,
    /// `shovelled-by` in `x-shovelled` (the node name).
    pub node: String,
    pub stop: Arc<AtomicBool>,
    pub cell: Arc<Cell>,
}

/// Runs the shovel once (see the module comment).
pub fn run(def: &ShovelDef, ctx: &RunCtx) -> Exit {
    ctx.cell.starting();
    let (mut src, src_uri) = match connect(&def.src_uris, def.src_protocol, "source", ctx) {
        Ok(c) => c,
        Err(e) => return Exit::Failed(e),
    };
    if ctx.stop.load(Ordering::Acquire) {
        return Exit::Stopped;
    }
    let (mut dst, dest_uri) = match connect(&def.dest_uris, def.dest_protocol, "destination", ctx) {
        Ok(c) => c,
        Err(e) => return Exit::Failed(e),
    };
    if let Err(e) = init_dest(&mut dst, def) {
        return Exit::Failed(format!("destination: {e}"));
    }
    let remaining = match init_source(&mut src, def) {
        Ok(r) => r,
        Err(e) => return Exit::Failed(format!("source: {e}")),
    };
    ctx.cell.set_remaining(remaining);
    if remaining == Some(0) {
        src.close();
        dst.close();
        return Exit::Done;
    }
    ctx.cell.running(src_uri, dest_uri);
    log::info!("shovel '{}' in vhost '{}' is running", ctx.name, ctx.vhost);
    let exit = match (src, dst) {
        // Both 0-9-1: frames pass as they are (forward.rs).
        (End::A091(mut s), End::A091(mut d)) => {
            let exit = Forwarder::new(def, ctx, remaining).run(&mut s, &mut d);
            if !matches!(exit, Exit::Failed(_)) {
                End::A091(d).close();
                End::A091(s).close();
            }
            exit
        }
        (mut s, mut d) => {
            let exit = Forwarder10::new(def, ctx, remaining).run(&mut s, &mut d);
            if !matches!(exit, Exit::Failed(_)) {
                d.close();
                s.close();
            }
            exit
        }
    };
    exit
}

/// Connects to the first of `uris` that answers, starting at a random one
/// (RabbitMQ picks at random and falls back on the others). Returns the
/// connection and the URI without credentials.
fn connect(
    uris: &[String],
    protocol: Protocol,
    which: &str,
    ctx: &RunCtx,
) -> Result<(End, String), String> {
    if uris.is_empty() {
        return Err(format!("{which}: failed_to_connect_using_provided_uris"));
    }
    let start = random_index(uris.len());
    let mut errors = Vec::new();
    for i in 0..uris.len() {
        let raw = &uris[(start + i) % uris.len()];
        let shown = strip_credentials(raw);
        let r = AmqpUri::parse(raw)
            .map_err(ClientError::Protocol)
            .and_then(|mut u| {
                if u.direct {
                    u.host = ctx.local.ip().to_string();
                    u.port = ctx.local.port();
                    u.user = internal::USER.to_string();
                    u.password = internal::secret().to_string();
                    u.tls = false;
                } else if u.query_param("heartbeat").is_none() {
                    // amqp_client's default: a peer that vanishes without
                    // a reset (a partition) is noticed within 20 s.
                    u.query.push(("heartbeat".into(), DEFAULT_HEARTBEAT.into()));
                }
                let name = format!("Shovel {}", ctx.name);
                match protocol {
                    Protocol::Amqp091 => {
                        let props = crate::client::client_properties_of("warren shovel", &name);
                        Conn::open_with(&u, props).map(End::A091)
                    }
                    Protocol::Amqp10 => Conn10::open(&u, &name, MAX_FRAME_10, INCOMING_WINDOW_10)
                        .map(|conn| {
                            End::A10(Link10 {
                                conn,
                                window: 0,
                                credit: 0,
                                delivery_count: 0,
                            })
                        }),
                }
            });
        match r {
            Ok(c) => return Ok((c, shown)),
            Err(e) => {
                log::warn!(
                    "Shovel '{}' in vhost '{}' failed to connect (URI: {}): {}",
                    ctx.name,
                    ctx.vhost,
                    shown,
                    e
                );
                errors.push(format!("{shown}: {e}"));
            }
        }
    }
    Err(format!(
        "failed to connect to the {which}: {}",
        errors.join("; ")
    ))
}

fn random_index(n: usize) -> usize {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    (u64::from_le_bytes(b) % n as u64) as usize
}

/// The destination queue, declared (durable, `dest-queue-args`) if it does
/// not exist, as RabbitMQ does; confirms selected for `on-confirm`.
fn init_dest(dst: &mut End, def: &ShovelDef) -> Result<(), ClientError> {
    let dst = match dst {
        End::A091(c) => c,
        End::A10(l) => {
            // A sender link to `dest-address`; its credit comes in a flow
            // the loop reads.
            let address = def.dest.address.clone().unwrap_or_default();
            l.conn.attach(attach10(role::SENDER, &address, def))?;
            return Ok(());
        }
    };
    if let Some(q) = &def.dest.queue {
        dst.declare_queue_with(q, true, true, def.dest.queue_args.clone())?;
    }
    if def.ack_mode == AckMode::OnConfirm {
        match dst.call(CHANNEL, ConfirmSelect::default().into())? {
            Method::ConfirmSelectOk(_) => {}
            m => return Err(unexpected(&m, "confirm.select-ok")),
        }
    }
    Ok(())
}

/// The source: an existing queue (see below), or a server-named exclusive
/// queue bound to `src-exchange`; qos; consume. Returns how many messages
/// remain to move (`src-delete-after`), None for no limit.
///
/// A missing `src-queue` is an error that the status shows and the
/// supervisor retries (RabbitMQ 4's `src-predeclared: true`). RabbitMQ 3.x
/// declares it instead; warren does not create queues on a broker it
/// migrates from, where a mistyped name would leave an empty durable queue
/// behind while the real one is never drained.
fn init_source(src: &mut End, def: &ShovelDef) -> Result<Option<u64>, ClientError> {
    let src = match src {
        End::A091(c) => c,
        End::A10(l) => {
            let Source::Address(address) = &def.source else {
                return Err(ClientError::Protocol(
                    "an AMQP 1.0 source needs src-address".into(),
                ));
            };
            let reply = l.conn.attach(attach10(role::RECEIVER, address, def))?;
            l.delivery_count = reply.initial_delivery_count.unwrap_or(0);
            l.window = match def.prefetch {
                0 => 1000,
                n => n as u32,
            };
            l.credit = l.window;
            l.conn.queue_flow(Some(LinkFlow {
                handle: HANDLE,
                delivery_count: l.delivery_count,
                link_credit: l.window,
            }));
            l.conn.flush()?;
            return match def.delete_after {
                DeleteAfter::Never => Ok(None),
                DeleteAfter::Count(n) => Ok(Some(n)),
                // RabbitMQ's 1.0 shovel has no queue length to read either.
                DeleteAfter::QueueLength => Err(ClientError::Protocol(
                    "src-delete-after queue-length needs an AMQP 0-9-1 source".into(),
                )),
            };
        }
    };
    let (queue, length) = match &def.source {
        Source::Queue { name, .. } => {
            let n = src.queue_len(name)?;
            (name.clone(), n as u64)
        }
        Source::Exchange { name, key } => {
            let q = src.declare_exclusive()?;
            src.bind_queue(&q, name, key, FieldTable::new())?;
            (q, 0)
        }
        Source::Address(_) => {
            return Err(ClientError::Protocol(
                "src-address is for an AMQP 1.0 source".into(),
            ))
        }
    };
    let no_ack = def.ack_mode == AckMode::NoAck;
    if !no_ack {
        match src.call(
            CHANNEL,
            BasicQos {
                prefetch_count: def.prefetch,
                ..Default::default()
            }
            .into(),
        )? {
            Method::BasicQosOk(_) => {}
            m => return Err(unexpected(&m, "basic.qos-ok")),
        }
    }
    let remaining = match def.delete_after {
        DeleteAfter::Never => None,
        DeleteAfter::QueueLength => Some(length),
        DeleteAfter::Count(n) => Some(n),
    };
    if remaining == Some(0) {
        return Ok(remaining);
    }
    match src.call(
        CHANNEL,
        BasicConsume {
            queue: Bytes::from(queue.into_bytes()),
            no_ack,
            arguments: def.consumer_args.clone(),
            ..Default::default()
        }
        .into(),
    )? {
        Method::BasicConsumeOk(_) => {}
        m => return Err(unexpected(&m, "basic.consume-ok")),
    }
    Ok(remaining)
}

/// The shovel's link attach (handle [`HANDLE`]): a sender to the
/// destination's address, or a receiver from the source's; deliveries
/// settled by the sender with `no-ack`, else unsettled.
fn attach10(ours: bool, address: &str, def: &ShovelDef) -> Attach {
    let settled = ours == role::RECEIVER && def.ack_mode == AckMode::NoAck;
    let name = if ours == role::SENDER {
        "shovel-dest"
    } else {
        "shovel-src"
    };
    link_attach(name, HANDLE, ours, address, settled)
}
