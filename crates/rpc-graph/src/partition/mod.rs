//! Partitioning: [`PartitionBook`]s, the hash and LDG partitioners, cut and
//! balance statistics, and per-partition directories
//! ([`write_partitions`], [`Partition::load`]).
//!
//! Edges are assigned by source: a partition holds every out-edge of the
//! nodes it owns, in global order, with global neighbour and edge ids, so
//! that sampling a node in its partition equals sampling it in the whole
//! graph.

mod store;

use serde::{Deserialize, Serialize};

pub use store::{Partition, PartitionMeta, write_partitions};

use crate::rng::mix64;
use crate::{Csr, GraphError, Progress};

/// Node → partition, dense (4 bytes per node).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionBook {
    parts: Vec<u32>,
    num_partitions: u32,
}

impl PartitionBook {
    /// Wraps `parts[node] = partition`, checking every entry.
    pub fn new(parts: Vec<u32>, num_partitions: u32) -> Result<Self, GraphError> {
        if num_partitions == 0 {
            return Err(GraphError::InvalidArgument("zero partitions".into()));
        }
        if let Some(p) = parts.iter().find(|&&p| p >= num_partitions) {
            return Err(GraphError::Invalid(format!(
                "partition {p} in a book of {num_partitions}"
            )));
        }
        Ok(Self {
            parts,
            num_partitions,
        })
    }

    /// The number of partitions.
    #[must_use]
    pub fn num_partitions(&self) -> u32 {
        self.num_partitions
    }

    /// The number of nodes.
    #[must_use]
    pub fn num_nodes(&self) -> u64 {
        self.parts.len() as u64
    }

    /// The partition owning `node`, `None` out of range.
    #[inline]
    #[must_use]
    pub fn partition_of(&self, node: u64) -> Option<u32> {
        self.parts.get(usize::try_from(node).ok()?).copied()
    }

    /// The dense table.
    #[must_use]
    pub fn as_slice(&self) -> &[u32] {
        &self.parts
    }

    /// The nodes of partition `p`, ascending.
    #[must_use]
    pub fn nodes_of(&self, p: u32) -> Vec<u64> {
        (0..self.parts.len() as u64)
            .filter(|&v| self.parts[v as usize] == p)
            .collect()
    }

    /// Splits `ids` by owner: entry `p` lists the positions in `ids` of the
    /// nodes partition `p` owns, in order. What a distributed sampler does
    /// with each frontier.
    pub fn split(&self, ids: &[u64]) -> Result<Vec<Vec<usize>>, GraphError> {
        let mut out = vec![Vec::new(); self.num_partitions as usize];
        for (i, &id) in ids.iter().enumerate() {
            let p = self
                .partition_of(id)
                .ok_or(GraphError::NodeNotFound { node: id })?;
            out[p as usize].push(i);
        }
        Ok(out)
    }
}

/// Edge → partition, for edges assigned by source: the partition of the
/// source of edge `e`, found by binary search in the global row pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeBook {
    indptr: Vec<u64>,
}

impl EdgeBook {
    /// The book of the graph with this global row pointer.
    #[must_use]
    pub fn new(indptr: Vec<u64>) -> Self {
        Self { indptr }
    }

    /// The source node of global edge `e`, `None` out of range.
    #[must_use]
    pub fn source_of(&self, e: u64) -> Option<u64> {
        if e >= *self.indptr.last()? {
            return None;
        }
        Some(self.indptr.partition_point(|&p| p <= e) as u64 - 1)
    }

    /// The partition holding edge `e`.
    #[must_use]
    pub fn partition_of(&self, e: u64, nodes: &PartitionBook) -> Option<u32> {
        nodes.partition_of(self.source_of(e)?)
    }
}

/// How to assign nodes to partitions.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Partitioner {
    /// `hash(seed, node) % P`: perfect expected balance, about `1 - 1/P`
    /// of the edges cut.
    Hash {
        /// The seed.
        seed: u64,
    },
    /// Linear deterministic greedy (Stanton & Kliot), one streaming pass in
    /// id order: a node joins the partition holding most of its already
    /// placed in- and out-neighbours, weighted by `1 - fill`, where `fill`
    /// is the larger of the partition's node count and edge count (edges go
    /// with their source) over its capacity, `(1 + slack)` times the mean.
    /// A full partition takes no more nodes; ties go to the least filled.
    /// Balancing edges too matters: with nodes alone, a power-law graph
    /// puts nearly every edge in one partition.
    Ldg {
        /// Allowed imbalance, e.g. 0.05.
        slack: f64,
    },
}

/// Partition quality.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartitionStats {
    /// Nodes per partition.
    pub nodes: Vec<u64>,
    /// Edges (by source) per partition.
    pub edges: Vec<u64>,
    /// Edges whose endpoints are in different partitions.
    pub edge_cut: u64,
    /// `edge_cut / E` (0 for no edges).
    pub edge_cut_fraction: f64,
    /// Largest partition's node count over the mean (1 = perfect).
    pub node_balance: f64,
    /// Largest partition's edge count over the mean.
    pub edge_balance: f64,
}

impl PartitionStats {
    /// Measures `book` on `graph`.
    pub fn measure(graph: &Csr, book: &PartitionBook) -> Result<Self, GraphError> {
        let n = graph.num_rows();
        if book.num_nodes() != n as u64 {
            return Err(GraphError::Invalid(format!(
                "book of {} nodes for a graph of {n}",
                book.num_nodes()
            )));
        }
        let p = book.num_partitions() as usize;
        let mut nodes = vec![0u64; p];
        let mut edges = vec![0u64; p];
        let mut cut = 0u64;
        let parts = book.as_slice();
        for v in 0..n {
            let pv = parts[v];
            nodes[pv as usize] += 1;
            let row = &graph.indices()[graph.indptr()[v] as usize..graph.indptr()[v + 1] as usize];
            edges[pv as usize] += row.len() as u64;
            for &u in row {
                let pu = parts
                    .get(u as usize)
                    .ok_or_else(|| GraphError::Invalid(format!("neighbour {u} out of range")))?;
                cut += u64::from(*pu != pv);
            }
        }
        let e = graph.num_edges() as f64;
        let balance = |xs: &[u64]| {
            let total: u64 = xs.iter().sum();
            let max = xs.iter().copied().max().unwrap_or(0);
            if total == 0 {
                1.0
            } else {
                max as f64 * xs.len() as f64 / total as f64
            }
        };
        Ok(Self {
            node_balance: balance(&nodes),
            edge_balance: balance(&edges),
            nodes,
            edges,
            edge_cut: cut,
            edge_cut_fraction: if e > 0.0 { cut as f64 / e } else { 0.0 },
        })
    }
}

/// Partitions `graph` into `num_partitions` with `method`, and measures
/// the result.
pub fn partition(
    graph: &Csr,
    num_partitions: u32,
    method: Partitioner,
    progress: Progress,
) -> Result<(PartitionBook, PartitionStats), GraphError> {
    if num_partitions == 0 {
        return Err(GraphError::InvalidArgument("zero partitions".into()));
    }
    let n = graph.num_rows();
    let parts = match method {
        Partitioner::Hash { seed } => {
            let stage = progress.stage("partition", 1);
            let s = mix64(seed);
            let parts = (0..n as u64)
                .map(|v| (mix64(s ^ v) % u64::from(num_partitions)) as u32)
                .collect();
            stage.inc(1);
            stage.finish();
            parts
        }
        Partitioner::Ldg { slack } => {
            if !(slack >= 0.0 && slack.is_finite()) {
                return Err(GraphError::InvalidArgument(format!("LDG slack {slack}")));
            }
            ldg(graph, num_partitions, slack, progress)?
        }
    };
    let book = PartitionBook::new(parts, num_partitions)?;
    let stats = PartitionStats::measure(graph, &book)?;
    Ok((book, stats))
}

/// The LDG pass.
fn ldg(graph: &Csr, k: u32, slack: f64, progress: Progress) -> Result<Vec<u32>, GraphError> {
    const NONE: u32 = u32::MAX;
    let n = graph.num_rows();
    let reverse = graph.reverse(n as u64)?;
    let cap = |total: usize| (total as f64 / f64::from(k) * (1.0 + slack)).max(1.0);
    let (node_cap, edge_cap) = (cap(n), cap(graph.num_edges()));
    let mut parts = vec![NONE; n];
    let mut nodes = vec![0u64; k as usize];
    let mut edges = vec![0u64; k as usize];
    let mut counts = vec![0u64; k as usize];
    let stage = progress.stage("partition", n as u64);
    for v in 0..n {
        counts.fill(0);
        for g in [graph, &reverse] {
            let row = &g.indices()[g.indptr()[v] as usize..g.indptr()[v + 1] as usize];
            for &u in row {
                if let Some(&p) = parts.get(u as usize)
                    && p != NONE
                {
                    counts[p as usize] += 1;
                }
            }
        }
        let deg = graph.degree(v) as u64;
        let mut best = None::<(bool, f64, f64, usize)>;
        for p in 0..k as usize {
            let fill = (nodes[p] as f64 / node_cap).max(edges[p] as f64 / edge_cap);
            let room = nodes[p] as f64 + 1.0 <= node_cap && (edges[p] + deg) as f64 <= edge_cap;
            let score = counts[p] as f64 * (1.0 - fill);
            // Order: has room, then score, then least filled; when no
            // partition has room, least filled.
            let better = match best {
                None => true,
                Some((br, bs, bf, _)) => match (room, br) {
                    (true, false) => true,
                    (false, true) => false,
                    (true, true) => score > bs || (score == bs && fill < bf),
                    (false, false) => fill < bf,
                },
            };
            if better {
                best = Some((room, score, fill, p));
            }
        }
        let (_, _, _, p) =
            best.ok_or_else(|| GraphError::InvalidArgument("zero partitions".into()))?;
        parts[v] = p as u32;
        nodes[p] += 1;
        edges[p] += deg;
        if v % 65536 == 0 {
            stage.inc(65536.min((n - v) as u64));
        }
    }
    stage.finish();
    Ok(parts)
}
