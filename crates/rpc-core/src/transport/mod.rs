//! The [`Transport`] trait: how frames move between two processes.
//!
//! A transport listens on and connects to addresses written as URIs
//! (`tcp://127.0.0.1:0`, `mem://server`). A connection is split into a
//! [`FrameSink`] and a [`FrameStream`] that move whole [`Frame`]s.
//!
//! # Contract
//!
//! Every transport must keep these promises; the conformance suite in
//! `rpc_core::testing` (feature `test-util`) checks them, and every transport
//! crate runs it.
//!
//! - **Whole frames, in order.** Frames fed to a sink arrive at the peer's
//!   stream whole, in the order they were fed, never duplicated, never torn.
//! - **Flush delivers.** After [`FrameSink::flush`] returns `Ok`, every fed
//!   frame has been handed to the operating system or the peer; `feed` alone
//!   may buffer.
//! - **Clean end.** [`FrameStream::recv`] returns `Ok(None)` once, after the
//!   peer closed its sink (or dropped it) and every frame sent before was
//!   received. An abrupt end (a torn frame, a reset) is an `Err`.
//! - **Limits.** A frame whose [`Frame::wire_len`] exceeds the receiving
//!   side's [`ConnOptions::max_frame_len`] makes `recv` return
//!   [`TransportError::FrameTooLarge`] (or a codec error naming the size)
//!   without allocating the frame, and closes only that connection. The
//!   sender may also refuse to feed a frame over its own limit.
//! - **Cancel safety.** Dropping a `recv` future loses no frame. Dropping a
//!   `feed` or `flush` future may leave the connection broken; the engine
//!   never does it.
//! - **Addresses.** [`Listener::local_addr`] reports the address actually
//!   bound (with port 0 resolved), which a peer can pass to `connect`.
//! - **No copies of attachments.** Attachments are moved without being copied
//!   into the body; a receiver may hand them out as slices of a larger buffer.
//! - **Independence.** A failure on one connection never affects another.
//! - **Object safety.** The engine holds transports as `Arc<dyn Transport>`;
//!   one engine can hold several at once, chosen by the address's scheme.
//!
//! # Example
//!
//! ```
//! use rpc_core::transport::{Address, ConnOptions, MemNetwork, Transport};
//! use rpc_core::wire::{Frame, FrameKind};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let net = MemNetwork::new();
//! let transport = net.transport();
//! let opts = ConnOptions::default();
//! let mut listener = transport.listen(&Address::parse("mem://doc")?, &opts).await?;
//! let client = transport.connect(listener.local_addr(), &opts).await?;
//! let server = listener.accept().await?;
//!
//! let (mut tx, _rx) = client.split();
//! let (_tx, mut rx) = server.split();
//! tx.send(Frame::new(FrameKind::OneWay, 7)).await?;
//! assert_eq!(rx.recv().await?.map(|f| f.request_id), Some(7));
//! # Ok::<_, rpc_core::TransportError>(())
//! # }).unwrap();
//! ```

mod address;
mod mem;
mod spin;

use std::fmt;

use async_trait::async_trait;

pub use address::Address;
pub use mem::{MemNetwork, MemTransport};
pub(crate) use spin::requeue;
pub use spin::{MAX_SKIPPED, RESUME_AFTER_SLEEPS_UNDER, Spinner, YIELD_EVERY, spin_until};

use crate::error::TransportError;
use crate::wire::{DEFAULT_MAX_FRAME_LEN, Frame};

/// Options a transport applies to a listener or a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnOptions {
    /// The largest frame this side accepts, in bytes on the wire.
    pub max_frame_len: u64,
}

impl ConnOptions {
    /// Options with the given frame size limit.
    pub fn with_max_frame_len(max_frame_len: u64) -> Self {
        Self { max_frame_len }
    }
}

impl Default for ConnOptions {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }
}

/// Which peers a transport can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Locality {
    /// Peers anywhere on the network (TCP, InfiniBand).
    Network,
    /// Only peers on the same host, in the same network namespace (shared
    /// memory, or the in-process transport). The engine prefers such a
    /// transport for a peer whose [`host_key`] matches its own.
    SameHost,
}

/// A transport-independent identity of this host and network namespace:
/// the kernel's boot id and the inode of the network namespace. Two
/// processes with the same key can reach each other's host-local
/// transports. Empty where the system does not tell.
pub fn host_key() -> String {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let boot = boot.trim();
        if boot.is_empty() {
            return String::new();
        }
        #[cfg(unix)]
        let netns = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino())
        };
        #[cfg(not(unix))]
        let netns = 0u64;
        format!("{boot}/{netns}")
    })
    .clone()
}

/// A way to move frames between processes. See the [module docs](self) for the
/// contract every implementation keeps.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// The URI scheme this transport serves, such as `"tcp"`.
    fn scheme(&self) -> &'static str;

    /// Which peers this transport reaches. The default is
    /// [`Locality::Network`].
    fn locality(&self) -> Locality {
        Locality::Network
    }

    /// Starts listening on `addr`. Returns once the address is bound.
    async fn listen(
        &self,
        addr: &Address,
        opts: &ConnOptions,
    ) -> Result<Box<dyn Listener>, TransportError>;

    /// Opens a connection to a listener at `addr`.
    async fn connect(
        &self,
        addr: &Address,
        opts: &ConnOptions,
    ) -> Result<Box<dyn Connection>, TransportError>;

    /// The transport's bulk level, if it has one: how it moves exposed
    /// regions ([`Rpc::expose`](crate::Rpc::expose)) without framing them,
    /// by mapping (shared memory) or by RDMA (InfiniBand). The default is
    /// `None`, and the engine then copies bulk data through frames, as
    /// attachments.
    fn bulk(&self) -> Option<&dyn BulkTransport> {
        None
    }
}

/// The bulk level of a [`Transport`]: moves bytes of a region a peer
/// exposed without framing them.
///
/// Contract:
///
/// - [`register`](Self::register) is called once per exposed region and
///   transport, on the owner; the descriptor it returns travels to peers
///   inside the [`BulkHandle`](crate::BulkHandle), and is opaque to the
///   engine. `None` leaves the region to the framed copy.
/// - [`get`](Self::get) and [`put`](Self::put) run on the peer holding the
///   handle. The engine has checked the range against the handle's length
///   and, for `put`, that the handle is writable; the owner's side must
///   still check both against the region itself, since a handle can be
///   forged. `Ok(None)` / `Ok(false)` mean "not from here" (say, no
///   connection of this transport to the owner): the engine then uses the
///   framed copy, as it also does after an `Err`.
/// - [`deregister`](Self::deregister) is called when the region is
///   unexposed; later accesses must fail.
#[async_trait]
pub trait BulkTransport: Send + Sync + fmt::Debug {
    /// Makes the region exposed under `id` reachable by this transport, and
    /// returns its descriptor, or `None` to leave it to the framed copy.
    fn register(
        &self,
        id: u64,
        region: &crate::BulkRegion,
        mode: crate::BulkMode,
    ) -> Option<bytes::Bytes>;

    /// Forgets the region registered under `id`.
    fn deregister(&self, id: u64);

    /// Reads `len` bytes at `offset` of the region `descriptor` describes,
    /// owned by the peer named `owner`.
    async fn get(
        &self,
        owner: &str,
        descriptor: &[u8],
        offset: u64,
        len: u64,
    ) -> Result<Option<bytes::Bytes>, TransportError>;

    /// Writes `data` at `offset` of the region `descriptor` describes.
    async fn put(
        &self,
        owner: &str,
        descriptor: &[u8],
        offset: u64,
        data: bytes::Bytes,
    ) -> Result<bool, TransportError>;
}

/// A bound listener that accepts connections.
#[async_trait]
pub trait Listener: Send + fmt::Debug {
    /// The address actually bound, usable by peers to connect.
    fn local_addr(&self) -> &Address;

    /// Waits for the next connection. Cancel safe: dropping the future loses
    /// no connection.
    async fn accept(&mut self) -> Result<Box<dyn Connection>, TransportError>;
}

/// An established connection, before it is split into its two directions.
pub trait Connection: Send + fmt::Debug {
    /// Addresses and the transport of this connection.
    fn info(&self) -> &ConnInfo;

    /// Splits the connection into a sending and a receiving half, which can
    /// be used from different tasks.
    fn split(self: Box<Self>) -> (Box<dyn FrameSink>, Box<dyn FrameStream>);
}

/// Describes one connection, for logs and `debug_info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    /// The scheme of the transport that carries the connection.
    pub transport: &'static str,
    /// This side's address.
    pub local: String,
    /// The other side's address.
    pub remote: String,
}

/// The sending half of a connection.
#[async_trait]
pub trait FrameSink: Send {
    /// Queues a frame for sending. A transport may write it at once or keep it
    /// until [`flush`](Self::flush), so that small frames are coalesced.
    async fn feed(&mut self, frame: Frame) -> Result<(), TransportError>;

    /// Writes out every fed frame.
    async fn flush(&mut self) -> Result<(), TransportError>;

    /// Feeds a frame and flushes.
    async fn send(&mut self, frame: Frame) -> Result<(), TransportError> {
        self.feed(frame).await?;
        self.flush().await
    }

    /// Flushes and closes the sending direction; the peer's stream then ends
    /// with `Ok(None)`.
    async fn close(&mut self) -> Result<(), TransportError>;

    /// Queues a frame like [`feed`](Self::feed) if that can be done without
    /// waiting: `Ok(None)` when queued, `Ok(Some(frame))` to hand the frame
    /// back for `feed` (the default: every frame goes through `feed`).
    ///
    /// Contract: never waits; a frame handed back was not queued; an error
    /// means what it means from `feed`.
    fn try_feed(&mut self, frame: Frame) -> Result<Option<Frame>, TransportError> {
        Ok(Some(frame))
    }

    /// Writes out what is queued if that can be done without waiting:
    /// `Ok(true)` when everything is written, `Ok(false)` when some remains
    /// for [`flush`](Self::flush) (the default).
    ///
    /// Contract: never waits; partial progress is kept; an error means what
    /// it means from `flush`.
    fn try_flush(&mut self) -> Result<bool, TransportError> {
        Ok(false)
    }

    /// How many frames of a burst the engine feeds before it flushes the
    /// first time; it flushes again after twice as many, then four times as
    /// many, and so on, and at the end of the burst (the default is
    /// [`FIRST_WRITE`]).
    ///
    /// A small first write suits a peer that sleeps between messages on a
    /// machine whose idle CPUs halt: it wakes up (tens of microseconds)
    /// while the rest of the burst is made. A peer that polls is awake
    /// already and gains more from fewer, larger writes when each write is
    /// a system call.
    fn first_write(&self) -> usize {
        FIRST_WRITE
    }
}

/// The default of [`FrameSink::first_write`]: frames of a burst before its
/// first flush.
pub const FIRST_WRITE: usize = 16;

/// The receiving half of a connection.
#[async_trait]
pub trait FrameStream: Send {
    /// Receives the next frame; `Ok(None)` after a clean close. Cancel safe.
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError>;

    /// Sets the largest frame this stream accepts from now on, in place of
    /// [`ConnOptions::max_frame_len`]. The engine keeps it small until the
    /// handshake has completed, so that a peer that never says hello cannot
    /// make it hold a large buffer.
    ///
    /// Contract: every frame whose decoding starts after the call is held
    /// to the new limit; one over it fails `recv` with `FrameTooLarge` (or
    /// a codec error saying so) from its header, before anything of its
    /// size is allocated, and closes the connection.
    fn set_max_frame_len(&mut self, max: u64);

    /// The next frame if it can be had at once, without waiting: `None` when
    /// none is ready. The engine calls it after each frame to dispatch every
    /// request already received before writing the answers.
    ///
    /// Contract: never waits; returns what [`recv`](Self::recv) would return
    /// if that completed on its first poll, and leaves the stream as `recv`
    /// would. The default polls `recv` once; a transport that buffers whole
    /// frames can answer from its buffer without constructing a future.
    fn try_recv(&mut self) -> Option<Result<Option<Frame>, TransportError>> {
        futures_util::FutureExt::now_or_never(self.recv())
    }

    /// Whether a caller may wait for a frame by calling
    /// [`try_recv`](Self::try_recv) in a loop, which the engine does for a
    /// caller outside any task (see [`Config::caller_spin`](crate::Config::caller_spin)):
    /// `try_recv` sees a frame as soon as the peer has sent it (it looks at
    /// the shared ring or queue itself, not only at what an earlier `recv`
    /// buffered), and the transport's configuration lets receivers spin.
    /// The default is `false`.
    ///
    /// Contract: a stream that says `true` finds, with `try_recv` alone,
    /// every frame the peer sends, without a `recv` (or the runtime's
    /// I/O driver) in between; a transport configured never to spin says
    /// `false`.
    fn try_recv_is_live(&self) -> bool {
        false
    }

    /// How long the engine's reader may look for the next frame by calling
    /// [`try_recv`](Self::try_recv) in a loop before it calls
    /// [`recv`](Self::recv) (the engine caps it at a few tens of
    /// microseconds). Worth it on a stream whose `recv` would spin anyway:
    /// the loop builds no receive per frame. A stream whose `recv` sleeps at
    /// once gains nothing and should say zero (the default): the loop would
    /// keep its thread's run queue busy, and a current-thread runtime polls
    /// its `block_on` future only once that queue drains.
    ///
    /// Contract: non-zero only if [`try_recv_is_live`](Self::try_recv_is_live).
    fn reader_spin(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}
