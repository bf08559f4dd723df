//! A shard's private copy of the routing state (exchanges, bindings, queue names),
//! kept up to date from the definitions log, and the routing of one publish.
//!
//! Invariant: routing reads only this copy — no lock and no shared memory beyond
//! one atomic load of the definitions version per publish.

use super::definitions::{BindingDest, DefEvent, Definitions};
use super::exchange::{Dest, ExchangeImpl, ExchangeKind};
use super::ids::QueueRef;
use crate::protocol::{BasicProperties, FieldTable};
use bytes::Bytes;
use slab::Slab;
use std::collections::HashMap;

/// One exchange in the routing copy.
pub struct LocalExchange {
    pub name: String,
    pub kind: ExchangeKind,
    pub internal: bool,
    pub imp: ExchangeImpl,
}

/// What the routing copy knows about a queue.
#[derive(Clone, Copy, Debug)]
pub struct LocalQueue {
    pub queue: QueueRef,
    pub exclusive_owner: Option<u64>,
}

/// The routing copy.
pub struct Routing {
    shard: usize,
    /// How many definitions-log events this copy has applied.
    applied: u64,
    by_name: HashMap<String, usize>,
    exchanges: Slab<LocalExchange>,
    queues: HashMap<String, LocalQueue>,
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

impl Routing {
    pub fn new(shard: usize) -> Routing {
        Routing {
            shard,
            applied: 0,
            by_name: HashMap::new(),
            exchanges: Slab::new(),
            queues: HashMap::new(),
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

    fn apply(&mut self, e: DefEvent) {
        match e {
            DefEvent::ExchangeAdded {
                name,
                kind,
                internal,
            } => {
                let idx = self.exchanges.insert(LocalExchange {
                    name: name.clone(),
                    kind,
                    internal,
                    imp: ExchangeImpl::new(kind),
                });
                self.by_name.insert(name, idx);
            }
            DefEvent::ExchangeRemoved { name } => {
                if let Some(idx) = self.by_name.remove(&name) {
                    self.exchanges.remove(idx);
                }
            }
            DefEvent::QueueAdded {
                name,
                queue,
                exclusive_owner,
            } => {
                self.queues.insert(
                    name,
                    LocalQueue {
                        queue,
                        exclusive_owner,
                    },
                );
            }
            DefEvent::QueueRemoved { name } => {
                self.queues.remove(&name);
            }
            DefEvent::BindingAdded(b) | DefEvent::BindingRemoved(b) if b.source.is_empty() => {
                // The default exchange's bindings are implicit (by queue name).
                let _ = b;
            }
            DefEvent::BindingAdded(b) => {
                if let (Some(&src), Some(dest)) = (self.by_name.get(&b.source), self.dest(&b.dest))
                {
                    self.exchanges[src].imp.bind(&b.key, &b.args, dest);
                }
            }
            DefEvent::BindingRemoved(b) => {
                if let (Some(&src), Some(dest)) = (self.by_name.get(&b.source), self.dest(&b.dest))
                {
                    self.exchanges[src].imp.unbind(&b.key, &b.args, dest);
                }
            }
        }
    }

    fn dest(&self, d: &BindingDest) -> Option<Dest> {
        match d {
            BindingDest::Queue(n) => self.queues.get(n).map(|q| Dest::Queue(q.queue)),
            BindingDest::Exchange(n) => self.by_name.get(n).map(|&i| Dest::Exchange(i)),
        }
    }

    /// Looks a queue up by name in this shard's copy.
    pub fn queue(&self, name: &str) -> Option<LocalQueue> {
        self.queues.get(name).copied()
    }

    /// Looks an exchange up by name.
    pub fn exchange(&self, name: &[u8]) -> Option<&LocalExchange> {
        let name = std::str::from_utf8(name).ok()?;
        self.by_name.get(name).map(|&i| &self.exchanges[i])
    }

    /// Routes one message published to `exchange` and appends the distinct
    /// destination queues to `out`. Follows exchange-to-exchange bindings (each
    /// exchange visited once, so cycles end).
    pub fn route(
        &mut self,
        exchange: &[u8],
        routing_key: &[u8],
        properties: &Bytes,
        out: &mut Vec<QueueRef>,
    ) -> Result<(), RouteError> {
        let name = std::str::from_utf8(exchange).map_err(|_| RouteError::NoExchange)?;
        if name.is_empty() {
            // Default exchange: the routing key names the queue.
            if let Ok(q) = std::str::from_utf8(routing_key) {
                if let Some(lq) = self.queues.get(q) {
                    out.push(lq.queue);
                }
            }
            return Ok(());
        }
        let &start = self.by_name.get(name).ok_or(RouteError::NoExchange)?;
        if self.exchanges[start].internal {
            return Err(RouteError::Internal);
        }
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
                let h = headers.get_or_insert_with(|| {
                    BasicProperties::decode(properties.clone())
                        .ok()
                        .and_then(|p| p.headers)
                });
                ex.imp.route(routing_key, h.as_ref(), &mut self.dests);
            } else {
                ex.imp.route(routing_key, None, &mut self.dests);
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
        Ok(())
    }
}
