//! The handshake on the Unix socket, and an established connection.
//!
//! ```text
//! client                                   server (acceptor task)
//! connect ───────────────────────────────► accept
//! SO_PEERCRED: same uid?                   SO_PEERCRED: same uid?
//! memfd (sized, sealed), 4 eventfds
//! hello (40 bytes) + SCM_RIGHTS [memfd,
//!   c→s data, c→s room, s→c data, s→c room] ─► check sizes, seals, header,
//!                                             that the eventfds are eventfds;
//!                                             map
//! ◄──────────────────────────────────────── ack (16 bytes)
//! both close the memfd (the mappings keep the segment) and keep the socket
//! open: its end is how each side learns that the other died.
//! ```
//!
//! Hello: magic `RPCSHMh\x01` u64, version u32, client pid u32, ring bytes
//! u64, arena bytes u64, segment length u64. Ack: magic `RPCSHMa\x01` u64,
//! status u32 (0 = accepted), server pid u32. All little-endian.

use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use rpc_core::TransportError;
use rpc_core::transport::{ConnInfo, Connection, FrameSink, FrameStream};
use tokio::net::UnixStream;

use crate::config::ShmConfig;
use crate::error::ShmError;
use crate::segment::{Dir, Geometry, Segment};
use crate::sink::{ShmSink, SinkParts};
use crate::stream::{ShmStream, StreamParts};
use crate::unix::{self, Endpoint};
use crate::wait::{EventFd, Peer, Stats, eventfd};

const HELLO_MAGIC: u64 = u64::from_le_bytes(*b"RPCSHMh\x01");
const ACK_MAGIC: u64 = u64::from_le_bytes(*b"RPCSHMa\x01");
const VERSION: u32 = 1;
const HELLO_LEN: usize = 40;
const ACK_LEN: usize = 16;
/// The memfd and four eventfds.
const FDS: usize = 5;

/// What both ends of a handshake need.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    pub config: ShmConfig,
    pub stats: Arc<Stats>,
    pub max_frame_len: u64,
}

/// Which end of the connection this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// An established connection, before it is split.
pub(crate) struct ShmConnection {
    info: ConnInfo,
    sink: ShmSink,
    stream: ShmStream,
}

impl fmt::Debug for ShmConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmConnection")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Connection for ShmConnection {
    fn info(&self) -> &ConnInfo {
        &self.info
    }

    fn split(self: Box<Self>) -> (Box<dyn FrameSink>, Box<dyn FrameStream>) {
        let Self { sink, stream, .. } = *self;
        (Box::new(sink), Box::new(stream))
    }
}

/// The client's side of the handshake.
pub(crate) async fn client(
    endpoint: &Endpoint,
    ctx: &Ctx,
) -> Result<ShmConnection, TransportError> {
    ctx.config.validate()?;
    let sock = unix::connect(endpoint)
        .await
        .map_err(|e| TransportError::io("connect", e))?;
    let handshake = async {
        unix::check_peer(&sock)?;
        let geometry = Geometry {
            ring_bytes: ctx.config.ring_bytes as u64,
            arena_bytes: ctx.config.arena_bytes as u64,
        };
        let (segment, memfd) = Segment::create(geometry)?;
        let efds = [eventfd()?, eventfd()?, eventfd()?, eventfd()?];
        let mut hello = Vec::with_capacity(HELLO_LEN);
        hello.extend_from_slice(&HELLO_MAGIC.to_le_bytes());
        hello.extend_from_slice(&VERSION.to_le_bytes());
        hello.extend_from_slice(&std::process::id().to_le_bytes());
        hello.extend_from_slice(&geometry.ring_bytes.to_le_bytes());
        hello.extend_from_slice(&geometry.arena_bytes.to_le_bytes());
        hello.extend_from_slice(&(segment.layout().len as u64).to_le_bytes());
        let mut fds = vec![memfd.as_raw_fd()];
        fds.extend(efds.iter().map(AsRawFd::as_raw_fd));
        unix::send_with_fds(&sock, &hello, &fds)
            .await
            .map_err(|source| ShmError::Sys {
                op: "sendmsg",
                source,
            })?;
        // The peer has its own copy now; the mapping keeps the segment.
        drop(memfd);
        let mut ack = [0u8; ACK_LEN];
        unix::recv_exact(&sock, &mut ack)
            .await
            .map_err(|_| ShmError::Handshake("the listener refused the connection"))?;
        if u64_at(&ack, 0) != ACK_MAGIC || u32_at(&ack, 8) != 0 {
            return Err(ShmError::Handshake("the listener refused the connection"));
        }
        let info = ConnInfo {
            transport: "shm",
            local: format!("shm://pid-{}", std::process::id()),
            remote: endpoint.uri(),
        };
        build(Arc::new(segment), efds, sock, Side::Client, ctx, info)
    };
    match tokio::time::timeout(ctx.config.handshake_timeout, handshake).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(ShmError::Handshake("timed out").into()),
    }
}

/// The server's side of the handshake, on an accepted socket.
pub(crate) async fn server(
    sock: UnixStream,
    ctx: &Ctx,
    local: &str,
) -> Result<ShmConnection, ShmError> {
    let pid = unix::check_peer(&sock)?;
    let mut hello = [0u8; HELLO_LEN];
    let fds = unix::recv_with_fds(&sock, &mut hello, FDS)
        .await
        .map_err(|source| ShmError::Sys {
            op: "recvmsg",
            source,
        })?;
    if u64_at(&hello, 0) != HELLO_MAGIC || u32_at(&hello, 8) != VERSION {
        return Err(ShmError::Handshake("not a hello of this version"));
    }
    let geometry = Geometry {
        ring_bytes: u64_at(&hello, 16),
        arena_bytes: u64_at(&hello, 24),
    };
    let Ok::<[OwnedFd; FDS], _>([memfd, a, b, c, d]) = fds.try_into() else {
        return Err(ShmError::Handshake("expected a memfd and four eventfds"));
    };
    let segment = Segment::open(&memfd, geometry)?;
    if segment.layout().len as u64 != u64_at(&hello, 32) {
        return Err(ShmError::Segment("the segment length does not match"));
    }
    drop(memfd);
    let efds = [a, b, c, d];
    if !efds.iter().all(unix::is_eventfd) {
        return Err(ShmError::Handshake("a descriptor is not an eventfd"));
    }
    let mut ack = Vec::with_capacity(ACK_LEN);
    ack.extend_from_slice(&ACK_MAGIC.to_le_bytes());
    ack.extend_from_slice(&0u32.to_le_bytes());
    ack.extend_from_slice(&std::process::id().to_le_bytes());
    unix::send_with_fds(&sock, &ack, &[])
        .await
        .map_err(|source| ShmError::Sys {
            op: "sendmsg",
            source,
        })?;
    let info = ConnInfo {
        transport: "shm",
        local: local.to_owned(),
        remote: format!("shm://pid-{pid}"),
    };
    build(Arc::new(segment), efds, sock, Side::Server, ctx, info)
}

/// Wires the rings, eventfds and socket of one side into its two halves.
fn build(
    segment: Arc<Segment>,
    efds: [OwnedFd; 4],
    sock: UnixStream,
    side: Side,
    ctx: &Ctx,
    info: ConnInfo,
) -> Result<ShmConnection, ShmError> {
    // Eventfds, in hello order: client→server data and room, then
    // server→client data and room. Each side sleeps on the data eventfd of
    // the ring it reads and on the room eventfd of the ring it writes, and
    // writes to the other two.
    let [ts_data, ts_room, tc_data, tc_room] = efds;
    let (tx_dir, rx_dir, room, data_peer, data, room_peer) = match side {
        Side::Client => (
            Dir::ToServer,
            Dir::ToClient,
            ts_room,
            ts_data,
            tc_data,
            tc_room,
        ),
        Side::Server => (
            Dir::ToClient,
            Dir::ToServer,
            tc_room,
            tc_data,
            ts_data,
            ts_room,
        ),
    };
    let peer = Arc::new(Peer::new(sock));
    Stats::bump(&ctx.stats.connections);
    let sink = ShmSink::new(SinkParts {
        segment: segment.clone(),
        dir: tx_dir,
        space: EventFd::new(room)?,
        data_peer,
        peer: peer.clone(),
        spin: ctx.config.spin,
        stats: ctx.stats.clone(),
        max_frame_len: ctx.max_frame_len,
        threshold: ctx.config.arena_threshold,
    });
    let stream = ShmStream::new(StreamParts {
        segment,
        dir: rx_dir,
        data: EventFd::new(data)?,
        space_peer: room_peer,
        peer,
        spin: ctx.config.spin,
        stats: ctx.stats.clone(),
        max_frame_len: ctx.max_frame_len,
    });
    Ok(ShmConnection { info, sink, stream })
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(word)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(word)
}
