//! [`DistNeighborSampler`]: multi-hop sampling across partitions.

use super::{DistDataset, DistFeature, DistGraph};
use crate::sample::{begin_batch, end_hop};
use crate::{GraphError, Inducer, NeighborBatch, SamplerConfig, SamplerOutput};

/// One sampled mini-batch, as loaders yield it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampledBatch {
    /// The epoch it belongs to.
    pub epoch: u64,
    /// Its index in the epoch (per producer in remote mode).
    pub index: u64,
    /// The seeds (global ids), in batch order.
    pub seeds: Vec<u64>,
    /// The sampled, relabelled subgraph.
    pub output: SamplerOutput,
    /// Features of `output.nodes`, row after row, when collected (else
    /// empty).
    pub node_features: Vec<f32>,
    /// Floats per feature row (0 without features).
    pub feature_dim: usize,
}

/// Multi-hop neighbour sampling over a [`DistGraph`]: the loop of
/// [`NeighborSampler`](crate::NeighborSampler) with each hop's frontier
/// sampled across partitions ([`DistGraph::sample_one_hop`]). For the same
/// [`SamplerConfig`], seeds and batch number its output equals the
/// single-process sampler's, exactly. GLT's `DistNeighborSampler`, with
/// one batch in flight per sampler (run several for concurrency).
#[derive(Debug)]
pub struct DistNeighborSampler {
    graph: DistGraph,
    features: Option<DistFeature>,
    config: SamplerConfig,
    inducer: Inducer,
    merged: NeighborBatch,
    frontier: Vec<u64>,
}

impl DistNeighborSampler {
    /// A sampler over `ds` for `config` (fanouts checked). With
    /// `collect_features` (and node features in `ds`), batches from
    /// [`sample_batch`](Self::sample_batch) carry the sampled nodes'
    /// features.
    pub fn new(
        ds: &DistDataset,
        config: SamplerConfig,
        collect_features: bool,
    ) -> Result<Self, GraphError> {
        config.validate()?;
        Ok(Self {
            graph: ds.graph(),
            features: ds.node_features().filter(|_| collect_features),
            config,
            inducer: Inducer::new(),
            merged: NeighborBatch::default(),
            frontier: Vec::new(),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Samples batch number `batch` from `seeds` into `out`.
    pub async fn sample_from_nodes_into(
        &mut self,
        seeds: &[u64],
        batch: u64,
        out: &mut SamplerOutput,
    ) -> Result<(), GraphError> {
        let ind = &mut self.inducer;
        let mut frontier = begin_batch(ind, seeds, out);
        let opts = self.config.options;
        for (hop, &fanout) in self.config.fanouts.iter().enumerate() {
            let key = self.config.hop_key(batch, hop);
            self.frontier.clear();
            self.frontier
                .extend_from_slice(&ind.nodes()[frontier.clone()]);
            self.graph
                .sample_one_hop(&self.frontier, fanout, key, opts, &mut self.merged)
                .await?;
            frontier = end_hop(ind, frontier, &self.merged, opts.with_edge_ids, out)?;
        }
        ind.take_nodes(&mut out.nodes);
        Ok(())
    }

    /// [`sample_from_nodes_into`](Self::sample_from_nodes_into) into a new
    /// output.
    pub async fn sample_from_nodes(
        &mut self,
        seeds: &[u64],
        batch: u64,
    ) -> Result<SamplerOutput, GraphError> {
        let mut out = SamplerOutput::default();
        self.sample_from_nodes_into(seeds, batch, &mut out).await?;
        Ok(out)
    }

    /// Samples a whole mini-batch: the subgraph and, when collecting, the
    /// features of its nodes (fetched through [`DistFeature`]). `batch` is
    /// the randomness key; `epoch` and `index` only label the result.
    pub async fn sample_batch(
        &mut self,
        seeds: &[u64],
        batch: u64,
        epoch: u64,
        index: u64,
    ) -> Result<SampledBatch, GraphError> {
        let mut b = SampledBatch {
            epoch,
            index,
            seeds: seeds.to_vec(),
            ..SampledBatch::default()
        };
        self.sample_from_nodes_into(seeds, batch, &mut b.output)
            .await?;
        if let Some(f) = &self.features {
            f.get_into(&b.output.nodes, &mut b.node_features).await?;
            b.feature_dim = f.dim();
        }
        Ok(b)
    }
}
