//! Neighbour sampling: the one-hop primitive [`sample_neighbors`], the
//! relabelling [`Inducer`], the multi-hop [`NeighborSampler`], edge-seed
//! sampling for link prediction, induced subgraphs and heterogeneous
//! sampling.
//!
//! # Semantics
//!
//! For a node of degree `d` and a fanout `k`:
//! - `k == -1`: all `d` neighbours, in stored order.
//! - without replacement (the default): exactly `min(d, k)` distinct
//!   positions of the neighbour list (distinct edges; a multigraph may
//!   repeat a neighbour id). When `k >= d` that is the whole list in stored
//!   order. GraphLearn-for-PyTorch instead silently samples *with*
//!   replacement when `d > k`, so its batches hold duplicate edges.
//! - with replacement: exactly `k` uniform draws when `d > 0` (even when
//!   `k > d`), none when `d == 0`.
//!
//! # Determinism across processes
//!
//! The draws for a node at one hop come from a generator seeded by
//! `(HopKey, global node id)` only ([`WyRand::for_key`]). The result for a
//! node therefore does not depend on which other nodes are sampled with it,
//! in which order, or in which process: a distributed sampler that sends
//! each frontier node to the partition owning it, then merges the
//! [`NeighborBatch`]es back into frontier order ([`NeighborBatch::merge`])
//! and feeds them to the same [`Inducer`], reproduces
//! [`NeighborSampler`]'s output exactly.
//!
//! [`WyRand::for_key`]: crate::WyRand::for_key

mod hetero;
mod induce;
mod link;
mod multi;
mod subgraph;

use serde::{Deserialize, Serialize};

pub use hetero::{HeteroSampler, HeteroSamplerOutput, TypedEdges};
pub use induce::Inducer;
pub use link::{LinkSamplerOutput, NegativeSampling, sample_from_edges};
pub use multi::{NeighborSampler, SamplerConfig, SamplerOutput};
pub(crate) use multi::{begin_batch, end_hop};
pub use subgraph::{Subgraph, induced_subgraph};

use crate::rng::{WyRand, mix64};
use crate::{GraphError, NeighborSource};

/// Fanouts up to this size draw without replacement with Floyd's algorithm
/// over a stack buffer; larger ones use selection sampling (one pass over
/// the neighbour list).
const FLOYD_MAX: usize = 64;

/// The key of one hop of one batch: with a node's global id it determines
/// that node's draws. Build it with [`HopKey::new`] on every side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HopKey(pub u64);

impl HopKey {
    /// The key for hop `hop` (0-based) of batch `batch` under sampler seed
    /// `seed`. `batch` is any counter the caller keeps unique per batch,
    /// for instance `epoch << 32 | batch_in_epoch`.
    #[must_use]
    pub fn new(seed: u64, batch: u64, hop: u32) -> Self {
        let s = mix64(seed ^ 0x5851_F42D_4C95_7F2D);
        let b = mix64(s ^ batch);
        Self(mix64(b ^ (u64::from(hop) << 32 | 0xA5A5)))
    }

    /// A key derived from this one for a sub-stream (an edge type, the
    /// negative edges of a batch), so that streams do not share draws.
    #[must_use]
    pub fn derive(self, salt: u64) -> Self {
        Self(mix64(self.0 ^ mix64(salt)))
    }
}

/// How to draw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleOptions {
    /// Draw with replacement (see the module docs for the semantics).
    pub replace: bool,
    /// Return the edge id of every sampled edge.
    pub with_edge_ids: bool,
}

/// The result of sampling one hop for a list of nodes, flat: node `i` of
/// the input got `counts[i]` neighbours, stored consecutively in
/// `neighbors` (global ids), and in `edge_ids` when edge ids were asked
/// (else `edge_ids` is empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborBatch {
    /// Neighbours sampled per input node.
    pub counts: Vec<u64>,
    /// Sampled neighbours (global ids), input node after input node.
    pub neighbors: Vec<u64>,
    /// Global edge ids of the sampled edges, or empty.
    pub edge_ids: Vec<u64>,
}

impl NeighborBatch {
    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.counts.clear();
        self.neighbors.clear();
        self.edge_ids.clear();
    }

    /// Checks the batch's internal consistency, and that it answers
    /// `expected_nodes` input nodes: the check a receiver runs on a batch
    /// that came from another process.
    pub fn validate(&self, expected_nodes: usize) -> Result<(), GraphError> {
        if self.counts.len() != expected_nodes {
            return Err(GraphError::Invalid(format!(
                "batch answers {} nodes, expected {expected_nodes}",
                self.counts.len()
            )));
        }
        let total = self.counts.iter().try_fold(0u64, |a, &c| a.checked_add(c));
        if total != Some(self.neighbors.len() as u64) {
            return Err(GraphError::Invalid(format!(
                "batch counts do not add up to its {} neighbours",
                self.neighbors.len()
            )));
        }
        if !self.edge_ids.is_empty() && self.edge_ids.len() != self.neighbors.len() {
            return Err(GraphError::Invalid(format!(
                "{} edge ids for {} neighbours",
                self.edge_ids.len(),
                self.neighbors.len()
            )));
        }
        Ok(())
    }

    /// Merges batches that answered parts of one frontier back into
    /// frontier order: `parts[j] = (positions, batch)` where `batch`
    /// answers the frontier nodes at `positions` (in that order). Every
    /// position in `0..total` must be covered exactly once. Edge ids are
    /// kept only if every part has them (or has no edges).
    pub fn merge(
        total: usize,
        parts: &[(&[usize], &Self)],
        out: &mut Self,
    ) -> Result<(), GraphError> {
        // Where each frontier position's answer lives: (part, first edge).
        let mut from = vec![(u32::MAX, 0usize, 0usize); total];
        let mut want_eids = true;
        for (j, (positions, batch)) in parts.iter().enumerate() {
            batch.validate(positions.len())?;
            want_eids &= batch.edge_ids.len() == batch.neighbors.len();
            let mut offset = 0usize;
            for (&p, &c) in positions.iter().zip(&batch.counts) {
                let slot = from.get_mut(p).ok_or_else(|| {
                    GraphError::Invalid(format!("position {p} past frontier of {total}"))
                })?;
                if slot.0 != u32::MAX {
                    return Err(GraphError::Invalid(format!("position {p} answered twice")));
                }
                *slot = (j as u32, offset, c as usize);
                offset += c as usize;
            }
        }
        out.clear();
        for (p, &(j, offset, c)) in from.iter().enumerate() {
            let Some((_, batch)) = parts.get(j as usize) else {
                return Err(GraphError::Invalid(format!("position {p} not answered")));
            };
            out.counts.push(c as u64);
            out.neighbors
                .extend_from_slice(&batch.neighbors[offset..offset + c]);
            if want_eids {
                out.edge_ids
                    .extend_from_slice(&batch.edge_ids[offset..offset + c]);
            }
        }
        Ok(())
    }
}

/// Samples one hop: up to `fanout` out-neighbours of each of `nodes`
/// (global ids), with the draws for node `v` determined by `(key, v)`
/// alone. Allocates the result; see [`sample_neighbors_into`].
pub fn sample_neighbors<S: NeighborSource + ?Sized>(
    source: &S,
    nodes: &[u64],
    fanout: i32,
    key: HopKey,
    opts: SampleOptions,
) -> Result<NeighborBatch, GraphError> {
    let mut out = NeighborBatch::default();
    sample_neighbors_into(source, nodes, fanout, key, opts, &mut out)?;
    Ok(out)
}

/// [`sample_neighbors`] into a reused batch (cleared first).
///
/// Fails with [`GraphError::NodeNotFound`] for a node `source` does not
/// hold, and [`GraphError::InvalidArgument`] for a fanout below -1.
pub fn sample_neighbors_into<S: NeighborSource + ?Sized>(
    source: &S,
    nodes: &[u64],
    fanout: i32,
    key: HopKey,
    opts: SampleOptions,
    out: &mut NeighborBatch,
) -> Result<(), GraphError> {
    if fanout < -1 {
        return Err(GraphError::InvalidArgument(format!("fanout {fanout}")));
    }
    out.clear();
    out.counts.reserve(nodes.len());
    if fanout >= 0 {
        out.neighbors.reserve(nodes.len() * fanout as usize);
    }
    let mut picks = [0u64; FLOYD_MAX];
    for &node in nodes {
        let nbrs = source
            .neighbors(node)
            .ok_or(GraphError::NodeNotFound { node })?;
        let d = nbrs.targets.len();
        let before = out.neighbors.len();
        if fanout < 0 || (!opts.replace && fanout as usize >= d) {
            out.neighbors.extend_from_slice(nbrs.targets);
            if opts.with_edge_ids {
                push_all_edge_ids(&nbrs, &mut out.edge_ids);
            }
        } else if d > 0 {
            let k = fanout as usize;
            let mut rng = WyRand::for_key(key.0, node);
            if opts.replace {
                for _ in 0..k {
                    let i = rng.below(d as u64) as usize;
                    push_one(&nbrs, i, opts.with_edge_ids, out);
                }
            } else if k <= FLOYD_MAX {
                let chosen = floyd(k, d, &mut rng, &mut picks);
                for &i in chosen {
                    push_one(&nbrs, i as usize, opts.with_edge_ids, out);
                }
            } else {
                selection(k, d, &mut rng, |i| {
                    push_one(&nbrs, i, opts.with_edge_ids, out);
                });
            }
        }
        out.counts.push((out.neighbors.len() - before) as u64);
    }
    Ok(())
}

#[inline]
fn push_one(nbrs: &crate::Neighbors<'_>, i: usize, with_eids: bool, out: &mut NeighborBatch) {
    out.neighbors.push(nbrs.targets[i]);
    if with_eids {
        out.edge_ids.push(nbrs.edge_ids.get(i));
    }
}

fn push_all_edge_ids(nbrs: &crate::Neighbors<'_>, out: &mut Vec<u64>) {
    match nbrs.edge_ids {
        crate::EdgeIds::Implicit(first) => out.extend(first..first + nbrs.targets.len() as u64),
        crate::EdgeIds::Explicit(ids) => out.extend_from_slice(ids),
    }
}

/// Floyd's algorithm: `k` distinct positions of `0..d` (`k < d`,
/// `k <= FLOYD_MAX`), each `k`-subset equally likely, in O(k²) compares and
/// `k` draws, without allocating.
#[inline]
fn floyd<'a>(k: usize, d: usize, rng: &mut WyRand, buf: &'a mut [u64; FLOYD_MAX]) -> &'a [u64] {
    let mut n = 0;
    for j in (d - k) as u64..d as u64 {
        let t = rng.below(j + 1);
        buf[n] = if buf[..n].contains(&t) { j } else { t };
        n += 1;
    }
    &buf[..n]
}

/// Knuth's selection sampling: `k` distinct positions of `0..d`
/// (`k < d`), ascending, in one pass over `0..d`.
fn selection(k: usize, d: usize, rng: &mut WyRand, mut f: impl FnMut(usize)) {
    let mut needed = k as u64;
    for i in 0..d {
        if needed == 0 {
            break;
        }
        if rng.below((d - i) as u64) < needed {
            f(i);
            needed -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Csr;

    #[test]
    fn floyd_and_selection_give_distinct_in_range_positions() {
        let mut rng = WyRand::new(3);
        let mut buf = [0u64; FLOYD_MAX];
        for (k, d) in [(1, 2), (5, 6), (15, 100), (64, 65)] {
            let mut got = floyd(k, d, &mut rng, &mut buf).to_vec();
            got.sort_unstable();
            got.dedup();
            assert_eq!(got.len(), k);
            assert!(got.iter().all(|&i| i < d as u64));
        }
        let mut got = Vec::new();
        selection(70, 100, &mut rng, |i| got.push(i));
        assert_eq!(got.len(), 70);
        assert!(got.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn merge_restores_frontier_order() {
        let g = Csr::from_edges(4, &[(0, 1), (1, 2), (1, 3), (2, 0), (3, 1)]).unwrap();
        let opts = SampleOptions {
            replace: false,
            with_edge_ids: true,
        };
        let key = HopKey::new(1, 0, 0);
        let whole = sample_neighbors(&g, &[3, 1, 0, 2], -1, key, opts).unwrap();
        let a = sample_neighbors(&g, &[1, 2], -1, key, opts).unwrap();
        let b = sample_neighbors(&g, &[3, 0], -1, key, opts).unwrap();
        let mut merged = NeighborBatch::default();
        NeighborBatch::merge(4, &[(&[1, 3], &a), (&[0, 2], &b)], &mut merged).unwrap();
        assert_eq!(merged, whole);
        assert!(NeighborBatch::merge(4, &[(&[1, 3], &a)], &mut merged).is_err());
        assert!(NeighborBatch::merge(4, &[(&[1, 1], &a)], &mut merged).is_err());
    }

    #[test]
    fn fanout_below_minus_one_is_rejected() {
        let g = Csr::from_edges(1, &[]).unwrap();
        let r = sample_neighbors(&g, &[0], -2, HopKey(0), SampleOptions::default());
        assert!(matches!(r, Err(GraphError::InvalidArgument(_))));
    }
}
