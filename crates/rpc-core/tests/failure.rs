//! Peers that die: calls to them fail fast on local evidence, a peer that
//! comes back is reached again without waiting out the backoff, and lost
//! peers are forgotten. On the in-memory network with paused time: a cut
//! link resets its connections and refuses new ones, as a killed process's
//! host would.

use std::time::Duration;

use rpc_core::{CallOptions, Config, Error, HandlerError, MemNetwork, Rpc};
use tokio::time::Instant;

async fn engine(net: &MemNetwork, name: &str) -> Rpc {
    let rpc = Rpc::new();
    rpc.set_name(name).unwrap();
    rpc.add_transport(net.transport_on(name));
    rpc.listen(&format!("mem://{name}")).await.unwrap();
    rpc.define("echo", |s: String| async move { Ok::<_, HandlerError>(s) })
        .unwrap();
    rpc
}

/// `from` connects to `to` (and keeps reconnecting) and waits for the link.
async fn link(from: &Rpc, to: &str) {
    from.connect(&format!("mem://{to}"))
        .unwrap()
        .established(Duration::from_secs(5))
        .await
        .unwrap();
}

/// A call with a 30 s deadline, and how long it took.
async fn timed_echo(rpc: &Rpc, peer: &str) -> (Result<String, Error>, Duration) {
    let started = Instant::now();
    let r = rpc
        .call_with(
            peer,
            "echo",
            "hi",
            CallOptions::default().timeout(Duration::from_secs(30)),
        )
        .await;
    (r, started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn calls_to_a_peer_whose_reconnect_is_refused_fail_at_once() {
    let net = MemNetwork::new();
    let a = engine(&net, "a").await;
    let _b = engine(&net, "b").await;
    link(&a, "b").await;
    assert_eq!(timed_echo(&a, "b").await.0.unwrap(), "hi");

    net.cut("a", "b");
    // A call made at the very instant of the loss may still go out on the
    // dying connection (and fail as Disconnected); the test is about the
    // calls after a's reader noticed.
    tokio::time::sleep(Duration::from_millis(1)).await;
    // Every later call fails well inside a second, naming the peer, the
    // loss and the refused reconnect; none waits for its 30 s deadline.
    for _ in 0..3 {
        let (r, took) = timed_echo(&a, "b").await;
        assert!(took < Duration::from_secs(1), "took {took:?}: {r:?}");
        match r {
            Err(e @ Error::Unreachable { .. }) => {
                let Error::Unreachable { peer, reason } = &e else {
                    unreachable!()
                };
                assert_eq!(peer, "b");
                assert!(reason.contains("connection lost"), "{reason}");
                assert!(reason.contains("reconnecting failed"), "{reason}");
                assert!(e.never_delivered());
            }
            other => panic!("expected Unreachable, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_left_for_good_fails_calls_at_once() {
    let net = MemNetwork::new();
    let a = engine(&net, "a").await;
    let b = engine(&net, "b").await;
    link(&a, "b").await;
    b.shutdown();
    b.wait_for_shutdown().await;
    let (r, took) = timed_echo(&a, "b").await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(
        matches!(&r, Err(Error::Unreachable { peer, .. }) if peer == "b"),
        "{r:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_peer_we_cannot_redial_gets_a_grace_then_fails() {
    let net = MemNetwork::new();
    let a = engine(&net, "a").await;
    let b = engine(&net, "b").await;
    // b dialed a: a has no address to reconnect to.
    link(&b, "a").await;
    assert_eq!(timed_echo(&a, "b").await.0.unwrap(), "hi");
    net.cut("a", "b");
    tokio::time::sleep(Duration::from_millis(1)).await;
    let (r, took) = timed_echo(&a, "b").await;
    let grace = Config::default().reconnect_grace;
    assert!(took <= grace, "took {took:?}, grace {grace:?}");
    assert!(took >= grace / 2, "failed before the grace: {took:?}");
    assert!(
        matches!(&r, Err(Error::Unreachable { reason, .. }) if reason.contains("did not come back")),
        "{r:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_comes_back_is_called_without_waiting_out_the_backoff() {
    let net = MemNetwork::new();
    let a = engine(&net, "a").await;
    let _b = engine(&net, "b").await;
    link(&a, "b").await;
    net.cut("a", "b");
    // Long enough for the reconnect backoff to reach its 5 s cap.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(timed_echo(&a, "b").await.0.is_err());
    net.heal("a", "b");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The last failed attempt is stale: the call asks for a new one now and
    // waits for it, instead of failing or waiting for the next backoff.
    let (r, took) = timed_echo(&a, "b").await;
    assert_eq!(r.unwrap(), "hi");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test(start_paused = true)]
async fn peers_that_left_are_forgotten_after_a_while() {
    let net = MemNetwork::new();
    let server = engine(&net, "server").await;
    for i in 0..20 {
        let client = engine(&net, &format!("client-{i}")).await;
        link(&client, "server").await;
        let _: String = client.call("server", "echo", "x").await.unwrap();
        client.shutdown();
        client.wait_for_shutdown().await;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(server.debug_info().peers.len(), 20);
    tokio::time::sleep(Config::default().forget_after + Duration::from_secs(1)).await;
    let left = server.debug_info().peers.len();
    assert_eq!(left, 0, "{}", server.debug_info());
}

/// A raw connection to `mem://server`, past the engine.
async fn raw(net: &MemNetwork) -> Box<dyn rpc_core::transport::Connection> {
    use rpc_core::Transport;
    let t = net.transport_on("raw");
    let addr = rpc_core::transport::Address::parse("mem://server").unwrap();
    t.connect(&addr, &rpc_core::transport::ConnOptions::default())
        .await
        .unwrap()
}

/// What the engine sends on a raw connection before it ends: the frames'
/// kinds, in order.
async fn frames_until_end(
    stream: &mut Box<dyn rpc_core::transport::FrameStream>,
) -> Vec<rpc_core::wire::FrameKind> {
    let mut kinds = Vec::new();
    while let Ok(Some(frame)) = stream.recv().await {
        kinds.push(frame.kind);
    }
    kinds
}

/// The server's own hello, taken from a raw connection, renamed to a name
/// of the same length (so that it is a valid hello of another peer).
async fn a_valid_hello(net: &MemNetwork) -> rpc_core::wire::Frame {
    let (_tx, mut rx) = raw(net).await.split();
    let mut hello = rx.recv().await.unwrap().unwrap();
    let body = hello.body.to_vec();
    let at = body
        .windows(6)
        .position(|w| w == b"server")
        .expect("the hello names the server");
    let mut renamed = body.clone();
    renamed[at..at + 6].copy_from_slice(b"serveR");
    hello.body = bytes::Bytes::from(renamed);
    hello
}

#[tokio::test(start_paused = true)]
async fn a_large_frame_before_the_handshake_closes_the_connection() {
    use rpc_core::wire::FrameKind;
    let net = MemNetwork::new();
    let server = engine(&net, "server").await;
    let hello = a_valid_hello(&net).await;

    // The hello alone is accepted: the server welcomes it.
    let (mut tx, mut rx) = raw(&net).await.split();
    assert_eq!(rx.recv().await.unwrap().unwrap().kind, FrameKind::Control);
    tx.send(hello.clone()).await.unwrap();
    let welcome = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await;
    assert!(
        matches!(welcome, Ok(Ok(Some(ref f))) if f.kind == FrameKind::Control),
        "{welcome:?}"
    );
    drop((tx, rx));

    // The same hello carrying a 1 MiB attachment, well within the engine's
    // frame limit but far over the handshake's, is refused from its header
    // and the connection closes: the server said hello, then hung up.
    let (mut tx, mut rx) = raw(&net).await.split();
    let mut big = hello;
    big.attachments = vec![bytes::Bytes::from(vec![0u8; 1 << 20])];
    assert!((1u64 << 20) > Config::default().handshake_max_frame_len);
    let _ = tx.send(big).await;
    let seen = tokio::time::timeout(Duration::from_secs(60), frames_until_end(&mut rx))
        .await
        .expect("the connection stayed open");
    assert_eq!(seen, [FrameKind::Control]);

    // And it serves others as before.
    let client = engine(&net, "client").await;
    link(&client, "server").await;
    assert_eq!(timed_echo(&client, "server").await.0.unwrap(), "hi");
    assert!(server.debug_info().peers.iter().any(|p| p.name == "client"));
}

#[tokio::test(start_paused = true)]
async fn connections_past_the_limit_are_closed_at_once() {
    let net = MemNetwork::new();
    let mut config = Config::default();
    config.max_connections = 2;
    let server = Rpc::with_config(config);
    server.set_name("server").unwrap();
    server.add_transport(net.transport_on("server"));
    server.listen("mem://server").await.unwrap();
    server
        .define("echo", |s: String| async move { Ok::<_, HandlerError>(s) })
        .unwrap();
    // Two connections that never say hello hold both places...
    let mut held = Vec::new();
    for _ in 0..2 {
        let (tx, mut rx) = raw(&net).await.split();
        let hello = rx.recv().await.unwrap().unwrap();
        assert_eq!(hello.kind, rpc_core::wire::FrameKind::Control);
        held.push((tx, rx));
    }
    // ...so a third is closed without a hello.
    let (_tx, mut rx) = raw(&net).await.split();
    assert_eq!(frames_until_end(&mut rx).await, []);
    // Once the handshake timeout frees a place, a client gets in.
    tokio::time::sleep(Config::default().handshake_timeout + Duration::from_secs(1)).await;
    let client = engine(&net, "client").await;
    link(&client, "server").await;
    assert_eq!(timed_echo(&client, "server").await.0.unwrap(), "hi");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_a_live_name_is_never_told_it_connected() {
    let net = MemNetwork::new();
    let _server = engine(&net, "server").await;
    let first = engine(&net, "x").await;
    link(&first, "server").await;
    for i in 0..50 {
        let second = Rpc::new();
        second.set_name("x").unwrap();
        second.add_transport(net.transport_on(&format!("x-{i}")));
        let r = second
            .connect("mem://server")
            .unwrap()
            .established(Duration::from_secs(30))
            .await;
        assert!(
            matches!(&r, Err(Error::DuplicateName { name }) if name == "x"),
            "attempt {i}: {r:?}"
        );
        second.shutdown();
    }
    // The first keeps its link.
    assert_eq!(timed_echo(&first, "server").await.0.unwrap(), "hi");
}

#[tokio::test(start_paused = true)]
async fn a_peer_with_too_many_requests_in_progress_is_held_back() {
    let net = MemNetwork::new();
    let mut config = Config::default();
    config.max_in_flight = 8;
    let server = Rpc::with_config(config);
    server.set_name("server").unwrap();
    server.add_transport(net.transport_on("server"));
    server.listen("mem://server").await.unwrap();
    let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    server
        .define("slow", move |x: u64| {
            let (r, p) = (r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                p.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                r.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, HandlerError>(x)
            }
        })
        .unwrap();
    let client = engine(&net, "client").await;
    link(&client, "server").await;
    let started = Instant::now();
    let calls: Vec<_> = (0..40u64)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call_with::<u64>(
                        "server",
                        "slow",
                        &i,
                        CallOptions::default().timeout(Duration::from_secs(60)),
                    )
                    .await
            })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), i as u64);
    }
    // Every call was served, never more than 8 at a time: 40 calls of a
    // second each took five rounds.
    assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 8);
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(5), "{took:?}");
    assert!(took < Duration::from_secs(7), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_keeps_ending_at_once_is_redialed_with_a_growing_backoff() {
    let net = MemNetwork::new();
    let _server = engine(&net, "server").await;
    let client = engine(&net, "client").await;
    link(&client, "server").await;
    // Every connection that comes up is reset a millisecond later.
    let mut connections = 0;
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if !client.connected_peers().is_empty() {
            connections += 1;
            net.cut("client", "server");
            net.heal("client", "server");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Backing off from 50 ms to 5 s makes about ten attempts in 20 s;
    // redialing every 50 ms would make hundreds.
    assert!((3..=20).contains(&connections), "{connections} connections");
    // A call still gets through: it asks for an attempt now instead of
    // waiting out the backoff.
    let (r, took) = timed_echo(&client, "server").await;
    assert_eq!(r.unwrap(), "hi");
    assert!(took < Duration::from_secs(1), "{took:?}");
}
