//! [`NeighborSampler`]: multi-hop sampling from seed nodes.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::{HopKey, Inducer, NeighborBatch, SampleOptions, sample_neighbors_into};
use crate::{GraphError, NeighborSource};

/// What a multi-hop sampler does; the same value on every side of a
/// distributed sampler gives the same samples.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerConfig {
    /// Neighbours per node at each hop; -1 takes all.
    pub fanouts: Vec<i32>,
    /// Draw with replacement and/or return edge ids.
    pub options: SampleOptions,
    /// The sampler seed.
    pub seed: u64,
}

impl SamplerConfig {
    /// Fanouts without replacement, no edge ids.
    #[must_use]
    pub fn new(fanouts: Vec<i32>, seed: u64) -> Self {
        Self {
            fanouts,
            options: SampleOptions::default(),
            seed,
        }
    }

    /// The key of hop `hop` of batch `batch`.
    #[must_use]
    pub fn hop_key(&self, batch: u64, hop: usize) -> HopKey {
        HopKey::new(self.seed, batch, hop as u32)
    }

    /// Checks the fanouts.
    pub fn validate(&self) -> Result<(), GraphError> {
        match self.fanouts.iter().find(|&&f| f < -1) {
            Some(f) => Err(GraphError::InvalidArgument(format!("fanout {f}"))),
            None => Ok(()),
        }
    }
}

/// A sampled batch, relabelled.
///
/// Node `i` of the batch is global node `nodes[i]`; seeds come first (in
/// input order, duplicates merged), then each hop's new nodes in order of
/// discovery. Edges are flat over all hops: edge `e` goes from the sampled
/// node `rows[e]` to its out-neighbour `cols[e]` (local indices); hop `h`'s
/// edges are a contiguous run of `num_sampled_edges[h]`
/// ([`SamplerOutput::hop_edges`]). For PyG's message-passing convention
/// (messages flow neighbour → node) use `(cols, rows)` as `edge_index`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerOutput {
    /// Global id of each local index.
    pub nodes: Vec<u64>,
    /// Local index of each input seed, in input order.
    pub seed_positions: Vec<u64>,
    /// New nodes per step: the unique seeds, then each hop's new nodes.
    pub num_sampled_nodes: Vec<u64>,
    /// Edge sources (local indices).
    pub rows: Vec<u64>,
    /// Edge targets (local indices).
    pub cols: Vec<u64>,
    /// Global edge ids, when asked (else empty).
    pub edge_ids: Vec<u64>,
    /// Edges per hop.
    pub num_sampled_edges: Vec<u64>,
}

impl SamplerOutput {
    /// Empties the output, keeping its buffers.
    pub fn clear(&mut self) {
        self.nodes.clear();
        self.seed_positions.clear();
        self.num_sampled_nodes.clear();
        self.rows.clear();
        self.cols.clear();
        self.edge_ids.clear();
        self.num_sampled_edges.clear();
    }

    /// The range of hop `hop`'s edges in `rows`/`cols`/`edge_ids`.
    #[must_use]
    pub fn hop_edges(&self, hop: usize) -> Range<usize> {
        let start: u64 = self.num_sampled_edges.iter().take(hop).sum();
        let len = self.num_sampled_edges.get(hop).copied().unwrap_or(0);
        start as usize..(start + len) as usize
    }

    /// The number of sampled edges.
    #[must_use]
    pub fn num_edges(&self) -> usize {
        self.rows.len()
    }
}

/// Multi-hop neighbour sampling over a [`NeighborSource`], reusing its
/// buffers between batches. Single-threaded; run one per thread.
///
/// Each hop samples only the nodes first found at the previous hop (the
/// seeds for hop 0), with [`sample_neighbors_into`] under
/// [`SamplerConfig::hop_key`], and relabels with an [`Inducer`]. The
/// distributed sampler runs the same loop with merged remote batches.
///
/// ```
/// use rpc_graph::{Csr, NeighborSampler, SamplerConfig};
/// let g = Csr::from_edges(4, &[(0, 1), (0, 2), (1, 3), (2, 3)]).unwrap();
/// let mut s = NeighborSampler::new(SamplerConfig::new(vec![-1, -1], 7)).unwrap();
/// let out = s.sample_from_nodes(&g, &[0], 0).unwrap();
/// assert_eq!(out.nodes, vec![0, 1, 2, 3]);
/// assert_eq!(out.num_sampled_edges, vec![2, 2]);
/// ```
#[derive(Clone, Debug)]
pub struct NeighborSampler {
    config: SamplerConfig,
    inducer: Inducer,
    batch: NeighborBatch,
}

impl NeighborSampler {
    /// A sampler for `config` (fanouts checked).
    pub fn new(config: SamplerConfig) -> Result<Self, GraphError> {
        config.validate()?;
        Ok(Self {
            config,
            inducer: Inducer::new(),
            batch: NeighborBatch::default(),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Samples batch number `batch` (part of the randomness key) from
    /// `seeds` (global ids).
    pub fn sample_from_nodes<S: NeighborSource + ?Sized>(
        &mut self,
        source: &S,
        seeds: &[u64],
        batch: u64,
    ) -> Result<SamplerOutput, GraphError> {
        let mut out = SamplerOutput::default();
        self.sample_from_nodes_into(source, seeds, batch, &mut out)?;
        Ok(out)
    }

    /// [`sample_from_nodes`](Self::sample_from_nodes) into a reused output.
    pub fn sample_from_nodes_into<S: NeighborSource + ?Sized>(
        &mut self,
        source: &S,
        seeds: &[u64],
        batch: u64,
        out: &mut SamplerOutput,
    ) -> Result<(), GraphError> {
        let ind = &mut self.inducer;
        let mut frontier = begin_batch(ind, seeds, out);
        let opts = self.config.options;
        for (hop, &fanout) in self.config.fanouts.iter().enumerate() {
            let key = self.config.hop_key(batch, hop);
            let ids = &ind.nodes()[frontier.clone()];
            sample_neighbors_into(source, ids, fanout, key, opts, &mut self.batch)?;
            frontier = end_hop(ind, frontier, &self.batch, opts.with_edge_ids, out)?;
        }
        ind.take_nodes(&mut out.nodes);
        Ok(())
    }
}

/// The start of every multi-hop batch, local or distributed: clears `out`
/// and `ind`, adds the seeds, and returns the first frontier (local
/// indices).
pub(crate) fn begin_batch(
    ind: &mut Inducer,
    seeds: &[u64],
    out: &mut SamplerOutput,
) -> Range<usize> {
    out.clear();
    ind.reset();
    ind.add_seeds(seeds, &mut out.seed_positions);
    let frontier = ind.advance();
    out.num_sampled_nodes.push(frontier.len() as u64);
    frontier
}

/// The end of every hop: induces `batch` (the answer for `frontier`) into
/// `out` and returns the next frontier. After the last hop, take the nodes
/// with [`Inducer::take_nodes`].
pub(crate) fn end_hop(
    ind: &mut Inducer,
    frontier: Range<usize>,
    batch: &NeighborBatch,
    with_edge_ids: bool,
    out: &mut SamplerOutput,
) -> Result<Range<usize>, GraphError> {
    let eids = with_edge_ids.then_some(&mut out.edge_ids);
    let n = ind.induce(frontier, batch, &mut out.rows, &mut out.cols, eids)?;
    out.num_sampled_edges.push(n as u64);
    let next = ind.advance();
    out.num_sampled_nodes.push(next.len() as u64);
    Ok(next)
}
