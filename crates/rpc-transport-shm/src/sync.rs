//! The atomics the ring uses, from loom under `cfg(loom)` and from `std`
//! otherwise, as tokio's loom shim does.
//!
//! Only the ring's index logic (`ring`) goes through this module: it is what
//! loom checks. Code that casts shared memory to atomics uses `std` types
//! directly, because only they have the layout of plain integers.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
