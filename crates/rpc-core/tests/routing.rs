//! Routed calls through relays, with a fixed router, and the in-memory
//! network's simulated faults.

use std::sync::Arc;
use std::time::Duration;

use rpc_core::{
    CallContext, CallOptions, Canceller, Config, Error, HandlerError, MemNetwork, Router, Rpc,
};

/// Sends everything through one peer.
struct Via(&'static str);

impl Router for Via {
    fn next_hop(&self, _dst: &str) -> Option<Arc<str>> {
        Some(Arc::from(self.0))
    }
}

/// Knows that one peer is gone.
struct Gone(&'static str);

impl Router for Gone {
    fn next_hop(&self, _dst: &str) -> Option<Arc<str>> {
        None
    }
    fn unreachable(&self, dst: &str) -> Option<String> {
        (dst == self.0).then(|| "declared dead".to_owned())
    }
}

async fn engine(net: &MemNetwork, name: &str, config: Config) -> Rpc {
    let rpc = Rpc::with_config(config);
    rpc.set_name(name).unwrap();
    rpc.add_transport(net.transport_on(name));
    rpc.listen(&format!("mem://{name}")).await.unwrap();
    rpc
}

/// Defines `sleep`, which waits an hour.
fn define_sleep(rpc: &Rpc) {
    rpc.define("sleep", |(): ()| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, HandlerError>(())
    })
    .unwrap();
}

/// Connects `from` to the engine listening on `mem://to` and waits for it.
async fn link(from: &Rpc, to: &str) {
    from.connect(&format!("mem://{to}"))
        .unwrap()
        .established(Duration::from_secs(5))
        .await
        .unwrap();
}

/// a - b - c: a reaches c only through b.
async fn line() -> (MemNetwork, Rpc, Rpc, Rpc) {
    let net = MemNetwork::new();
    net.cut("a", "c");
    let a = engine(&net, "a", Config::default()).await;
    let b = engine(&net, "b", Config::default()).await;
    let c = engine(&net, "c", Config::default()).await;
    c.define_with_context("whoami", |ctx: CallContext, (): ()| async move {
        Ok::<_, HandlerError>(ctx.peer().to_owned())
    })
    .unwrap();
    define_sleep(&c);
    link(&a, "b").await;
    link(&b, "c").await;
    a.set_router(Arc::new(Via("b")));
    (net, a, b, c)
}

#[tokio::test(start_paused = true)]
async fn a_call_is_relayed_and_the_callee_sees_the_origin() {
    let (_net, a, b, c) = line().await;
    let who: String = a.call("c", "whoami", &()).await.unwrap();
    assert_eq!(who, "a");
    assert_eq!(b.debug_info().relayed, 1);
    assert_eq!(c.debug_info().relayed, 0);
    assert!(!a.connected_peers().contains(&"c".to_owned()));
    // One-way calls are relayed too.
    a.notify("c", "whoami", &()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(b.debug_info().relayed, 2);
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_relayed_call_reaches_the_callee() {
    let (_net, a, _b, c) = line().await;
    let canceller = Canceller::new();
    let call = a.call_with::<()>(
        "c",
        "sleep",
        &(),
        CallOptions::default().cancel_with(&canceller),
    );
    let task = tokio::spawn(call);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        c.debug_info()
            .functions
            .iter()
            .find(|f| f.name == "sleep")
            .unwrap()
            .in_flight,
        1
    );
    canceller.cancel();
    assert!(matches!(task.await.unwrap(), Err(Error::Cancelled)));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        c.debug_info()
            .functions
            .iter()
            .find(|f| f.name == "sleep")
            .unwrap()
            .in_flight,
        0
    );
}

#[tokio::test(start_paused = true)]
async fn losing_the_link_behind_a_relay_fails_the_call() {
    let (net, a, _b, _c) = line().await;
    let task = tokio::spawn({
        let a = a.clone();
        async move { a.call::<()>("c", "sleep", &()).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    net.cut("b", "c");
    let r = task.await.unwrap();
    // The request had gone on past the relay, so c may have run it: a
    // disconnection, naming the relay, never "unreachable" (which promises
    // the call was not delivered and may be retried elsewhere).
    assert!(
        matches!(&r, Err(Error::Disconnected { peer, reason }) if peer == "c" && reason.contains("relay b")),
        "{r:?}"
    );
    assert!(!r.unwrap_err().never_delivered());
}

#[tokio::test(start_paused = true)]
async fn a_relay_with_no_route_answers_unreachable_and_never_bounces() {
    let net = MemNetwork::new();
    let a = engine(&net, "a", Config::default()).await;
    let b = engine(&net, "b", Config::default()).await;
    link(&a, "b").await;
    // a sends to b; b's router would send it back to a: refused.
    a.set_router(Arc::new(Via("b")));
    b.set_router(Arc::new(Via("a")));
    let r: Result<(), _> = a.call("nobody", "f", &()).await;
    assert!(
        matches!(&r, Err(Error::Unreachable { peer, .. }) if peer == "nobody"),
        "{r:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_known_gone_fails_at_once() {
    let net = MemNetwork::new();
    let a = engine(&net, "a", Config::default()).await;
    a.set_router(Arc::new(Gone("z")));
    let started = tokio::time::Instant::now();
    let r: Result<(), _> = a
        .call_with(
            "z",
            "f",
            &(),
            CallOptions::default().timeout(Duration::from_secs(30)),
        )
        .await;
    assert!(matches!(&r, Err(Error::Unreachable { .. })), "{r:?}");
    assert_eq!(started.elapsed(), Duration::ZERO);
    // Unknown peers still wait for their deadline.
    let r: Result<(), _> = a
        .call_with(
            "y",
            "f",
            &(),
            CallOptions::default().timeout(Duration::from_secs(30)),
        )
        .await;
    assert!(matches!(&r, Err(Error::NoSuchPeer { .. })), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn cutting_a_link_resets_its_connections_and_refuses_new_ones() {
    let net = MemNetwork::new();
    let a = engine(&net, "a", Config::default()).await;
    let b = engine(&net, "b", Config::default()).await;
    define_sleep(&b);
    link(&a, "b").await;
    let seen = a.peers_generation();
    let task = tokio::spawn({
        let a = a.clone();
        async move { a.call::<()>("b", "sleep", &()).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    net.cut("a", "b");
    let r = task.await.unwrap();
    assert!(matches!(&r, Err(Error::Disconnected { .. })), "{r:?}");
    assert!(a.peers_changed(seen).await > seen);
    assert!(a.connected_peers().is_empty());
    // Reconnection attempts are refused until the link heals.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(a.connected_peers().is_empty());
    net.heal("a", "b");
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(a.connected_peers(), vec!["b".to_owned()]);
}
