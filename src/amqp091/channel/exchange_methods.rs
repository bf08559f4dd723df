//! exchange.declare / delete / bind / unbind: the core's operations
//! (`core::ops::exchange`), answered with the `*-ok`. The core commits under
//! the definitions lock and releases it before returning, so the `*-ok` goes
//! out after the change is visible to every shard.

use super::{caller, ChanCx, ChanResult, Channel, Flow};
use crate::core::ops::exchange::{self as ops, ExchangeSpec};
use crate::protocol::methods::*;
use bytes::Bytes;

pub(super) fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Channel {
    pub(super) fn exchange_declare(&mut self, m: ExchangeDeclare, cx: &mut ChanCx) -> ChanResult {
        let name = text(&m.exchange);
        if m.passive {
            ops::exchange_check(&cx.ctx.defs, caller(cx.info), &name)?;
        } else {
            let spec = ExchangeSpec {
                name,
                kind: text(&m.kind),
                durable: m.durable,
                auto_delete: m.auto_delete,
                internal: m.internal,
                arguments: m.arguments,
            };
            ops::exchange_declare(&cx.ctx.defs, caller(cx.info), spec)?;
        }
        if !m.nowait {
            self.send(cx, ExchangeDeclareOk {}.into());
        }
        Ok(Flow::Continue)
    }

    pub(super) fn exchange_delete(&mut self, m: ExchangeDelete, cx: &mut ChanCx) -> ChanResult {
        ops::exchange_delete(
            &cx.ctx.defs,
            caller(cx.info),
            &text(&m.exchange),
            m.if_unused,
        )?;
        if !m.nowait {
            self.send(cx, ExchangeDeleteOk {}.into());
        }
        Ok(Flow::Continue)
    }

    pub(super) fn exchange_bind(&mut self, m: ExchangeBind, cx: &mut ChanCx) -> ChanResult {
        let b = ops::exchange_binding(
            &cx.ctx.defs,
            caller(cx.info),
            text(&m.source),
            text(&m.destination),
            text(&m.routing_key),
            m.arguments,
        )?;
        ops::exchange_bind(&cx.ctx.defs, b)?;
        if !m.nowait {
            self.send(cx, ExchangeBindOk {}.into());
        }
        Ok(Flow::Continue)
    }

    pub(super) fn exchange_unbind(&mut self, m: ExchangeUnbind, cx: &mut ChanCx) -> ChanResult {
        let b = ops::exchange_binding(
            &cx.ctx.defs,
            caller(cx.info),
            text(&m.source),
            text(&m.destination),
            text(&m.routing_key),
            m.arguments,
        )?;
        ops::unbind(&cx.ctx.defs, &b)?;
        if !m.nowait {
            self.send(cx, ExchangeUnbindOk {}.into());
        }
        Ok(Flow::Continue)
    }
}
