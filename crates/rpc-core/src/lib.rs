//! `rpc-core`: the wire, the [`Transport`] trait and the named-peer RPC
//! engine [`Rpc`].
//!
//! Peers are named by string. A peer [`define`](Rpc::define)s functions,
//! listens and connects on any number of transports, and calls other peers'
//! functions by name, with deadlines, cancellation, provider ids and
//! one-way notifications.
//!
//! This crate deliberately knows **no concrete network transport**: TCP,
//! shared memory and InfiniBand live in their own crates and plug in through
//! [`Transport`]. It has no dependency on socket2, memmap2 or rdma-sys. The
//! only transport here is the in-memory [`MemTransport`], for tests. It does
//! not relay calls between peers that are not connected (discovery does).
//!
//! # Layout
//!
//! - [`wire`]: frames and the byte codec (pure, no I/O).
//! - [`body`]: serde bodies with bincode and out-of-band attachments ([`Blob`]).
//! - [`transport`]: the [`Transport`] trait, its contract, addresses, and the
//!   in-memory transport.
//! - [`pending`]: the table of pending calls and deadline budgets (pure).
//! - [`Rpc`] and friends: the peer engine (`engine/`).
//! - `testing` (feature `test-util`): the transport conformance suite and
//!   the fuzz harness.

#![forbid(unsafe_code)]

pub mod body;
mod engine;
pub mod error;
pub mod pending;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod transport;
pub mod wire;

pub use body::Blob;
pub use engine::{
    BulkHandle, BulkMode, BulkRegion, CallContext, CallFuture, CallOptions, Canceller, Config,
    Connecting, ConnectionDebug, DebugInfo, FunctionDebug, HandlerError, PeerDebug, Provider,
    Queue, Responder, Router, Rpc, TransportPolicy,
};
pub use error::{BulkError, CodecError, Error, TransportError};
pub use transport::{Address, BulkTransport, MemNetwork, MemTransport, Transport};
