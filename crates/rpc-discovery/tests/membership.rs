//! Membership, routing and relaying on a simulated network with paused time.

mod common;

use std::time::Duration;

use common::{LONG, Sim, config, node, node_on};
use rpc_core::{CallContext, CallOptions, Error, HandlerError, MemNetwork};
use rpc_discovery::DiscoveryError;

#[tokio::test(start_paused = true)]
async fn thirty_two_nodes_converge() {
    let sim = Sim::start(32).await;
    let all: Vec<usize> = (0..32).collect();
    sim.converge(&all, &all).await;
    // Every node gets every other's record, with its functions.
    for n in &sim.nodes {
        n.wait_until(LONG, |n| n.live_records().len() == 32)
            .await
            .unwrap_or_else(|e| panic!("{e}: {}", n.debug_info()));
        for r in n.live_records() {
            assert!(r.has_function("echo"), "{r:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_crashed_node_is_declared_dead_by_all_and_calls_fail_fast() {
    let sim = Sim::start(8).await;
    let all: Vec<usize> = (0..8).collect();
    sim.converge(&all, &all).await;
    sim.net.isolate("n5");
    let others: Vec<usize> = (0..8).filter(|i| *i != 5).collect();
    sim.declared_dead(&others, 5).await;
    // Known dead: the call fails at once, not after its 30 s timeout.
    let started = tokio::time::Instant::now();
    let r: Result<String, _> = sim.nodes[0]
        .rpc()
        .call_with(
            "n5",
            "echo",
            "hi",
            CallOptions::default().timeout(Duration::from_secs(30)),
        )
        .await;
    assert!(
        matches!(r, Err(Error::Unreachable { ref peer, .. }) if peer == "n5"),
        "{r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_partition_heals() {
    let sim = Sim::start(8).await;
    let all: Vec<usize> = (0..8).collect();
    sim.converge(&all, &all).await;
    let (left, right): (Vec<usize>, Vec<usize>) = ((0..4).collect(), (4..8).collect());
    for a in &left {
        for b in &right {
            sim.net.cut(&format!("n{a}"), &format!("n{b}"));
        }
    }
    sim.converge(&left, &left).await;
    sim.converge(&right, &right).await;
    sim.net.heal_all();
    sim.converge(&all, &all).await;
}

#[tokio::test(start_paused = true)]
async fn two_nodes_that_declared_each_other_dead_merge_again() {
    // Each side loses its only member, so neither has anyone left to run
    // SWIM's timers with: the merge must not wait for the other to speak.
    let sim = Sim::start(2).await;
    sim.converge(&[0, 1], &[0, 1]).await;
    sim.net.cut("n0", "n1");
    sim.declared_dead(&[0], 1).await;
    sim.declared_dead(&[1], 0).await;
    sim.net.heal_all();
    sim.converge(&[0, 1], &[0, 1]).await;
}

/// a - b - c - d, with b - e - c as a detour.
async fn chain() -> (MemNetwork, Vec<rpc_discovery::Node>) {
    let net = MemNetwork::new();
    let names = ["a", "b", "c", "d", "e"];
    let links = [("a", "b"), ("b", "c"), ("c", "d"), ("b", "e"), ("e", "c")];
    for x in names {
        for y in names {
            let linked = links
                .iter()
                .any(|&(p, q)| (p, q) == (x, y) || (q, p) == (x, y));
            if x < y && !linked {
                net.cut(x, y);
            }
        }
    }
    let mut nodes = Vec::new();
    for (i, n) in names.iter().enumerate() {
        nodes.push(node(&net, n, config(i as u64 + 1)).await);
    }
    nodes[3]
        .rpc()
        .define_with_context("budget", |ctx: CallContext, (): ()| async move {
            let left = ctx.deadline().map(|d| d - tokio::time::Instant::now());
            Ok::<_, HandlerError>((ctx.peer().to_owned(), left))
        })
        .unwrap();
    // Each joins through a neighbour.
    nodes[1].join("mem://a").await.unwrap();
    nodes[2].join("mem://b").await.unwrap();
    nodes[3].join("mem://c").await.unwrap();
    nodes[4].join("mem://b").await.unwrap();
    for n in &nodes {
        n.wait_until(LONG, |n| {
            n.alive().len() == 5 && n.members().iter().all(|m| m.hops.is_some())
        })
        .await
        .unwrap();
    }
    (net, nodes)
}

#[tokio::test(start_paused = true)]
async fn a_three_hop_relayed_call_succeeds_and_fails_over() {
    let (net, nodes) = chain().await;
    let a = &nodes[0];
    let info = a.members().into_iter().find(|m| m.name == "d").unwrap();
    assert_eq!((info.next_hop.as_deref(), info.hops), (Some("b"), Some(3)));
    let (caller, _): (String, Option<Duration>) = a.rpc().call("d", "budget", &()).await.unwrap();
    assert_eq!(caller, "a", "the callee sees the origin, not the relay");
    assert!(nodes[1].rpc().debug_info().relayed >= 1);
    assert!(nodes[2].rpc().debug_info().relayed >= 1);

    // Cut b - c: b's route to d goes through e instead.
    net.cut("b", "c");
    nodes[1]
        .wait_until(LONG, |n| {
            n.members()
                .iter()
                .any(|m| m.name == "d" && m.next_hop.as_deref() == Some("e"))
        })
        .await
        .unwrap();
    let e_before = nodes[4].rpc().debug_info().relayed;
    let r: String = a.rpc().call("d", "echo", "still there").await.unwrap();
    assert_eq!(r, "still there");
    assert!(
        nodes[4].rpc().debug_info().relayed > e_before,
        "the detour carried it"
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_budget_shrinks_per_hop() {
    let (_net, nodes) = chain().await;
    let timeout = Duration::from_secs(10);
    let opts = || CallOptions::default().timeout(timeout);
    let reserve = rpc_core::Config::default().hop_reserve;
    // From c (direct) and from a (through b and c). Time is paused, so only
    // the relays' reserves make a difference.
    let (_, direct): (String, Option<Duration>) = nodes[2]
        .rpc()
        .call_with("d", "budget", &(), opts())
        .await
        .unwrap();
    let (_, relayed): (String, Option<Duration>) = nodes[0]
        .rpc()
        .call_with("d", "budget", &(), opts())
        .await
        .unwrap();
    let (direct, relayed) = (direct.unwrap(), relayed.unwrap());
    assert_eq!(direct, timeout);
    assert_eq!(relayed, timeout - 2 * reserve);
}

#[tokio::test(start_paused = true)]
async fn the_hop_limit_stops_a_call() {
    let net = MemNetwork::new();
    // A chain of 4 relays (a .. f) with a hop limit of 2.
    let names = ["a", "b", "c", "d", "e", "f"];
    for (i, x) in names.iter().enumerate() {
        for y in names.iter().skip(i + 2) {
            net.cut(x, y);
        }
    }
    let mut nodes = Vec::new();
    for (i, n) in names.iter().enumerate() {
        nodes.push(node(&net, n, config(i as u64 + 1)).await);
    }
    for i in 1..names.len() {
        nodes[i]
            .join(&format!("mem://{}", names[i - 1]))
            .await
            .unwrap();
    }
    for n in &nodes {
        n.wait_until(LONG, |n| {
            n.members().iter().filter(|m| m.hops.is_some()).count() == 5
        })
        .await
        .unwrap();
    }
    // The default limit (8) lets the 5-link call through.
    let r: String = nodes[0].rpc().call("f", "echo", "far").await.unwrap();
    assert_eq!(r, "far");
    let mut cfg = rpc_core::Config::default();
    cfg.max_hops = 2;
    let short = rpc_core::Rpc::with_config(cfg);
    short.set_name("g").unwrap();
    short.add_transport(net.transport_on("g"));
    net.cut("g", "c");
    net.cut("g", "d");
    net.cut("g", "e");
    net.cut("g", "f");
    net.cut("g", "b");
    let g = rpc_discovery::Node::start(&short, config(9)).unwrap();
    g.join("mem://a").await.unwrap();
    g.wait_until(LONG, |n| {
        n.members()
            .iter()
            .any(|m| m.name == "f" && m.hops.is_some())
    })
    .await
    .unwrap();
    let r: Result<String, _> = short.call("f", "echo", "too far").await;
    assert!(
        matches!(&r, Err(Error::Unreachable { reason, .. }) if reason.contains("hop limit")),
        "{r:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_name_is_refused() {
    let sim = Sim::start(3).await;
    sim.converge(&[0, 1, 2], &[0, 1, 2]).await;
    // Directly connected to the holder: the engine's handshake refuses it.
    let imposter = node_on(&sim.net, "imposter", "n1", config(7)).await;
    let r = imposter.join("mem://n0").await;
    assert!(
        matches!(r, Err(DiscoveryError::DuplicateName { ref name }) if name == "n1"),
        "{r:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_name_is_refused_by_the_membership() {
    let sim = Sim::start(3).await;
    sim.converge(&[0, 1, 2], &[0, 1, 2]).await;
    // The seed n2 has no connection to n1's holder from the imposter's host
    // view: only the membership knows the name is taken.
    let net = &sim.net;
    let rpc = rpc_core::Rpc::new();
    rpc.set_name("n1").unwrap();
    rpc.add_transport(net.transport_on("imposter"));
    net.cut("imposter", "n0");
    net.cut("imposter", "n1");
    // n2 drops its direct link to n1, so its engine will not refuse the name.
    net.cut("n2", "n1");
    sim.nodes[2]
        .wait_until(LONG, |n| {
            !n.rpc().connected_peers().contains(&"n1".to_owned())
        })
        .await
        .unwrap();
    let imposter = rpc_discovery::Node::start(&rpc, config(8)).unwrap();
    let r = imposter.join("mem://n2").await;
    assert!(
        matches!(r, Err(DiscoveryError::DuplicateName { ref name }) if name == "n1"),
        "{r:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_behind_nat_is_reached_through_the_peer_it_dialled() {
    let sim = Sim::start(3).await;
    sim.converge(&[0, 1, 2], &[0, 1, 2]).await;
    // "nat" listens nowhere and advertises nothing: nobody can dial it. It
    // dials only its seed.
    let rpc = rpc_core::Rpc::new();
    rpc.set_name("nat").unwrap();
    rpc.add_transport(sim.net.transport_on("nat"));
    rpc.define("echo", |s: String| async move {
        Ok::<_, HandlerError>(format!("nat: {s}"))
    })
    .unwrap();
    let mut cfg = config(42);
    cfg.dial = false;
    let nat = rpc_discovery::Node::start(&rpc, cfg).unwrap();
    nat.join("mem://n0").await.unwrap();
    for n in &sim.nodes {
        n.wait_until(LONG, |n| {
            n.members()
                .iter()
                .any(|m| m.name == "nat" && m.hops.is_some())
        })
        .await
        .unwrap();
    }
    let record = sim.nodes[2].record("nat").unwrap();
    assert!(record.addresses.is_empty());
    assert!(
        !sim.nodes[2]
            .rpc()
            .connected_peers()
            .contains(&"nat".to_owned())
    );
    let r: String = sim.nodes[2]
        .rpc()
        .call("nat", "echo", "hello")
        .await
        .unwrap();
    assert_eq!(r, "nat: hello");
    assert!(sim.nodes[0].rpc().debug_info().relayed >= 1);
}

#[test]
fn starting_outside_a_runtime_is_an_error_not_a_panic() {
    let rpc = rpc_core::Rpc::new();
    let r = rpc_discovery::Node::start(&rpc, config(1));
    assert!(matches!(r, Err(DiscoveryError::InvalidArgument(_))));
}

#[tokio::test(start_paused = true)]
async fn clients_that_come_and_go_change_no_record_and_are_forgotten() {
    let sim = Sim::start(2).await;
    sim.converge(&[0, 1], &[0, 1]).await;
    // Let the records settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let version = |sim: &Sim| sim.nodes[1].record("n0").map(|r| r.version);
    let before = version(&sim);
    assert!(before.is_some());
    for i in 0..30 {
        let client = rpc_core::Rpc::new();
        client.set_name(&format!("client-{i}")).unwrap();
        client.add_transport(sim.net.transport_on(&format!("client-{i}")));
        client
            .connect("mem://n0")
            .unwrap()
            .established(Duration::from_secs(5))
            .await
            .unwrap();
        let _: String = client.call("n0", "echo", "x").await.unwrap();
        client.shutdown();
        client.wait_for_shutdown().await;
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    // n0's record never listed them: nothing to tell the cluster.
    assert_eq!(version(&sim), before);
    tokio::time::sleep(rpc_core::Config::default().forget_after).await;
    let peers: Vec<String> = sim.nodes[0]
        .rpc()
        .debug_info()
        .peers
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(peers, ["n1"]);
}

#[tokio::test(start_paused = true)]
async fn a_member_declared_dead_is_no_longer_redialed() {
    let sim = Sim::start(3).await;
    let all = [0, 1, 2];
    sim.converge(&all, &all).await;
    // n1 and n2 joined through n0, so both keep dialing it.
    let dialing = |i: usize| sim.nodes[i].rpc().debug_info().connecting;
    for i in [1, 2] {
        assert!(
            dialing(i).contains(&"mem://n0".to_owned()),
            "{:?}",
            dialing(i)
        );
    }
    sim.net.isolate("n0");
    sim.declared_dead(&[1, 2], 0).await;
    for i in [1, 2] {
        assert!(
            !dialing(i).contains(&"mem://n0".to_owned()),
            "{:?}",
            dialing(i)
        );
    }
    // It comes back: it is dialed again, and calls reach it.
    sim.net.restore("n0");
    sim.converge(&all, &all).await;
    let r: String = sim.nodes[1]
        .rpc()
        .call_with(
            "n0",
            "echo",
            "back",
            CallOptions::default().timeout(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    assert_eq!(r, "back");
}

#[tokio::test(start_paused = true)]
async fn a_member_that_left_drops_out_of_the_list_after_a_while() {
    let sim = Sim::start(3).await;
    let all = [0, 1, 2];
    sim.converge(&all, &all).await;
    sim.nodes[2].leave().await;
    sim.declared_dead(&[0, 1], 2).await;
    let listed = |sim: &Sim| {
        sim.nodes[0]
            .members()
            .into_iter()
            .map(|m| (m.name, m.state))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed(&sim),
        [
            ("n1".to_owned(), rpc_discovery::MemberState::Alive),
            ("n2".to_owned(), rpc_discovery::MemberState::Down)
        ]
    );
    let show = rpc_discovery::MembershipConfig::default().show_down_for;
    tokio::time::sleep(show + Duration::from_secs(1)).await;
    assert_eq!(
        listed(&sim),
        [("n1".to_owned(), rpc_discovery::MemberState::Alive)]
    );
}
