//! The error types of `rpc-core`.
//!
//! - [`Error`] is what a user of the engine sees: every call, definition and
//!   connection attempt fails with one of its variants.
//! - [`TransportError`] is what a [`Transport`](crate::Transport) reports.
//!   Backend-specific causes are boxed in [`TransportError::Backend`].
//! - [`CodecError`] is what the wire codec and the body codec report.
//! - [`BulkError`] is why an access to an exposed bulk region was refused.

use std::io;
use std::time::Duration;

/// A failed operation of the RPC engine.
///
/// The enum is `#[non_exhaustive]`: match the variants you handle and keep a
/// fallback arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The call's deadline passed before a response arrived.
    #[error("call {peer}::{function} timed out after {after:?}")]
    Timeout {
        /// The callee.
        peer: String,
        /// The function that was called.
        function: String,
        /// The budget the call had.
        after: Duration,
    },
    /// The callee has no function of this name under the requested provider.
    #[error("peer {peer} has no function {function:?} (provider {provider})")]
    NoSuchFunction {
        /// The callee.
        peer: String,
        /// The function that was called.
        function: String,
        /// The provider id the call named.
        provider: u16,
    },
    /// The callee has the function, but not under the requested provider id.
    #[error("peer {peer} has no provider {provider} for function {function:?}")]
    NoSuchProvider {
        /// The callee.
        peer: String,
        /// The function that was called.
        function: String,
        /// The provider id the call named.
        provider: u16,
    },
    /// No connected peer has this name, and none appeared before the deadline.
    #[error("no peer named {peer:?} is known")]
    NoSuchPeer {
        /// The name that was looked for.
        peer: String,
    },
    /// No path leads to the peer: membership knows it is gone, a relay has
    /// no route onward, or the hop limit was reached.
    #[error("peer {peer:?} is unreachable: {reason}")]
    Unreachable {
        /// The peer that was called.
        peer: String,
        /// Why, and where on the path.
        reason: String,
    },
    /// The remote handler returned an error or panicked.
    #[error("remote error from {peer}::{function}: {message}")]
    Remote {
        /// The callee.
        peer: String,
        /// The function that was called.
        function: String,
        /// The handler's error message.
        message: String,
    },
    /// Arguments or a result could not be encoded or decoded.
    #[error("codec error: {0}")]
    Codec(#[from] CodecError),
    /// The connection to the peer was lost while the call was pending (the
    /// callee may have run it), or was lost before and did not come back
    /// before the deadline.
    #[error("connection to {peer} lost: {reason}")]
    Disconnected {
        /// The peer whose connection closed.
        peer: String,
        /// Why it closed, and where (a relay on the path, say).
        reason: String,
    },
    /// The call was cancelled, by the caller or by the callee.
    #[error("call cancelled")]
    Cancelled,
    /// A frame exceeds the frame size limit in force on the connection.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The frame's size on the wire.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The engine has shut down (locally, or the callee is shutting down).
    #[error("the RPC engine is shut down")]
    ShutDown,
    /// Another live peer already uses this name.
    #[error("the name {name:?} is already used by another live peer")]
    DuplicateName {
        /// The contested name.
        name: String,
    },
    /// The callee refused the operation (for example remote shutdown, when
    /// the callee has not enabled it).
    #[error("peer {peer} refused {what}")]
    Refused {
        /// The peer that refused.
        peer: String,
        /// What was refused.
        what: String,
    },
    /// The callee has too much work queued and rejected the call.
    #[error("peer {peer} is overloaded: {message}")]
    Overloaded {
        /// The peer that rejected the call.
        peer: String,
        /// Why.
        message: String,
    },
    /// An argument given to the engine is invalid (a name too long, a name
    /// set after listening, a function defined twice, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A transport failed.
    #[error("transport error: {0}")]
    Transport(#[from] TransportError),
    /// A bulk transfer ([`Rpc::bulk_pull`](crate::Rpc::bulk_pull),
    /// [`Rpc::bulk_push`](crate::Rpc::bulk_push)) was refused: the handle is
    /// unknown to its owner, read-only, or the range is outside the region.
    #[error("bulk transfer with {peer} refused: {error}")]
    Bulk {
        /// The peer that owns the region.
        peer: String,
        /// Why.
        #[source]
        error: BulkError,
    },
}

impl Error {
    /// Whether the call certainly never reached a handler, so that trying it
    /// on another peer cannot run it twice: no path led to the callee, the
    /// callee does not have the function, or it refused the call before
    /// running it.
    ///
    /// A call that was sent and then lost its connection
    /// ([`Disconnected`](Self::Disconnected)) or its deadline
    /// ([`Timeout`](Self::Timeout)) may have run: retry those only when the
    /// function is idempotent.
    pub fn never_delivered(&self) -> bool {
        matches!(
            self,
            Self::NoSuchPeer { .. }
                | Self::Unreachable { .. }
                | Self::NoSuchFunction { .. }
                | Self::NoSuchProvider { .. }
                | Self::Overloaded { .. }
                | Self::Transport(_)
        )
    }
}

/// Why a bulk access to an exposed region was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum BulkError {
    /// No region is exposed under this id (never exposed, unexposed, or
    /// exposed by an earlier run of the owner).
    #[error("no region {id} is exposed")]
    UnknownHandle {
        /// The handle's id.
        id: u64,
    },
    /// The region was exposed read-only, and a push was attempted.
    #[error("region {id} is read-only")]
    ReadOnly {
        /// The handle's id.
        id: u64,
    },
    /// The range is not inside the region.
    #[error("{len} bytes at offset {offset} are outside region {id} of {size} bytes")]
    OutOfRange {
        /// The handle's id (0 for a region not exposed).
        id: u64,
        /// The offset asked for.
        offset: u64,
        /// The length asked for.
        len: u64,
        /// The region's length.
        size: u64,
    },
}

/// A failed transport operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection is closed; nothing more can be sent or received.
    #[error("connection closed")]
    Closed,
    /// A frame exceeds the connection's frame size limit. The connection that
    /// received it is closed.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The frame's size on the wire (or the size its header claims).
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The byte stream held a malformed frame. The connection is closed.
    #[error("malformed frame: {0}")]
    Codec(#[from] CodecError),
    /// The address could not be parsed or is not served by this transport.
    #[error("invalid address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No transport is registered for the address's scheme.
    #[error("no transport for scheme {scheme:?}")]
    UnsupportedScheme {
        /// The scheme that was asked for.
        scheme: String,
    },
    /// An I/O operation failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The operation, such as `"connect"`, `"bind"` or `"read"`.
        op: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A backend-specific failure, boxed at the core boundary.
    #[error("transport backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl TransportError {
    /// Wraps an I/O error with the name of the failed operation.
    pub fn io(op: &'static str, source: io::Error) -> Self {
        Self::Io { op, source }
    }
}

impl From<io::Error> for TransportError {
    /// For the tokio-util codec traits, which need it; prefer
    /// [`TransportError::io`], which names the operation.
    fn from(source: io::Error) -> Self {
        Self::Io { op: "i/o", source }
    }
}

impl From<TransportError> for io::Error {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Io { source, .. } => source,
            TransportError::Closed => Self::new(io::ErrorKind::BrokenPipe, e),
            other => Self::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// A frame or body that could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The frame does not start with the protocol magic.
    #[error("bad magic {0:#06x}")]
    BadMagic(u16),
    /// The frame's protocol version is not supported.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The frame kind byte is unknown.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The header has flag bits or reserved bytes this version does not know.
    #[error("unknown header flags {0:#04x}")]
    UnknownFlags(u8),
    /// The frame is larger than the decoder's limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The size the header claims.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A method id was used that the sender never announced on this connection.
    #[error("unknown interned method id {0}")]
    UnknownMethodId(u32),
    /// A method name was announced with an id other than the next free one.
    #[error("method id {got} announced out of order (expected {expected})")]
    MethodIdOutOfOrder {
        /// The id in the frame.
        got: u32,
        /// The id the decoder expected.
        expected: u32,
    },
    /// The per-connection method table is full.
    #[error("too many distinct methods on one connection (limit {0})")]
    MethodTableFull(u32),
    /// A name (method or peer) is longer than the wire allows.
    #[error("name of {len} bytes is longer than {max} bytes")]
    NameTooLong {
        /// The name's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A name on the wire is not valid UTF-8.
    #[error("name is not valid UTF-8")]
    InvalidUtf8,
    /// A frame kind that needs a method has none.
    #[error("{0} frame without a method")]
    MissingMethod(&'static str),
    /// The header claims more attachments than allowed.
    #[error("{count} attachments exceed the limit of {max}")]
    TooManyAttachments {
        /// The count in the header.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The serde body could not be encoded or decoded.
    #[error("body: {0}")]
    Body(String),
    /// The body refers to an attachment the frame does not carry.
    #[error("attachment {index} referenced, but the frame has {count}")]
    AttachmentIndex {
        /// The index in the body.
        index: u32,
        /// The number of attachments in the frame.
        count: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame ({0} bytes left over)")]
    Truncated(usize),
}
