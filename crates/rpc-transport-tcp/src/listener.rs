//! Binding a TCP listener and accepting connections.

use std::io;
use std::net::SocketAddr;

use async_trait::async_trait;
use rpc_core::TransportError;
use rpc_core::transport::{Address, ConnOptions, Connection, Listener};
use socket2::{Domain, Protocol, Socket, Type};

use crate::addr;
use crate::config::TcpConfig;
use crate::conn::TcpConnection;

/// How many connections the kernel queues before `accept` takes them.
const BACKLOG: i32 = 1024;

/// A bound TCP listener.
#[derive(Debug)]
pub(crate) struct TcpListener {
    inner: tokio::net::TcpListener,
    addr: Address,
    config: TcpConfig,
    max_frame_len: u64,
}

impl TcpListener {
    /// Binds `target` with `SO_REUSEADDR`, so that a restarted server can
    /// bind its port again while old connections linger in `TIME_WAIT`.
    pub(crate) fn bind(
        target: SocketAddr,
        config: &TcpConfig,
        opts: &ConnOptions,
    ) -> Result<Self, TransportError> {
        let bind = |e| TransportError::io("bind", e);
        let socket = Socket::new(
            Domain::for_address(target),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .map_err(bind)?;
        socket.set_reuse_address(true).map_err(bind)?;
        // Accepted sockets inherit the buffer sizes, before their handshake.
        config.apply_buffers(&socket).map_err(bind)?;
        socket.set_nonblocking(true).map_err(bind)?;
        socket.bind(&target.into()).map_err(bind)?;
        socket
            .listen(BACKLOG)
            .map_err(|e| TransportError::io("listen", e))?;
        let inner = tokio::net::TcpListener::from_std(socket.into()).map_err(bind)?;
        let local = inner.local_addr().map_err(bind)?;
        Ok(Self {
            inner,
            addr: Address::parse(&addr::uri(local))?,
            config: config.clone(),
            max_frame_len: opts.max_frame_len,
        })
    }

    /// Configures an accepted socket and wraps it.
    fn prepare(&self, stream: tokio::net::TcpStream) -> io::Result<TcpConnection> {
        self.config.apply_to_connected(&stream)?;
        TcpConnection::new(stream, self.max_frame_len, self.config.spin)
    }
}

#[async_trait]
impl Listener for TcpListener {
    fn local_addr(&self) -> &Address {
        &self.addr
    }

    async fn accept(&mut self) -> Result<Box<dyn Connection>, TransportError> {
        loop {
            // Cancel safe: tokio's accept is, and nothing below awaits.
            match self.inner.accept().await {
                Ok((stream, peer)) => match self.prepare(stream) {
                    Ok(conn) => return Ok(Box::new(conn)),
                    // The peer may be gone already; that is no reason to
                    // stop accepting others.
                    Err(error) => {
                        tracing::debug!(%peer, %error, "dropping an accepted tcp connection");
                    }
                },
                Err(error) if is_per_connection(&error) => {
                    tracing::debug!(%error, "a tcp connection failed before accept");
                }
                Err(error) => return Err(TransportError::io("accept", error)),
            }
        }
    }
}

/// Whether an `accept` error concerns one pending connection only, rather
/// than the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}
