//! The shared-memory transport for `rpc-core`: [`ShmTransport`] connects two
//! processes on one host through rings in shared memory: a frame crosses
//! with a couple of copies of cache lines and no system call while both
//! sides are awake, large attachments are read in place, and an idle
//! connection costs no CPU.
//!
//! It keeps the [`Transport`](rpc_core::Transport) contract of `rpc-core`:
//!
//! - **Addresses.** `shm://NAME` is an abstract-namespace Unix socket
//!   (`\0rpc-shm/NAME`; no file, so nothing stale after a crash), and
//!   `shm:///abs/path` a socket file (never created or opened through a
//!   symlink, mode 0600, unlinked when the listener goes). `shm://0` picks a
//!   fresh unique name. The socket carries only the handshake and then stays
//!   open: its end is how each side learns, within milliseconds, that the
//!   other process died, however it died.
//! - **Segment.** The connecting side creates one memfd holding both
//!   directions' rings and arenas, seals it against resizing and passes it
//!   with four eventfds over the socket (`SCM_RIGHTS`), after checking with
//!   `SO_PEERCRED` that the listener runs as the same user (the listener
//!   checks the same). Nothing is ever created in `/dev/shm`: the segment
//!   disappears with the last mapping, crash or not.
//! - **Rings.** One single-producer, single-consumer byte ring per
//!   direction, positions published with release/acquire, the producer's
//!   and the consumer's words on separate cache lines. A frame travels as a
//!   record in the layout of [`rpc_core::wire`]; records larger than the
//!   ring stream through it, and the receiver decodes a record only once
//!   all of it has arrived, so it never hands out a torn frame.
//! - **Large attachments.** Attachments (and bodies) of at least
//!   [`ShmConfig::arena_threshold`] bytes are copied once into a per-direction
//!   arena and the receiver reads them in place: the `Bytes` it hands out
//!   point into the mapping, and dropping them frees the blocks for the
//!   sender. When the arena is full they stream through the ring instead.
//! - **Waiting.** A side with nothing to do polls for [`ShmConfig::spin`]
//!   (yielding to the tokio scheduler between looks), then announces that it
//!   sleeps and sleeps on an eventfd registered with tokio. The other side
//!   writes the eventfd only when it sees that announcement, so the fast path
//!   makes no system call, and a fence on each side makes a lost wake-up
//!   impossible (checked with loom).
//! - **Locality.** [`ShmTransport`] reports
//!   [`Locality::SameHost`](rpc_core::transport::Locality): only processes
//!   with the same [`host_key`] reach its listeners, and the engine prefers
//!   it for them.
//! - **Limits.** The receiver checks each record's size against its
//!   [`ConnOptions::max_frame_len`](rpc_core::transport::ConnOptions) from
//!   the record's prefix, before making room for it; a frame over the limit
//!   or a malformed record ends only its own connection. Every position read
//!   from shared memory is checked before use.
//!
//! - **Bulk.** Its [bulk level](rpc_core::BulkTransport) lets a peer on
//!   this host pull a read-only exposed region by mapping a sealed memfd
//!   snapshot of it: no frame and no copy per pull, one small round trip
//!   with the owner (so an unexposed region is refused at once). Writable
//!   regions and pushes use the engine's framed copy. [`ShmStats`] counts
//!   what was mapped.
//!
//! What it deliberately does **not** do: connect processes on different
//! hosts or network namespaces (see [`host_key`] to tell), protect against
//! a peer of the same user that writes into the shared segment while we
//! read it (such a peer can corrupt payloads, never make us read out of
//! bounds; it could ptrace us anyway), encrypt, or run outside a tokio
//! runtime with I/O enabled.
//!
//! # Example
//!
//! ```
//! use rpc_core::transport::{Address, ConnOptions, Transport};
//! use rpc_core::wire::{Frame, FrameKind};
//! use rpc_transport_shm::ShmTransport;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let shm = ShmTransport::new();
//! let opts = ConnOptions::default();
//! let mut listener = shm.listen(&Address::parse("shm://0")?, &opts).await?;
//! let client = shm.connect(listener.local_addr(), &opts).await?;
//! let server = listener.accept().await?;
//!
//! let (mut tx, _rx) = client.split();
//! let (_tx, mut rx) = server.split();
//! tx.send(Frame::new(FrameKind::Control, 7)).await?;
//! assert_eq!(rx.recv().await?.map(|f| f.request_id), Some(7));
//! # Ok::<_, rpc_core::TransportError>(())
//! # }).unwrap();
//! ```
//!
//! # Layout
//!
//! - `config`: [`ShmConfig`].
//! - `error`: [`ShmError`].
//! - `host`: [`host_key`].
//! - `sync`: the atomics, from loom under `cfg(loom)`.
//! - `ring`: the SPSC byte ring and its sleep/wake protocol, generic over its
//!   memory so that loom and miri run it on the heap; its loom models.
//! - `segment`: the memfd, its layout and its validation.
//! - `arena`: the block allocator of large attachments and the `Bytes` that
//!   read them in place.
//! - `record`: frames as ring records (prefix, arena descriptors, wire
//!   frame).
//! - `wait`: spinning, eventfds, and watching the peer's socket.
//! - `unix`: addresses, binding and connecting, `SO_PEERCRED`,
//!   `SCM_RIGHTS`.
//! - `bulk`: the bulk level: read-only regions a peer on this host maps
//!   instead of copying (owner table and bulk server, sealed snapshots,
//!   descriptors).
//! - `conn`: the handshake and an established connection; `listener`; `sink`
//!   and `stream`, the two halves.

#![deny(unsafe_op_in_unsafe_fn)]
#![cfg_attr(loom, allow(dead_code, unused_imports))]

mod error;
mod ring;
mod sync;

#[cfg(not(loom))]
mod arena;
#[cfg(not(loom))]
mod bulk;
#[cfg(not(loom))]
mod config;
#[cfg(not(loom))]
mod conn;
#[cfg(not(loom))]
mod host;
#[cfg(not(loom))]
mod listener;
#[cfg(not(loom))]
mod record;
#[cfg(not(loom))]
mod segment;
#[cfg(not(loom))]
mod sink;
#[cfg(not(loom))]
mod stream;
#[cfg(not(loom))]
mod unix;
#[cfg(not(loom))]
mod wait;

#[cfg(not(loom))]
pub use transport::{ShmStats, ShmTransport};
#[cfg(not(loom))]
pub use {config::ShmConfig, error::ShmError, host::host_key};

#[cfg(not(loom))]
mod transport;
