//! The N×N mesh of SPSC rings: one ring per ordered pair of distinct shards, and
//! one `mio::Waker` per shard so a producer can wake the consumer's event loop.
//!
//! Wake-ups are batched: a shard pushes everything it has for a peer during one
//! loop iteration and then wakes it once (and only if the peer said it may be
//! asleep — see `Link::parked`).

use super::ring::{ring, Consumer, Producer};
use crate::core::shard_msg::ShardMsg;
use mio::{Poll, Token, Waker};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::Arc;

/// Ring capacity per ordered pair of shards (entries).
pub const RING_CAPACITY: usize = 64 * 1024;

/// The token of a shard's waker in its own `Poll`.
pub const WAKER_TOKEN: Token = Token(usize::MAX - 1);

/// What one shard holds of the mesh.
pub struct Links {
    pub poll: Poll,
    /// `to[j]`: ring to shard j (None for j == self).
    pub to: Vec<Option<Producer<ShardMsg>>>,
    /// `from[j]`: ring from shard j (None for j == self).
    pub from: Vec<Option<Consumer<ShardMsg>>>,
    /// Every shard's waker, indexed by shard.
    pub wakers: Vec<Arc<Waker>>,
    /// Every shard's "I may sleep" flag, indexed by shard.
    pub parked: Vec<Arc<AtomicBool>>,
    /// Every shard's load: the per mille of its last tick's time it spent
    /// outside `poll` (working), indexed by shard. Read where sessions
    /// decide to move (`Loop::move_sessions`).
    pub loads: Vec<Arc<AtomicU32>>,
}

pub struct Mesh {
    polls: Vec<Option<Poll>>,
    to: Vec<Vec<Option<Producer<ShardMsg>>>>,
    from: Vec<Vec<Option<Consumer<ShardMsg>>>>,
    pub wakers: Vec<Arc<Waker>>,
    parked: Vec<Arc<AtomicBool>>,
    loads: Vec<Arc<AtomicU32>>,
}

impl Mesh {
    pub fn new(n: usize) -> io::Result<Mesh> {
        let mut polls = Vec::new();
        let mut wakers = Vec::new();
        for _ in 0..n {
            let poll = Poll::new()?;
            wakers.push(Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?));
            polls.push(Some(poll));
        }
        let mut to: Vec<Vec<Option<Producer<ShardMsg>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut from: Vec<Vec<Option<Consumer<ShardMsg>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let (p, c) = ring(RING_CAPACITY);
                    to[i][j] = Some(p);
                    from[j][i] = Some(c);
                }
            }
        }
        let parked = (0..n).map(|_| Arc::new(AtomicBool::new(false))).collect();
        let loads = (0..n).map(|_| Arc::new(AtomicU32::new(0))).collect();
        Ok(Mesh {
            polls,
            to,
            from,
            wakers,
            parked,
            loads,
        })
    }

    /// Hands shard `i` its poll and ring ends.
    pub fn take_links(&mut self, i: usize) -> Links {
        Links {
            poll: self.polls[i].take().expect("links taken once"),
            to: std::mem::take(&mut self.to[i]),
            from: std::mem::take(&mut self.from[i]),
            wakers: self.wakers.clone(),
            parked: self.parked.clone(),
            loads: self.loads.clone(),
        }
    }
}
