//! Cluster calls by function and resources, and groups with collectives, on
//! a simulated network with paused time.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{LONG, Sim, config};
use rpc_discovery::{DiscoveryError, Scope};

fn res(xs: &[&str]) -> BTreeSet<String> {
    xs.iter().map(|s| (*s).to_owned()).collect()
}

/// n0 is a balancer; n1 has {a}, n2 has {a, b}, n3 has {b}.
async fn cluster() -> Sim {
    let sets = [res(&[]), res(&["a"]), res(&["a", "b"]), res(&["b"])];
    let sim = Sim::start_with(4, |i| {
        let mut c = config(0);
        c.resources = sets[i].clone();
        c
    })
    .await;
    let all = [0, 1, 2, 3];
    sim.converge(&all, &all).await;
    for n in &sim.nodes {
        n.wait_until(LONG, |n| {
            n.live_records().iter().filter(|r| r.is_server()).count() == 3
        })
        .await
        .unwrap();
    }
    sim
}

#[tokio::test(start_paused = true)]
async fn call_any_goes_to_a_node_with_the_function_and_every_resource() {
    let sim = cluster().await;
    let from = &sim.nodes[0];
    for _ in 0..20 {
        let served = from
            .call_any::<_, String>("echo", &["a", "b"], "x")
            .await
            .unwrap();
        assert_eq!(served.node, "n2");
        assert_eq!(served.value, "x");
    }
    let mut seen = BTreeMap::new();
    for _ in 0..200 {
        let served = from
            .call_any::<_, String>("echo", &["a"], "x")
            .await
            .unwrap();
        *seen.entry(served.node).or_insert(0) += 1;
    }
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        vec!["n1", "n2"],
        "{seen:?}"
    );
    assert!(seen.values().all(|&n| n >= 40), "load is spread: {seen:?}");
    // No resources asked: any server, never the balancer n0.
    for _ in 0..50 {
        let served = from.call_any::<_, String>("echo", &[], "x").await.unwrap();
        assert_ne!(served.node, "n0");
    }
}

#[tokio::test(start_paused = true)]
async fn no_matching_node_is_a_no_route_error_naming_function_and_resources() {
    let sim = cluster().await;
    let r = sim.nodes[1]
        .call_any::<_, String>("echo", &["a", "c"], "x")
        .await;
    match r {
        Err(e @ DiscoveryError::NoRoute { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("\"echo\"") && text.contains("\"c\""),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    let r = sim.nodes[1]
        .call_any::<_, String>("nope", &["a"], "x")
        .await;
    assert!(matches!(r, Err(DiscoveryError::NoRoute { ref function, .. }) if function == "nope"));
}

#[tokio::test(start_paused = true)]
async fn a_dead_server_is_no_longer_chosen() {
    let sim = cluster().await;
    sim.net.isolate("n1");
    sim.declared_dead(&[0, 2, 3], 1).await;
    for _ in 0..20 {
        let served = sim.nodes[0]
            .call_any::<_, String>("echo", &["a"], "x")
            .await
            .unwrap();
        assert_eq!(served.node, "n2");
    }
}

#[tokio::test(start_paused = true)]
async fn a_lost_replica_leaves_the_choice_at_once_and_no_call_fails() {
    let sim = cluster().await;
    // n1 dies: its links reset and reconnects are refused, long before the
    // membership's suspicion ends (n1 is still a live member below).
    sim.net.isolate("n1");
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(sim.nodes[0].alive().contains("n1"));
    let started = tokio::time::Instant::now();
    for _ in 0..100 {
        let served = sim.nodes[0]
            .call_any::<_, String>("echo", &["a"], "x")
            .await
            .unwrap();
        assert_eq!(served.node, "n2");
    }
    // Failing over costs no waiting: the whole batch takes under a second
    // of (simulated) time.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_lost_mid_flight_fails_over_only_when_idempotent() {
    let sim = cluster().await;
    for n in &sim.nodes[1..3] {
        n.rpc()
            .define("hang", |(): ()| async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, rpc_core::HandlerError>(String::new())
            })
            .unwrap();
        n.rpc()
            .define("slow", |(): ()| async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, rpc_core::HandlerError>("done".to_owned())
            })
            .unwrap();
    }
    for n in &sim.nodes {
        n.wait_until(LONG, |n| n.servers_for("slow", &res(&["a"])).len() == 2)
            .await
            .unwrap();
    }
    let from = sim.nodes[0].clone();
    from.set_idempotent("slow");
    // Each call lands on n1 or n2; whichever it is, cut it mid-call.
    for (function, idempotent) in [("hang", false), ("slow", true)] {
        let call = tokio::spawn({
            let from = from.clone();
            async move { from.call_any::<_, String>(function, &["a"], &()).await }
        });
        let busy = loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let busy = sim.nodes[1..3].iter().find(|n| {
                n.rpc()
                    .debug_info()
                    .functions
                    .iter()
                    .any(|f| f.name == function && f.in_flight == 1)
            });
            if let Some(n) = busy {
                break n.name().to_owned();
            }
        };
        sim.net.cut("n0", &busy);
        let r = call.await.unwrap();
        if idempotent {
            let served = r.unwrap();
            assert_ne!(served.node, busy);
            assert_eq!(served.value, "done");
        } else {
            assert!(
                matches!(&r, Err(DiscoveryError::Rpc(rpc_core::Error::Disconnected { peer, .. })) if *peer == busy),
                "{r:?}"
            );
        }
        sim.net.heal("n0", &busy);
    }
}

/// Eight converged nodes in group "train" as workers, node i with rank
/// `rank(i)`.
async fn workers(rank: impl Fn(u32) -> u32) -> (Sim, Vec<rpc_discovery::Group>) {
    let sim = Sim::start(8).await;
    let all: Vec<usize> = (0..8).collect();
    sim.converge(&all, &all).await;
    let groups = (0..8u32)
        .map(|i| {
            sim.nodes[i as usize]
                .join_group("train", "worker", rank(i), 8)
                .unwrap()
        })
        .collect();
    (sim, groups)
}

#[tokio::test(start_paused = true)]
async fn barrier_all_gather_and_broadcast_over_eight_members() {
    let (_sim, groups) = workers(|i| 7 - i).await;
    let t = Duration::from_secs(60);
    let results = futures_util::future::join_all(groups.iter().map(|g| async move {
        g.barrier(Scope::Role, t).await.unwrap();
        let gathered: Vec<u32> = g
            .all_gather(Scope::Role, &(g.rank() * 10), t)
            .await
            .unwrap();
        let root_value = (g.rank() == 3).then_some("from rank 3".to_owned());
        let b: String = g
            .broadcast(Scope::Role, 3, root_value.as_ref(), t)
            .await
            .unwrap();
        (gathered, b)
    }))
    .await;
    for (gathered, b) in results {
        assert_eq!(gathered, (0..8).map(|r| r * 10).collect::<Vec<u32>>());
        assert_eq!(b, "from rank 3");
    }
    // "role worker, rank k" routes to that member.
    assert_eq!(groups[0].member("worker", 7).as_deref(), Some("n0"));
    let echoed: String = groups[5]
        .call_rank("worker", 0, "echo", "hi")
        .await
        .unwrap();
    assert_eq!(echoed, "hi");
}

#[tokio::test(start_paused = true)]
async fn collectives_span_roles_across_groups() {
    let sim = Sim::start(4).await;
    let all = [0, 1, 2, 3];
    sim.converge(&all, &all).await;
    let g: Vec<_> = vec![
        sim.nodes[0].join_group("job", "server", 0, 2).unwrap(),
        sim.nodes[1].join_group("job", "server", 1, 2).unwrap(),
        sim.nodes[2].join_group("job", "client", 0, 2).unwrap(),
        sim.nodes[3].join_group("job", "client", 1, 2).unwrap(),
    ];
    let t = Duration::from_secs(60);
    let out = futures_util::future::join_all(g.iter().map(|g| async move {
        let names: Vec<String> = g
            .all_gather(Scope::Group, &format!("{}", g.rank()), t)
            .await
            .unwrap();
        let role_only: Vec<String> = g.all_gather(Scope::Role, &"r".to_owned(), t).await.unwrap();
        (names, role_only.len())
    }))
    .await;
    for (names, role_len) in out {
        // Ordered by (role, rank): client 0, client 1, server 0, server 1.
        assert_eq!(names, vec!["0", "1", "0", "1"]);
        assert_eq!(role_len, 2);
    }
}

#[tokio::test(start_paused = true)]
async fn a_member_lost_mid_barrier_fails_it_with_its_name() {
    let (sim, groups) = workers(|i| i).await;
    for g in &groups {
        g.wait_ready(Scope::Role, LONG).await.unwrap();
    }
    // Seven arrive; n6 dies instead.
    let t = Duration::from_secs(120);
    let waiting: Vec<_> = groups
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 6)
        .map(|(_, g)| {
            let g = g.clone();
            tokio::spawn(async move { g.barrier(Scope::Role, t).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = tokio::time::Instant::now();
    sim.net.isolate("n6");
    for w in waiting {
        let r = w.await.unwrap();
        match r {
            Err(e @ DiscoveryError::Collective { .. }) => {
                assert!(e.to_string().contains("n6"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        started.elapsed() < t,
        "failed by the membership, before the deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn a_barrier_without_every_member_times_out_naming_the_missing() {
    let sim = Sim::start(3).await;
    sim.converge(&[0, 1, 2], &[0, 1, 2]).await;
    let g0 = sim.nodes[0].join_group("g", "w", 0, 3).unwrap();
    let g1 = sim.nodes[1].join_group("g", "w", 1, 3).unwrap();
    let g2 = sim.nodes[2].join_group("g", "w", 2, 3).unwrap();
    for g in [&g0, &g1, &g2] {
        g.wait_ready(Scope::Role, LONG).await.unwrap();
    }
    let t = Duration::from_secs(5);
    let (a, b) = tokio::join!(g0.barrier(Scope::Role, t), g1.barrier(Scope::Role, t));
    for r in [a, b] {
        let e = r.unwrap_err().to_string();
        assert!(e.contains("n2"), "{e}");
    }
}
