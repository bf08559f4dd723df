//! exchange declare / delete / bind / unbind, with RabbitMQ's checks in
//! RabbitMQ's order (`rabbit_channel`, `rabbit_exchange`). Each changes the
//! definitions under their lock and commits (a durable change is on disk
//! before it returns), so by the time a front end answers `*-ok`, every
//! shard's next publish sees the change.

use super::equivalence::{check_args, inequivalent};
use super::Caller;
use crate::core::auth::permissions::Access;
use crate::core::definitions::{Binding, BindingDest, Definitions, Defs, ExchangeDef};
use crate::core::error::{CoreError, CoreResult};
use crate::core::exchange::headers_match::parse_x_match;
use crate::core::exchange::ExchangeKind;
use crate::core::vhost::resource;
use crate::protocol::{FieldTable, FieldValue};

/// An exchange as a declare asks for it.
pub struct ExchangeSpec {
    pub name: String,
    /// The type's name as given (checked here: unknown types are a 406).
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

/// The 403 for anything but publishing on the default exchange.
pub fn default_exchange_refused() -> CoreError {
    CoreError::access_refused("operation not permitted on the default exchange")
}

/// Names that are atoms in every RabbitMQ node but no exchange type. RabbitMQ
/// (`rabbit_exchange:check_type`) says "invalid exchange type" for a type
/// name that is an existing Erlang atom and "unknown exchange type" for any
/// other; clients' tests use such names (amqp-client.js declares type `none`).
const ATOM_TYPE_NAMES: [&str; 12] = [
    "all",
    "any",
    "classic",
    "default",
    "error",
    "exchange",
    "false",
    "none",
    "ok",
    "queue",
    "true",
    "undefined",
];

/// The 406 for an exchange.declare of a type warren does not have.
fn unknown_exchange_type(kind: &str) -> CoreError {
    let adjective = if ATOM_TYPE_NAMES.contains(&kind) {
        "invalid"
    } else {
        "unknown"
    };
    CoreError::precondition(format!("{} exchange type '{}'", adjective, kind))
}

/// An existing exchange, or the 404 (passive declare). The default exchange
/// cannot be named.
pub fn exchange_check(defs: &Definitions, caller: Caller, name: &str) -> CoreResult<()> {
    if name.is_empty() {
        return Err(default_exchange_refused());
    }
    defs.lock().exchange(caller.vhost(), name)?;
    Ok(())
}

/// exchange.declare (not passive): creates the exchange, or checks that the
/// existing one is equivalent.
pub fn exchange_declare(defs: &Definitions, caller: Caller, x: ExchangeSpec) -> CoreResult<()> {
    let kind = ExchangeKind::parse(&x.kind).ok_or_else(|| unknown_exchange_type(&x.kind))?;
    if x.name.is_empty() {
        return Err(default_exchange_refused());
    }
    let access = caller.access;
    access.check_exchange(Access::Configure, &x.name)?;
    let vhost = caller.vhost();
    let mut g = defs.lock_change();
    if let Some(cur) = g.vh(vhost)?.exchanges.get(&x.name) {
        return check_exchange_equivalent(caller.vhost_name(), cur, kind, &x);
    }
    if x.name.starts_with("amq.") {
        return Err(CoreError::access_refused(format!(
            "exchange name '{}' contains reserved prefix 'amq.*'",
            x.name
        )));
    }
    check_exchange_args(caller.vhost_name(), &x.name, &x.arguments)?;
    if let Some(FieldValue::LongStr(ae)) = x.arguments.get("alternate-exchange") {
        // RabbitMQ: the declarer reads from the new exchange and writes to its AE.
        access.check_exchange(Access::Read, &x.name)?;
        access.check_exchange(Access::Write, &String::from_utf8_lossy(ae))?;
    }
    let name = x.name.clone();
    g.add_exchange(ExchangeDef {
        vhost,
        name: x.name,
        kind,
        durable: x.durable,
        auto_delete: x.auto_delete,
        internal: x.internal,
        args: x.arguments,
    });
    // A declare that cannot be made durable did not happen (see
    // `queue_declare`).
    g.commit().inspect_err(|_| g.remove_exchange(vhost, &name))
}

/// exchange.delete. Deleting an exchange that does not exist succeeds.
pub fn exchange_delete(
    defs: &Definitions,
    caller: Caller,
    name: &str,
    if_unused: bool,
) -> CoreResult<()> {
    let vname = caller.vhost_name();
    if name.is_empty() {
        return Err(default_exchange_refused());
    }
    if name.starts_with("amq.") {
        return Err(CoreError::access_refused(format!(
            "deletion of system {} not allowed",
            resource(vname, "exchange", name)
        )));
    }
    caller.access.check_exchange(Access::Configure, name)?;
    let vhost = caller.vhost();
    let mut g = defs.lock_change();
    if g.vh(vhost)?.exchanges.contains_key(name) {
        if if_unused && g.has_bindings_from(vhost, name) {
            return Err(CoreError::precondition(format!(
                "{} in use",
                resource(vname, "exchange", name)
            )));
        }
        g.remove_exchange(vhost, name);
        g.commit()?;
    }
    Ok(())
}

/// An exchange-to-exchange binding; neither end may be the default exchange.
pub fn exchange_binding(
    defs: &Definitions,
    caller: Caller,
    source: String,
    dest: String,
    key: String,
    args: FieldTable,
) -> CoreResult<Binding> {
    let dest = BindingDest::Exchange(dest);
    binding_access(defs, caller, &source, &dest, &key)?;
    Ok(Binding::new(caller.vhost(), source, dest, key, args))
}

/// RabbitMQ's `binding_action` checks, in its order: write on the
/// destination, neither end the default exchange, read on the source, and
/// the topic read permission on the binding key if the source is a topic
/// exchange.
pub fn binding_access(
    defs: &Definitions,
    caller: Caller,
    source: &str,
    dest: &BindingDest,
    key: &str,
) -> CoreResult<()> {
    let access = caller.access;
    match dest {
        BindingDest::Queue(q) => access.check_queue(Access::Write, q)?,
        BindingDest::Exchange(x) => access.check_exchange(Access::Write, x)?,
    }
    if source.is_empty() || matches!(dest, BindingDest::Exchange(d) if d.is_empty()) {
        return Err(default_exchange_refused());
    }
    access.check_exchange(Access::Read, source)?;
    if access.has_topic_permissions() {
        let g = defs.lock();
        let topic = g
            .vh(caller.vhost())?
            .exchanges
            .get(source)
            .is_some_and(|x| x.kind == ExchangeKind::Topic);
        if topic {
            access.check_topic(Access::Read, source, key)?;
        }
    }
    Ok(())
}

/// exchange.bind.
pub fn exchange_bind(defs: &Definitions, b: Binding) -> CoreResult<()> {
    let mut g = defs.lock_change();
    // RabbitMQ names a missing source before a missing destination.
    g.exchange(b.vhost, &b.source)?;
    g.exchange(b.vhost, b.dest.name())?;
    check_binding_args(&g, &b)?;
    g.add_binding(b);
    g.commit()
}

/// exchange.unbind and queue.unbind: unbinding what does not exist (binding,
/// queue or exchange) succeeds, as in RabbitMQ.
pub fn unbind(defs: &Definitions, b: &Binding) -> CoreResult<()> {
    let mut g = defs.lock_change();
    g.remove_binding(b);
    g.commit()
}

/// Validates binding arguments for a headers exchange (x-match).
pub fn check_binding_args(defs: &Defs, b: &Binding) -> CoreResult<()> {
    if let Some(x) = defs.vh(b.vhost)?.exchanges.get(&b.source) {
        if x.kind == ExchangeKind::Headers {
            parse_x_match(&b.args)?;
        }
    }
    Ok(())
}

/// Checks the arguments of a new exchange as `rabbit_channel` does:
/// `alternate-exchange` must be a longstr (other arguments are not looked at).
fn check_exchange_args(vhost: &str, name: &str, args: &FieldTable) -> CoreResult<()> {
    match args.get("alternate-exchange") {
        Some(v) if !matches!(v, FieldValue::LongStr(_)) => Err(CoreError::precondition(format!(
            "invalid type '{}' for arg 'alternate-exchange' in {}",
            v.type_name(),
            resource(vhost, "exchange", name)
        ))),
        _ => Ok(()),
    }
}

fn check_exchange_equivalent(
    vhost: &str,
    x: &ExchangeDef,
    kind: ExchangeKind,
    m: &ExchangeSpec,
) -> CoreResult<()> {
    let b = |v: bool| if v { "true" } else { "false" };
    if x.kind != kind {
        return Err(inequivalent(
            vhost,
            "type",
            "exchange",
            &x.name,
            kind.as_str(),
            x.kind.as_str(),
        ));
    }
    for (arg, new, cur) in [
        ("durable", m.durable, x.durable),
        ("auto_delete", m.auto_delete, x.auto_delete),
        ("internal", m.internal, x.internal),
    ] {
        if new != cur {
            return Err(inequivalent(
                vhost,
                arg,
                "exchange",
                &x.name,
                b(new),
                b(cur),
            ));
        }
    }
    // RabbitMQ compares only the alternate exchange of an exchange's arguments.
    check_args(
        vhost,
        "exchange",
        &x.name,
        &["alternate-exchange"],
        &m.arguments,
        &x.args,
    )
}
