//! Link-state routing: next hops by breadth-first search over the links
//! every live peer advertises. Pure logic.
//!
//! A link counts when either end advertises it (records lag behind
//! connections). The path is the shortest in hops; ties go to the
//! lexicographically smallest neighbour so that every peer computes the same
//! routes from the same records, which keeps paths loop-free once records
//! agree. While they disagree, the engine's hop limit and its rule of never
//! sending a frame back where it came from end any loop.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// Next hops from one peer: destination → the directly connected peer to
/// hand its frames to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    next: HashMap<Arc<str>, Arc<str>>,
    hops: HashMap<Arc<str>, u32>,
}

impl RouteTable {
    /// Computes the routes of `me`, whose live direct links are `direct`,
    /// from the links other live peers advertise (`links`: peer → its
    /// links). Peers missing from `links` are not live and carry no traffic.
    pub fn compute(
        me: &str,
        direct: &BTreeSet<String>,
        links: &BTreeMap<String, BTreeSet<String>>,
    ) -> Self {
        // Adjacency over live peers, both directions.
        let mut adj: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let live = |p: &str| p == me || links.contains_key(p);
        for d in direct {
            if live(d) {
                adj.entry(me).or_default().insert(d);
                adj.entry(d).or_default().insert(me);
            }
        }
        for (peer, theirs) in links {
            if peer == me {
                continue;
            }
            for other in theirs {
                // Our own links are known first hand: only `direct` counts.
                if other == me || !live(other) {
                    continue;
                }
                adj.entry(peer).or_default().insert(other);
                adj.entry(other).or_default().insert(peer);
            }
        }
        let mut table = Self::default();
        let mut first_hop: HashMap<&str, &str> = HashMap::new();
        let mut queue = VecDeque::new();
        let mut dist: HashMap<&str, u32> = HashMap::from([(me, 0)]);
        if let Some(ns) = adj.get(me) {
            for n in ns {
                dist.insert(n, 1);
                first_hop.insert(n, n);
                queue.push_back(*n);
            }
        }
        while let Some(node) = queue.pop_front() {
            let d = dist[node];
            let hop = first_hop[node];
            for next in adj.get(node).into_iter().flatten() {
                if !dist.contains_key(next) {
                    dist.insert(next, d + 1);
                    first_hop.insert(next, hop);
                    queue.push_back(next);
                }
            }
        }
        for (dst, hop) in first_hop {
            table.next.insert(Arc::from(dst), Arc::from(hop));
            table.hops.insert(Arc::from(dst), dist[dst]);
        }
        table
    }

    /// The next hop towards `dst`.
    pub fn next_hop(&self, dst: &str) -> Option<Arc<str>> {
        self.next.get(dst).cloned()
    }

    /// How many links a frame to `dst` crosses (1 = direct).
    pub fn hops(&self, dst: &str) -> Option<u32> {
        self.hops.get(dst).copied()
    }

    /// Every reachable destination with its next hop and distance, sorted.
    pub fn entries(&self) -> Vec<(String, String, u32)> {
        let mut v: Vec<_> = self
            .next
            .iter()
            .map(|(d, h)| (d.to_string(), h.to_string(), self.hops[d]))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(xs: &[&str]) -> BTreeSet<String> {
        xs.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn chain_routes_through_neighbours() {
        // a - b - c - d
        let links = BTreeMap::from([
            ("b".to_owned(), set(&["a", "c"])),
            ("c".to_owned(), set(&["b", "d"])),
            ("d".to_owned(), set(&["c"])),
        ]);
        let t = RouteTable::compute("a", &set(&["b"]), &links);
        assert_eq!(t.next_hop("d").as_deref(), Some("b"));
        assert_eq!(t.hops("d"), Some(3));
        assert_eq!(t.next_hop("b").as_deref(), Some("b"));
        assert_eq!(t.next_hop("zz"), None);
    }

    #[test]
    fn dead_peers_carry_no_traffic_and_our_links_are_first_hand() {
        // a - b - c, but b is not live (no record): c is unreachable.
        let links = BTreeMap::from([("c".to_owned(), set(&["b"]))]);
        let t = RouteTable::compute("a", &set(&["b"]), &links);
        assert_eq!(t.next_hop("c"), None);
        // c claims a link to a that a does not have: not used.
        let links = BTreeMap::from([("c".to_owned(), set(&["a"]))]);
        let t = RouteTable::compute("a", &set(&[]), &links);
        assert_eq!(t.next_hop("c"), None);
    }

    #[test]
    fn shortest_path_wins_and_ties_are_deterministic() {
        // a-b-d, a-c-d, a-e-f-d
        let links = BTreeMap::from([
            ("b".to_owned(), set(&["a", "d"])),
            ("c".to_owned(), set(&["a", "d"])),
            ("e".to_owned(), set(&["a", "f"])),
            ("f".to_owned(), set(&["e", "d"])),
            ("d".to_owned(), set(&["b", "c", "f"])),
        ]);
        let t = RouteTable::compute("a", &set(&["b", "c", "e"]), &links);
        assert_eq!(t.next_hop("d").as_deref(), Some("b"));
        assert_eq!(t.hops("d"), Some(2));
    }
}
