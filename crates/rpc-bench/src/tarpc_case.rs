//! The tarpc peer: a `#[tarpc::service]` echo over tarpc's serde transport
//! (tokio-util length-delimited frames, bincode through tokio-serde) on
//! TCP, as tarpc's own examples set it up, except that `TCP_NODELAY` is set
//! on both sides (tarpc never sets it; without it every round trip would
//! wait for Nagle's algorithm).
//!
//! The server spawns one task per request, as tarpc's documentation does.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use futures_util::StreamExt as _;
use tarpc::server::{BaseChannel, Channel as _};
use tarpc::tokio_serde::formats::Bincode;
use tokio::runtime::Runtime;

use crate::child::announce;
use crate::harness::{Pipelined, RoundTrip, time_each, windowed};

/// The echo service.
#[tarpc::service]
trait EchoService {
    /// Returns its argument.
    async fn echo(payload: Vec<u8>) -> Vec<u8>;
}

/// The server's implementation.
#[derive(Clone, Copy)]
struct EchoServer;

impl EchoService for EchoServer {
    async fn echo(self, _: tarpc::context::Context, payload: Vec<u8>) -> Vec<u8> {
        payload
    }
}

/// `rpc-bench serve tarpc`: accepts connections and serves each one.
pub(crate) async fn serve() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    announce(&[&listener.local_addr()?.to_string()])?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let transport = tarpc::serde_transport::Transport::from((stream, Bincode::default()));
        let requests = BaseChannel::with_defaults(transport).execute(EchoServer.serve());
        tokio::spawn(requests.for_each(|response| async move {
            tokio::spawn(response);
        }));
    }
}

/// A connected tarpc client.
pub(crate) struct Client {
    client: EchoServiceClient,
    payload: Vec<u8>,
}

impl Client {
    /// Connects to `addr` on `rt`, for `size`-byte echoes.
    pub(crate) fn connect(rt: &Runtime, addr: &str, size: usize) -> Result<Self> {
        rt.block_on(async {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            stream.set_nodelay(true)?;
            let transport = tarpc::serde_transport::Transport::from((stream, Bincode::default()));
            let client =
                EchoServiceClient::new(tarpc::client::Config::default(), transport).spawn();
            let this = Self {
                client,
                payload: vec![0x5a; size],
            };
            echo(&this.client, &this.payload).await?;
            Ok(this)
        })
    }
}

/// One echo call, checking the answer's length.
async fn echo(client: &EchoServiceClient, payload: &[u8]) -> Result<()> {
    let back = client
        .echo(tarpc::context::current(), payload.to_vec())
        .await?;
    ensure!(
        back.len() == payload.len(),
        "tarpc echoed {} bytes",
        back.len()
    );
    Ok(())
}

impl RoundTrip for Client {
    fn run(&mut self, rt: &Runtime, n: usize, out: &mut Vec<u64>) -> Result<()> {
        let (client, payload) = (&self.client, &self.payload);
        time_each(rt, n, out, || echo(client, payload))
    }
}

impl Pipelined for Client {
    fn run(&mut self, rt: &Runtime, calls: usize, window: usize) -> Result<Duration> {
        let (client, payload) = (&self.client, &self.payload);
        windowed(rt, calls, window, || echo(client, payload))
    }
}
