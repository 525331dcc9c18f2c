//! The tonic peer: unary gRPC `bench.Echo/Echo` over one HTTP/2
//! connection, with prost messages.
//!
//! The message is derived with `prost::Message` and the service and client
//! are written the way `tonic-build` would generate them (a tower
//! `Service` dispatching on the path to `tonic::server::Grpc::unary`, and
//! `tonic::client::Grpc::unary` on a `Channel`), so no `protoc` and no
//! build script are needed. Both sides set `TCP_NODELAY` (tonic's client
//! default; the server's accepted sockets are set through `TcpIncoming`).

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use tokio::runtime::Runtime;
use tonic::body::Body;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic_prost::ProstCodec;

use crate::child::announce;
use crate::harness::{Pipelined, RoundTrip, time_each, windowed};

/// The request and the answer of `Echo`.
#[derive(Clone, PartialEq, prost::Message)]
struct EchoMessage {
    /// The bytes echoed.
    #[prost(bytes = "vec", tag = "1")]
    payload: Vec<u8>,
}

/// The service's name, as in `package bench; service Echo`.
const SERVICE: &str = "bench.Echo";
/// The method's path.
const ECHO_PATH: &str = "/bench.Echo/Echo";

/// The echo service, as `tonic-build` would generate its server.
#[derive(Clone, Copy, Debug)]
struct EchoServer;

impl tonic::server::NamedService for EchoServer {
    const NAME: &'static str = SERVICE;
}

/// The unary method's handler.
struct EchoMethod;

impl tonic::server::UnaryService<EchoMessage> for EchoMethod {
    type Response = EchoMessage;
    type Future = BoxFuture<tonic::Response<EchoMessage>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<EchoMessage>) -> Self::Future {
        Box::pin(async move { Ok(tonic::Response::new(request.into_inner())) })
    }
}

impl Service<http::Request<Body>> for EchoServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() == ECHO_PATH {
            Box::pin(async move {
                let mut grpc =
                    tonic::server::Grpc::new(ProstCodec::<EchoMessage, EchoMessage>::default());
                Ok(grpc.unary(EchoMethod, request).await)
            })
        } else {
            Box::pin(async move { Ok(tonic::Status::unimplemented("no such method").into_http()) })
        }
    }
}

/// `rpc-bench serve tonic`: serves `bench.Echo` on one listener.
pub(crate) async fn serve() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    announce(&[&listener.local_addr()?.to_string()])?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .serve_with_incoming(EchoServer, incoming)
        .await
        .context("serving gRPC")
}

/// A tonic client on one HTTP/2 connection.
pub(crate) struct Client {
    grpc: tonic::client::Grpc<Channel>,
    payload: Vec<u8>,
}

impl Client {
    /// Connects to `addr` (`IP:PORT`) on `rt`, for `size`-byte echoes.
    pub(crate) fn connect(rt: &Runtime, addr: &str, size: usize) -> Result<Self> {
        rt.block_on(async {
            let channel = Endpoint::from_shared(format!("http://{addr}"))?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            let this = Self {
                grpc: tonic::client::Grpc::new(channel),
                payload: vec![0x5a; size],
            };
            echo(&this.grpc, &this.payload).await?;
            Ok(this)
        })
    }
}

/// One unary call on a clone of `grpc` (clones share the connection),
/// checking the answer's length.
async fn echo(grpc: &tonic::client::Grpc<Channel>, payload: &[u8]) -> Result<()> {
    let mut grpc = grpc.clone();
    grpc.ready().await?;
    let request = tonic::Request::new(EchoMessage {
        payload: payload.to_vec(),
    });
    let codec = ProstCodec::<EchoMessage, EchoMessage>::default();
    let back = grpc
        .unary(request, PathAndQuery::from_static(ECHO_PATH), codec)
        .await?
        .into_inner();
    ensure!(
        back.payload.len() == payload.len(),
        "tonic echoed {} bytes",
        back.payload.len()
    );
    Ok(())
}

impl RoundTrip for Client {
    fn run(&mut self, rt: &Runtime, n: usize, out: &mut Vec<u64>) -> Result<()> {
        let (grpc, payload) = (&self.grpc, &self.payload);
        time_each(rt, n, out, || echo(grpc, payload))
    }
}

impl Pipelined for Client {
    fn run(&mut self, rt: &Runtime, calls: usize, window: usize) -> Result<Duration> {
        let (grpc, payload) = (&self.grpc, &self.payload);
        windowed(rt, calls, window, || echo(grpc, payload))
    }
}
