//! What basic.publish checks about a message's properties before routing it,
//! in RabbitMQ's order: the exchange (404, or 403 for an internal one) comes
//! first, then a `reply_to` of `amq.rabbitmq.reply-to` (rewritten to this
//! channel's reply address, or 406 without a reply consumer), then `user_id`
//! (406 unless it names the authenticated user), then `expiration` (406 unless
//! it is a non-negative integer string, `core::message::props091`). The `CC`/`BCC` headers are
//! checked while routing (`publish.rs`, `sender_selected.rs`), still after
//! these and still behind an exchange error.
//!
//! Cost: a publish with none of `reply_to`, `user_id`, `expiration` pays one look at the
//! property flags; the exchange is looked up here only when a check fails.

use super::{ChanCx, Channel};
use crate::amqp091::error::AmqpError;
use crate::core::auth::permissions::Access;
use crate::core::exchange::ExchangeKind;
use crate::core::message::{Message, MessageMeta};
use crate::core::ops::publish::check_user_id;
use crate::protocol::properties::{split_flags, PROP_EXPIRATION, PROP_REPLY_TO, PROP_USER_ID};

const fn flag(index: usize) -> u16 {
    1 << (15 - index)
}

impl Channel {
    /// The checks above; may replace `msg.properties` (reply_to rewrite).
    pub(super) fn check_publish(
        &self,
        msg: &mut Message,
        meta: MessageMeta,
        cx: &mut ChanCx,
    ) -> Result<(), AmqpError> {
        let Some((flags, _)) = split_flags(msg.properties()) else {
            return Ok(());
        };
        if flags & (flag(PROP_REPLY_TO) | flag(PROP_USER_ID) | flag(PROP_EXPIRATION)) == 0 {
            return Ok(());
        }
        let checked = self
            .rewrite_reply_to(msg)
            .and_then(|()| {
                check_user_id(msg.properties(), &cx.info.user, &cx.info.access.tags)
                    .map_err(AmqpError::from)
            })
            .and_then(|()| msg.check_expiration(meta).map_err(AmqpError::from));
        checked.map_err(|e| self.exchange_error(msg.exchange(), cx).unwrap_or(e))
    }

    /// The error a publish to `exchange` gets before any property check: it
    /// does not exist (404) or is internal (403).
    pub(super) fn exchange_error(&self, exchange: &[u8], cx: &mut ChanCx) -> Option<AmqpError> {
        if exchange.is_empty() {
            return None;
        }
        let ctx = &mut *cx.ctx;
        ctx.routing.sync(&ctx.defs);
        let vhost = cx.info.access.vhost;
        let found = ctx.routing.exchange(vhost, exchange).map(|x| x.internal);
        super::publish::check_exchange(found, &cx.info.access.vhost_name, exchange).err()
    }

    /// The user's permissions for a publish, first of all checks, in
    /// RabbitMQ's order: `write` on the exchange (the default exchange as
    /// `amq.default`); then, for a user with topic permissions, the exchange
    /// itself (404, internal 403) and, on a topic exchange, `write` on the
    /// routing key. The exchange last allowed is remembered per channel
    /// (with the rights' version), so a steady publisher runs no regex.
    pub(super) fn check_publish_access(
        &mut self,
        exchange: &[u8],
        routing_key: &[u8],
        cx: &mut ChanCx,
    ) -> Result<(), AmqpError> {
        let access = &*cx.info.access;
        if self.write_ok.1 != access.version || self.write_ok.0 != exchange {
            let name = String::from_utf8_lossy(exchange);
            access.check_exchange(Access::Write, &name)?;
            self.write_ok.0.clear();
            self.write_ok.0.extend_from_slice(exchange);
            self.write_ok.1 = access.version;
        }
        if !access.has_topic_permissions() {
            return Ok(());
        }
        let ctx = &mut *cx.ctx;
        ctx.routing.sync(&ctx.defs);
        let x = ctx.routing.exchange(access.vhost, exchange);
        super::publish::check_exchange(x.map(|x| x.internal), &access.vhost_name, exchange)?;
        if x.is_some_and(|x| x.kind == ExchangeKind::Topic) {
            access.check_topic(
                Access::Write,
                &String::from_utf8_lossy(exchange),
                &String::from_utf8_lossy(routing_key),
            )?;
        }
        Ok(())
    }
}
