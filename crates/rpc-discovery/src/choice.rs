//! The engine's transport policy: one [`TransportBandit`] per peer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rpc_core::TransportPolicy;

use crate::bandit::{BanditConfig, TransportBandit};

/// Picks the transport of each call to a peer with a bandit over its
/// measured, size-normalised latencies (see [`crate::bandit`]). Installed
/// by [`Node::start`](crate::Node::start); shown in the engine's
/// `debug_info` per peer.
pub(crate) struct BanditPolicy {
    config: BanditConfig,
    peers: Mutex<HashMap<String, TransportBandit>>,
}

impl BanditPolicy {
    pub(crate) fn new(config: BanditConfig) -> Self {
        Self {
            config,
            peers: Mutex::default(),
        }
    }
}

impl TransportPolicy for BanditPolicy {
    fn choose(&self, peer: &str, transports: &[&'static str]) -> usize {
        let mut peers = crate::lock(&self.peers);
        let same_arms = peers.get(peer).is_some_and(|b| {
            b.len() == transports.len() && transports.iter().all(|t| b.arm(t).is_some())
        });
        if !same_arms {
            // The set of transports changed (a connection came or went):
            // start over; each arm is tried again first.
            match TransportBandit::new(transports, self.config) {
                Ok(b) => {
                    peers.insert(peer.to_owned(), b);
                }
                Err(_) => return 0,
            }
        }
        let Some(bandit) = peers.get_mut(peer) else {
            return 0;
        };
        let arm = bandit.choose(rand::random());
        bandit
            .name(arm)
            .and_then(|name| transports.iter().position(|t| *t == name))
            .unwrap_or(0)
    }

    fn observe(&self, peer: &str, transport: &'static str, bytes: u64, rtt: Duration) {
        let mut peers = crate::lock(&self.peers);
        if let Some(bandit) = peers.get_mut(peer)
            && let Some(arm) = bandit.arm(transport)
        {
            let _ = bandit.observe(arm, bytes, rtt);
        }
    }

    fn describe(&self, peer: &str) -> Option<String> {
        crate::lock(&self.peers).get(peer).map(ToString::to_string)
    }
}
