//! Our cases: `rpc.call::<Blob>("server", "echo", &blob)` through the
//! whole engine, over TCP and over shared memory.
//!
//! An 8 B blob travels inline in the body; larger ones as attachments (on
//! shared memory, from 16 KiB on, through the arena, read in place).
//! Each server process holds engines of one transport only, and each
//! client engine has one transport, so that a TCP connection is never
//! upgraded to a host-local one behind the benchmark's back.

use std::time::Duration;

use anyhow::{Result, ensure};
use rpc_core::{Blob, Rpc};
use rpc_transport_shm::ShmTransport;
use rpc_transport_tcp::{TcpConfig, TcpTransport};
use tokio::runtime::Runtime;

use crate::child::announce;
use crate::harness::{Pipelined, RoundTrip, time_each, windowed};

/// The name every server engine registers under.
const SERVER: &str = "server";
/// The echo function's name.
const ECHO: &str = "echo";
/// How long a connection may take to come up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// `rpc-bench serve ours-tcp`: two engines serving `echo`, on the default
/// TCP transport (whose receivers poll the socket for up to 50 µs before
/// they sleep) and on one that never polls; prints both addresses.
pub(crate) async fn serve_tcp() -> Result<()> {
    let plain = echo_server(TcpTransport::default(), "tcp://127.0.0.1:0").await?;
    let sleeping = echo_server(nospin_transport(), "tcp://127.0.0.1:0").await?;
    announce(&[&plain.1, &sleeping.1])?;
    std::future::pending().await
}

/// `rpc-bench serve ours-shm`: an engine serving `echo` on shared memory
/// (the default [`ShmConfig`](rpc_transport_shm::ShmConfig)).
pub(crate) async fn serve_shm() -> Result<()> {
    let server = echo_server(ShmTransport::default(), "shm://0").await?;
    announce(&[&server.1])?;
    std::future::pending().await
}

/// An engine named [`SERVER`] serving [`ECHO`] on `transport`, listening on
/// `addr`; the engine and the address it listens on.
async fn echo_server(transport: impl rpc_core::Transport, addr: &str) -> Result<(Rpc, String)> {
    let rpc = Rpc::new();
    rpc.set_name(SERVER)?;
    rpc.add_transport(transport);
    rpc.define(ECHO, |b: Blob| async move { Ok(b) })?;
    let addr = rpc.listen(addr).await?;
    Ok((rpc, addr.to_string()))
}

fn nospin_transport() -> TcpTransport {
    TcpTransport::with_config(TcpConfig::default().with_spin(Duration::ZERO))
}

/// Which transport a client engine uses.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Via {
    /// The default TCP transport.
    Tcp,
    /// TCP that never polls before it sleeps (`TcpConfig::spin` zero).
    TcpNoSpin,
    /// Shared memory, default configuration.
    Shm,
}

/// A client engine connected to a server, on the client's runtime.
pub(crate) fn connect(rt: &Runtime, via: Via, addr: &str) -> Result<Rpc> {
    rt.block_on(async {
        // Created inside the runtime, so that the engine runs on it.
        let rpc = Rpc::new();
        match via {
            Via::Tcp => rpc.add_transport(TcpTransport::default()),
            Via::TcpNoSpin => rpc.add_transport(nospin_transport()),
            Via::Shm => rpc.add_transport(ShmTransport::default()),
        }
        let peer = rpc.connect(addr)?.established(CONNECT_TIMEOUT).await?;
        ensure!(peer == SERVER, "connected to {peer:?}, not {SERVER:?}");
        // One call first: a method travels by name on a connection's first
        // call only.
        echo(&rpc, &Blob::from(vec![0; 8])).await?;
        Ok(rpc)
    })
}

/// One echo call, checking the answer's length.
async fn echo(rpc: &Rpc, blob: &Blob) -> Result<()> {
    let back: Blob = rpc.call(SERVER, ECHO, blob).await?;
    ensure!(
        back.len() == blob.len(),
        "echo returned {} bytes for {}",
        back.len(),
        blob.len()
    );
    Ok(())
}

/// Echo round trips of one payload size, one at a time.
pub(crate) struct Echo {
    rpc: Rpc,
    blob: Blob,
}

impl Echo {
    /// Echoes `size` bytes through `rpc`.
    pub(crate) fn new(rpc: &Rpc, size: usize) -> Self {
        Self {
            rpc: rpc.clone(),
            blob: Blob::from(vec![0x5a; size]),
        }
    }
}

impl RoundTrip for Echo {
    fn run(&mut self, rt: &Runtime, n: usize, out: &mut Vec<u64>) -> Result<()> {
        let (rpc, blob) = (&self.rpc, &self.blob);
        time_each(rt, n, out, || echo(rpc, blob))
    }
}

impl Pipelined for Echo {
    fn run(&mut self, rt: &Runtime, calls: usize, window: usize) -> Result<Duration> {
        let (rpc, blob) = (&self.rpc, &self.blob);
        windowed(rt, calls, window, || echo(rpc, blob))
    }
}
