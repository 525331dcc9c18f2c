//! [`HeteroSampler`]: multi-hop sampling over several edge types.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::{HopKey, Inducer, NeighborBatch, SampleOptions, sample_neighbors_into};
use crate::{EdgeType, GraphError, HeteroSource};

/// Sampled edges of one edge type, flat over hops (see
/// [`SamplerOutput`](super::SamplerOutput) for the conventions): rows are
/// local indices of the source type, cols of the destination type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypedEdges {
    /// Edge sources (local indices of the source node type).
    pub rows: Vec<u64>,
    /// Edge targets (local indices of the destination node type).
    pub cols: Vec<u64>,
    /// Global edge ids (of this edge type), when asked.
    pub edge_ids: Vec<u64>,
    /// Edges per hop.
    pub num_sampled_edges: Vec<u64>,
}

/// A heterogeneous sampled batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeteroSamplerOutput {
    /// Per node type, the global id of each local index (seeds first).
    pub nodes: BTreeMap<String, Vec<u64>>,
    /// Local index of each seed in its type's `nodes`.
    pub seed_positions: Vec<u64>,
    /// Per edge type, the sampled edges.
    pub edges: BTreeMap<EdgeType, TypedEdges>,
}

/// Multi-hop sampling over typed edges.
///
/// At each hop, for each edge type (in sorted order) with a fanout, the
/// frontier of its source type (the nodes of that type first found at the
/// previous hop) is sampled with key
/// `HopKey::new(seed, batch, hop).derive(et.key())`, and neighbours join
/// the destination type's nodes. Only edges of the configured types are
/// followed.
#[derive(Clone, Debug)]
pub struct HeteroSampler {
    fanouts: BTreeMap<EdgeType, Vec<i32>>,
    options: SampleOptions,
    seed: u64,
    inducers: BTreeMap<String, Inducer>,
    scratch: Vec<u64>,
    batch: NeighborBatch,
}

impl HeteroSampler {
    /// A sampler following `fanouts[et][hop]` neighbours of type `et` at
    /// each hop; every list must have the same length (the hop count).
    pub fn new(
        fanouts: BTreeMap<EdgeType, Vec<i32>>,
        options: SampleOptions,
        seed: u64,
    ) -> Result<Self, GraphError> {
        let mut hops = None;
        for (et, f) in &fanouts {
            if *hops.get_or_insert(f.len()) != f.len() {
                return Err(GraphError::InvalidArgument(format!(
                    "{et} has {} hops, others {hops:?}",
                    f.len()
                )));
            }
            if let Some(bad) = f.iter().find(|&&x| x < -1) {
                return Err(GraphError::InvalidArgument(format!("{et}: fanout {bad}")));
            }
        }
        Ok(Self {
            fanouts,
            options,
            seed,
            inducers: BTreeMap::new(),
            scratch: Vec::new(),
            batch: NeighborBatch::default(),
        })
    }

    /// Samples batch `batch` from `seeds` of node type `seed_type`.
    pub fn sample_from_nodes(
        &mut self,
        graph: &dyn HeteroSource,
        seed_type: &str,
        seeds: &[u64],
        batch: u64,
    ) -> Result<HeteroSamplerOutput, GraphError> {
        let mut out = HeteroSamplerOutput::default();
        for ind in self.inducers.values_mut() {
            ind.reset();
        }
        for et in self.fanouts.keys() {
            for ty in [&et.src, &et.dst] {
                self.inducers.entry(ty.clone()).or_default();
            }
            out.edges.insert(et.clone(), TypedEdges::default());
        }
        self.inducers
            .entry(seed_type.into())
            .or_default()
            .add_seeds(seeds, &mut out.seed_positions);
        let mut frontiers: BTreeMap<String, Range<usize>> = self
            .inducers
            .iter_mut()
            .map(|(ty, ind)| (ty.clone(), ind.advance()))
            .collect();
        let hops = self.fanouts.values().next().map_or(0, Vec::len);
        for hop in 0..hops {
            for (et, fanouts) in &self.fanouts {
                let edges = out.edges.entry(et.clone()).or_default();
                let frontier = frontiers.get(&et.src).cloned().unwrap_or_default();
                let source = graph.relation(et).ok_or_else(|| {
                    GraphError::InvalidArgument(format!("graph has no edge type {et}"))
                })?;
                // Copied out: the source and destination types may share
                // one inducer, which `induce` mutates.
                self.scratch.clear();
                if let Some(src_ind) = self.inducers.get(&et.src) {
                    self.scratch
                        .extend_from_slice(&src_ind.nodes()[frontier.clone()]);
                }
                let key = HopKey::new(self.seed, batch, hop as u32).derive(et.key());
                sample_neighbors_into(
                    source,
                    &self.scratch,
                    fanouts[hop],
                    key,
                    self.options,
                    &mut self.batch,
                )?;
                let dst = self.inducers.entry(et.dst.clone()).or_default();
                let eids = self.options.with_edge_ids.then_some(&mut edges.edge_ids);
                let n = dst.induce(
                    frontier,
                    &self.batch,
                    &mut edges.rows,
                    &mut edges.cols,
                    eids,
                )?;
                edges.num_sampled_edges.push(n as u64);
            }
            for (ty, ind) in &mut self.inducers {
                frontiers.insert(ty.clone(), ind.advance());
            }
        }
        for (ty, ind) in &mut self.inducers {
            let mut nodes = Vec::new();
            ind.take_nodes(&mut nodes);
            out.nodes.insert(ty.clone(), nodes);
        }
        Ok(out)
    }
}
