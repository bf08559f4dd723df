//! Exchanges, bindings and publishing for the management API (RabbitMQ's
//! `rabbit_mgmt_wm_exchanges`, `_wm_exchange`, `_wm_exchange_publish`,
//! `_wm_bindings`, `_wm_binding`), as the HTTP user with their own rights
//! (see `objects.rs`).
//!
//! Declare, delete, bind and unbind are the `core::ops` functions a 0-9-1
//! channel calls. Listings read the definitions under their lock (briefly:
//! the objects are copied out). A publish is checked and routed on a shard
//! by `core::ops::publish::route`, the channel's routing, and then handed
//! to each destination queue on the queue's own shard
//! (`ShardCtx::handle_queue_msg`, as a ring message would be), so that the
//! message is in its queues when the call returns, as RabbitMQ's API
//! answers only after the publisher confirm.

use super::objects::{name_shard, API_CONNECTION};
use super::Admin;
use crate::core::auth::permissions::Access;
use crate::core::definitions::{Binding, BindingDest, ExchangeDef};
use crate::core::error::{CoreError, CoreResult};
use crate::core::exchange::ExchangeKind;
use crate::core::ids::QueueRef;
use crate::core::message::{Message, MessageMeta};
use crate::core::ops::exchange::{
    exchange_bind, exchange_binding, exchange_declare, exchange_delete, unbind, ExchangeSpec,
};
use crate::core::ops::publish::{self, check_user_id, Unroutable};
use crate::core::ops::queue::{queue_bind, queue_binding, queue_unbind};
use crate::core::ops::Caller;
use crate::core::shard_msg::ShardMsg;
use crate::protocol::FieldTable;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;

/// An exchange and the name of its vhost.
#[derive(Clone, Debug)]
pub struct ExchangeView {
    pub vhost: Arc<str>,
    pub def: ExchangeDef,
}

/// A binding as the API lists it. The default exchange's implicit bindings
/// (to every queue, by its name) are listed too, as RabbitMQ does.
#[derive(Clone, Debug)]
pub struct BindingView {
    pub vhost: Arc<str>,
    pub source: String,
    pub dest: BindingDest,
    pub key: String,
    pub args: FieldTable,
}

/// Which bindings of a vhost to list.
#[derive(Clone, Debug)]
pub enum BindingFilter {
    /// All of them, the default exchange's included.
    All,
    /// From this exchange (the default exchange: one per queue).
    Source(String),
    /// To this queue or exchange (a queue always has its implicit one).
    Destination(BindingDest),
    /// From this exchange to this queue or exchange.
    Between(String, BindingDest),
}

fn stopped() -> CoreError {
    CoreError::internal("the broker is stopping")
}

impl Admin {
    /// Every exchange (of `vhost`, or of all vhosts), by vhost and name.
    pub fn exchanges(&self, vhost: Option<&str>) -> Vec<ExchangeView> {
        let g = self.defs.lock();
        let mut out = Vec::new();
        for v in g.vhosts() {
            if vhost.is_some_and(|name| name != &*v.name) {
                continue;
            }
            let sorted: BTreeMap<&String, &ExchangeDef> = v.exchanges.iter().collect();
            out.extend(sorted.into_values().map(|x| ExchangeView {
                vhost: v.name.clone(),
                def: x.clone(),
            }));
        }
        out
    }

    /// One exchange ("" is the default exchange).
    pub fn exchange(&self, vhost: &str, name: &str) -> Option<ExchangeView> {
        let g = self.defs.lock();
        let v = g.vh(g.vhost_id(vhost)?).ok()?;
        let def = v.exchanges.get(name)?.clone();
        Some(ExchangeView {
            vhost: v.name.clone(),
            def,
        })
    }

    /// `PUT /api/exchanges/{vhost}/{name}`: exchange.declare as `user`. True
    /// if it was created, false if an equivalent one existed.
    pub fn declare_exchange(
        &self,
        user: &str,
        vhost: &str,
        spec: ExchangeSpec,
    ) -> CoreResult<bool> {
        let access = self.access(user, vhost)?;
        let existed = self.exchange(vhost, &spec.name).is_some();
        let caller = Caller {
            conn_uid: API_CONNECTION,
            access: &access,
        };
        exchange_declare(&self.defs, caller, spec)?;
        Ok(!existed)
    }

    /// `DELETE /api/exchanges/{vhost}/{name}` (`if-unused`).
    pub fn delete_exchange(
        &self,
        user: &str,
        vhost: &str,
        name: &str,
        if_unused: bool,
    ) -> CoreResult<()> {
        let access = self.access(user, vhost)?;
        let caller = Caller {
            conn_uid: API_CONNECTION,
            access: &access,
        };
        exchange_delete(&self.defs, caller, name, if_unused)
    }

    /// The bindings of `vhost` (or of all vhosts) `filter` selects, by
    /// vhost, source, destination, key and arguments.
    pub fn bindings(&self, vhost: Option<&str>, filter: &BindingFilter) -> Vec<BindingView> {
        let g = self.defs.lock();
        let mut out = Vec::new();
        for v in g.vhosts() {
            if vhost.is_some_and(|name| name != &*v.name) {
                continue;
            }
            let implicit = |q: &str| BindingView {
                vhost: v.name.clone(),
                source: String::new(),
                dest: BindingDest::Queue(q.to_string()),
                key: q.to_string(),
                args: FieldTable::new(),
            };
            match filter {
                BindingFilter::All => out.extend(v.queues.keys().map(|q| implicit(q))),
                BindingFilter::Source(s) if s.is_empty() => {
                    out.extend(v.queues.keys().map(|q| implicit(q)))
                }
                BindingFilter::Destination(BindingDest::Queue(q)) => out.push(implicit(q)),
                BindingFilter::Between(s, BindingDest::Queue(q)) if s.is_empty() => {
                    out.push(implicit(q))
                }
                _ => {}
            }
            let wanted = |b: &Binding| match filter {
                BindingFilter::All => true,
                BindingFilter::Source(s) => &b.source == s,
                BindingFilter::Destination(d) => &b.dest == d,
                BindingFilter::Between(s, d) => &b.source == s && &b.dest == d,
            };
            out.extend(
                v.bindings
                    .iter()
                    .filter(|b| wanted(b))
                    .map(|b| BindingView {
                        vhost: v.name.clone(),
                        source: b.source.clone(),
                        dest: b.dest.clone(),
                        key: b.key.clone(),
                        args: b.args.clone(),
                    }),
            );
        }
        out.sort_by(|a, b| {
            let key = |x: &BindingView| {
                let mut raw = Vec::new();
                x.args.encode(&mut raw);
                (
                    x.vhost.clone(),
                    x.source.clone(),
                    x.dest.name().to_string(),
                    x.key.clone(),
                    raw,
                )
            };
            key(a).cmp(&key(b))
        });
        out
    }

    /// `POST /api/bindings/{vhost}/e/{source}/{q|e}/{dest}`: queue.bind or
    /// exchange.bind as `user`.
    pub fn bind(
        &self,
        user: &str,
        vhost: &str,
        source: &str,
        dest: BindingDest,
        key: &str,
        args: FieldTable,
    ) -> CoreResult<()> {
        let access = self.access(user, vhost)?;
        let (source, key) = (source.to_string(), key.to_string());
        match dest {
            BindingDest::Exchange(d) => {
                let caller = Caller {
                    conn_uid: API_CONNECTION,
                    access: &access,
                };
                let b = exchange_binding(&self.defs, caller, source, d, key, args)?;
                exchange_bind(&self.defs, b)
            }
            BindingDest::Queue(q) => {
                // The queue's shard looks it up (exclusive queues) in its
                // routing copy; any shard would do.
                let shard = self.queue_home(vhost, &q);
                self.control
                    .ask(shard, move |s| {
                        let caller = Caller {
                            conn_uid: API_CONNECTION,
                            access: &access,
                        };
                        let b = queue_binding(&mut s.ctx, caller, q, source, key, args)?;
                        queue_bind(&mut s.ctx, b)
                    })
                    .ok_or_else(stopped)?
            }
        }
    }

    /// `DELETE /api/bindings/{vhost}/e/{source}/{q|e}/{dest}/{props}`:
    /// queue.unbind or exchange.unbind as `user`.
    pub fn unbind(&self, user: &str, vhost: &str, b: &BindingView) -> CoreResult<()> {
        let access = self.access(user, vhost)?;
        let (source, key, args) = (b.source.clone(), b.key.clone(), b.args.clone());
        match b.dest.clone() {
            BindingDest::Exchange(d) => {
                let caller = Caller {
                    conn_uid: API_CONNECTION,
                    access: &access,
                };
                let b = exchange_binding(&self.defs, caller, source, d, key, args)?;
                unbind(&self.defs, &b)
            }
            BindingDest::Queue(q) => {
                let shard = self.queue_home(vhost, &q);
                self.control
                    .ask(shard, move |s| {
                        let caller = Caller {
                            conn_uid: API_CONNECTION,
                            access: &access,
                        };
                        queue_unbind(&mut s.ctx, caller, q, source, key, args)
                    })
                    .ok_or_else(stopped)?
            }
        }
    }

    /// The shard of queue `name` (shard 0 if there is none).
    fn queue_home(&self, vhost: &str, name: &str) -> usize {
        let g = self.defs.lock();
        g.vhost_id(vhost)
            .and_then(|id| g.queue(id, name).ok().map(|q| q.queue.shard as usize))
            .filter(|&s| s < self.control.shards())
            .unwrap_or(0)
    }

    /// `POST /api/exchanges/{vhost}/{name}/publish`: publishes a message as
    /// `user` (the checks of a 0-9-1 basic.publish: write permission, topic
    /// permission, the exchange, `user_id`, `expiration`, `CC`/`BCC`) and
    /// returns whether it reached a queue. `properties` are encoded 0-9-1
    /// content-header properties. Direct reply-to addresses are not served.
    pub fn publish(
        &self,
        user: &str,
        vhost: &str,
        exchange: &str,
        routing_key: &str,
        properties: Bytes,
        body: Bytes,
    ) -> CoreResult<bool> {
        let access = self.access(user, vhost)?;
        let user = user.to_string();
        let msg = Message::from_amqp091(
            Bytes::copy_from_slice(exchange.as_bytes()),
            Bytes::copy_from_slice(routing_key.as_bytes()),
            properties,
            body,
        );
        let shard = name_shard(exchange, self.control.shards());
        let routed = self
            .control
            .ask(shard, move |s| -> CoreResult<_> {
                let ctx = &mut s.ctx;
                let mut msg = msg;
                let (vhost, vname) = (access.vhost, access.vhost_name.clone());
                let name = String::from_utf8_lossy(msg.exchange()).into_owned();
                access.check_exchange(Access::Write, &name)?;
                ctx.routing.sync(&ctx.defs);
                let x = ctx.routing.exchange(vhost, msg.exchange());
                let (found, topic) = (
                    x.map(|x| x.internal),
                    x.is_some_and(|x| x.kind == ExchangeKind::Topic),
                );
                let exists = || match found {
                    None => Err(CoreError::no_exchange(&vname, &name)),
                    Some(true) => Err(CoreError::access_refused(format!(
                        "cannot publish to internal {}",
                        crate::core::vhost::resource(&vname, "exchange", &name)
                    ))),
                    Some(false) => Ok(()),
                };
                if access.has_topic_permissions() {
                    exists()?;
                    if topic {
                        access.check_topic(
                            Access::Write,
                            &name,
                            &String::from_utf8_lossy(msg.routing_key()),
                        )?;
                    }
                }
                exists()?;
                let meta = MessageMeta::from_amqp091(msg.properties());
                check_user_id(msg.properties(), &user, &access.tags)?;
                msg.check_expiration(meta)?;
                let mut keys = Vec::new();
                match publish::route(ctx, vhost, &mut msg, &mut keys) {
                    Ok(()) => {}
                    Err(Unroutable::Header(e)) => return Err(e.into()),
                    Err(Unroutable::Exchange(e)) => {
                        return Err(e.to_error(&vname, msg.exchange().as_ref()))
                    }
                }
                Ok((msg, meta, ctx.route_scratch.clone()))
            })
            .ok_or_else(stopped)??;
        let (msg, meta, queues) = routed;
        let mut by_shard: BTreeMap<u16, Vec<QueueRef>> = BTreeMap::new();
        for q in &queues {
            by_shard.entry(q.shard).or_default().push(*q);
        }
        for (shard, qs) in by_shard {
            let msg = msg.clone();
            self.control
                .ask(shard as usize, move |s| {
                    for queue in qs {
                        s.ctx.handle_queue_msg(ShardMsg::Publish {
                            queue,
                            msg: msg.clone(),
                            meta,
                            confirm: None,
                        });
                    }
                })
                .ok_or_else(stopped)?;
        }
        Ok(!queues.is_empty())
    }
}
