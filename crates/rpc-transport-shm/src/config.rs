//! [`ShmConfig`]: ring and arena sizes, and how long to spin before sleeping.

use std::time::Duration;

use crate::error::ShmError;

/// The size of one arena block, and the alignment of every attachment placed
/// in the arena: one page.
pub(crate) const ARENA_BLOCK: usize = 4096;
/// The smallest ring.
pub(crate) const MIN_RING_BYTES: usize = 64;
/// The largest ring.
pub(crate) const MAX_RING_BYTES: usize = 1 << 30;
/// The largest arena.
pub(crate) const MAX_ARENA_BYTES: usize = 16 << 30;

/// Settings of [`ShmTransport`](crate::ShmTransport).
///
/// The side that connects sizes the shared segment with its own
/// configuration; the side that accepts takes those sizes as they come
/// (within the limits checked here). `spin` applies to each side's own
/// waits.
///
/// ```
/// use std::time::Duration;
/// use rpc_transport_shm::{ShmConfig, ShmTransport};
///
/// let config = ShmConfig::default()
///     .with_spin(Duration::from_micros(20))
///     .with_ring_bytes(1 << 20);
/// let shm = ShmTransport::with_config(config);
/// assert_eq!(shm.config().ring_bytes, 1 << 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShmConfig {
    /// How long a side that waits for data (or for room in the ring) polls
    /// before it goes to sleep on an eventfd. Polling yields to the tokio
    /// scheduler between looks, so other tasks on the thread keep running.
    /// A wake from sleep costs a system call on each side and, on a VM whose
    /// idle CPUs halt, tens of microseconds; spinning keeps round trips at
    /// a few hundred nanoseconds when the peer answers in time. Zero never
    /// spins. Default 50 µs.
    pub spin: Duration,
    /// The bytes of each direction's ring: a power of two, at least 64.
    /// Frames (except arena attachments) are copied through it; a frame
    /// larger than the ring streams through in pieces. Default 256 KiB.
    pub ring_bytes: usize,
    /// The bytes of each direction's arena for large attachments, a multiple
    /// of 4096; zero disables the arena. Pages of the arena cost memory
    /// only once used, and blocks are reused lowest first. Default 128 MiB.
    pub arena_bytes: usize,
    /// Attachments of at least this many bytes are placed in the arena,
    /// when it has room, and the receiver reads them in place. Smaller ones,
    /// and larger ones that do not fit, are copied through the ring.
    /// Default 16 KiB.
    pub arena_threshold: usize,
    /// How long the handshake on the Unix socket may take. Default 10 s.
    pub handshake_timeout: Duration,
}

impl Default for ShmConfig {
    fn default() -> Self {
        Self {
            spin: Duration::from_micros(50),
            ring_bytes: 256 << 10,
            arena_bytes: 128 << 20,
            arena_threshold: 16 << 10,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl ShmConfig {
    /// The default configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`spin`](Self::spin).
    pub fn with_spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// Sets [`ring_bytes`](Self::ring_bytes).
    pub fn with_ring_bytes(mut self, bytes: usize) -> Self {
        self.ring_bytes = bytes;
        self
    }

    /// Sets [`arena_bytes`](Self::arena_bytes).
    pub fn with_arena_bytes(mut self, bytes: usize) -> Self {
        self.arena_bytes = bytes;
        self
    }

    /// Sets [`arena_threshold`](Self::arena_threshold).
    pub fn with_arena_threshold(mut self, bytes: usize) -> Self {
        self.arena_threshold = bytes;
        self
    }

    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Checks the sizes.
    pub(crate) fn validate(&self) -> Result<(), ShmError> {
        check_geometry(self.ring_bytes as u64, self.arena_bytes as u64)
    }
}

/// Checks ring and arena sizes, from a configuration or from a peer.
pub(crate) fn check_geometry(ring_bytes: u64, arena_bytes: u64) -> Result<(), ShmError> {
    if !ring_bytes.is_power_of_two()
        || ring_bytes < MIN_RING_BYTES as u64
        || ring_bytes > MAX_RING_BYTES as u64
    {
        return Err(ShmError::Config(format!(
            "ring_bytes must be a power of two from {MIN_RING_BYTES} to {MAX_RING_BYTES}, not {ring_bytes}"
        )));
    }
    if !arena_bytes.is_multiple_of(ARENA_BLOCK as u64) || arena_bytes > MAX_ARENA_BYTES as u64 {
        return Err(ShmError::Config(format!(
            "arena_bytes must be a multiple of {ARENA_BLOCK} up to {MAX_ARENA_BYTES}, not {arena_bytes}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(ring: u64, arena: u64, ok: bool) {
        assert_eq!(check_geometry(ring, arena).is_ok(), ok, "{ring} {arena}");
    }

    #[test]
    fn geometry_limits() {
        check(64, 0, true);
        check(256 << 10, 128 << 20, true);
        check(1 << 30, 16 << 30, true);
        check(32, 0, false);
        check(100, 0, false);
        check(2 << 30, 0, false);
        check(64, 4095, false);
        check(64, 32 << 30, false);
        assert!(ShmConfig::default().validate().is_ok());
    }
}
