//! [`DistGraph`]: one-hop sampling of a frontier spread over partitions.

use std::sync::Arc;

use futures_util::future::{join, join_all};

use super::Router;
use super::wire::{SampleAnswer, SampleRequest, ids_tensor};
use crate::{
    GraphError, HopKey, NeighborBatch, Partition, PartitionBook, SampleOptions,
    sample_neighbors_into,
};

const SAMPLE: &str = "graph.sample_one_hop";

/// The graph across partitions: the local partition's rows in process,
/// the others' through their servers. GLT's `DistGraph`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DistGraph {
    local: Option<Arc<Partition>>,
    book: Arc<PartitionBook>,
    router: Router,
}

impl DistGraph {
    /// The graph of `local` (if any) and the partitions `router` reaches.
    #[must_use]
    pub fn new(local: Option<Arc<Partition>>, book: Arc<PartitionBook>, router: Router) -> Self {
        Self {
            local,
            book,
            router,
        }
    }

    /// The local partition, if any.
    #[must_use]
    pub fn local(&self) -> Option<&Arc<Partition>> {
        self.local.as_ref()
    }

    /// The node book.
    #[must_use]
    pub fn book(&self) -> &Arc<PartitionBook> {
        &self.book
    }

    /// The partition of each of `ids` (GLT's `get_node_partitions`).
    pub fn node_partitions(&self, ids: &[u64]) -> Result<Vec<u32>, GraphError> {
        ids.iter()
            .map(|&v| {
                self.book
                    .partition_of(v)
                    .ok_or(GraphError::NodeNotFound { node: v })
            })
            .collect()
    }

    /// Samples one hop for `ids` (global) into `out`, in `ids` order,
    /// exactly as [`sample_neighbors_into`] over the whole graph would:
    /// the frontier is split by owner, one request goes to each remote
    /// partition that owns part of it (all at once), the local part is
    /// sampled meanwhile, and the answers are checked and merged.
    pub async fn sample_one_hop(
        &self,
        ids: &[u64],
        fanout: i32,
        key: HopKey,
        options: SampleOptions,
        out: &mut NeighborBatch,
    ) -> Result<(), GraphError> {
        let split = self.book.split(ids)?;
        let local_index = self.local.as_ref().map(|l| l.index);
        let mut remote = Vec::new();
        let mut local_positions: &[usize] = &[];
        for (p, positions) in split.iter().enumerate() {
            if positions.is_empty() {
                continue;
            }
            if Some(p as u32) == local_index {
                local_positions = positions;
                continue;
            }
            let sub: Vec<u64> = positions.iter().map(|&i| ids[i]).collect();
            let req = SampleRequest {
                ids: ids_tensor(&sub)?,
                fanout,
                key,
                options,
            };
            remote.push(self.remote_hop(p as u32, req, positions.len()));
        }
        let local_sub: Vec<u64> = local_positions.iter().map(|&i| ids[i]).collect();
        let local = async {
            let mut b = NeighborBatch::default();
            if let Some(part) = self.local.as_ref().filter(|_| !local_sub.is_empty()) {
                sample_neighbors_into(&part.graph, &local_sub, fanout, key, options, &mut b)?;
            }
            Ok::<_, GraphError>(b)
        };
        // `join` polls the remote calls first, so their requests are on
        // the wire while the local part is sampled.
        let (answers, local) = join(join_all(remote), local).await;
        let local = local?;
        let mut parts: Vec<(u32, NeighborBatch)> = Vec::with_capacity(answers.len() + 1);
        for a in answers {
            parts.push(a?);
        }
        if let Some(l) = local_index.filter(|_| !local_positions.is_empty()) {
            parts.push((l, local));
        }
        let refs: Vec<(&[usize], &NeighborBatch)> = parts
            .iter()
            .map(|(p, b)| (split[*p as usize].as_slice(), b))
            .collect();
        NeighborBatch::merge(ids.len(), &refs, out)
    }

    /// One remote part of a hop: partition `p`'s answer, checked.
    async fn remote_hop(
        &self,
        p: u32,
        req: SampleRequest,
        expected: usize,
    ) -> Result<(u32, NeighborBatch), GraphError> {
        let answer: SampleAnswer = self.router.call(p, SAMPLE, &req).await?;
        let batch = answer
            .into_batch(expected)
            .map_err(|d| self.router.bad_answer(p, SAMPLE, d))?;
        Ok((p, batch))
    }
}
