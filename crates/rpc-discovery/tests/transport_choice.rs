//! The transport policy: a bandit picks the faster of two network
//! transports per peer, shows its choice in `debug_info`, and
//! `set_transports` restricts the choice.

mod common;

use std::time::Duration;

use common::{LONG, config};
use rpc_core::transport::Locality;
use rpc_core::{Error, MemNetwork, Rpc};
use rpc_discovery::Node;

async fn node(net: &MemNetwork, name: &str) -> Node {
    let rpc = Rpc::new();
    rpc.set_name(name).unwrap();
    let t = net.transport_on(name);
    rpc.add_transport(
        t.clone()
            .with_scheme("fast", Locality::Network)
            .with_latency(Duration::from_micros(100)),
    );
    rpc.add_transport(
        t.with_scheme("slow", Locality::Network)
            .with_latency(Duration::from_millis(2)),
    );
    rpc.listen(&format!("fast://{name}")).await.unwrap();
    rpc.listen(&format!("slow://{name}")).await.unwrap();
    rpc.define("echo", |s: String| async move {
        Ok::<_, rpc_core::HandlerError>(s)
    })
    .unwrap();
    Node::start(&rpc, config(name.len() as u64)).unwrap()
}

/// Frames `a` sent to `b`, by transport.
fn sent(a: &Rpc, b: &str) -> (u64, u64) {
    let info = a.debug_info();
    let peer = info.peers.iter().find(|p| p.name == b).unwrap();
    let by = |t: &str| {
        peer.connections
            .iter()
            .filter(|c| c.transport == t)
            .map(|c| c.frames_sent)
            .sum()
    };
    (by("fast"), by("slow"))
}

#[tokio::test(start_paused = true)]
async fn the_bandit_prefers_the_faster_transport_and_set_transports_restricts() {
    let net = MemNetwork::new();
    let a = node(&net, "a").await;
    let b = node(&net, "b").await;
    b.join("fast://a").await.unwrap();
    // Both transports up from a to b.
    a.wait_until(LONG, |n| {
        let info = n.rpc().debug_info();
        info.peers.iter().any(|p| {
            p.name == "b"
                && p.connections.iter().any(|c| c.transport == "fast")
                && p.connections.iter().any(|c| c.transport == "slow")
        })
    })
    .await
    .unwrap();
    let (f0, s0) = sent(a.rpc(), "b");
    for i in 0..400 {
        let r: String = a.rpc().call("b", "echo", &format!("{i}")).await.unwrap();
        assert_eq!(r, format!("{i}"));
    }
    let (f1, s1) = sent(a.rpc(), "b");
    let (fast, slow) = (f1 - f0, s1 - s0);
    assert!(fast + slow >= 400);
    assert!(slow >= 1, "the slow transport was tried");
    assert!(fast * 100 >= (fast + slow) * 85, "fast {fast}, slow {slow}");
    let info = a.rpc().debug_info();
    let choice = info
        .peers
        .iter()
        .find(|p| p.name == "b")
        .unwrap()
        .transport_choice
        .clone()
        .unwrap();
    assert!(choice.contains("fast*"), "{choice}");
    assert!(info.to_string().contains("transport choice"), "{info}");

    // Restricted to the slow one: every call takes it.
    a.rpc().set_transports(&["slow"]).unwrap();
    let (f2, s2) = sent(a.rpc(), "b");
    for _ in 0..50 {
        let _: String = a.rpc().call("b", "echo", "x").await.unwrap();
    }
    let (f3, s3) = sent(a.rpc(), "b");
    assert!(s3 - s2 >= 50);
    // SWIM packets also obey the restriction.
    assert_eq!(f3, f2);
    assert!(matches!(
        a.rpc().set_transports(&["ib"]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        a.rpc().connect("fast://b"),
        Err(Error::InvalidArgument(_))
    ));
    a.rpc().set_transports(&[]).unwrap();
}
