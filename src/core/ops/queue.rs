//! queue declare / bind / unbind and the lookup every queue method starts
//! with. A new queue is created on the calling shard (exclusive and RPC reply
//! queues are then local to their only user); what needs the queue itself
//! (status of an existing queue, purge, delete, consume, get) is a
//! `ShardMsg::Request` the front end sends to the queue's shard.

use super::equivalence::check_queue_equivalent;
use super::exchange::{binding_access, check_binding_args};
use super::Caller;
use crate::core::auth::permissions::Access;
use crate::core::definitions::{Binding, BindingDest, QueueDef};
use crate::core::error::{CoreError, CoreResult};
use crate::core::ids::QueueRef;
use crate::core::queue::QueueProps;
use crate::core::queue_args;
use crate::core::routing::LocalQueue;
use crate::core::ShardCtx;
use crate::protocol::FieldTable;

/// A queue as a (non-passive) declare asks for it.
pub struct QueueSpec {
    /// Empty: the broker names it (`amq.gen-…`).
    pub name: String,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

/// What a declare did.
pub enum Declared {
    /// A new, empty queue on this shard.
    Created { name: String, queue: QueueRef },
    /// An equivalent queue exists; its counts come from its shard.
    Exists { name: String, queue: QueueRef },
}

/// Finds a queue by name and checks the caller may use it (an exclusive
/// queue belongs to one connection).
pub fn find_queue(ctx: &mut ShardCtx, caller: Caller, name: &str) -> CoreResult<LocalQueue> {
    ctx.routing.sync(&ctx.defs);
    let q = ctx
        .routing
        .queue(caller.vhost(), name)
        .ok_or_else(|| CoreError::no_queue(caller.vhost_name(), name))?;
    if q.exclusive_owner
        .is_some_and(|owner| owner != caller.conn_uid)
    {
        return Err(CoreError::queue_locked(caller.vhost_name(), name));
    }
    Ok(q)
}

/// The queue exists (on this node or, clustered, another) and the caller
/// may use it: what binding needs, which sends the queue nothing.
pub fn queue_defined(ctx: &mut ShardCtx, caller: Caller, name: &str) -> CoreResult<()> {
    let g = ctx.defs.lock();
    let q = g.queue(caller.vhost(), name)?;
    if q.exclusive_owner
        .is_some_and(|owner| owner != caller.conn_uid)
    {
        return Err(CoreError::queue_locked(caller.vhost_name(), name));
    }
    Ok(())
}

/// An operation on an existing queue: the permission it needs (`read` to
/// consume, get or purge, `configure` to delete), checked first as
/// RabbitMQ does, then [`find_queue`].
pub fn use_queue(
    ctx: &mut ShardCtx,
    caller: Caller,
    access: Access,
    name: &str,
) -> CoreResult<LocalQueue> {
    caller.access.check_queue(access, name)?;
    find_queue(ctx, caller, name)
}

/// queue.declare (not passive), with RabbitMQ's checks in its order.
pub fn queue_declare(ctx: &mut ShardCtx, caller: Caller, q: QueueSpec) -> CoreResult<Declared> {
    let server_named = q.name.is_empty();
    let name = if server_named {
        queue_args::check_server_named(&q.arguments)?;
        ctx.rng.name("amq.gen-")
    } else {
        q.name
    };
    if name.starts_with("amq.") && !server_named {
        return Err(CoreError::access_refused(format!(
            "queue name '{}' contains reserved prefix 'amq.*'",
            name
        )));
    }
    let (vhost, vname) = (caller.vhost(), caller.vhost_name());
    caller.access.check_queue(Access::Configure, &name)?;
    let owner = q.exclusive.then_some(caller.conn_uid);
    // A stream's arguments are checked only when it is created: RabbitMQ
    // compares a redeclaration with the stream's own arguments alone (a
    // TTL given again is ignored).
    let stream = queue_args::is_stream(&q.arguments);
    if !stream {
        queue_args::validate(vname, &name, &q.arguments)?;
    }
    let defs = ctx.defs.clone();
    let mut g = defs.lock_change();
    if let Some(existing) = g.vh(vhost)?.queues.get(&name) {
        if existing.exclusive_owner != owner {
            return Err(CoreError::queue_locked(vname, &name));
        }
        check_queue_equivalent(vname, existing, q.durable, q.auto_delete, &q.arguments)?;
        let queue = existing.queue;
        ctx.churn.queue_declared += 1;
        return Ok(Declared::Exists { name, queue });
    }
    if stream {
        queue_args::validate(vname, &name, &q.arguments)?;
    }
    g.check_queue_limit(vhost, &name)?;
    if let Some(dlx) = q
        .arguments
        .get("x-dead-letter-exchange")
        .and_then(|v| v.as_str())
    {
        // RabbitMQ: the declarer reads from the queue and writes to its DLX.
        caller.access.check_queue(Access::Read, &name)?;
        caller.access.check_exchange(Access::Write, dlx)?;
    }
    queue_args::check_type_properties(
        vname,
        &name,
        &q.arguments,
        q.durable,
        q.exclusive,
        q.auto_delete,
    )?;
    // Durable and not exclusive: recovered after a restart, under this id.
    let store_id = if q.durable && owner.is_none() {
        g.next_store_id()
    } else {
        0
    };
    let me = QueueRef {
        shard: ctx.id,
        slot: ctx.queues.vacant_key() as u32,
        gen: ctx.next_queue_gen(),
    };
    let props = QueueProps {
        vhost,
        vhost_name: g.vhost_name(vhost),
        name: name.clone(),
        durable: q.durable,
        auto_delete: q.auto_delete,
        exclusive_owner: owner,
        arguments: q.arguments.clone(),
        store_id,
    };
    let queue = ctx.new_queue(me, props)?;
    if queue.replicated {
        // Declared here: this node leads it, in epoch 1.
        ctx.replicas.led.insert(store_id, 1);
    }
    ctx.queues.insert(queue);
    g.add_queue(QueueDef {
        vhost,
        name: name.clone(),
        queue: me,
        durable: q.durable,
        auto_delete: q.auto_delete,
        exclusive_owner: owner,
        args: q.arguments,
        store_id,
        node: None,
    });
    // On disk before declare-ok (a durable queue). If it cannot be, the
    // declare did not happen: the queue goes again (its removal follows
    // the pending declaration into the log, so a later write leaves none).
    if let Err(e) = g.commit() {
        g.remove_queue(vhost, &name, me);
        ctx.queues.remove(me.slot as usize);
        return Err(e);
    }
    ctx.churn.queue_declared += 1;
    ctx.churn.queue_created += 1;
    Ok(Declared::Created { name, queue: me })
}

/// A binding of queue `queue` to `exchange`, checked as RabbitMQ checks it
/// before binding: not the default exchange, the queue exists and may be used.
pub fn queue_binding(
    ctx: &mut ShardCtx,
    caller: Caller,
    queue: String,
    exchange: String,
    key: String,
    args: FieldTable,
) -> CoreResult<Binding> {
    let dest = BindingDest::Queue(queue);
    binding_access(&ctx.defs, caller, &exchange, &dest, &key)?;
    queue_defined(ctx, caller, dest.name())?;
    Ok(Binding::new(caller.vhost(), exchange, dest, key, args))
}

/// queue.bind.
pub fn queue_bind(ctx: &mut ShardCtx, b: Binding) -> CoreResult<()> {
    let mut g = ctx.defs.lock_change();
    g.queue(b.vhost, b.dest.name())?;
    g.exchange(b.vhost, &b.source)?;
    check_binding_args(&g, &b)?;
    g.add_binding(b);
    g.commit()
}

/// queue.unbind. Unbinding what does not exist (binding, queue or exchange)
/// succeeds, as in RabbitMQ; an exclusive queue of another connection is a
/// 405 all the same.
pub fn queue_unbind(
    ctx: &mut ShardCtx,
    caller: Caller,
    queue: String,
    exchange: String,
    key: String,
    args: FieldTable,
) -> CoreResult<()> {
    let dest = BindingDest::Queue(queue);
    binding_access(&ctx.defs, caller, &exchange, &dest, &key)?;
    match queue_defined(ctx, caller, dest.name()) {
        Ok(()) | Err(CoreError::NotFound(_)) => {}
        Err(locked) => return Err(locked),
    }
    let b = Binding::new(caller.vhost(), exchange, dest, key, args);
    super::exchange::unbind(&ctx.defs, &b)
}
