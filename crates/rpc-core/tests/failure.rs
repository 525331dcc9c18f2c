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
