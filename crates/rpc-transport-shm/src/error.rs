//! [`ShmError`]: what can go wrong in the shared-memory transport.

use std::io;

use rpc_core::TransportError;

use crate::ring::RingError;

/// A failure of the shared-memory transport. At the `rpc-core` boundary,
/// failed system calls become [`TransportError::Io`] and everything else
/// [`TransportError::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// The configuration (or the sizes a peer asked for) is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Sys {
        /// The call, such as `"memfd_create"` or `"mmap"`.
        op: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The process at the other end of the Unix socket runs as another user.
    #[error("the peer runs as uid {peer}, not as our uid {ours}")]
    PeerUser {
        /// The peer's uid, from `SO_PEERCRED`.
        peer: u32,
        /// Ours.
        ours: u32,
    },
    /// The handshake on the Unix socket went wrong.
    #[error("handshake: {0}")]
    Handshake(&'static str),
    /// The shared segment a peer sent is not one we can use.
    #[error("invalid shared segment: {0}")]
    Segment(&'static str),
    /// The peer broke the ring's invariants in shared memory.
    #[error("the peer corrupted the ring: {0}")]
    Ring(&'static str),
    /// A record in the ring is malformed.
    #[error("malformed record: {0}")]
    Record(&'static str),
    /// A bulk descriptor is malformed: forged, or from another version.
    #[error("invalid bulk descriptor: {0}")]
    BulkDescriptor(&'static str),
    /// A bulk read asked for bytes outside the region.
    #[error("{len} bytes at offset {offset} are outside the bulk region of {size} bytes")]
    BulkRange {
        /// The offset asked for.
        offset: u64,
        /// The length asked for.
        len: u64,
        /// The region's length.
        size: u64,
    },
    /// The owner's bulk server answered something malformed.
    #[error("bulk protocol: {0}")]
    BulkProtocol(&'static str),
    /// The memfd an owner passed for a bulk region is not one we can map.
    #[error("invalid bulk snapshot: {0}")]
    BulkSnapshot(&'static str),
    /// The peer process ended without closing the connection.
    #[error(
        "the peer process went away without closing the connection{}",
        if *mid_record { ", in the middle of a record" } else { "" }
    )]
    PeerDied {
        /// Whether part of a record had arrived, and was dropped.
        mid_record: bool,
    },
}

impl ShmError {
    /// A failed system call, from `errno`.
    pub(crate) fn last_os(op: &'static str) -> Self {
        Self::Sys {
            op,
            source: io::Error::last_os_error(),
        }
    }
}

/// The error for a peer process that died, as the failure of `op` (`"send"`
/// or `"recv"`): a reset connection.
pub(crate) fn peer_died(op: &'static str, mid_record: bool) -> TransportError {
    TransportError::io(
        op,
        io::Error::new(
            io::ErrorKind::ConnectionReset,
            ShmError::PeerDied { mid_record },
        ),
    )
}

impl From<RingError> for ShmError {
    fn from(e: RingError) -> Self {
        Self::Ring(e.0)
    }
}

impl From<ShmError> for TransportError {
    fn from(e: ShmError) -> Self {
        match e {
            ShmError::Sys { op, source } => Self::io(op, source),
            ShmError::PeerDied { mid_record } => peer_died("recv", mid_record),
            other => Self::Backend(Box::new(other)),
        }
    }
}
