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
use super::status::Cell;
use crate::client::uri::AmqpUri;
use crate::client::{unexpected, ClientError, Conn, CHANNEL};
use crate::core::auth::internal;
use crate::core::shovel_def::{
    strip_credentials, AckMode, DeleteAfter, Protocol, ShovelDef, Source,
};
use crate::protocol::methods::*;
use crate::protocol::{FieldTable, Method};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
    if def.src_protocol == Protocol::Amqp10 || def.dest_protocol == Protocol::Amqp10 {
        // Accepted as RabbitMQ accepts it, so that definitions import; not
        // run yet.
        return Exit::Failed("AMQP 1.0 shovel endpoints are not supported yet".into());
    }
    let (mut src, src_uri) = match connect(&def.src_uris, "source", ctx) {
        Ok(c) => c,
        Err(e) => return Exit::Failed(e),
    };
    if ctx.stop.load(Ordering::Acquire) {
        return Exit::Stopped;
    }
    let (mut dst, dest_uri) = match connect(&def.dest_uris, "destination", ctx) {
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
        close(src, dst);
        return Exit::Done;
    }
    ctx.cell.running(src_uri, dest_uri);
    log::info!("shovel '{}' in vhost '{}' is running", ctx.name, ctx.vhost);
    let mut f = Forwarder::new(def, ctx, remaining);
    let exit = f.run(&mut src, &mut dst);
    if !matches!(exit, Exit::Failed(_)) {
        close(src, dst);
    }
    exit
}

/// Connects to the first of `uris` that answers, starting at a random one
/// (RabbitMQ picks at random and falls back on the others). Returns the
/// connection and the URI without credentials.
fn connect(uris: &[String], which: &str, ctx: &RunCtx) -> Result<(Conn, String), String> {
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
                let props = crate::client::client_properties_of(
                    "warren shovel",
                    &format!("Shovel {}", ctx.name),
                );
                Conn::open_with(&u, props)
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
fn init_dest(dst: &mut Conn, def: &ShovelDef) -> Result<(), ClientError> {
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
fn init_source(src: &mut Conn, def: &ShovelDef) -> Result<Option<u64>, ClientError> {
    let (queue, length) = match &def.source {
        Source::Queue { name, .. } => {
            let n = src.queue_len(name)?;
            (name.clone(), n as u64)
        }
        Source::Exchange { name, key } => {
            let q = match src.call(
                CHANNEL,
                QueueDeclare {
                    exclusive: true,
                    ..Default::default()
                }
                .into(),
            )? {
                Method::QueueDeclareOk(ok) => String::from_utf8_lossy(&ok.queue).into_owned(),
                m => return Err(unexpected(&m, "queue.declare-ok")),
            };
            src.bind_queue(&q, name, key, FieldTable::new())?;
            (q, 0)
        }
        Source::Address(_) => unreachable!("AMQP 1.0 sources are refused in run()"),
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

/// Closes both connections politely (late frames are not interesting:
/// what was not acknowledged goes back to the source queue).
fn close(src: Conn, dst: Conn) {
    let t = std::time::Duration::from_secs(2);
    dst.close(t, |_, _| {});
    src.close(t, |_, _| {});
}
