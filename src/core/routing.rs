//! A shard's private copy of the routing state (exchanges, bindings, queue names),
//! kept up to date from the definitions log, and the routing of one publish.
//!
//! Invariant: routing reads only this copy — no lock and no shared memory beyond
//! one atomic load of the definitions version per publish.
//!
//! Routing follows RabbitMQ's `rabbit_exchange:route/3`: a work list of
//! exchanges, each visited once (so cycles end); exchange-to-exchange bindings
//! add their destination to the list, and an exchange whose own bindings match
//! nothing (no queue, no exchange) adds its `alternate-exchange`, if that
//! exists. A message carries one routing key plus the sender-selected ones
//! (`CC`/`BCC` headers, `sender_selected.rs`); key-based exchange types match
//! each of them.

use super::definitions::{BindingDest, DefEvent, Definitions};
use super::error::CoreError;
use super::exchange::{Dest, ExchangeImpl, ExchangeKind};
use super::ids::{QueueRef, VhostId};
use super::message::props091;
use super::name_map::NameMap;
use super::stats::{ExchangeSnap, ExchangeStats};
use super::vhost::resource;
use crate::protocol::FieldTable;
use bytes::Bytes;
use slab::Slab;
use std::sync::Arc;

/// One exchange in the routing copy.
pub struct LocalExchange {
    pub vhost: VhostId,
    pub name: String,
    pub kind: ExchangeKind,
    pub internal: bool,
    pub imp: ExchangeImpl,
    /// The `alternate-exchange` argument, by name: the AE may be declared,
    /// deleted and re-declared independently of this exchange.
    pub alternate: Option<String>,
    /// A missing AE was reported (once per exchange and shard, not per message).
    warned_missing_ae: bool,
    /// Messages routed through it on this shard (management's exchange
    /// `message_stats`).
    pub stats: ExchangeStats,
}

/// What the routing copy knows about a queue.
#[derive(Clone, Copy, Debug)]
pub struct LocalQueue {
    pub queue: QueueRef,
    pub exclusive_owner: Option<u64>,
}

/// One vhost in the routing copy: its names. The exchanges themselves are
/// in `Routing::exchanges`, one slab for all vhosts (exchange-to-exchange
/// bindings point into it).
pub struct LocalVhost {
    pub name: Arc<str>,
    /// The default exchange's counters (it has no `LocalExchange`).
    pub default_stats: ExchangeStats,
    by_name: NameMap<usize>,
    queues: NameMap<LocalQueue>,
}

/// The routing copy.
pub struct Routing {
    shard: usize,
    /// How many definitions-log events this copy has applied.
    applied: u64,
    /// By `VhostId`; a deleted vhost leaves `None` (ids are not reused).
    vhosts: Vec<Option<LocalVhost>>,
    exchanges: Slab<LocalExchange>,
    // Scratch buffers reused by every publish (no allocation once warm).
    events: Vec<DefEvent>,
    dests: Vec<Dest>,
    pending: Vec<usize>,
    visited: Vec<usize>,
}

/// Why a publish could not be routed at all.
#[derive(Debug, PartialEq)]
pub enum RouteError {
    NoExchange,
    Internal,
}

impl RouteError {
    /// The refusal of a publish to `exchange` in `vhost`, in RabbitMQ's words.
    pub fn to_error(&self, vhost: &str, exchange: &[u8]) -> CoreError {
        let name = String::from_utf8_lossy(exchange);
        match self {
            RouteError::NoExchange => CoreError::no_exchange(vhost, &name),
            RouteError::Internal => CoreError::access_refused(format!(
                "cannot publish to internal {}",
                resource(vhost, "exchange", &name)
            )),
        }
    }
}

impl Routing {
    pub fn new(shard: usize) -> Routing {
        Routing {
            shard,
            applied: 0,
            vhosts: Vec::new(),
            exchanges: Slab::new(),
            events: Vec::new(),
            dests: Vec::new(),
            pending: Vec::new(),
            visited: Vec::new(),
        }
    }

    /// Applies definition changes made since the last call (any shard's). One
    /// atomic load when nothing changed.
    #[inline]
    pub fn sync(&mut self, defs: &Definitions) {
        if defs.version() != self.applied {
            self.catch_up(defs);
        }
    }

    #[cold]
    fn catch_up(&mut self, defs: &Definitions) {
        let mut events = std::mem::take(&mut self.events);
        {
            let mut g = defs.lock();
            self.applied = g.take_events(self.shard, self.applied, &mut events);
        }
        for e in events.drain(..) {
            self.apply(e);
        }
        self.events = events;
    }

    fn vhost_mut(&mut self, v: VhostId) -> Option<&mut LocalVhost> {
        self.vhosts.get_mut(v.0 as usize).and_then(Option::as_mut)
    }

    #[inline]
    fn vhost(&self, v: VhostId) -> Option<&LocalVhost> {
        self.vhosts.get(v.0 as usize).and_then(Option::as_ref)
    }

    fn apply(&mut self, e: DefEvent) {
        match e {
            DefEvent::VhostAdded { vhost, name } => {
                let i = vhost.0 as usize;
                if self.vhosts.len() <= i {
                    self.vhosts.resize_with(i + 1, || None);
                }
                self.vhosts[i] = Some(LocalVhost {
                    name,
                    default_stats: ExchangeStats::default(),
                    by_name: NameMap::default(),
                    queues: NameMap::default(),
                });
            }
            DefEvent::VhostRemoved { vhost } => {
                if let Some(v) = self.vhosts.get_mut(vhost.0 as usize).and_then(Option::take) {
                    for (_, idx) in v.by_name {
                        self.exchanges.remove(idx);
                    }
                }
            }
            DefEvent::ExchangeAdded {
                vhost,
                name,
                kind,
                internal,
                alternate,
            } => {
                if self.vhost(vhost).is_none() {
                    return;
                }
                let idx = self.exchanges.insert(LocalExchange {
                    vhost,
                    name: name.clone(),
                    kind,
                    internal,
                    imp: ExchangeImpl::new(kind),
                    alternate,
                    warned_missing_ae: false,
                    stats: ExchangeStats::default(),
                });
                if let Some(old) = self
                    .vhost_mut(vhost)
                    .unwrap()
                    .by_name
                    .insert(name.as_bytes().into(), idx)
                {
                    self.exchanges.remove(old);
                }
            }
            DefEvent::ExchangeRemoved { vhost, name } => {
                if let Some(idx) = self
                    .vhost_mut(vhost)
                    .and_then(|v| v.by_name.remove(name.as_bytes()))
                {
                    self.exchanges.remove(idx);
                }
            }
            DefEvent::QueueAdded {
                vhost,
                name,
                queue,
                exclusive_owner,
            } => {
                if let Some(v) = self.vhost_mut(vhost) {
                    v.queues.insert(
                        name.as_bytes().into(),
                        LocalQueue {
                            queue,
                            exclusive_owner,
                        },
                    );
                }
            }
            DefEvent::QueueRemoved { vhost, name } => {
                if let Some(v) = self.vhost_mut(vhost) {
                    v.queues.remove(name.as_bytes());
                }
            }
            DefEvent::BindingAdded(b) | DefEvent::BindingRemoved(b) if b.source.is_empty() => {
                // The default exchange's bindings are implicit (by queue name).
                let _ = b;
            }
            DefEvent::BindingAdded(b) => {
                if let (Some(src), Some(dest)) = (
                    self.exchange_idx(b.vhost, &b.source),
                    self.dest(b.vhost, &b.dest),
                ) {
                    self.exchanges[src].imp.bind(&b.key, &b.args, dest);
                }
            }
            DefEvent::BindingRemoved(b) => {
                if let (Some(src), Some(dest)) = (
                    self.exchange_idx(b.vhost, &b.source),
                    self.dest(b.vhost, &b.dest),
                ) {
                    self.exchanges[src].imp.unbind(&b.key, &b.args, dest);
                }
            }
        }
    }

    fn exchange_idx(&self, vhost: VhostId, name: &str) -> Option<usize> {
        self.vhost(vhost)?.by_name.get(name.as_bytes()).copied()
    }

    fn dest(&self, vhost: VhostId, d: &BindingDest) -> Option<Dest> {
        let v = self.vhost(vhost)?;
        match d {
            BindingDest::Queue(n) => v.queues.get(n.as_bytes()).map(|q| Dest::Queue(q.queue)),
            BindingDest::Exchange(n) => v.by_name.get(n.as_bytes()).map(|&i| Dest::Exchange(i)),
        }
    }

    /// The vhost's name as the routing copy knows it ("" if it is gone).
    pub fn vhost_name(&self, vhost: VhostId) -> &str {
        self.vhost(vhost).map(|v| &*v.name).unwrap_or("")
    }

    /// Looks a queue up by name in this shard's copy.
    pub fn queue(&self, vhost: VhostId, name: &str) -> Option<LocalQueue> {
        self.vhost(vhost)?.queues.get(name.as_bytes()).copied()
    }

    /// Looks an exchange up by name.
    pub fn exchange(&self, vhost: VhostId, name: &[u8]) -> Option<&LocalExchange> {
        let &i = self.vhost(vhost)?.by_name.get(name)?;
        Some(&self.exchanges[i])
    }

    /// Routes one message published to `exchange` with `routing_key` and the
    /// sender-selected keys `extra`, and appends the distinct destination
    /// queues to `out`. Follows exchange-to-exchange bindings and alternate
    /// exchanges, each exchange visited once, so cycles end. A missing AE is
    /// skipped (RabbitMQ does the same), with a warning the first time.
    /// Allocates nothing once warm, except for a headers exchange (which
    /// decodes the headers).
    #[inline]
    pub fn route_keys(
        &mut self,
        vhost: VhostId,
        exchange: &[u8],
        routing_key: &[u8],
        extra: &[Bytes],
        properties: &[u8],
        out: &mut Vec<QueueRef>,
    ) -> Result<(), RouteError> {
        self.route_from(vhost, exchange, routing_key, extra, properties, out, false)
    }

    /// Routes a dead-lettered message: like `route`, but the dead-letter
    /// exchange may be internal (only clients may not publish to one; RabbitMQ
    /// dead-letters through `rabbit_exchange:route`, which does not check).
    pub fn route_dead_letter(
        &mut self,
        vhost: VhostId,
        exchange: &[u8],
        routing_key: &[u8],
        properties: &[u8],
        out: &mut Vec<QueueRef>,
    ) -> Result<(), RouteError> {
        self.route_from(vhost, exchange, routing_key, &[], properties, out, true)
    }

    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn route_from(
        &mut self,
        vhost: VhostId,
        exchange: &[u8],
        routing_key: &[u8],
        extra: &[Bytes],
        properties: &[u8],
        out: &mut Vec<QueueRef>,
        allow_internal: bool,
    ) -> Result<(), RouteError> {
        let name = exchange;
        let keys = || std::iter::once(routing_key).chain(extra.iter().map(|k| &k[..]));
        let before = out.len();
        let v = self
            .vhosts
            .get_mut(vhost.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(RouteError::NoExchange)?;
        if name.is_empty() {
            v.default_stats.publish_in += 1;
            // Default exchange: each routing key names a queue.
            for key in keys() {
                if let Some(lq) = v.queues.get(key) {
                    out.push(lq.queue);
                }
            }
            if out.len() > 1 {
                out.sort_unstable();
                out.dedup();
            }
            v.default_stats.publish_out += (out.len() > before) as u64;
            return Ok(());
        }
        let &start = v.by_name.get(name).ok_or(RouteError::NoExchange)?;
        if self.exchanges[start].internal && !allow_internal {
            return Err(RouteError::Internal);
        }
        self.exchanges[start].stats.publish_in += 1;
        let mut headers: Option<Option<FieldTable>> = None;
        self.pending.clear();
        self.visited.clear();
        self.pending.push(start);
        while let Some(x) = self.pending.pop() {
            if self.visited.contains(&x) {
                continue;
            }
            self.visited.push(x);
            self.dests.clear();
            let ex = &mut self.exchanges[x];
            if ex.imp.needs_headers() {
                // Decoding headers allocates; only headers exchanges pay for it.
                let h = headers.get_or_insert_with(|| props091::headers(properties));
                ex.imp.route(routing_key, h.as_ref(), &mut self.dests);
            } else if ex.imp.uses_routing_key() {
                for key in keys() {
                    ex.imp.route(key, None, &mut self.dests);
                }
            } else {
                ex.imp.route(routing_key, None, &mut self.dests);
            }
            if self.dests.is_empty() {
                if let Some(ae) = &ex.alternate {
                    let ae_idx = self.vhosts[vhost.0 as usize]
                        .as_ref()
                        .and_then(|v| v.by_name.get(ae.as_bytes()));
                    match ae_idx {
                        Some(&i) => self.pending.push(i),
                        None if !ex.warned_missing_ae => {
                            ex.warned_missing_ae = true;
                            log::warn!(
                                "alternate exchange '{}' of {} does not exist; unroutable messages are dropped",
                                ae,
                                resource(
                                    self.vhosts[vhost.0 as usize].as_ref().map_or("", |v| &*v.name),
                                    "exchange",
                                    &ex.name
                                )
                            );
                        }
                        None => {}
                    }
                }
            }
            for d in &self.dests {
                match *d {
                    Dest::Queue(q) => out.push(q),
                    Dest::Exchange(e) => self.pending.push(e),
                }
            }
        }
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
        self.exchanges[start].stats.publish_out += (out.len() > before) as u64;
        Ok(())
    }

    /// Every exchange that routed something on this shard, with its
    /// counters (the default exchange named "").
    pub fn exchange_stats(&self, out: &mut Vec<ExchangeSnap>) {
        for (i, v) in self.vhosts.iter().enumerate() {
            let Some(v) = v else { continue };
            if v.default_stats != ExchangeStats::default() {
                out.push(ExchangeSnap {
                    vhost: VhostId(i as u32),
                    name: String::new(),
                    stats: v.default_stats,
                });
            }
        }
        for (_, x) in self.exchanges.iter() {
            if x.stats != ExchangeStats::default() {
                out.push(ExchangeSnap {
                    vhost: x.vhost,
                    name: x.name.clone(),
                    stats: x.stats,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::definitions::{Binding, ExchangeDef, QueueDef};
    use crate::protocol::FieldValue;

    /// `Definitions::new`'s vhost `/`.
    const V: VhostId = VhostId(1);

    fn x(defs: &Definitions, name: &str, kind: ExchangeKind, ae: Option<&str>) {
        let mut args = FieldTable::default();
        if let Some(ae) = ae {
            args.insert(
                "alternate-exchange",
                FieldValue::LongStr(ae.to_string().into()),
            );
        }
        defs.lock().add_exchange(ExchangeDef {
            vhost: V,
            name: name.into(),
            kind,
            durable: false,
            auto_delete: false,
            internal: false,
            args,
        });
    }

    fn q(defs: &Definitions, name: &str, slot: u32) -> QueueRef {
        let queue = QueueRef {
            shard: 0,
            slot,
            gen: 1,
        };
        defs.lock().add_queue(QueueDef {
            vhost: V,
            name: name.into(),
            queue,
            durable: false,
            auto_delete: false,
            exclusive_owner: None,
            args: FieldTable::default(),
            store_id: 0,
            node: None,
        });
        queue
    }

    fn bind(defs: &Definitions, source: &str, dest: BindingDest, key: &str) {
        let b = Binding::new(V, source.into(), dest, key.into(), FieldTable::default());
        defs.lock().add_binding(b);
    }

    fn route(
        r: &mut Routing,
        defs: &Definitions,
        ex: &str,
        key: &str,
        cc: &[&str],
    ) -> Vec<QueueRef> {
        r.sync(defs);
        let extra: Vec<Bytes> = cc
            .iter()
            .map(|k| Bytes::copy_from_slice(k.as_bytes()))
            .collect();
        let mut out = Vec::new();
        r.route_keys(
            V,
            ex.as_bytes(),
            key.as_bytes(),
            &extra,
            &Bytes::from_static(&[0, 0]),
            &mut out,
        )
        .unwrap();
        out
    }

    #[test]
    fn alternate_exchange_takes_what_its_exchange_cannot_route() {
        let defs = Definitions::new(1);
        let mut r = Routing::new(0);
        x(&defs, "main", ExchangeKind::Direct, Some("ae"));
        x(&defs, "ae", ExchangeKind::Fanout, None);
        let (qm, qa) = (q(&defs, "qm", 0), q(&defs, "qa", 1));
        bind(&defs, "main", BindingDest::Queue("qm".into()), "k");
        bind(&defs, "ae", BindingDest::Queue("qa".into()), "");
        assert_eq!(route(&mut r, &defs, "main", "k", &[]), [qm]);
        assert_eq!(route(&mut r, &defs, "main", "other", &[]), [qa]);
        // A CC key that matches counts as routed: no AE.
        assert_eq!(route(&mut r, &defs, "main", "other", &["k"]), [qm]);
    }

    #[test]
    fn chains_cycles_and_missing_alternates() {
        let defs = Definitions::new(1);
        let mut r = Routing::new(0);
        // a -> b -> c (AEs), c routes; d <-> e (AEs of each other), nothing routes.
        x(&defs, "a", ExchangeKind::Direct, Some("b"));
        x(&defs, "b", ExchangeKind::Topic, Some("c"));
        x(&defs, "c", ExchangeKind::Fanout, None);
        x(&defs, "d", ExchangeKind::Direct, Some("e"));
        x(&defs, "e", ExchangeKind::Direct, Some("d"));
        x(&defs, "f", ExchangeKind::Direct, Some("missing"));
        let (qb, qc) = (q(&defs, "qb", 0), q(&defs, "qc", 1));
        bind(&defs, "b", BindingDest::Queue("qb".into()), "x.*");
        bind(&defs, "c", BindingDest::Queue("qc".into()), "");
        assert_eq!(route(&mut r, &defs, "a", "x.y", &[]), [qb]);
        assert_eq!(route(&mut r, &defs, "a", "z", &[]), [qc]);
        assert!(route(&mut r, &defs, "d", "k", &[]).is_empty());
        assert!(route(&mut r, &defs, "f", "k", &[]).is_empty());
        // The AE appears later: found by name.
        x(&defs, "missing", ExchangeKind::Fanout, None);
        bind(&defs, "missing", BindingDest::Queue("qc".into()), "");
        assert_eq!(route(&mut r, &defs, "f", "k", &[]), [qc]);
    }

    #[test]
    fn exchange_routing_to_an_exchange_does_not_use_its_alternate() {
        // As RabbitMQ: x routes to y (an exchange), so x's AE is not used
        // even though y routes nowhere; y's own AE would be.
        let defs = Definitions::new(1);
        let mut r = Routing::new(0);
        x(&defs, "x", ExchangeKind::Direct, Some("ae"));
        x(&defs, "y", ExchangeKind::Direct, None);
        x(&defs, "ae", ExchangeKind::Fanout, None);
        let qa = q(&defs, "qa", 0);
        bind(&defs, "ae", BindingDest::Queue("qa".into()), "");
        bind(&defs, "x", BindingDest::Exchange("y".into()), "k");
        assert!(route(&mut r, &defs, "x", "k", &[]).is_empty());
        assert_eq!(route(&mut r, &defs, "x", "j", &[]), [qa]);
    }

    #[test]
    fn sender_selected_keys_route_through_each_exchange_type() {
        let defs = Definitions::new(1);
        let mut r = Routing::new(0);
        x(&defs, "d", ExchangeKind::Direct, None);
        x(&defs, "t", ExchangeKind::Topic, None);
        let (q1, q2, q3) = (q(&defs, "q1", 0), q(&defs, "q2", 1), q(&defs, "q3", 2));
        bind(&defs, "d", BindingDest::Queue("q1".into()), "one");
        bind(&defs, "d", BindingDest::Queue("q2".into()), "two");
        bind(&defs, "t", BindingDest::Queue("q3".into()), "a.#");
        bind(&defs, "d", BindingDest::Exchange("t".into()), "three");
        assert_eq!(route(&mut r, &defs, "d", "one", &["two", "one"]), [q1, q2]);
        // Through an exchange-to-exchange binding, the keys go along.
        assert_eq!(route(&mut r, &defs, "d", "three", &["a.b"]), [q3]);
        assert_eq!(
            route(&mut r, &defs, "d", "none", &["a.b"]),
            Vec::<QueueRef>::new()
        );
        // Default exchange: each key names a queue.
        assert_eq!(
            route(&mut r, &defs, "", "q3", &["q1", "nope", "q3"]),
            [q1, q3]
        );
    }
}
