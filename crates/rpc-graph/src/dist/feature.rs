//! [`DistFeature`]: node feature rows from whichever partition holds them.

use std::sync::Arc;

use futures_util::future::{join, join_all};
use rpc_tensor::Tensor;

use super::Router;
use super::wire::ids_tensor;
use crate::{GraphError, Partition, PartitionBook};

const FEATURES: &str = "graph.features";

/// Node features across partitions: local rows are copied in process,
/// remote rows come in one request per partition holding any (all at once),
/// as a tensor attachment, and everything lands in the caller's buffer in
/// request order. GLT's `DistFeature`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DistFeature {
    local: Option<Arc<Partition>>,
    book: Arc<PartitionBook>,
    router: Router,
    dim: usize,
}

impl DistFeature {
    /// Features of dimension `dim`, local in `local` and remote through
    /// `router`.
    #[must_use]
    pub fn new(
        local: Option<Arc<Partition>>,
        book: Arc<PartitionBook>,
        router: Router,
        dim: usize,
    ) -> Self {
        Self {
            local,
            book,
            router,
            dim,
        }
    }

    /// Floats per row.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The rows of `ids`, which must all be local, into `out` (replacing its
    /// contents, keeping its capacity). GLT's `local_get`.
    pub fn local_get(&self, ids: &[u64], out: &mut Vec<f32>) -> Result<(), GraphError> {
        match self.local.as_ref().and_then(|l| l.node_features.as_ref()) {
            Some(f) => f.gather_into(ids, out),
            None => match ids.first() {
                Some(&node) => Err(GraphError::NodeNotFound { node }),
                None => {
                    out.clear();
                    Ok(())
                }
            },
        }
    }

    /// The rows of `ids` (global node ids, any partition) into `out`, in
    /// `ids` order: `out` ends up `ids.len() * dim` floats long and keeps
    /// its capacity between calls.
    pub async fn get_into(&self, ids: &[u64], out: &mut Vec<f32>) -> Result<(), GraphError> {
        let dim = self.dim;
        out.clear();
        out.resize(ids.len() * dim, 0.0);
        let split = self.book.split(ids)?;
        let local_index = self.local.as_ref().map(|l| l.index);
        let mut remote = Vec::new();
        for (p, positions) in split.iter().enumerate() {
            if positions.is_empty() || Some(p as u32) == local_index {
                continue;
            }
            let sub: Vec<u64> = positions.iter().map(|&i| ids[i]).collect();
            remote.push(self.remote_rows(p as u32, ids_tensor(&sub)?, positions.len()));
        }
        let local_positions = local_index.map_or(&[][..], |l| split[l as usize].as_slice());
        let local_rows = &mut out[..];
        let local = async {
            if local_positions.is_empty() {
                return Ok(());
            }
            let f = self
                .local
                .as_ref()
                .and_then(|l| l.node_features.as_ref())
                .ok_or(GraphError::NodeNotFound {
                    node: ids[local_positions[0]],
                })?;
            for &i in local_positions {
                let row = f
                    .row(ids[i])
                    .ok_or(GraphError::NodeNotFound { node: ids[i] })?;
                local_rows[i * dim..(i + 1) * dim].copy_from_slice(row);
            }
            Ok::<_, GraphError>(())
        };
        // Remote requests go out first; local rows are copied while they
        // are in flight.
        let (answers, local) = join(join_all(remote), local).await;
        local?;
        for answer in answers {
            let (p, t) = answer?;
            let rows = t
                .as_slice::<f32>()
                .map_err(|e| self.router.bad_answer(p, FEATURES, e.to_string()))?;
            for (&i, row) in split[p as usize].iter().zip(rows.chunks_exact(dim.max(1))) {
                out[i * dim..(i + 1) * dim].copy_from_slice(row);
            }
        }
        Ok(())
    }

    /// Partition `p`'s rows, checked to be `n` rows of `dim`.
    async fn remote_rows(
        &self,
        p: u32,
        ids: Tensor,
        n: usize,
    ) -> Result<(u32, Tensor), GraphError> {
        let t: Tensor = self.router.call(p, FEATURES, &ids).await?;
        if t.shape() != [n, self.dim] {
            let detail = format!("rows of shape {:?} for {n} ids of {}", t.shape(), self.dim);
            return Err(self.router.bad_answer(p, FEATURES, detail));
        }
        Ok((p, t))
    }
}
