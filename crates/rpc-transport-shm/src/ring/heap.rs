//! A ring on the heap, for unit tests, loom and miri: the same index logic as
//! in shared memory, with data bytes in cells that loom (and miri) watch for
//! unsynchronized access.

use std::sync::Arc;

#[cfg(loom)]
use loom::cell::UnsafeCell;
#[cfg(not(loom))]
use std::cell::UnsafeCell;

use super::{RingCtl, RingMem};

/// One ring's memory on the heap; clones share it.
#[derive(Clone, Debug)]
pub(crate) struct HeapRing(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    ctl: RingCtl,
    data: Box<[UnsafeCell<u8>]>,
}

// SAFETY: the cells are only touched through `RingMem`, whose callers (the
// ring) give each byte range to one side at a time, synchronized by the
// control block's atomics; that is exactly what loom checks.
unsafe impl Sync for Inner {}

impl HeapRing {
    /// A fresh ring of `capacity` bytes (a power of two).
    pub(crate) fn new(capacity: usize) -> Self {
        assert!(capacity.is_power_of_two());
        let data = (0..capacity).map(|_| UnsafeCell::new(0)).collect();
        Self(Arc::new(Inner {
            ctl: RingCtl::default(),
            data,
        }))
    }

    fn cell(&self, at: u64) -> &UnsafeCell<u8> {
        &self.0.data[(at % self.capacity()) as usize]
    }
}

// SAFETY: `write` and `read` touch only `data`, wrapping at its length.
unsafe impl RingMem for HeapRing {
    fn ctl(&self) -> &RingCtl {
        &self.0.ctl
    }

    fn capacity(&self) -> u64 {
        self.0.data.len() as u64
    }

    unsafe fn write(&self, at: u64, src: &[u8]) {
        for (i, &b) in src.iter().enumerate() {
            let cell = self.cell(at + i as u64);
            #[cfg(loom)]
            // SAFETY: the ring gives this byte to the producer alone.
            cell.with_mut(|p| unsafe { *p = b });
            #[cfg(not(loom))]
            // SAFETY: the ring gives this byte to the producer alone.
            unsafe {
                *cell.get() = b;
            }
        }
    }

    unsafe fn read(&self, at: u64, dst: *mut u8, len: usize) {
        for i in 0..len {
            let cell = self.cell(at + i as u64);
            #[cfg(loom)]
            // SAFETY: the ring gives this byte to the consumer alone, and the
            // caller gives us `dst` valid for `len` bytes.
            cell.with(|p| unsafe { *dst.add(i) = *p });
            #[cfg(not(loom))]
            // SAFETY: as above.
            unsafe {
                *dst.add(i) = *cell.get();
            }
        }
    }
}
