//! The conformance cases. Each takes the harness and panics on failure.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use tokio::sync::mpsc;

use super::Harness;
use crate::transport::{Address, ConnOptions, Connection};
use crate::wire::{Frame, FrameKind};
use crate::{Blob, CallOptions, Config, Error, Rpc, TransportError};

/// Long enough never to expire in a passing run.
const LONG: Duration = Duration::from_secs(60);

/// A server and a connected client, with handlers that report what they see.
#[derive(Debug)]
pub struct Fixture {
    /// The peer named `server`.
    pub server: Rpc,
    /// The peer named `client`, connected to the server.
    pub client: Rpc,
    /// The server's bound address.
    pub addr: Address,
    /// Ids of `wait` calls whose handler started.
    pub started: mpsc::UnboundedReceiver<u64>,
    /// Ids of `wait` calls whose handler was cancelled (dropped).
    pub cancelled: mpsc::UnboundedReceiver<u64>,
    /// Values received by the one-way `note` function.
    pub noted: mpsc::UnboundedReceiver<u64>,
}

/// Sends its id when dropped: how a test sees a handler being cancelled.
struct SignalOnDrop(u64, mpsc::UnboundedSender<u64>);

impl Drop for SignalOnDrop {
    fn drop(&mut self) {
        let _ = self.1.send(self.0);
    }
}

/// Starts a server with the test functions and a client connected to it.
///
/// The server defines `empty`, `echo` (a [`Blob`]), `add`, `who` (providers
/// 1 and 2), `wait` (runs until cancelled) and `note` (for one-way calls).
pub async fn fixture(h: &Arc<dyn Harness>, server_config: Config) -> Fixture {
    let server = Rpc::with_config(server_config);
    server.set_name("server").expect("valid name");
    server.add_transport_arc(h.transport());
    server
        .define("empty", |(): ()| async { Ok(()) })
        .expect("define");
    server
        .define("echo", |b: Blob| async move { Ok(b) })
        .expect("define");
    server
        .define("add", |(a, b): (u64, u64)| async move { Ok(a + b) })
        .expect("define");
    server
        .provider(1)
        .define("who", |(): ()| async { Ok(1u16) })
        .expect("define");
    server
        .provider(2)
        .define("who", |(): ()| async { Ok(2u16) })
        .expect("define");
    let (started_tx, started) = mpsc::unbounded_channel();
    let (cancelled_tx, cancelled) = mpsc::unbounded_channel();
    server
        .define_with_context("wait", move |ctx, id: u64| {
            let _ = started_tx.send(id);
            let guard = SignalOnDrop(id, cancelled_tx.clone());
            async move {
                let _guard = guard;
                ctx.cancelled().await;
                Ok(())
            }
        })
        .expect("define");
    let (noted_tx, noted) = mpsc::unbounded_channel();
    server
        .define("note", move |x: u64| {
            let _ = noted_tx.send(x);
            async { Ok(()) }
        })
        .expect("define");
    let addr = server.listen(&h.listen_addr()).await.expect("listen");

    let client = Rpc::new();
    client.set_name("client").expect("valid name");
    client.add_transport_arc(h.transport());
    let peer = client
        .connect(addr.as_str())
        .expect("connect")
        .established(LONG)
        .await
        .expect("connection up");
    assert_eq!(peer, "server");
    Fixture {
        server,
        client,
        addr,
        started,
        cancelled,
        noted,
    }
}

/// A call with no arguments and no result.
pub async fn empty_call(h: Arc<dyn Harness>) {
    let f = fixture(&h, Config::default()).await;
    f.client
        .call::<()>("server", "empty", &())
        .await
        .expect("empty call");
}

/// An 8 MiB argument and result arrive intact.
pub async fn large_call_8mib(h: Arc<dyn Harness>) {
    let f = fixture(&h, Config::default()).await;
    let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let back: Blob = f
        .client
        .call("server", "echo", &Blob::from(data.clone()))
        .await
        .expect("8 MiB echo");
    assert_eq!(back.len(), data.len());
    assert!(
        back.as_ref() == data.as_slice(),
        "8 MiB echo came back changed"
    );
}

/// An unknown function is an error naming it.
pub async fn unknown_function(h: Arc<dyn Harness>) {
    let f = fixture(&h, Config::default()).await;
    match f.client.call::<()>("server", "nope", &()).await {
        Err(Error::NoSuchFunction {
            peer,
            function,
            provider,
        }) => assert_eq!(
            (peer.as_str(), function.as_str(), provider),
            ("server", "nope", 0)
        ),
        other => panic!("expected NoSuchFunction, got {other:?}"),
    }
}

/// Providers dispatch separately; an unknown provider is an error naming it.
pub async fn unknown_provider(h: Arc<dyn Harness>) {
    let f = fixture(&h, Config::default()).await;
    for id in [1u16, 2] {
        let got: u16 = f
            .client
            .call_with("server", "who", &(), CallOptions::default().provider(id))
            .await
            .expect("known provider");
        assert_eq!(got, id);
    }
    match f
        .client
        .call_with::<u16>("server", "who", &(), CallOptions::default().provider(7))
        .await
    {
        Err(Error::NoSuchProvider {
            function, provider, ..
        }) => assert_eq!((function.as_str(), provider), ("who", 7)),
        other => panic!("expected NoSuchProvider, got {other:?}"),
    }
}

/// A call whose handler never answers fails with `Timeout`, and the handler
/// is told to stop.
pub async fn timeout(h: Arc<dyn Harness>) {
    let mut f = fixture(&h, Config::default()).await;
    let opts = CallOptions::default().timeout(Duration::from_millis(200));
    match f
        .client
        .call_with::<()>("server", "wait", &1u64, opts)
        .await
    {
        Err(Error::Timeout { function, .. }) => assert_eq!(function, "wait"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(
        f.cancelled.recv().await,
        Some(1),
        "the handler is cancelled after the timeout"
    );
}

/// Dropping a call's future cancels the remote handler.
pub async fn cancel_reaches_handler(h: Arc<dyn Harness>) {
    let mut f = fixture(&h, Config::default()).await;
    let call = f.client.call_with::<()>(
        "server",
        "wait",
        &7u64,
        CallOptions::default().timeout(LONG),
    );
    let task = tokio::spawn(call);
    assert_eq!(f.started.recv().await, Some(7));
    task.abort();
    assert_eq!(
        f.cancelled.recv().await,
        Some(7),
        "the handler observes the cancel"
    );
    let info = f.client.debug_info();
    assert_eq!(
        info.calls_in_flight, 0,
        "a cancelled call leaves no pending entry"
    );
}

/// One-way calls arrive and get no answer.
pub async fn one_way(h: Arc<dyn Harness>) {
    let mut f = fixture(&h, Config::default()).await;
    for x in [5u64, 6, 7] {
        f.client.notify("server", "note", &x).await.expect("notify");
    }
    for x in [5u64, 6, 7] {
        assert_eq!(f.noted.recv().await, Some(x));
    }
    // A one-way call to an unknown function is dropped by the callee
    // without an answer; the connection stays usable.
    f.client
        .notify("server", "nope", &1u64)
        .await
        .expect("notify unknown");
    f.client
        .call::<()>("server", "empty", &())
        .await
        .expect("still usable");
    assert_eq!(f.client.debug_info().calls_in_flight, 0);
}

/// 1,000 concurrent calls each get their own result.
pub async fn concurrent_calls_do_not_cross(h: Arc<dyn Harness>) {
    let f = fixture(&h, Config::default()).await;
    let calls = (0..1000u64).map(|i| f.client.call::<u64>("server", "add", &(i, i * 1000)));
    let results = join_all(calls).await;
    for (i, r) in results.into_iter().enumerate() {
        let i = i as u64;
        assert_eq!(r.expect("call succeeds"), i * 1001, "result of call {i}");
    }
}

/// A call larger than the callee's frame limit fails with `FrameTooLarge`
/// before it is sent, and the connection stays usable.
pub async fn oversized_call_rejected_before_sending(h: Arc<dyn Harness>) {
    let config = Config {
        max_frame_len: 1 << 20,
        ..Config::default()
    };
    let f = fixture(&h, config).await;
    let big = Blob::from(vec![1u8; 2 << 20]);
    match f.client.call::<Blob>("server", "echo", &big).await {
        Err(Error::FrameTooLarge { max, len }) => {
            assert_eq!(max, 1 << 20);
            assert!(len > 2 << 20);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    let small: Blob = f
        .client
        .call("server", "echo", &Blob::from(vec![2u8; 1000]))
        .await
        .expect("small call");
    assert_eq!(small.len(), 1000);
}

/// A frame over the receiver's limit fails that connection's `recv` with
/// `FrameTooLarge`; another connection to the same listener is unaffected.
pub async fn oversized_frame_closes_only_that_connection(h: Arc<dyn Harness>) {
    let t = h.transport();
    let small = ConnOptions::with_max_frame_len(1 << 20);
    let big = ConnOptions::with_max_frame_len(64 << 20);
    let mut listener = t.listen(&addr(&h), &small).await.expect("listen");
    let a = t
        .connect(listener.local_addr(), &big)
        .await
        .expect("connect a");
    let a_server = listener.accept().await.expect("accept a");
    let b = t
        .connect(listener.local_addr(), &big)
        .await
        .expect("connect b");
    let b_server = listener.accept().await.expect("accept b");
    let (mut a_tx, _a_rx) = a.split();
    let (_as_tx, mut as_rx) = a_server.split();
    let (mut b_tx, _b_rx) = b.split();
    let (_bs_tx, mut bs_rx) = b_server.split();

    let mut frame = Frame::new(FrameKind::OneWay, 1);
    frame.method = Some(Arc::from("m"));
    frame.body = Bytes::from(vec![0u8; 2 << 20]);
    // The peer may hang up while we are still writing; that is fine.
    let _ = a_tx.send(frame).await;
    match as_rx.recv().await {
        Err(TransportError::FrameTooLarge { max, .. }) => assert_eq!(max, 1 << 20),
        Err(TransportError::Codec(crate::CodecError::FrameTooLarge { max, .. })) => {
            assert_eq!(max, 1 << 20)
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    let mut ok = Frame::new(FrameKind::OneWay, 2);
    ok.method = Some(Arc::from("m"));
    b_tx.send(ok.clone()).await.expect("send on b");
    assert_eq!(bs_rx.recv().await.expect("recv on b"), Some(ok));
}

/// When the server goes away, calls waiting on it fail at once with
/// `Disconnected`, long before their deadline.
pub async fn server_drop_fails_pending_calls_fast(h: Arc<dyn Harness>) {
    let mut f = fixture(&h, Config::default()).await;
    let opts = CallOptions::default().timeout(LONG);
    let calls: Vec<_> = (0..10u64)
        .map(|i| tokio::spawn(f.client.call_with::<()>("server", "wait", &i, opts.clone())))
        .collect();
    for _ in 0..10 {
        f.started.recv().await.expect("handler started");
    }
    f.server.shutdown();
    for call in calls {
        match call.await.expect("task") {
            Err(Error::Disconnected { peer, .. }) => assert_eq!(peer, "server"),
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }
    f.server.wait_for_shutdown().await;
}

/// A raw connection of the harness's transport: the client's end and the
/// accepted one.
async fn raw_pair(h: &Arc<dyn Harness>) -> (Box<dyn Connection>, Box<dyn Connection>) {
    let t = h.transport();
    let opts = ConnOptions::default();
    let mut listener = t.listen(&addr(h), &opts).await.expect("listen");
    let client = t
        .connect(listener.local_addr(), &opts)
        .await
        .expect("connect");
    let server = listener.accept().await.expect("accept");
    (client, server)
}

/// A stream's hints to the engine hold: one that says `try_recv` is live
/// finds a frame the peer sent with `try_recv` alone, and only such a
/// stream asks the reader to spin on it (`reader_spin`).
pub async fn receive_hints_keep_their_contract(h: Arc<dyn Harness>) {
    let (client, server) = raw_pair(&h).await;
    let (mut tx, crx) = client.split();
    let (_stx, mut rx) = server.split();
    for stream in [&crx, &rx] {
        assert!(
            stream.reader_spin().is_zero() || stream.try_recv_is_live(),
            "reader_spin {:?} on a stream whose try_recv is not live",
            stream.reader_spin()
        );
    }
    tx.send(Frame::new(FrameKind::Response, 7))
        .await
        .expect("send");
    if rx.try_recv_is_live() {
        // No `recv` in between: the frame must show up by looking alone
        // (the case's watchdog bounds the wait).
        let got = loop {
            if let Some(got) = rx.try_recv() {
                break got;
            }
            tokio::task::yield_now().await;
        };
        let frame = got.expect("no error").expect("a frame, not the end");
        assert_eq!(frame.request_id, 7);
    } else {
        let frame = rx.recv().await.expect("recv").expect("a frame");
        assert_eq!(frame.request_id, 7);
    }
}

/// A stream whose limit was lowered with `set_max_frame_len` (as the
/// engine does until the handshake completes) accepts frames within it and
/// refuses the first frame over it, which ends the stream; raising the
/// limit again lets larger frames through.
pub async fn a_lowered_frame_limit_holds_from_the_next_frame(h: Arc<dyn Harness>) {
    let frame = |id: u64, len: usize| {
        let mut f = Frame::new(FrameKind::OneWay, id);
        f.method = Some(Arc::from("m"));
        f.body = Bytes::from(vec![7u8; len]);
        f
    };
    // Lowered, then raised: a larger frame passes.
    let (client, server) = raw_pair(&h).await;
    let (mut tx, _rx) = client.split();
    let (_stx, mut rx) = server.split();
    rx.set_max_frame_len(4 << 10);
    rx.set_max_frame_len(1 << 20);
    tx.send(frame(1, 64 << 10)).await.expect("send");
    let got = rx.recv().await.expect("recv").expect("a frame");
    assert_eq!(got.body.len(), 64 << 10);

    // Lowered: a small frame passes, the large one is refused and the
    // stream ends.
    let (client, server) = raw_pair(&h).await;
    let (mut tx, _rx) = client.split();
    let (_stx, mut rx) = server.split();
    rx.set_max_frame_len(4 << 10);
    tx.send(frame(1, 100)).await.expect("send small");
    assert_eq!(
        rx.recv().await.expect("recv").expect("a frame").request_id,
        1
    );
    // The peer may hang up while we are still writing; that is fine.
    let _ = tx.send(frame(2, 64 << 10)).await;
    match rx.recv().await {
        Err(TransportError::FrameTooLarge { max, .. }) => assert_eq!(max, 4 << 10),
        Err(TransportError::Codec(crate::CodecError::FrameTooLarge { max, .. })) => {
            assert_eq!(max, 4 << 10)
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert!(
        !matches!(rx.recv().await, Ok(Some(_))),
        "the stream goes on after a refused frame"
    );
}

/// Frames arrive whole and in order, and a closed sink ends the stream with
/// `Ok(None)`.
pub async fn frames_in_order_then_clean_close(h: Arc<dyn Harness>) {
    let (client, server) = raw_pair(&h).await;
    let (mut tx, _rx) = client.split();
    let (_stx, mut rx) = server.split();
    let sender = tokio::spawn(async move {
        for i in 0..1000u64 {
            let mut f = Frame::new(
                if i % 2 == 0 {
                    FrameKind::Request
                } else {
                    FrameKind::Response
                },
                i,
            );
            if i % 2 == 0 {
                f.method = Some(Arc::from(format!("m{}", i % 7)));
                f.deadline = Some(Duration::from_micros(i));
            }
            f.body = Bytes::from(i.to_le_bytes().to_vec());
            tx.feed(f).await.expect("feed");
            if i % 10 == 0 {
                tx.flush().await.expect("flush");
            }
        }
        tx.close().await.expect("close");
    });
    for i in 0..1000u64 {
        let f = rx
            .recv()
            .await
            .expect("recv")
            .expect("a frame, not the end");
        assert_eq!(f.request_id, i);
        assert_eq!(f.body.as_ref(), i.to_le_bytes());
        if i % 2 == 0 {
            assert_eq!(f.method.as_deref(), Some(format!("m{}", i % 7).as_str()));
            assert_eq!(f.deadline, Some(Duration::from_micros(i)));
        }
    }
    assert_eq!(rx.recv().await.expect("clean end"), None);
    sender.await.expect("sender");
}

/// Attachments of any size arrive intact and in order.
pub async fn attachments_intact(h: Arc<dyn Harness>) {
    let t = h.transport();
    let opts = ConnOptions::default();
    let mut listener = t.listen(&addr(&h), &opts).await.expect("listen");
    let client = t
        .connect(listener.local_addr(), &opts)
        .await
        .expect("connect");
    let server = listener.accept().await.expect("accept");
    let (mut tx, _rx) = client.split();
    let (_stx, mut rx) = server.split();
    let mut f = Frame::new(FrameKind::Response, 9);
    f.body = Bytes::from_static(b"body");
    f.attachments = vec![
        Bytes::new(),
        Bytes::from(vec![7u8; 100 << 10]),
        Bytes::from(
            (0..3 << 20)
                .map(|i: u32| (i % 253) as u8)
                .collect::<Vec<u8>>(),
        ),
        Bytes::from_static(b"x"),
    ];
    let expected = f.clone();
    let sender = tokio::spawn(async move { tx.send(f).await });
    assert_eq!(rx.recv().await.expect("recv"), Some(expected));
    sender.await.expect("sender").expect("send");
}

/// A listener reports an address a client can connect to.
pub async fn listener_reports_bound_address(h: Arc<dyn Harness>) {
    let t = h.transport();
    let opts = ConnOptions::default();
    let mut listener = t.listen(&addr(&h), &opts).await.expect("listen");
    let bound = listener.local_addr().clone();
    assert_eq!(bound.scheme(), t.scheme());
    assert_ne!(
        bound.to_string(),
        h.listen_addr(),
        "the wildcard endpoint is resolved"
    );
    let client = t
        .connect(&bound, &opts)
        .await
        .expect("connect to the reported address");
    let server = listener.accept().await.expect("accept");
    assert_eq!(client.info().transport, t.scheme());
    assert_eq!(server.info().transport, t.scheme());
}

fn addr(h: &Arc<dyn Harness>) -> Address {
    Address::parse(&h.listen_addr()).expect("the harness gives a valid address")
}
