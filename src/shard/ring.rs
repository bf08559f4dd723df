//! Lock-free single-producer single-consumer ring between two shard threads.
//!
//! Shards never share broker state; when one shard needs another to do
//! something (deliver to a queue it owns, forward a consumer's ack, ...) it
//! pushes a message into the ring from itself to that shard. There is one ring
//! per ordered pair of shards, so each ring has exactly one writer thread and
//! one reader thread, which is what lets it get away with two atomics and no
//! locks or CAS loops.
//!
//! The design follows glommio's `spsc_queue`:
//! - the capacity is a power of two, so a slot index is `position & mask`;
//! - `head` (next slot to read, written only by the consumer) and `tail` (next
//!   slot to write, written only by the producer) are free-running `usize`
//!   counters that wrap, and live on separate cache lines so the two threads do
//!   not false-share;
//! - each side keeps a private copy of its own index and a *cached* copy of the
//!   other side's index, and only reloads the other side's atomic when the
//!   cached value says the ring is full (producer) or empty (consumer). In the
//!   steady state a push or pop touches just one shared cache line: its own.
//!
//! The shared state is an `Arc` created once by [`ring`]; the two halves each
//! hold one reference, and nothing is cloned or allocated per message. When the
//! second half is dropped the items still in the ring are dropped, once each.
//!
//! Waking the consumer (eventfd, mio waker, ...) is the caller's business; this
//! module only moves values.

use std::cell::UnsafeCell;
use std::fmt;
use std::mem::MaybeUninit;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Pads and aligns a value to its own cache line(s), like crossbeam's
/// `CachePadded` (written here to avoid the dependency).
///
/// x86_64 and aarch64 use 128 bytes: Intel's spatial prefetcher pulls cache
/// lines in pairs and Apple/Neoverse cores have 128-byte lines, so 64 bytes of
/// separation can still false-share there. Elsewhere 64 bytes is the norm.
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), repr(align(128)))]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    repr(align(64))
)]
struct CachePadded<T>(T);

impl<T> Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// State shared by the two halves.
struct Shared<T> {
    /// Position of the next slot the consumer reads. Stored only by the
    /// consumer; the producer loads it when its cached copy says "full".
    head: CachePadded<AtomicUsize>,
    /// Position of the next slot the producer writes. Stored only by the
    /// producer; the consumer loads it when its cached copy says "empty".
    tail: CachePadded<AtomicUsize>,
    /// `capacity - 1`. Read-only after construction, so sharing its cache line
    /// between both threads costs nothing.
    mask: usize,
    /// Slots `[head, tail)` (modulo the capacity) hold initialised values;
    /// the rest are uninitialised. The producer only ever writes slots outside
    /// that range and the consumer only reads slots inside it, which is why the
    /// `UnsafeCell`s are never accessed by both threads at once.
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: values of T are moved from the producer thread to the consumer
// thread (hence T: Send), and no `&T` is ever handed out to two threads (so T
// need not be Sync). Slot access is partitioned between the two threads by the
// head/tail protocol described on `slots`.
unsafe impl<T: Send> Send for Shared<T> {}
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The slot for free-running position `pos`.
    #[inline]
    fn slot(&self, pos: usize) -> *mut MaybeUninit<T> {
        // SAFETY: `pos & mask` < `mask + 1` == `slots.len()`.
        unsafe { self.slots.get_unchecked(pos & self.mask).get() }
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // We are the last owner (`&mut self`), and `Arc`'s drop performed an
        // acquire fence after the final decrement, so both halves' last stores
        // to head/tail and their slot writes/reads are visible here.
        let head = self.head.0.load(Ordering::Relaxed);
        let tail = self.tail.0.load(Ordering::Relaxed);
        let mut pos = head;
        while pos != tail {
            // SAFETY: slots in [head, tail) are initialised and were never
            // read out by the consumer; each is dropped exactly once here.
            // If a drop panics the rest leak, which is safe (no double drop).
            unsafe { (*self.slot(pos)).assume_init_drop() };
            pos = pos.wrapping_add(1);
        }
    }
}

/// The writing half of a ring. `Send`, not `Clone`: there is one producer.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// Authoritative tail: only this half writes it, so no load is needed.
    tail: usize,
    /// Last head value seen. It can only lag the real head (the consumer only
    /// moves forward), so it can only under-estimate the free space: safe.
    cached_head: usize,
}

/// The reading half of a ring. `Send`, not `Clone`: there is one consumer.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    /// Authoritative head: only this half writes it.
    head: usize,
    /// Last tail value seen. It can only lag the real tail, so it can only
    /// under-estimate how many items are ready: safe.
    cached_tail: usize,
}

/// Creates a ring holding up to `capacity` values, rounded up to a power of
/// two and to at least 2.
///
/// # Panics
/// If the rounded capacity does not fit in `usize`, or allocation fails.
pub fn ring<T: Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    with_start(capacity, 0)
}

/// [`ring`] with both indices starting at `start`; tests use it to exercise
/// the wrap of the free-running counters past `usize::MAX`.
fn with_start<T: Send>(capacity: usize, start: usize) -> (Producer<T>, Consumer<T>) {
    let cap = capacity
        .max(2)
        .checked_next_power_of_two()
        .expect("ring capacity overflows usize");
    let slots: Box<[UnsafeCell<MaybeUninit<T>>]> = (0..cap)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let shared = Arc::new(Shared {
        head: CachePadded(AtomicUsize::new(start)),
        tail: CachePadded(AtomicUsize::new(start)),
        mask: cap - 1,
        slots,
    });
    let producer = Producer {
        shared: Arc::clone(&shared),
        tail: start,
        cached_head: start,
    };
    let consumer = Consumer {
        shared,
        head: start,
        cached_tail: start,
    };
    (producer, consumer)
}

impl<T> Producer<T> {
    /// Appends `v`, or hands it back if the ring is full.
    #[inline]
    pub fn try_push(&mut self, v: T) -> Result<(), T> {
        let cap = self.shared.mask + 1;
        if self.tail.wrapping_sub(self.cached_head) == cap {
            // Looks full; refresh our view of the consumer. Acquire pairs with
            // the consumer's Release store of `head` in `pop`: once we see the
            // new head, the consumer's reads of the slots it freed have
            // completed, so overwriting them below cannot race with those reads.
            self.cached_head = self.shared.head.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.cached_head) == cap {
                return Err(v);
            }
        }
        // SAFETY: the slot at `tail` is outside [head, tail), so it is
        // uninitialised and the consumer will not touch it until we publish
        // the new tail below. Writing a MaybeUninit drops nothing.
        unsafe { (*self.shared.slot(self.tail)).write(v) };
        self.tail = self.tail.wrapping_add(1);
        // Release publishes the slot write: a consumer that Acquire-loads this
        // tail value also sees the value we just wrote.
        self.shared.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Number of values in the ring (exact from the producer's side at the
    /// moment of the call; the consumer may shrink it right after).
    #[inline]
    pub fn len(&self) -> usize {
        // Acquire is not needed for a count, but it keeps the value at least as
        // fresh as anything else this thread has synchronised with.
        self.tail
            .wrapping_sub(self.shared.head.load(Ordering::Acquire))
    }

    /// Maximum number of values the ring holds (a power of two, >= 2).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.shared.mask + 1
    }

    /// True if the consumer has taken everything pushed so far.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if a push would fail right now.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }
}

impl<T> Consumer<T> {
    /// Removes and returns the oldest value, or `None` if the ring is empty.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.head == self.cached_tail {
            // Looks empty; refresh our view of the producer. Acquire pairs with
            // the producer's Release store of `tail` in `try_push`, making the
            // slot writes before that store visible to the read below.
            self.cached_tail = self.shared.tail.load(Ordering::Acquire);
            if self.head == self.cached_tail {
                return None;
            }
        }
        // SAFETY: head != tail, so the slot at `head` is initialised, and the
        // producer will not overwrite it until we publish the new head. We
        // move the value out, and advancing head marks the slot uninitialised,
        // so it is never read or dropped again.
        let v = unsafe { (*self.shared.slot(self.head)).assume_init_read() };
        self.head = self.head.wrapping_add(1);
        // Release orders our read of the slot before the producer's next write
        // to it (the producer Acquire-loads head before reusing the slot).
        self.shared.head.store(self.head, Ordering::Release);
        Some(v)
    }

    /// Number of values ready to pop (may grow right after the call).
    #[inline]
    pub fn len(&self) -> usize {
        self.shared
            .tail
            .load(Ordering::Acquire)
            .wrapping_sub(self.head)
    }

    /// True if there is nothing to pop right now.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::thread;

    /// Counts drops in a shared counter, to check each value is dropped once.
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn assert_send<T: Send>() {}

    #[test]
    fn halves_are_send() {
        assert_send::<Producer<String>>();
        assert_send::<Consumer<String>>();
    }

    #[test]
    fn fifo_single_thread() {
        let (mut p, mut c) = ring::<u32>(8);
        assert!(c.is_empty());
        assert!(p.is_empty());
        assert_eq!(c.pop(), None);
        for i in 0..5 {
            p.try_push(i).unwrap();
        }
        assert_eq!(p.len(), 5);
        assert_eq!(c.len(), 5);
        for i in 0..5 {
            assert_eq!(c.pop(), Some(i));
        }
        assert_eq!(c.pop(), None);
        assert!(c.is_empty());
    }

    #[test]
    fn capacity_rounding() {
        assert_eq!(ring::<u8>(0).0.capacity(), 2);
        assert_eq!(ring::<u8>(1).0.capacity(), 2);
        assert_eq!(ring::<u8>(2).0.capacity(), 2);
        assert_eq!(ring::<u8>(3).0.capacity(), 4);
        assert_eq!(ring::<u8>(1000).0.capacity(), 1024);
        assert_eq!(ring::<u8>(1024).0.capacity(), 1024);
    }

    #[test]
    fn full_hands_value_back() {
        let (mut p, mut c) = ring::<String>(4);
        for i in 0..4 {
            p.try_push(i.to_string()).unwrap();
        }
        assert!(p.is_full());
        assert_eq!(p.try_push("x".to_string()), Err("x".to_string()));
        assert_eq!(c.pop().as_deref(), Some("0"));
        assert!(!p.is_full());
        p.try_push("4".to_string()).unwrap();
        assert_eq!(p.try_push("y".to_string()), Err("y".to_string()));
        let got: Vec<String> = std::iter::from_fn(|| c.pop()).collect();
        assert_eq!(got, ["1", "2", "3", "4"]);
    }

    #[test]
    fn capacity_two_edge() {
        let (mut p, mut c) = ring::<u64>(1);
        assert_eq!(p.capacity(), 2);
        for round in 0..1000u64 {
            p.try_push(round * 2).unwrap();
            p.try_push(round * 2 + 1).unwrap();
            assert_eq!(p.try_push(99), Err(99));
            assert_eq!(c.pop(), Some(round * 2));
            p.try_push(round * 2 + 2).unwrap();
            assert_eq!(c.pop(), Some(round * 2 + 1));
            assert_eq!(c.pop(), Some(round * 2 + 2));
            assert_eq!(c.pop(), None);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore)] // too slow under Miri
    fn wraparound_many_times() {
        let (mut p, mut c) = ring::<usize>(8);
        let (mut next_in, mut next_out) = (0usize, 0usize);
        // Vary the fill level so head and tail cross slot 0 at many offsets.
        for step in 0..20_000usize {
            let pushes = step % 9;
            for _ in 0..pushes {
                match p.try_push(next_in) {
                    Ok(()) => next_in += 1,
                    Err(v) => {
                        assert_eq!(v, next_in);
                        assert_eq!(p.len(), 8);
                        break;
                    }
                }
            }
            for _ in 0..(step * 7) % 9 {
                match c.pop() {
                    Some(v) => {
                        assert_eq!(v, next_out);
                        next_out += 1;
                    }
                    None => break,
                }
            }
            assert_eq!(c.len(), next_in - next_out);
        }
        assert!(next_out > 20_000, "ring wrapped only {next_out} items");
    }

    #[test]
    fn counters_wrap_past_usize_max() {
        let (mut p, mut c) = with_start::<u32>(4, usize::MAX - 5);
        for i in 0..100u32 {
            p.try_push(i).unwrap();
            p.try_push(i + 1000).unwrap();
            assert_eq!(p.len(), 2);
            assert_eq!(c.pop(), Some(i));
            assert_eq!(c.pop(), Some(i + 1000));
            assert!(c.is_empty());
        }
        for i in 0..4 {
            p.try_push(i).unwrap();
        }
        assert!(p.is_full());
        assert_eq!(p.try_push(9), Err(9));
    }

    #[test]
    fn zero_sized_values() {
        let (mut p, mut c) = ring::<()>(2);
        p.try_push(()).unwrap();
        p.try_push(()).unwrap();
        assert_eq!(p.try_push(()), Err(()));
        assert_eq!(c.pop(), Some(()));
        assert_eq!(c.pop(), Some(()));
        assert_eq!(c.pop(), None);
    }

    #[test]
    fn leftover_items_dropped_once() {
        for producer_first in [true, false] {
            let drops = Arc::new(AtomicUsize::new(0));
            let (mut p, mut c) = ring(4);
            // Advance the indices so the leftovers straddle the wrap point.
            for _ in 0..3 {
                p.try_push(Counted(drops.clone())).ok().unwrap();
                drop(c.pop().unwrap());
            }
            assert_eq!(drops.load(Ordering::SeqCst), 3);
            for _ in 0..4 {
                p.try_push(Counted(drops.clone())).ok().unwrap();
            }
            // A rejected value comes back to us and is dropped by us.
            drop(p.try_push(Counted(drops.clone())).err().unwrap());
            assert_eq!(drops.load(Ordering::SeqCst), 4);
            drop(c.pop().unwrap());
            assert_eq!(drops.load(Ordering::SeqCst), 5);
            if producer_first {
                drop(p);
                assert_eq!(drops.load(Ordering::SeqCst), 5, "consumer still alive");
                drop(c);
            } else {
                drop(c);
                assert_eq!(drops.load(Ordering::SeqCst), 5, "producer still alive");
                drop(p);
            }
            // 3 leftovers dropped when the last half went away.
            assert_eq!(drops.load(Ordering::SeqCst), 8);
        }
    }

    /// Spins on the producer side until the value fits.
    fn push_spin<T>(p: &mut Producer<T>, mut v: T) {
        let mut spins = 0u32;
        loop {
            match p.try_push(v) {
                Ok(()) => return,
                Err(back) => v = back,
            }
            spins += 1;
            if spins.is_multiple_of(64) {
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    fn transfer(n: u64, capacity: usize) {
        let (mut p, mut c) = ring::<u64>(capacity);
        let producer = thread::spawn(move || {
            for i in 0..n {
                push_spin(&mut p, i);
            }
        });
        let mut expected = 0u64;
        let mut spins = 0u32;
        while expected < n {
            match c.pop() {
                Some(v) => {
                    assert_eq!(v, expected, "out of order or lost value");
                    expected += 1;
                }
                None => {
                    spins += 1;
                    if spins.is_multiple_of(64) {
                        thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
        }
        producer.join().unwrap();
        assert_eq!(c.pop(), None);
    }

    #[test]
    #[cfg_attr(miri, ignore)] // too slow under Miri
    fn two_threads_million_in_order() {
        transfer(1_000_000, 1024);
    }

    #[test]
    #[cfg_attr(miri, ignore)] // too slow under Miri
    fn two_threads_tiny_ring() {
        transfer(200_000, 2);
    }

    /// Small enough to run under Miri (`cargo +nightly miri test ring`).
    #[test]
    fn small_threaded_transfer_of_heap_values() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (mut p, mut c) = ring::<(u32, Counted)>(16);
        let d = drops.clone();
        let producer = thread::spawn(move || {
            for i in 0..50u32 {
                push_spin(&mut p, (i, Counted(d.clone())));
            }
            // Leave some behind for the ring's own drop to reclaim.
        });
        let mut got = 0u32;
        while got < 40 {
            if let Some((i, _counted)) = c.pop() {
                assert_eq!(i, got);
                got += 1;
            } else {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 40);
        drop(c);
        assert_eq!(drops.load(Ordering::SeqCst), 50);
    }
}
