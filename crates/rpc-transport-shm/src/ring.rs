//! A single-producer, single-consumer byte ring and its sleep/wake protocol.
//!
//! One ring carries one direction of a connection. It is a byte pipe: the
//! producer copies bytes in at its private write position and makes them
//! visible by *publishing* the position; the consumer copies bytes out and
//! hands the room back by *releasing* its read position. Positions are
//! 63-bit byte counts that only grow (they would take a century at 100 GB/s
//! to wrap); the byte at position `p` lives at `p % capacity`.
//!
//! # Control block
//!
//! [`RingCtl`] holds four words, each on its own 128-byte line (two cache
//! lines, since x86 prefetches lines in pairs), so that the producer and the
//! consumer never write to the same line on the fast path:
//!
//! - `tail`: bytes published by the producer; bit 63 says the producer
//!   closed the ring. Written by the producer only.
//! - `head`: bytes released by the consumer; bit 63 says the consumer is
//!   gone. Written by the consumer only.
//! - `data_waiter`: 1 while the consumer sleeps, or is about to, waiting for
//!   data.
//! - `space_waiter`: 1 while the producer sleeps, or is about to, waiting
//!   for room.
//!
//! Publishing is a `Release` store of `tail` after the bytes are written,
//! and the consumer loads `tail` with `Acquire` before reading them; the
//! same pair orders `head` the other way.
//!
//! # Sleeping without losing a wake-up
//!
//! A side that wants to sleep stores 1 in its waiter word, issues a
//! `SeqCst` fence and checks the ring once more; only if there is still
//! nothing to do does it sleep. A side that publishes (or releases) stores
//! its position, issues a `SeqCst` fence and then reads the peer's waiter
//! word; if it is 1 it swaps it to 0 and wakes the peer (an eventfd write,
//! in this crate). The two fences make it impossible for both sides to miss
//! each other's store (the store-buffering litmus test), so either the
//! sleeper sees the new position or the publisher sees the sleeper. The fast
//! path, with nobody asleep, makes no system call. The loom models at the
//! bottom of this file check exactly this protocol.
//!
//! # Hostile indices
//!
//! The control block lives in memory the peer can write. Every position read
//! from it is loaded once and checked against what this side knows (a tail
//! never moves back and never runs more than a capacity ahead of what was
//! released; a head never passes what was published); a bad one is
//! [`RingError::Corrupt`] and ends the connection, never an out-of-bounds
//! access.

use crate::sync::{AtomicU32, AtomicU64, Ordering, fence};

/// Bit 63 of `tail` (the producer closed) and of `head` (the consumer is
/// gone).
pub(crate) const CLOSED: u64 = 1 << 63;

/// A value on a line of its own.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub(crate) struct Line<T>(pub(crate) T);

/// The shared control block of one ring. See the [module docs](self).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct RingCtl {
    tail: Line<AtomicU64>,
    head: Line<AtomicU64>,
    data_waiter: Line<AtomicU32>,
    space_waiter: Line<AtomicU32>,
}

/// The size of [`RingCtl`] in shared memory.
#[cfg(not(loom))]
pub(crate) const RING_CTL_LEN: usize = std::mem::size_of::<RingCtl>();

/// A ring's memory: its control block and its data bytes.
///
/// # Safety
///
/// `capacity` must be the number of data bytes, and `write` and `read` must
/// copy within them; the ring calls them only on ranges the protocol gives
/// to the calling side, wrapping at `capacity`.
pub(crate) unsafe trait RingMem {
    /// The control block.
    fn ctl(&self) -> &RingCtl;

    /// The number of data bytes, a power of two.
    fn capacity(&self) -> u64;

    /// Copies `src` into the data at `at` and on, wrapping at the capacity.
    ///
    /// # Safety
    ///
    /// `src.len() <= capacity`, and the range belongs to the producer.
    unsafe fn write(&self, at: u64, src: &[u8]);

    /// Copies `len` bytes from the data at `at` and on, wrapping, to `dst`.
    ///
    /// # Safety
    ///
    /// `dst` is valid for `len` bytes of writes, `len <= capacity`, and the
    /// range belongs to the consumer.
    unsafe fn read(&self, at: u64, dst: *mut u8, len: usize);

    /// Prefetches the cache line of the data byte at `at`: a consumer
    /// waiting for data calls it beside each look at the producer's
    /// position, so that the line its next record starts on travels from
    /// the producer's cache together with the position instead of after it.
    /// A hint only: nothing is read.
    fn touch(&self, _at: u64) {}
}

/// A position in shared memory that breaks the ring's invariants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the peer corrupted the ring: {0}")]
pub(crate) struct RingError(pub(crate) &'static str);

/// The producing side of a ring.
#[derive(Debug)]
pub(crate) struct Producer<M> {
    mem: M,
    /// Bytes written, published or not.
    tail: u64,
    /// Bytes published.
    published: u64,
    /// Bytes the consumer released, as last seen.
    head: u64,
    /// Whether the consumer said it is gone.
    consumer_gone: bool,
}

impl<M: RingMem> Producer<M> {
    /// The producer of a fresh ring (both positions zero).
    pub(crate) fn new(mem: M) -> Self {
        Self {
            mem,
            tail: 0,
            published: 0,
            head: 0,
            consumer_gone: false,
        }
    }

    /// The ring's memory.
    #[cfg(test)]
    pub(crate) fn mem(&self) -> &M {
        &self.mem
    }

    /// Bytes that can be written without waiting, as of the last look at
    /// the consumer's position.
    pub(crate) fn free(&self) -> u64 {
        self.mem.capacity() - (self.tail - self.head)
    }

    /// Bytes written but not yet published.
    #[cfg(test)]
    pub(crate) fn unpublished(&self) -> u64 {
        self.tail - self.published
    }

    /// Whether the consumer has gone away (as of the last refresh).
    pub(crate) fn consumer_gone(&self) -> bool {
        self.consumer_gone
    }

    /// Looks at the consumer's position again. Returns the free room.
    pub(crate) fn refresh(&mut self) -> Result<u64, RingError> {
        let word = self.mem.ctl().head.0.load(Ordering::Acquire);
        let head = word & !CLOSED;
        if head < self.head || head > self.published {
            return Err(RingError("the read position moved backwards or ahead"));
        }
        self.head = head;
        self.consumer_gone = word & CLOSED != 0;
        Ok(self.free())
    }

    /// Whether the consumer moved since the last refresh: room freed or the
    /// consumer gone. Cheap enough to spin on.
    pub(crate) fn has_news(&self) -> bool {
        let gone = if self.consumer_gone { CLOSED } else { 0 };
        self.mem.ctl().head.0.load(Ordering::Relaxed) != self.head | gone
    }

    /// Writes as much of `src` as fits, without publishing it. Returns how
    /// many bytes were written.
    pub(crate) fn write(&mut self, src: &[u8]) -> Result<usize, RingError> {
        let mut free = self.free();
        if free < src.len() as u64 {
            free = self.refresh()?;
        }
        let n = src.len().min(usize::try_from(free).unwrap_or(usize::MAX));
        if n > 0 {
            // SAFETY: `n <= free`, so the range [tail, tail + n) lies in the
            // room the consumer released and that nobody else writes.
            unsafe { self.mem.write(self.tail, &src[..n]) };
            self.tail += n as u64;
        }
        Ok(n)
    }

    /// Publishes every written byte. Returns whether the consumer sleeps
    /// and must be woken; the caller wakes it.
    pub(crate) fn publish(&mut self) -> bool {
        if self.tail == self.published {
            return false;
        }
        self.published = self.tail;
        self.mem.ctl().tail.0.store(self.tail, Ordering::Release);
        take_waiter(&self.mem.ctl().data_waiter.0)
    }

    /// Publishes what was written and marks the ring closed: the consumer
    /// sees the end once it has read everything. Returns whether the
    /// consumer must be woken.
    pub(crate) fn close(&mut self) -> bool {
        self.published = self.tail;
        self.mem
            .ctl()
            .tail
            .0
            .store(self.tail | CLOSED, Ordering::Release);
        take_waiter(&self.mem.ctl().data_waiter.0)
    }

    /// Says this side is about to sleep until there is room; the caller must
    /// [`refresh`](Self::refresh) afterwards and sleep only if there is
    /// still none.
    pub(crate) fn announce_space_wait(&self) {
        announce(&self.mem.ctl().space_waiter.0);
    }

    /// Withdraws [`announce_space_wait`](Self::announce_space_wait) when
    /// this side does not sleep after all.
    pub(crate) fn cancel_space_wait(&self) {
        self.mem.ctl().space_waiter.0.store(0, Ordering::Relaxed);
    }
}

/// The consuming side of a ring.
#[derive(Debug)]
pub(crate) struct Consumer<M> {
    mem: M,
    /// Bytes read, released or not.
    head: u64,
    /// Bytes released to the producer.
    released: u64,
    /// Bytes the producer published, as last seen.
    tail: u64,
    /// Whether the producer closed the ring (as of the last refresh).
    closed: bool,
}

impl<M: RingMem> Consumer<M> {
    /// The consumer of a fresh ring (both positions zero).
    pub(crate) fn new(mem: M) -> Self {
        Self {
            mem,
            head: 0,
            released: 0,
            tail: 0,
            closed: false,
        }
    }

    /// The ring's memory.
    #[cfg(test)]
    pub(crate) fn mem(&self) -> &M {
        &self.mem
    }

    /// Bytes that can be read, as of the last look at the producer's
    /// position.
    pub(crate) fn available(&self) -> u64 {
        self.tail - self.head
    }

    /// Whether the producer closed the ring (as of the last refresh). Bytes
    /// may still be available.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Looks at the producer's position again. Returns the bytes available.
    pub(crate) fn refresh(&mut self) -> Result<u64, RingError> {
        let word = self.mem.ctl().tail.0.load(Ordering::Acquire);
        let tail = word & !CLOSED;
        if tail < self.tail || tail > self.released + self.mem.capacity() {
            return Err(RingError("the write position moved backwards or too far"));
        }
        self.tail = tail;
        self.closed = word & CLOSED != 0;
        if tail == self.head {
            self.mem.touch(self.head);
        }
        Ok(self.available())
    }

    /// Whether anything happened since the last refresh: new bytes or a
    /// close. Cheap enough to spin on.
    pub(crate) fn has_news(&self) -> bool {
        self.mem.touch(self.head);
        self.mem.ctl().tail.0.load(Ordering::Relaxed) != self.tail | self.closed_bit()
    }

    fn closed_bit(&self) -> u64 {
        if self.closed { CLOSED } else { 0 }
    }

    /// Copies `len` available bytes to `dst` without releasing them.
    ///
    /// # Safety
    ///
    /// `dst` is valid for `len` bytes of writes, and `len <= available()`.
    pub(crate) unsafe fn read_raw(&mut self, dst: *mut u8, len: usize) {
        debug_assert!(len as u64 <= self.available());
        // SAFETY: the caller keeps `len` within the available bytes, which
        // the producer published and will not touch until released, and
        // `dst` valid for `len` bytes.
        unsafe { self.mem.read(self.head, dst, len) };
        self.head += len as u64;
    }

    /// Copies up to `dst.len()` available bytes to `dst` without releasing
    /// them. Returns how many were copied.
    #[cfg(test)]
    pub(crate) fn read(&mut self, dst: &mut [u8]) -> usize {
        let n = dst
            .len()
            .min(usize::try_from(self.available()).unwrap_or(usize::MAX));
        // SAFETY: `n` is within both `dst` and the available bytes.
        unsafe { self.read_raw(dst.as_mut_ptr(), n) };
        n
    }

    /// Hands every read byte back to the producer. Returns whether the
    /// producer sleeps waiting for room and must be woken.
    pub(crate) fn release(&mut self) -> bool {
        if self.head == self.released {
            return false;
        }
        self.released = self.head;
        self.mem.ctl().head.0.store(self.head, Ordering::Release);
        take_waiter(&self.mem.ctl().space_waiter.0)
    }

    /// Tells the producer that nobody will read any more. Returns whether
    /// the producer must be woken.
    pub(crate) fn close(&mut self) -> bool {
        self.released = self.head;
        self.mem
            .ctl()
            .head
            .0
            .store(self.head | CLOSED, Ordering::Release);
        take_waiter(&self.mem.ctl().space_waiter.0)
    }

    /// Says this side is about to sleep until there is data; the caller
    /// must [`refresh`](Self::refresh) afterwards and sleep only if there is
    /// still nothing new.
    pub(crate) fn announce_data_wait(&self) {
        announce(&self.mem.ctl().data_waiter.0);
    }

    /// Withdraws [`announce_data_wait`](Self::announce_data_wait) when this
    /// side does not sleep after all.
    pub(crate) fn cancel_data_wait(&self) {
        self.mem.ctl().data_waiter.0.store(0, Ordering::Relaxed);
    }
}

/// The sleeper's half of the protocol: announce, then fence before the
/// caller looks at the ring again.
fn announce(waiter: &AtomicU32) {
    waiter.store(1, Ordering::Relaxed);
    fence(Ordering::SeqCst);
}

/// The publisher's half: after its position store, fence, then take the
/// waiter flag if it is set (so that one sleep gets one wake).
fn take_waiter(waiter: &AtomicU32) -> bool {
    fence(Ordering::SeqCst);
    waiter.load(Ordering::Relaxed) != 0 && waiter.swap(0, Ordering::Relaxed) != 0
}

#[cfg(test)]
pub(crate) mod heap;

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
