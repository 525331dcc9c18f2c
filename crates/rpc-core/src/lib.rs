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
//! only transport here is the in-memory [`MemTransport`], for tests.
//!
//! # Layout
//!
//! - [`wire`]: frames and the byte codec (pure, no I/O).
//! - [`body`]: serde bodies with bincode and out-of-band attachments ([`Blob`]).
//! - [`transport`]: the [`Transport`] trait, its contract, addresses, and the
//!   in-memory transport.
//! - [`deadline`] and [`pending`]: deadline budgets and the table of pending
//!   calls (pure, time passed in).
//! - [`Rpc`] and friends: the peer engine.
//! - `testing` (feature `test-util`): the transport conformance suite.

pub mod error;
pub mod transport;
pub mod wire;

pub use error::{CodecError, Error, TransportError};
pub use transport::{Address, MemNetwork, MemTransport, Transport};
