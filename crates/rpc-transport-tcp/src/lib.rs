//! The TCP transport for `rpc-core`: [`TcpTransport`] serves `tcp://`
//! addresses such as `tcp://127.0.0.1:0`, `tcp://[::1]:4000` or
//! `tcp://node7.cluster:4000`.
//!
//! It keeps the [`Transport`] contract of `rpc-core` on a plain TCP byte
//! stream:
//!
//! - Frames are written in the layout of [`rpc_core::wire`] by
//!   [`FrameCodec`](rpc_core::wire::FrameCodec), one codec per direction and
//!   connection.
//! - Sending copies only headers and small payloads into a write buffer, so
//!   that many small frames coalesce into one write; large bodies and
//!   attachments go out from their own buffers with vectored writes.
//! - Receiving decodes into one reused read buffer and hands out bodies and
//!   small attachments as slices of it, without copying. Attachments of
//!   64 KiB or more are read straight into buffers of their own, aligned to
//!   64 bytes, so that tensors arrive viewable in place. A frame over the
//!   receiver's limit is rejected from its header, before any room is made
//!   for it, and ends that connection only.
//! - Sockets are configured through [`TcpConfig`] (`TCP_NODELAY`, buffer
//!   sizes, keepalive, connect timeout), on connected and accepted sockets
//!   alike.
//!
//! What it deliberately does **not** do: encryption or authentication,
//! reconnecting, heartbeats and handshakes (the engine sends those as
//! control frames), compression, or any framing other than the one in
//! `rpc-core`.
//!
//! # Example
//!
//! ```
//! use rpc_core::transport::{Address, ConnOptions, Transport};
//! use rpc_core::wire::{Frame, FrameKind};
//! use rpc_transport_tcp::TcpTransport;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let tcp = TcpTransport::new();
//! let opts = ConnOptions::default();
//! let mut listener = tcp.listen(&Address::parse("tcp://127.0.0.1:0")?, &opts).await?;
//! let client = tcp.connect(listener.local_addr(), &opts).await?;
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
//! - `config`: [`TcpConfig`] and how it is applied to sockets.
//! - `addr`: parsing `tcp://` addresses, resolving host names, formatting
//!   socket addresses back into URIs.
//! - `listener`: binding and accepting.
//! - `conn`: an established connection and its split into two halves.
//! - `sink`: the sending half, with coalescing and vectored writes.
//! - `stream`: the receiving half, with the zero-copy decoder loop and
//!   aligned direct reads of large attachments.

#![forbid(unsafe_code)]

mod addr;
mod config;
mod conn;
mod listener;
mod sink;
mod stream;

use std::io;
use std::net::SocketAddr;

use async_trait::async_trait;
use rpc_core::TransportError;
use rpc_core::transport::{Address, ConnOptions, Connection, Listener, Transport};
use socket2::{Domain, Protocol, Socket, Type};

pub use config::TcpConfig;

/// The TCP [`Transport`], serving the `tcp` scheme.
///
/// Cloning is cheap; clones share nothing but their configuration.
#[derive(Clone, Debug, Default)]
pub struct TcpTransport {
    config: TcpConfig,
}

impl TcpTransport {
    /// A transport with the default [`TcpConfig`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport that configures its sockets as `config` says.
    pub fn with_config(config: TcpConfig) -> Self {
        Self { config }
    }

    /// The socket configuration in use.
    pub fn config(&self) -> &TcpConfig {
        &self.config
    }

    /// Opens one connection to one resolved address.
    async fn connect_one(&self, target: SocketAddr) -> io::Result<tokio::net::TcpStream> {
        let socket = Socket::new(
            Domain::for_address(target),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        // Buffer sizes must be set before connecting to take effect on the
        // window scale the handshake negotiates.
        self.config.apply(&socket)?;
        socket.set_nonblocking(true)?;
        let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
        socket.connect(target).await
    }
}

#[async_trait]
impl Transport for TcpTransport {
    fn scheme(&self) -> &'static str {
        "tcp"
    }

    async fn listen(
        &self,
        addr: &Address,
        opts: &ConnOptions,
    ) -> Result<Box<dyn Listener>, TransportError> {
        let target = addr::resolve(addr).await?;
        let first = target
            .first()
            .copied()
            .ok_or_else(|| addr::no_addresses(addr))?;
        let listener = listener::TcpListener::bind(first, &self.config, opts)?;
        Ok(Box::new(listener))
    }

    async fn connect(
        &self,
        addr: &Address,
        opts: &ConnOptions,
    ) -> Result<Box<dyn Connection>, TransportError> {
        let targets = addr::resolve(addr).await?;
        let mut last_error = None;
        for target in targets {
            let attempt =
                tokio::time::timeout(self.config.connect_timeout, self.connect_one(target));
            let error = match attempt.await {
                Ok(Ok(stream)) => {
                    let conn =
                        conn::TcpConnection::new(stream, opts.max_frame_len, self.config.spin)
                            .map_err(|e| TransportError::io("connect", e))?;
                    return Ok(Box::new(conn));
                }
                Ok(Err(e)) => e,
                Err(_elapsed) => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "connecting to {target} took longer than {:?}",
                        self.config.connect_timeout
                    ),
                ),
            };
            tracing::debug!(%addr, %target, %error, "tcp connect attempt failed");
            last_error = Some(error);
        }
        Err(match last_error {
            Some(e) => TransportError::io("connect", e),
            None => addr::no_addresses(addr),
        })
    }
}

/// The README's example, compiled and run as a doc test so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExample;
