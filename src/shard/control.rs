//! The control path: work that comes from no client connection (the
//! management API, metrics snapshots, vhost deletion, tests) reaches a shard
//! as a closure in that shard's control inbox. The shard runs it in its
//! message pump (`Loop::pump` → [`Inbox::drain`]), on its own thread, like
//! any other state change, so the one-thread-per-shard invariant holds.
//!
//! The inbox is a `std::sync::mpsc` channel: the shard only ever `try_recv`s
//! (an atomic load when empty, no lock, never blocks); the sender wakes the
//! shard's poll. The caller may block waiting for the answer ([`Control::ask`]);
//! a shard thread never does, so it must never call `ask` itself.

use super::state::ShardState;
use std::sync::mpsc;
use std::sync::Arc;

/// Work for one shard, run on its thread with its whole state.
pub type ControlFn = Box<dyn FnOnce(&mut ShardState) + Send>;

/// The sending side, for threads that are not shards. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    inboxes: Vec<mpsc::Sender<ControlFn>>,
    wakers: Vec<Arc<mio::Waker>>,
}

/// A shard's receiving side.
pub struct Inbox(mpsc::Receiver<ControlFn>);

/// One inbox per shard and the sender for all of them.
pub fn channels(wakers: Vec<Arc<mio::Waker>>) -> (Control, Vec<Inbox>) {
    let (inboxes, receivers) = wakers
        .iter()
        .map(|_| {
            let (tx, rx) = mpsc::channel();
            (tx, Inbox(rx))
        })
        .unzip();
    (Control { inboxes, wakers }, receivers)
}

impl Control {
    pub fn shards(&self) -> usize {
        self.inboxes.len()
    }

    /// Queues `f` for shard `shard` and wakes it; false if the shard has
    /// stopped (or does not exist).
    pub fn send(&self, shard: usize, f: impl FnOnce(&mut ShardState) + Send + 'static) -> bool {
        let Some(inbox) = self.inboxes.get(shard) else {
            return false;
        };
        if inbox.send(Box::new(f)).is_err() {
            return false;
        }
        let _ = self.wakers[shard].wake();
        true
    }

    /// Runs `f` on shard `shard` and waits for its answer; `None` if the shard
    /// has stopped. Blocks the caller: never call it from a shard's thread.
    pub fn ask<R: Send + 'static>(
        &self,
        shard: usize,
        f: impl FnOnce(&mut ShardState) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = mpsc::sync_channel(1);
        let sent = self.send(shard, move |state| {
            let _ = tx.send(f(state));
        });
        if !sent {
            return None;
        }
        rx.recv().ok()
    }

    /// Runs `f` on every shard (all at once) and returns the answers in shard
    /// order; a stopped shard's answer is missing.
    pub fn ask_all<R: Send + 'static>(
        &self,
        f: impl Fn(&mut ShardState) -> R + Send + Sync + 'static,
    ) -> Vec<R> {
        let f = Arc::new(f);
        let (tx, rx) = mpsc::channel();
        let mut asked = 0;
        for shard in 0..self.shards() {
            let (f, tx) = (f.clone(), tx.clone());
            if self.send(shard, move |state| {
                let _ = tx.send((shard, f(state)));
            }) {
                asked += 1;
            }
        }
        drop(tx);
        let mut answers: Vec<(usize, R)> = rx.iter().take(asked).collect();
        answers.sort_by_key(|(shard, _)| *shard);
        answers.into_iter().map(|(_, r)| r).collect()
    }
}

impl Inbox {
    /// Runs every queued control closure; returns how many ran.
    pub fn drain(&self, state: &mut ShardState) -> usize {
        let mut n = 0;
        while let Ok(f) = self.0.try_recv() {
            f(state);
            n += 1;
        }
        n
    }
}
