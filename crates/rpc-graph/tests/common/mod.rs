//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rpc_graph::{Csr, NeighborSource, RmatConfig, SamplerOutput};

/// The hand-made graph: 6 nodes, 10 edges, node 3 has no out-edges.
pub fn hand_made() -> Csr {
    Csr::from_edges(
        6,
        &[
            (0, 1),
            (0, 2),
            (0, 3),
            (1, 2),
            (2, 0),
            (2, 3),
            (2, 4),
            (2, 5),
            (4, 5),
            (5, 0),
        ],
    )
    .unwrap()
}

/// A small R-MAT graph (2^scale nodes).
pub fn rmat(scale: u32, edge_factor: u32, seed: u64) -> Csr {
    RmatConfig::new(scale, edge_factor, seed)
        .generate_graph(rpc_graph::Progress::hidden())
        .unwrap()
}

/// A fresh, empty directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rpc-graph-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Checks the invariants of a multi-hop output against the graph: every
/// edge exists (with the right edge id), counts per source respect the
/// fanout and the replacement rule, seeds come first.
#[track_caller]
pub fn check_output(g: &Csr, out: &SamplerOutput, seeds: &[u64], fanouts: &[i32], replace: bool) {
    assert_eq!(out.seed_positions.len(), seeds.len());
    for (s, &p) in seeds.iter().zip(&out.seed_positions) {
        assert_eq!(out.nodes[p as usize], *s);
    }
    let mut unique = out.nodes.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), out.nodes.len(), "nodes are unique");
    assert_eq!(out.num_sampled_edges.len(), fanouts.len());
    let with_eids = !out.edge_ids.is_empty();
    for (hop, &f) in fanouts.iter().enumerate() {
        let r = out.hop_edges(hop);
        let mut per_src: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
        for e in r {
            per_src.entry(out.rows[e]).or_default().push(e);
        }
        for (&src_local, edges) in &per_src {
            let src = out.nodes[src_local as usize];
            let nbrs = g.neighbors(src).unwrap();
            let d = nbrs.targets.len();
            let mut positions = Vec::new();
            for &e in edges {
                let dst = out.nodes[out.cols[e] as usize];
                assert!(nbrs.targets.contains(&dst), "edge {src}->{dst} exists");
                if with_eids {
                    let eid = out.edge_ids[e];
                    let pos = (eid - g.indptr()[src as usize]) as usize;
                    assert_eq!(nbrs.targets[pos], dst, "edge id {eid} is {src}->{dst}");
                    positions.push(pos);
                }
            }
            let expect = match (f, replace) {
                (-1, _) => d,
                (f, false) => d.min(f as usize),
                (f, true) => f as usize,
            };
            assert_eq!(edges.len(), expect, "node {src} of degree {d}, fanout {f}");
            if with_eids && !replace {
                positions.sort_unstable();
                positions.dedup();
                assert_eq!(
                    positions.len(),
                    edges.len(),
                    "no edge repeats without replacement"
                );
            }
        }
    }
}
