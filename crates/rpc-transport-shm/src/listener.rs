//! Listening: a Unix socket, and a task that runs handshakes so that a slow
//! or silent client never holds up `accept`.

use std::io;

use async_trait::async_trait;
use rpc_core::TransportError;
use rpc_core::transport::{Address, Connection, Listener};
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::conn::{self, Ctx, ShmConnection};
use crate::unix::{self, BoundPath, Endpoint};

/// Connections whose handshake finished, waiting for `accept`.
const ACCEPT_QUEUE: usize = 64;
/// Attempts at a fresh name for `shm://0`.
const FRESH_NAME_ATTEMPTS: usize = 8;

/// A bound shared-memory listener.
#[derive(Debug)]
pub(crate) struct ShmListener {
    addr: Address,
    incoming: mpsc::Receiver<ShmConnection>,
    task: JoinHandle<()>,
    /// Unlinks a socket file when the listener goes.
    _path: Option<BoundPath>,
}

impl ShmListener {
    /// Binds `addr` (`shm://0` picks a fresh name) and starts accepting.
    pub(crate) fn bind(addr: &Address, ctx: Ctx) -> Result<Self, TransportError> {
        ctx.config.validate()?;
        let bind_err = |e| TransportError::io("bind", e);
        let (endpoint, listener, path) = match Endpoint::parse(addr)? {
            Endpoint::Name(name) if name == "0" => {
                let mut attempt = 0;
                loop {
                    let endpoint = Endpoint::Name(unix::fresh_name());
                    match unix::bind(&endpoint) {
                        Ok((listener, path)) => break (endpoint, listener, path),
                        Err(e)
                            if e.kind() == io::ErrorKind::AddrInUse
                                && attempt < FRESH_NAME_ATTEMPTS =>
                        {
                            attempt += 1;
                        }
                        Err(e) => return Err(bind_err(e)),
                    }
                }
            }
            endpoint => {
                let (listener, path) = unix::bind(&endpoint).map_err(bind_err)?;
                (endpoint, listener, path)
            }
        };
        let uri = endpoint.uri();
        let (tx, incoming) = mpsc::channel(ACCEPT_QUEUE);
        let task = tokio::spawn(accept_loop(listener, ctx, uri.clone(), tx));
        Ok(Self {
            addr: Address::parse(&uri)?,
            incoming,
            task,
            _path: path,
        })
    }
}

impl Drop for ShmListener {
    fn drop(&mut self) {
        // Closes the socket and drops handshakes in progress.
        self.task.abort();
    }
}

#[async_trait]
impl Listener for ShmListener {
    fn local_addr(&self) -> &Address {
        &self.addr
    }

    // Cancel safe: a connection stays in the channel until taken.
    async fn accept(&mut self) -> Result<Box<dyn Connection>, TransportError> {
        match self.incoming.recv().await {
            Some(conn) => Ok(Box::new(conn)),
            None => Err(TransportError::Closed),
        }
    }
}

/// Accepts sockets and runs their handshakes concurrently, each bounded by
/// the handshake timeout; finished connections go to `tx`.
async fn accept_loop(
    listener: UnixListener,
    ctx: Ctx,
    local: String,
    tx: mpsc::Sender<ShmConnection>,
) {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((sock, _)) => {
                    let (ctx, local) = (ctx.clone(), local.clone());
                    handshakes.spawn(async move {
                        let timeout = ctx.config.handshake_timeout;
                        match tokio::time::timeout(timeout, conn::server(sock, &ctx, &local)).await {
                            Ok(result) => result,
                            Err(_) => Err(crate::ShmError::Handshake("timed out")),
                        }
                    });
                }
                Err(error) => {
                    tracing::debug!(%error, "shm accept failed");
                    // Out of descriptors, say: do not spin on it.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(done) = handshakes.join_next() => match done {
                Ok(Ok(conn)) => {
                    if tx.send(conn).await.is_err() {
                        return;
                    }
                }
                Ok(Err(error)) => tracing::debug!(%error, "refused an shm connection"),
                Err(error) => tracing::debug!(%error, "an shm handshake task failed"),
            },
        }
    }
}
