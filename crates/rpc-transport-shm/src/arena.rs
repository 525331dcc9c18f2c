//! The arena: large attachments placed in shared memory once and read in
//! place by the receiver.
//!
//! Each direction has an arena of page-sized blocks and one `u32` flag per
//! block in shared memory. Only the sender allocates: it keeps the map of
//! used blocks privately ([`ArenaAlloc`]), lowest-first so that the pages in
//! use stay few, and sets the flag of a run's first block to 1 before it
//! publishes the record that names the run. The receiver hands the run out
//! as [`bytes::Bytes`] whose owner ([`ArenaSlice`]) stores 0 in that flag
//! when the last clone is dropped. The sender reclaims runs whose flag went
//! back to 0, lazily, when it needs room.
//!
//! A receiver that keeps attachments forever only fills the arena: the
//! sender then copies attachments through the ring instead, and never
//! waits for the arena.

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;

use crate::config::ARENA_BLOCK;
use crate::error::ShmError;
use crate::segment::{Dir, Segment};

/// The sender's private map of one arena.
#[derive(Debug)]
pub(crate) struct ArenaAlloc {
    blocks: usize,
    /// One bit per block: 1 = allocated.
    used: Vec<u64>,
    /// Runs handed to the receiver and not yet seen released: first block
    /// and length in blocks.
    outstanding: VecDeque<(usize, usize)>,
}

impl ArenaAlloc {
    /// An empty map of `blocks` blocks.
    pub(crate) fn new(blocks: usize) -> Self {
        Self {
            blocks,
            used: vec![0; blocks.div_ceil(64)],
            outstanding: VecDeque::new(),
        }
    }

    /// Reserves blocks for `len` bytes, lowest first, after reclaiming
    /// released runs. Returns the first block, or `None` if the arena has no
    /// room now.
    pub(crate) fn alloc(&mut self, len: usize, flags: &[AtomicU32]) -> Option<usize> {
        let n = len.div_ceil(ARENA_BLOCK);
        if n == 0 || n > self.blocks {
            return None;
        }
        // Reclaiming first keeps the used blocks at the bottom of the arena,
        // so few pages are ever touched. Few runs are outstanding at a time.
        self.reclaim(flags);
        let start = self.find(n)?;
        self.set(start, n, true);
        Some(start)
    }

    /// Gives back a reservation that was never published.
    pub(crate) fn cancel(&mut self, start: usize, len: usize) {
        self.set(start, len.div_ceil(ARENA_BLOCK), false);
    }

    /// Marks a reservation as handed to the receiver. Called before the
    /// record naming it is published.
    pub(crate) fn commit(&mut self, start: usize, len: usize, flags: &[AtomicU32]) {
        // Relaxed: the ring's Release publish orders it before the
        // receiver's reset, which is what the reclaim's Acquire pairs with.
        flags[start].store(1, Ordering::Relaxed);
        self.outstanding
            .push_back((start, len.div_ceil(ARENA_BLOCK)));
    }

    /// Frees every run the receiver released. Returns whether any was.
    pub(crate) fn reclaim(&mut self, flags: &[AtomicU32]) -> bool {
        let before = self.outstanding.len();
        let mut freed = Vec::new();
        self.outstanding.retain(|&(start, n)| {
            // Acquire: the receiver's reads of the run happen before we
            // write it again.
            let released = flags[start].load(Ordering::Acquire) == 0;
            if released {
                freed.push((start, n));
            }
            !released
        });
        for (start, n) in freed {
            self.set(start, n, false);
        }
        self.outstanding.len() != before
    }

    /// The first run of `n` free blocks.
    fn find(&self, n: usize) -> Option<usize> {
        let (mut start, mut run, mut i) = (0, 0, 0);
        while i < self.blocks {
            let word = self.used[i / 64];
            if i % 64 == 0 && i + 64 <= self.blocks && (word == 0 || word == u64::MAX) {
                if word == 0 {
                    run += 64;
                    if run >= n {
                        return Some(start);
                    }
                } else {
                    run = 0;
                    start = i + 64;
                }
                i += 64;
                continue;
            }
            if word >> (i % 64) & 1 == 1 {
                run = 0;
                start = i + 1;
            } else {
                run += 1;
                if run >= n {
                    return Some(start);
                }
            }
            i += 1;
        }
        None
    }

    fn set(&mut self, start: usize, n: usize, used: bool) {
        for i in start..start + n {
            if used {
                self.used[i / 64] |= 1 << (i % 64);
            } else {
                self.used[i / 64] &= !(1 << (i % 64));
            }
        }
    }
}

/// An attachment in the peer's arena, read in place. Dropping it (the last
/// `Bytes` clone) tells the peer that its blocks are free again.
#[derive(Debug)]
struct ArenaSlice {
    ptr: NonNull<u8>,
    len: usize,
    flag: NonNull<AtomicU32>,
    /// Keeps the mapping alive.
    _segment: Arc<Segment>,
}

// SAFETY: the pointers point into the mapping `_segment` keeps alive; the
// bytes are only read, and the flag is an atomic.
unsafe impl Send for ArenaSlice {}
// SAFETY: as above.
unsafe impl Sync for ArenaSlice {}

impl AsRef<[u8]> for ArenaSlice {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the range was checked to lie inside the arena, the mapping
        // lives as long as `self`, and the sender does not write the run
        // until we release it. A sender that breaks that rule (it runs as
        // our own user, checked at connect time) can change what we read,
        // but never make us read outside the mapping.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for ArenaSlice {
    fn drop(&mut self) {
        // SAFETY: the flag lies in the mapping `_segment` keeps alive.
        let flag = unsafe { self.flag.as_ref() };
        // Release: our reads of the run happen before the sender reuses it.
        flag.store(0, Ordering::Release);
    }
}

/// Hands out the run a record names, after checking it lies inside the
/// arena of direction `dir`.
pub(crate) fn receive(
    segment: &Arc<Segment>,
    dir: Dir,
    first_block: u64,
    len: u64,
) -> Result<Bytes, ShmError> {
    let blocks = segment.layout().blocks as u64;
    let arena = segment.layout().geometry.arena_bytes;
    let start = first_block
        .checked_mul(ARENA_BLOCK as u64)
        .filter(|_| first_block < blocks && len > 0)
        .filter(|s| s.checked_add(len).is_some_and(|end| end <= arena))
        .ok_or(ShmError::Record(
            "an arena descriptor points outside the arena",
        ))?;
    let flags = segment.arena_flags(dir);
    // Checked above: the run lies inside the arena, so these fit in usize.
    let slice = ArenaSlice {
        // SAFETY: `start + len <= arena_bytes`, inside the mapping.
        ptr: unsafe { segment.arena(dir).add(start as usize) },
        len: len as usize,
        flag: NonNull::from(&flags[first_block as usize]),
        _segment: segment.clone(),
    };
    Ok(Bytes::from_owner(slice))
}

/// Copies `src` into the run starting at `first_block` of our own arena.
///
/// # Safety
///
/// The run was allocated by this side's [`ArenaAlloc`] for at least
/// `src.len()` bytes and not yet committed, so nobody else touches it.
pub(crate) unsafe fn fill(segment: &Segment, dir: Dir, first_block: usize, src: &[u8]) {
    // SAFETY: the caller owns the run, which lies inside the arena.
    unsafe {
        let dst = segment.arena(dir).add(first_block * ARENA_BLOCK);
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_ptr(), src.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(n: usize) -> Vec<AtomicU32> {
        (0..n).map(|_| AtomicU32::new(0)).collect()
    }

    /// Allocates each length in turn (`Some(first block)` expected, or
    /// `None` for no room), committing each one.
    #[track_caller]
    fn check(
        alloc: &mut ArenaAlloc,
        flags: &[AtomicU32],
        lens: &[usize],
        expect: &[Option<usize>],
    ) {
        let got: Vec<Option<usize>> = lens
            .iter()
            .map(|&len| {
                let start = alloc.alloc(len, flags);
                if let Some(s) = start {
                    alloc.commit(s, len, flags);
                }
                start
            })
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn allocates_lowest_first_and_reclaims_released_runs() {
        let f = flags(200);
        let mut a = ArenaAlloc::new(200);
        let b = ARENA_BLOCK;
        check(
            &mut a,
            &f,
            &[1, b, b + 1, 0],
            &[Some(0), Some(1), Some(2), None],
        );
        check(&mut a, &f, &[150 * b, 50 * b], &[Some(4), None]);
        // The receiver releases the run at block 1: a one-block request
        // fits there once reclaimed.
        f[1].store(0, Ordering::Release);
        check(&mut a, &f, &[b, b], &[Some(1), Some(154)]);
        // Everything released: the lowest blocks are used again.
        for flag in &f {
            flag.store(0, Ordering::Release);
        }
        check(&mut a, &f, &[200 * b, b], &[Some(0), None]);
        f[0].store(0, Ordering::Release);
        check(&mut a, &f, &[201 * b, 64 * b], &[None, Some(0)]);
    }

    #[test]
    fn cancel_gives_blocks_back_without_the_receiver() {
        let f = flags(4);
        let mut a = ArenaAlloc::new(4);
        let s = a.alloc(4 * ARENA_BLOCK, &f).unwrap();
        assert_eq!(a.alloc(1, &f), None);
        a.cancel(s, 4 * ARENA_BLOCK);
        assert_eq!(a.alloc(1, &f), Some(0));
    }
}
