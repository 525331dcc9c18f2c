//! Messages the engine sends in its own frames: the handshake and other
//! control traffic, and the body of error responses.

use serde::{Deserialize, Serialize};

use crate::error::{BulkError, Error};

/// The engine protocol spoken inside control frames. Bumped when the
/// handshake changes incompatibly.
pub(crate) const ENGINE_PROTOCOL: u32 = 2;

/// Built-in method names start with this prefix; users cannot define them.
pub(crate) const RESERVED_PREFIX: &str = "__rpc.";
/// The built-in method that asks a peer to shut down.
pub(crate) const SHUTDOWN_METHOD: &str = "__rpc.shutdown";
/// The built-in method that reads from an exposed bulk region.
pub(crate) const BULK_PULL_METHOD: &str = "__rpc.bulk.pull";
/// The built-in method that writes into an exposed bulk region.
pub(crate) const BULK_PUSH_METHOD: &str = "__rpc.bulk.push";

/// The body of a [`FrameKind::Control`](crate::wire::FrameKind::Control) frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Control {
    /// The first frame each side sends on a new connection.
    Hello(Hello),
    /// The connection is refused; the sender closes it next.
    Reject(Reject),
    /// The sender is closing the connection on purpose.
    Goodbye,
    /// The accepting side took the connector's name: the connection is up.
    /// The connector waits for it (or a [`Reject`](Control::Reject)) before
    /// it calls the connection established.
    Welcome,
}

/// Who a peer is. Exchanged by both sides when a connection opens; this is
/// also where authentication will add its proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// [`ENGINE_PROTOCOL`] of the sender.
    pub protocol: u32,
    /// The sender's peer name.
    pub name: String,
    /// A random id of this run of the sender: two processes with one name
    /// have different incarnations.
    pub incarnation: u128,
    /// The largest frame the sender accepts.
    pub max_frame_len: u64,
    /// Addresses the sender listens on.
    pub listen: Vec<String>,
    /// The sender's [`host_key`](crate::transport::host_key): equal keys
    /// mean host-local transports can connect the two.
    pub host_key: String,
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Reject {
    /// The name is held by another live peer (or by the receiver itself).
    DuplicateName(String),
    /// The engine protocols do not match.
    Protocol(u32),
    /// The receiver is shutting down.
    ShuttingDown,
}

/// The body of a [`FrameKind::Error`](crate::wire::FrameKind::Error) frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireError {
    /// No function of this name.
    NoSuchFunction,
    /// The function exists, but not under this provider id.
    NoSuchProvider,
    /// The handler returned an error.
    Handler(String),
    /// The handler panicked.
    Panicked(String),
    /// The arguments could not be decoded.
    BadRequest(String),
    /// The callee rejected the call because too much work is queued.
    Overloaded(String),
    /// The callee refuses the operation.
    Refused(String),
    /// The callee is shutting down.
    ShuttingDown,
    /// The response would exceed the caller's frame limit.
    TooLarge {
        /// The response's size.
        len: u64,
        /// The caller's limit.
        max: u64,
    },
    /// The frame was routed to a peer this callee cannot reach.
    NoSuchPeer(String),
    /// A bulk access was refused.
    Bulk(BulkError),
    /// A relay on the way found no path to the destination.
    Unreachable {
        /// The destination.
        peer: String,
        /// Why, and where.
        reason: String,
    },
    /// A relay lost its link onward after forwarding the request: the
    /// destination may have run it.
    Disconnected {
        /// The destination.
        peer: String,
        /// Why, and where.
        reason: String,
    },
}

impl WireError {
    /// The error the caller sees, with the call's context filled in.
    pub(crate) fn into_error(self, peer: &str, function: &str, provider: u16) -> Error {
        let (peer, function) = (peer.to_owned(), function.to_owned());
        match self {
            Self::NoSuchFunction => Error::NoSuchFunction {
                peer,
                function,
                provider,
            },
            Self::NoSuchProvider => Error::NoSuchProvider {
                peer,
                function,
                provider,
            },
            Self::Handler(message) => Error::Remote {
                peer,
                function,
                message,
            },
            Self::Panicked(message) => Error::Remote {
                peer,
                function,
                message: format!("handler panicked: {message}"),
            },
            Self::BadRequest(message) => Error::Remote {
                peer,
                function,
                message: format!("bad arguments: {message}"),
            },
            Self::Overloaded(message) => Error::Overloaded { peer, message },
            Self::Refused(what) => Error::Refused { peer, what },
            Self::ShuttingDown => Error::ShutDown,
            Self::TooLarge { len, max } => Error::FrameTooLarge { len, max },
            Self::NoSuchPeer(peer) => Error::NoSuchPeer { peer },
            Self::Bulk(error) => Error::Bulk { peer, error },
            Self::Unreachable { peer, reason } => Error::Unreachable { peer, reason },
            Self::Disconnected { peer, reason } => Error::Disconnected { peer, reason },
        }
    }
}
