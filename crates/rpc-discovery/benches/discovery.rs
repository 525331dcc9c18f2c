//! Discovery costs, in one run:
//!
//! - a relayed call (a → b → c over TCP loopback) against a direct call
//!   (a → b) of the same 8 B echo: p50, p99 and their ratio;
//! - how long a membership change takes to reach every node of a 16-node
//!   cluster (in-process, real time, 200 ms probes): a join, and a crash
//!   (link cut) until every survivor declares the node dead.
//!
//! `cargo bench -p rpc-discovery --bench discovery`; `RPC_BENCH_QUICK=1`
//! for a short run. Idle CPUs halt on this VM unless something holds
//! `/dev/cpu_dma_latency` at 0; the run prints which.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rpc_core::{MemNetwork, Rpc};
use rpc_discovery::{DiscoveryConfig, MemberState, MembershipConfig, Node};
use rpc_transport_tcp::TcpTransport;

fn main() {
    let quick = std::env::var_os("RPC_BENCH_QUICK").is_some();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("idle mode: {}", idle_mode());
    rt.block_on(relay_vs_direct(if quick { 2 } else { 10 }));
    rt.block_on(propagation(16, if quick { 1 } else { 3 }));
}

fn idle_mode() -> &'static str {
    // Without a holder of /dev/cpu_dma_latency the VM halts idle CPUs.
    if std::env::var_os("RPC_BENCH_POLL").is_some() {
        "poll (RPC_BENCH_POLL set by the caller)"
    } else {
        "halt (the VM default)"
    }
}

fn fast_membership(seed: u64) -> DiscoveryConfig {
    let mut m = MembershipConfig::default();
    m.probe_period = Duration::from_millis(200);
    m.probe_rtt = Duration::from_millis(100);
    m.suspect_to_down_after = Duration::from_millis(600);
    m.gossip_period = Duration::from_millis(50);
    m.refresh_period = Duration::from_millis(100);
    m.rng_seed = Some(seed);
    let mut c = DiscoveryConfig::default();
    c.membership = m;
    c
}

async fn tcp_node(name: &str, dial: bool) -> (Node, String) {
    let rpc = Rpc::new();
    rpc.set_name(name).expect("name");
    rpc.add_transport(TcpTransport::new());
    let addr = rpc
        .listen("tcp://127.0.0.1:0")
        .await
        .expect("listen")
        .to_string();
    rpc.define("echo", |b: Vec<u8>| async move {
        Ok::<_, rpc_core::HandlerError>(b)
    })
    .expect("define");
    let mut c = fast_membership(name.len() as u64);
    c.dial = dial;
    (Node::start(&rpc, c).expect("node"), addr)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn relay_vs_direct(rounds: usize) {
    // a and c both join b and do not dial each other: a reaches c through b.
    let (b, b_addr) = tcp_node("b", false).await;
    let (a, _) = tcp_node("a", false).await;
    let (c, _) = tcp_node("c", false).await;
    a.join(&b_addr).await.expect("join");
    c.join(&b_addr).await.expect("join");
    a.wait_until(Duration::from_secs(30), |n| {
        n.members()
            .iter()
            .any(|m| m.name == "c" && m.hops == Some(2))
    })
    .await
    .expect("route to c");
    let payload = vec![7u8; 8];
    let (mut direct, mut relayed) = (Vec::new(), Vec::new());
    let per_round = 2000;
    for round in 0..=rounds {
        for (target, out) in [("b", &mut direct), ("c", &mut relayed)] {
            for _ in 0..per_round {
                let t = Instant::now();
                let r: Vec<u8> = a.rpc().call(target, "echo", &payload).await.expect("call");
                let dt = t.elapsed();
                assert_eq!(r.len(), 8);
                // The first round warms up.
                if round > 0 {
                    out.push(dt);
                }
            }
        }
    }
    direct.sort();
    relayed.sort();
    let (d50, d99) = (percentile(&direct, 0.5), percentile(&direct, 0.99));
    let (r50, r99) = (percentile(&relayed, 0.5), percentile(&relayed, 0.99));
    println!(
        "\n8 B echo over TCP loopback, {} samples each (alternating rounds of {per_round}):",
        direct.len()
    );
    println!("| case | p50 µs | p99 µs |\n|---|---|---|");
    println!(
        "| direct a→b | {:.1} | {:.1} |",
        d50.as_secs_f64() * 1e6,
        d99.as_secs_f64() * 1e6
    );
    println!(
        "| relayed a→b→c | {:.1} | {:.1} |",
        r50.as_secs_f64() * 1e6,
        r99.as_secs_f64() * 1e6
    );
    println!(
        "ratio relayed/direct: p50 {:.2}, p99 {:.2} (a relay adds one more round trip: about 2 is the floor)",
        r50.as_secs_f64() / d50.as_secs_f64(),
        r99.as_secs_f64() / d99.as_secs_f64()
    );
    for n in [a, b, c] {
        n.rpc().shutdown();
    }
}

async fn propagation(n: usize, repeats: usize) {
    println!("\nmembership propagation, {n} nodes in one process, 200 ms probes, 50 ms gossip:");
    println!("| repeat | join seen by all (ms) | crash declared by all (ms) |\n|---|---|---|");
    for rep in 0..repeats {
        let net = MemNetwork::new();
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = format!("n{i}");
            let rpc = Rpc::new();
            rpc.set_name(&name).expect("name");
            rpc.add_transport(net.transport_on(&name));
            rpc.listen(&format!("mem://{name}")).await.expect("listen");
            nodes.push(Node::start(&rpc, fast_membership(i as u64 + 1)).expect("node"));
        }
        for node in &nodes[1..n - 1] {
            node.join("mem://n0").await.expect("join");
        }
        let early: BTreeSet<String> = (0..n - 1).map(|i| format!("n{i}")).collect();
        for node in &nodes[..n - 1] {
            let want = early.clone();
            node.wait_until(Duration::from_secs(60), move |x| x.alive() == want)
                .await
                .expect("converge");
        }
        // A join: the last node joins; time until everyone has it alive.
        let last = format!("n{}", n - 1);
        let t = Instant::now();
        nodes[n - 1].join("mem://n0").await.expect("join");
        for node in &nodes {
            let l = last.clone();
            node.wait_until(Duration::from_secs(60), move |x| x.alive().contains(&l))
                .await
                .expect("join seen");
        }
        let join = t.elapsed();
        // A crash: n1's links all go; time until every other node has it down.
        let t = Instant::now();
        net.isolate("n1");
        for (i, node) in nodes.iter().enumerate() {
            if i == 1 {
                continue;
            }
            node.wait_until(Duration::from_secs(60), |x| {
                x.members()
                    .iter()
                    .any(|m| m.name == "n1" && m.state == MemberState::Down)
            })
            .await
            .expect("crash seen");
        }
        let crash = t.elapsed();
        println!(
            "| {} | {:.0} | {:.0} |",
            rep + 1,
            join.as_secs_f64() * 1e3,
            crash.as_secs_f64() * 1e3
        );
        for node in nodes {
            node.rpc().shutdown();
        }
    }
}
