//! Publishing, the part every front end shares: routing a message on the
//! calling shard and handing it to its destination queues
//! (`rabbit_exchange:route` and `rabbit_queue_type:deliver`). The 0-9-1
//! channel (`Channel::route_and_enqueue`) and the management API's
//! `POST /api/exchanges/{vhost}/{name}/publish` (`admin::exchanges`) call
//! these; each keeps its own protocol's checks and answers around them.
//!
//! Cost: [`route`] and [`enqueue`] are on the publish hot path. They work in
//! the shard's reused `route_scratch` and the caller's reused key buffer, so
//! they allocate nothing once warm (but for a `BCC` header, see
//! `sender_selected`).

use crate::core::error::{CoreError, CoreResult};
use crate::core::ids::VhostId;
use crate::core::message::{Message, MessageMeta};
use crate::core::routing::RouteError;
use crate::core::sender_selected::{self, BadHeaderType};
use crate::core::shard_msg::{ConfirmTag, ShardMsg};
use crate::core::ShardCtx;
use crate::protocol::properties::raw_user_id;
use bytes::Bytes;

/// Why [`route`] found no way to route a message.
#[derive(Debug, PartialEq)]
pub enum Unroutable {
    /// A `CC` or `BCC` header that is not an array (checked first).
    Header(BadHeaderType),
    /// No such exchange, or an internal one.
    Exchange(RouteError),
}

/// Routes `msg` (published to `msg.exchange` in `vhost`) on this shard with
/// its routing key and the sender-selected keys of its `CC`/`BCC` headers,
/// which are appended to `keys` and left there for the caller. A `BCC`
/// header is cut out of `msg`'s properties once routed. The destination
/// queues (distinct) are left in `ctx.route_scratch`, cleared first; none
/// is an unroutable message.
#[inline]
pub fn route(
    ctx: &mut ShardCtx,
    vhost: VhostId,
    msg: &mut Message,
    keys: &mut Vec<Bytes>,
) -> Result<(), Unroutable> {
    let bcc = sender_selected::header_routes(msg, keys).map_err(Unroutable::Header)?;
    ctx.routing.sync(&ctx.defs);
    ctx.route_scratch.clear();
    let routed = ctx.routing.route_keys(
        vhost,
        msg.exchange(),
        msg.routing_key(),
        keys,
        msg.properties(),
        &mut ctx.route_scratch,
    );
    if let Some(bcc) = bcc {
        // Nobody may see BCC: not the queues, not a direct reply.
        *msg = msg.with_properties(&sender_selected::strip_bcc(msg.properties(), &bcc));
    }
    routed.map_err(Unroutable::Exchange)
}

/// Hands `msg` to every queue [`route`] left in `ctx.route_scratch`: one
/// `ShardMsg::Publish` for each, through the outbox (the queue's shard
/// handles it, `ShardCtx::handle_queue_msg`). Every destination but the
/// last gets a clone (one reference count, no bytes). Returns how many
/// queues it went to.
#[inline]
pub fn enqueue(
    ctx: &mut ShardCtx,
    msg: Message,
    meta: MessageMeta,
    confirm: Option<ConfirmTag>,
) -> usize {
    let n = ctx.route_scratch.len();
    let Some((&last, rest)) = ctx.route_scratch.split_last() else {
        return 0;
    };
    for &queue in rest {
        ctx.outbox.push(
            queue.shard,
            ShardMsg::Publish {
                queue,
                msg: msg.clone(),
                meta,
                confirm,
            },
        );
    }
    ctx.outbox.push(
        last.shard,
        ShardMsg::Publish {
            queue: last,
            msg,
            meta,
            confirm,
        },
    );
    n
}

/// A `user_id` property must name the authenticated user, unless that user
/// has the tag `impersonator` (`rabbit_channel:check_user_id_header`).
pub fn check_user_id(properties: &[u8], user: &str, tags: &[String]) -> CoreResult<()> {
    match raw_user_id(properties) {
        Some(claimed)
            if claimed != user.as_bytes() && !tags.iter().any(|t| t == "impersonator") =>
        {
            Err(CoreError::precondition(format!(
                "user_id property set to '{}' but authenticated user was '{}'",
                String::from_utf8_lossy(claimed),
                user
            )))
        }
        _ => Ok(()),
    }
}
