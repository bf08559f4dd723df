//! exchange.declare / delete / bind / unbind. Definitions change under the
//! definitions lock; the `*-ok` goes out after the lock is released, i.e. after
//! the new version is visible to every shard.

use super::queue_methods::{describe, same_arg, shown};
use super::{ChanCx, ChanResult, Channel, Flow};
use crate::broker::definitions::{Binding, BindingDest, Defs, ExchangeDef};
use crate::broker::error::AmqpError;
use crate::broker::exchange::headers_match::parse_x_match;
use crate::broker::exchange::ExchangeKind;
use crate::protocol::methods::*;
use crate::protocol::{FieldTable, FieldValue};
use bytes::Bytes;

pub(super) fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(super) fn default_exchange_refused() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}

/// RabbitMQ's "inequivalent arg" 406.
pub(super) fn inequivalent(
    arg: &str,
    kind: &str,
    name: &str,
    received: &str,
    current: &str,
) -> AmqpError {
    AmqpError::precondition(format!(
        "inequivalent arg '{}' for {} '{}' in vhost '/': received '{}' but current is '{}'",
        arg, kind, name, received, current
    ))
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
fn unknown_exchange_type(kind: &str) -> AmqpError {
    let adjective = if ATOM_TYPE_NAMES.contains(&kind) {
        "invalid"
    } else {
        "unknown"
    };
    AmqpError::precondition(format!("{} exchange type '{}'", adjective, kind))
}

/// Validates binding arguments for a headers exchange (x-match).
pub(super) fn check_binding_args(
    defs: &Defs,
    source: &str,
    args: &FieldTable,
) -> Result<(), AmqpError> {
    if let Some(x) = defs.exchanges.get(source) {
        if x.kind == ExchangeKind::Headers {
            parse_x_match(args).map_err(|text| AmqpError { code: 406, text })?;
        }
    }
    Ok(())
}

impl Channel {
    pub(super) fn exchange_declare(&mut self, m: ExchangeDeclare, cx: &mut ChanCx) -> ChanResult {
        let name = text(&m.exchange);
        let defs = cx.ctx.defs.clone();
        if m.passive {
            if name.is_empty() {
                return Err(default_exchange_refused());
            }
            defs.lock().exchange(&name)?;
        } else {
            let kind_name = text(&m.kind);
            let kind =
                ExchangeKind::parse(&kind_name).ok_or_else(|| unknown_exchange_type(&kind_name))?;
            if name.is_empty() {
                return Err(default_exchange_refused());
            }
            let mut g = defs.lock();
            if let Some(x) = g.exchanges.get(&name) {
                check_exchange_equivalent(x, kind, &m)?;
            } else {
                if name.starts_with("amq.") {
                    return Err(AmqpError::access_refused(format!(
                        "exchange name '{}' contains reserved prefix 'amq.*'",
                        name
                    )));
                }
                check_exchange_args(&name, &m.arguments)?;
                g.add_exchange(ExchangeDef {
                    name,
                    kind,
                    durable: m.durable,
                    auto_delete: m.auto_delete,
                    internal: m.internal,
                    args: m.arguments,
                });
                g.commit()?;
            }
        }
        if !m.nowait {
            self.send(cx, ExchangeDeclareOk {}.into());
        }
        Ok(Flow::Continue)
    }

    pub(super) fn exchange_delete(&mut self, m: ExchangeDelete, cx: &mut ChanCx) -> ChanResult {
        let name = text(&m.exchange);
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        if name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "deletion of system exchange '{}' in vhost '/' not allowed",
                name
            )));
        }
        {
            let defs = cx.ctx.defs.clone();
            let mut g = defs.lock();
            if g.exchanges.contains_key(&name) {
                if m.if_unused && g.has_bindings_from(&name) {
                    return Err(AmqpError::precondition(format!(
                        "exchange '{}' in vhost '/' in use",
                        name
                    )));
                }
                g.remove_exchange(&name);
                g.commit()?;
            }
        }
        if !m.nowait {
            self.send(cx, ExchangeDeleteOk {}.into());
        }
        Ok(Flow::Continue)
    }

    pub(super) fn exchange_bind(&mut self, m: ExchangeBind, cx: &mut ChanCx) -> ChanResult {
        let b =
            self.exchange_binding(&m.source, &m.destination, &m.routing_key, m.arguments, cx)?;
        {
            let defs = cx.ctx.defs.clone();
            let mut g = defs.lock();
            // RabbitMQ names a missing source before a missing destination.
            g.exchange(&b.source)?;
            g.exchange(b.dest.name())?;
            check_binding_args(&g, &b.source, &b.args)?;
            g.add_binding(b);
            g.commit()?;
        }
        if !m.nowait {
            self.send(cx, ExchangeBindOk {}.into());
        }
        Ok(Flow::Continue)
    }

    pub(super) fn exchange_unbind(&mut self, m: ExchangeUnbind, cx: &mut ChanCx) -> ChanResult {
        let b =
            self.exchange_binding(&m.source, &m.destination, &m.routing_key, m.arguments, cx)?;
        // Unbinding what does not exist succeeds, as in RabbitMQ.
        {
            let defs = cx.ctx.defs.clone();
            let mut g = defs.lock();
            g.remove_binding(&b);
            g.commit()?;
        }
        if !m.nowait {
            self.send(cx, ExchangeUnbindOk {}.into());
        }
        Ok(Flow::Continue)
    }

    fn exchange_binding(
        &self,
        source: &Bytes,
        dest: &Bytes,
        key: &Bytes,
        args: FieldTable,
        _cx: &mut ChanCx,
    ) -> Result<Binding, AmqpError> {
        if source.is_empty() || dest.is_empty() {
            return Err(default_exchange_refused());
        }
        Ok(Binding::new(
            text(source),
            BindingDest::Exchange(text(dest)),
            text(key),
            args,
        ))
    }
}

/// Checks the arguments of a new exchange as `rabbit_channel` does:
/// `alternate-exchange` must be a longstr (other arguments are not looked at).
fn check_exchange_args(name: &str, args: &FieldTable) -> Result<(), AmqpError> {
    match args.get("alternate-exchange") {
        Some(v) if !matches!(v, FieldValue::LongStr(_)) => Err(AmqpError::precondition(format!(
            "invalid type '{}' for arg 'alternate-exchange' in exchange '{}' in vhost '/'",
            v.type_name(),
            name
        ))),
        _ => Ok(()),
    }
}

fn check_exchange_equivalent(
    x: &ExchangeDef,
    kind: ExchangeKind,
    m: &ExchangeDeclare,
) -> Result<(), AmqpError> {
    let b = |v: bool| if v { "true" } else { "false" };
    if x.kind != kind {
        return Err(inequivalent(
            "type",
            "exchange",
            &x.name,
            kind.as_str(),
            x.kind.as_str(),
        ));
    }
    if x.durable != m.durable {
        return Err(inequivalent(
            "durable",
            "exchange",
            &x.name,
            b(m.durable),
            b(x.durable),
        ));
    }
    if x.auto_delete != m.auto_delete {
        return Err(inequivalent(
            "auto_delete",
            "exchange",
            &x.name,
            b(m.auto_delete),
            b(x.auto_delete),
        ));
    }
    if x.internal != m.internal {
        return Err(inequivalent(
            "internal",
            "exchange",
            &x.name,
            b(m.internal),
            b(x.internal),
        ));
    }
    let key = "alternate-exchange";
    let (new, cur) = (m.arguments.get(key), x.args.get(key));
    if !same_arg(new, cur) {
        // As for queues: bare values when both sides have one, typed values
        // when one side is missing.
        let (received, current) = match (new, cur) {
            (Some(n), Some(c)) => (format!("'{}'", shown(n)), format!("'{}'", shown(c))),
            _ => (describe(new), describe(cur)),
        };
        return Err(AmqpError::precondition(format!(
            "inequivalent arg '{}' for exchange '{}' in vhost '/': received {} but current is {}",
            key, x.name, received, current
        )));
    }
    Ok(())
}
