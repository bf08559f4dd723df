//! queue.declare / bind / unbind / purge / delete. A new queue is created on the
//! declaring connection's shard (exclusive and RPC reply queues are then local to
//! their only user); operations on an existing queue are requests to its shard.

use super::exchange_methods::{check_binding_args, default_exchange_refused, inequivalent, text};
use super::{Awaiting, ChanCx, ChanResult, Channel, Flow};
use crate::broker::definitions::{Binding, BindingDest, QueueDef};
use crate::broker::error::AmqpError;
use crate::broker::ids::QueueRef;
use crate::broker::queue::{Queue, QueueProps};
use crate::broker::queue_args;
use crate::broker::shard_msg::QueueOp;
use crate::protocol::methods::*;
use crate::protocol::{FieldTable, FieldValue};
use bytes::Bytes;

/// Queue arguments RabbitMQ compares on redeclaration.
const EQUIVALENCE_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
];

impl Channel {
    pub(super) fn queue_declare(&mut self, m: QueueDeclare, cx: &mut ChanCx) -> ChanResult {
        if super::direct_reply::is_reply_to_name(&m.queue) {
            return self.declare_reply_to(m, cx);
        }
        if m.passive {
            let name = self.resolve_queue_name(&m.queue)?;
            let q = self.find_queue(&name, cx)?;
            self.last_queue = Some(name.clone());
            return self.request(
                cx,
                q.queue,
                QueueOp::Status,
                Awaiting::Declare {
                    name,
                    nowait: m.nowait,
                },
            );
        }
        let name = if m.queue.is_empty() {
            queue_args::check_server_named(&m.arguments)?;
            cx.ctx.rng.name("amq.gen-")
        } else {
            text(&m.queue)
        };
        if name.starts_with("amq.") && !m.queue.is_empty() {
            return Err(AmqpError::access_refused(format!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                name
            )));
        }
        let owner = if m.exclusive { Some(cx.info.uid) } else { None };
        queue_args::validate(&name, &m.arguments)?;
        let defs = cx.ctx.defs.clone();
        let mut g = defs.lock();
        if let Some(existing) = g.queues.get(&name) {
            if existing.exclusive_owner != owner {
                return Err(AmqpError::queue_locked(&name));
            }
            check_queue_equivalent(existing, &m)?;
            let q = existing.queue;
            drop(g);
            self.last_queue = Some(name.clone());
            return self.request(
                cx,
                q,
                QueueOp::Status,
                Awaiting::Declare {
                    name,
                    nowait: m.nowait,
                },
            );
        }
        queue_args::check_type_properties(
            &name,
            &m.arguments,
            m.durable,
            m.exclusive,
            m.auto_delete,
        )?;
        // Durable and not exclusive: recovered after a restart, under this id.
        let store_id = if m.durable && owner.is_none() {
            g.next_store_id()
        } else {
            0
        };
        let ctx = &mut *cx.ctx;
        let me = QueueRef {
            shard: ctx.id,
            slot: ctx.queues.vacant_key() as u32,
            gen: ctx.next_queue_gen(),
        };
        let props = QueueProps {
            name: name.clone(),
            durable: m.durable,
            auto_delete: m.auto_delete,
            exclusive_owner: owner,
            arguments: m.arguments.clone(),
            store_id,
        };
        ctx.queues.insert(Queue::new(
            me,
            props,
            ctx.paging.clone(),
            ctx.config.consumer_timeout,
        ));
        g.add_queue(QueueDef {
            name: name.clone(),
            queue: me,
            durable: m.durable,
            auto_delete: m.auto_delete,
            exclusive_owner: owner,
            args: m.arguments,
            store_id,
        });
        // On disk before declare-ok (a durable queue).
        g.commit()?;
        drop(g);
        if m.exclusive {
            cx.info.exclusive_queues.push(me);
        }
        self.last_queue = Some(name.clone());
        if !m.nowait {
            let ok = QueueDeclareOk {
                queue: Bytes::from(name),
                message_count: 0,
                consumer_count: 0,
            };
            self.send(cx, ok.into());
        }
        Ok(Flow::Continue)
    }

    pub(super) fn queue_bind(&mut self, m: QueueBind, cx: &mut ChanCx) -> ChanResult {
        let b = self.queue_binding(&m.queue, &m.exchange, &m.routing_key, m.arguments, cx)?;
        {
            let defs = cx.ctx.defs.clone();
            let mut g = defs.lock();
            g.queue(b.dest.name())?;
            g.exchange(&b.source)?;
            check_binding_args(&g, &b.source, &b.args)?;
            g.add_binding(b);
            g.commit()?;
        }
        if !m.nowait {
            self.send(cx, QueueBindOk {}.into());
        }
        Ok(Flow::Continue)
    }

    /// Unbinding what does not exist (binding, queue or exchange) succeeds, as
    /// in RabbitMQ.
    pub(super) fn queue_unbind(&mut self, m: QueueUnbind, cx: &mut ChanCx) -> ChanResult {
        let name = self.resolve_queue_name(&m.queue)?;
        if m.exchange.is_empty() {
            return Err(default_exchange_refused());
        }
        let ctx = &mut *cx.ctx;
        ctx.routing.sync(&ctx.defs);
        if let Some(q) = cx.ctx.routing.queue(&name) {
            if q.exclusive_owner.is_some_and(|o| o != cx.info.uid) {
                return Err(AmqpError::queue_locked(&name));
            }
        }
        let b = Binding::new(
            text(&m.exchange),
            BindingDest::Queue(name),
            text(&m.routing_key),
            m.arguments,
        );
        {
            let defs = cx.ctx.defs.clone();
            let mut g = defs.lock();
            g.remove_binding(&b);
            g.commit()?;
        }
        self.send(cx, QueueUnbindOk {}.into());
        Ok(Flow::Continue)
    }

    fn queue_binding(
        &self,
        queue: &Bytes,
        exchange: &Bytes,
        key: &Bytes,
        args: FieldTable,
        cx: &mut ChanCx,
    ) -> Result<Binding, AmqpError> {
        let name = self.resolve_queue_name(queue)?;
        if exchange.is_empty() {
            return Err(default_exchange_refused());
        }
        self.find_queue(&name, cx)?;
        // RabbitMQ: an empty routing key with "" queue shortcut binds with the queue's name.
        let key = if key.is_empty() && queue.is_empty() {
            name.clone()
        } else {
            text(key)
        };
        Ok(Binding::new(
            text(exchange),
            BindingDest::Queue(name),
            key,
            args,
        ))
    }

    pub(super) fn queue_purge(&mut self, m: QueuePurge, cx: &mut ChanCx) -> ChanResult {
        let name = self.resolve_queue_name(&m.queue)?;
        let q = self.find_queue(&name, cx)?;
        self.request(
            cx,
            q.queue,
            QueueOp::Purge,
            Awaiting::Purge {
                name,
                nowait: m.nowait,
            },
        )
    }

    pub(super) fn queue_delete(&mut self, m: QueueDelete, cx: &mut ChanCx) -> ChanResult {
        let name = self.resolve_queue_name(&m.queue)?;
        let q = match self.find_queue(&name, cx) {
            Ok(q) => q,
            // Deleting a queue that does not exist succeeds (RabbitMQ 3.x).
            Err(e) if e.code == 404 => {
                if !m.nowait {
                    self.send(cx, QueueDeleteOk { message_count: 0 }.into());
                }
                return Ok(Flow::Continue);
            }
            Err(e) => return Err(e),
        };
        let op = QueueOp::Delete {
            if_unused: m.if_unused,
            if_empty: m.if_empty,
        };
        self.request(
            cx,
            q.queue,
            op,
            Awaiting::Delete {
                name,
                nowait: m.nowait,
            },
        )
    }
}

fn check_queue_equivalent(q: &QueueDef, m: &QueueDeclare) -> Result<(), AmqpError> {
    let b = |v: bool| if v { "true" } else { "false" };
    if q.durable != m.durable {
        return Err(inequivalent(
            "durable",
            "queue",
            &q.name,
            b(m.durable),
            b(q.durable),
        ));
    }
    if q.auto_delete != m.auto_delete {
        return Err(inequivalent(
            "auto_delete",
            "queue",
            &q.name,
            b(m.auto_delete),
            b(q.auto_delete),
        ));
    }
    for key in EQUIVALENCE_ARGS {
        let (new, cur) = (m.arguments.get(key), q.args.get(key));
        if !same_arg(new, cur) {
            // RabbitMQ shows bare values when both sides have one, typed values
            // when one side is missing.
            let (received, current) = match (new, cur) {
                (Some(n), Some(c)) => (format!("'{}'", shown(n)), format!("'{}'", shown(c))),
                _ => (describe(new), describe(cur)),
            };
            return Err(AmqpError::precondition(format!(
                "inequivalent arg '{}' for queue '{}' in vhost '/': received {} but current is {}",
                key, q.name, received, current
            )));
        }
    }
    Ok(())
}

/// Integer arguments compare by value whatever their wire type, as in RabbitMQ.
pub(super) fn same_arg(a: Option<&FieldValue>, b: Option<&FieldValue>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x == y,
        },
        _ => false,
    }
}

pub(super) fn shown(v: &FieldValue) -> String {
    match (v.as_str(), v.as_i64(), v.as_bool()) {
        (Some(s), _, _) => s.to_string(),
        (_, Some(i), _) => i.to_string(),
        (_, _, Some(b)) => b.to_string(),
        _ => format!("{:?}", v),
    }
}

pub(super) fn describe(v: Option<&FieldValue>) -> String {
    match v {
        None => "none".to_string(),
        Some(v) => format!("the value '{}' of type '{}'", shown(v), v.type_name()),
    }
}
