//! A simulated cluster: engines on an in-memory network whose links can be
//! cut, with tokio's paused clock.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use rpc_core::{MemNetwork, Rpc};
use rpc_discovery::{DiscoveryConfig, MemberState, MembershipConfig, Node};

/// Far above what convergence needs in simulated time.
pub const LONG: Duration = Duration::from_secs(600);

pub struct Sim {
    pub net: MemNetwork,
    pub nodes: Vec<Node>,
}

pub fn config(seed: u64) -> DiscoveryConfig {
    let mut c = DiscoveryConfig::default();
    let mut m = MembershipConfig::default();
    m.rng_seed = Some(seed);
    c.membership = m;
    c
}

/// Starts an engine named `name` on host `name`, listening on
/// `mem://name`, and makes it a node.
pub async fn node(net: &MemNetwork, name: &str, cfg: DiscoveryConfig) -> Node {
    node_on(net, name, name, cfg).await
}

/// Like [`node`], on host `host` (listening on `mem://host`).
pub async fn node_on(net: &MemNetwork, host: &str, name: &str, cfg: DiscoveryConfig) -> Node {
    let node = bare_node_on(net, host, name, cfg).await;
    node.rpc()
        .define("echo", |s: String| async move {
            Ok::<_, rpc_core::HandlerError>(s)
        })
        .unwrap();
    node
}

/// A node with no functions of its own.
pub async fn bare_node_on(net: &MemNetwork, host: &str, name: &str, cfg: DiscoveryConfig) -> Node {
    let rpc = Rpc::new();
    rpc.set_name(name).unwrap();
    rpc.add_transport(net.transport_on(host));
    rpc.listen(&format!("mem://{host}")).await.unwrap();
    Node::start(&rpc, cfg).unwrap()
}

impl Sim {
    /// `n` nodes named n0..n{n-1}; every one joins through n0.
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, |_| config(0)).await
    }

    pub async fn start_with(n: usize, cfg: impl Fn(usize) -> DiscoveryConfig) -> Self {
        Self::start_opts(n, true, cfg).await
    }

    /// `echo`: whether each node defines a plain `echo` (String → String).
    pub async fn start_opts(n: usize, echo: bool, cfg: impl Fn(usize) -> DiscoveryConfig) -> Self {
        let net = MemNetwork::new();
        let mut nodes = Vec::new();
        for i in 0..n {
            let mut c = cfg(i);
            c.membership.rng_seed = Some(i as u64 + 1);
            let name = format!("n{i}");
            nodes.push(if echo {
                node(&net, &name, c).await
            } else {
                bare_node_on(&net, &name, &name, c).await
            });
        }
        for n in &nodes[1..] {
            n.join("mem://n0").await.unwrap();
        }
        Self { net, nodes }
    }

    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name().to_owned()).collect()
    }

    /// Waits until every node in `who` sees exactly `alive` as live.
    pub async fn converge(&self, who: &[usize], alive: &[usize]) {
        let want: std::collections::BTreeSet<String> =
            alive.iter().map(|i| format!("n{i}")).collect();
        for &i in who {
            let w = want.clone();
            self.nodes[i]
                .wait_until(LONG, move |n| n.alive() == w)
                .await
                .unwrap_or_else(|e| {
                    panic!("n{i} did not converge: {e}\n{}", self.nodes[i].debug_info())
                });
        }
    }

    /// Waits until every node in `who` has `dead` as down.
    pub async fn declared_dead(&self, who: &[usize], dead: usize) {
        let name = format!("n{dead}");
        for &i in who {
            let d = name.clone();
            self.nodes[i]
                .wait_until(LONG, move |n| {
                    n.members()
                        .iter()
                        .any(|m| m.name == d && m.state == MemberState::Down)
                })
                .await
                .unwrap_or_else(|e| panic!("n{i} never declared {name} dead: {e}"));
        }
    }
}
