//! What crosses the wire between clients and partition servers: requests
//! and answers whose large arrays are [`Tensor`]s (attachments, never
//! copied into the body), and the checks a receiver runs on them.

use bytes::Bytes;
use rpc_tensor::{ALIGN, DType, Tensor};
use serde::{Deserialize, Serialize};

use super::sampler::SampledBatch;
use crate::{Features, GraphError, HopKey, NeighborBatch, SampleOptions, SamplerOutput};

/// `graph.sample_one_hop`'s arguments.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SampleRequest {
    pub(crate) ids: Tensor,
    pub(crate) fanout: i32,
    pub(crate) key: HopKey,
    pub(crate) options: SampleOptions,
}

/// `graph.sample_one_hop`'s answer: a [`NeighborBatch`] as tensors.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SampleAnswer {
    pub(crate) counts: Tensor,
    pub(crate) neighbors: Tensor,
    pub(crate) edge_ids: Tensor,
}

impl SampleAnswer {
    pub(crate) fn from_batch(b: &NeighborBatch) -> Result<Self, GraphError> {
        Ok(Self {
            counts: ids_tensor(&b.counts)?,
            neighbors: ids_tensor(&b.neighbors)?,
            edge_ids: ids_tensor(&b.edge_ids)?,
        })
    }

    /// The batch, checked to answer `expected` nodes.
    pub(crate) fn into_batch(self, expected: usize) -> Result<NeighborBatch, String> {
        let b = NeighborBatch {
            counts: tensor_u64(&self.counts)?.to_vec(),
            neighbors: tensor_u64(&self.neighbors)?.to_vec(),
            edge_ids: tensor_u64(&self.edge_ids)?.to_vec(),
        };
        b.validate(expected).map_err(|e| e.to_string())?;
        Ok(b)
    }
}

/// A producer's settings, as `graph.producer.create` gets them.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ProducerRequest {
    pub(crate) seeds: Tensor,
    pub(crate) config: crate::SamplerConfig,
    pub(crate) options: super::LoaderOptions,
    pub(crate) num_workers: usize,
    pub(crate) stream: u64,
}

/// `graph.producer.fetch`'s answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FetchAnswer {
    /// The next sampled batch.
    Batch(Box<WireBatch>),
    /// The epoch is over on this server.
    End,
}

/// A [`SampledBatch`] with its arrays as tensors.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireBatch {
    epoch: u64,
    index: u64,
    seeds: Tensor,
    nodes: Tensor,
    seed_positions: Tensor,
    num_sampled_nodes: Vec<u64>,
    rows: Tensor,
    cols: Tensor,
    edge_ids: Tensor,
    num_sampled_edges: Vec<u64>,
    features: Tensor,
    feature_dim: usize,
}

impl WireBatch {
    pub(crate) fn from_batch(b: &SampledBatch) -> Result<Self, GraphError> {
        let o = &b.output;
        let features = Tensor::from_slice(&[b.node_features.len()], &b.node_features)
            .map_err(|e| GraphError::Invalid(e.to_string()))?;
        Ok(Self {
            epoch: b.epoch,
            index: b.index,
            seeds: ids_tensor(&b.seeds)?,
            nodes: ids_tensor(&o.nodes)?,
            seed_positions: ids_tensor(&o.seed_positions)?,
            num_sampled_nodes: o.num_sampled_nodes.clone(),
            rows: ids_tensor(&o.rows)?,
            cols: ids_tensor(&o.cols)?,
            edge_ids: ids_tensor(&o.edge_ids)?,
            num_sampled_edges: o.num_sampled_edges.clone(),
            features,
            feature_dim: b.feature_dim,
        })
    }

    /// The batch, with its arrays checked against each other.
    pub(crate) fn into_batch(self) -> Result<SampledBatch, String> {
        let output = SamplerOutput {
            nodes: tensor_u64(&self.nodes)?.to_vec(),
            seed_positions: tensor_u64(&self.seed_positions)?.to_vec(),
            num_sampled_nodes: self.num_sampled_nodes,
            rows: tensor_u64(&self.rows)?.to_vec(),
            cols: tensor_u64(&self.cols)?.to_vec(),
            edge_ids: tensor_u64(&self.edge_ids)?.to_vec(),
            num_sampled_edges: self.num_sampled_edges,
        };
        let n = output.nodes.len() as u64;
        let e = output.rows.len();
        let sum = |v: &[u64]| v.iter().try_fold(0u64, |a, &x| a.checked_add(x));
        if output.cols.len() != e
            || !(output.edge_ids.is_empty() || output.edge_ids.len() == e)
            || sum(&output.num_sampled_edges) != Some(e as u64)
            || sum(&output.num_sampled_nodes) != Some(n)
            || output.rows.iter().chain(&output.cols).any(|&i| i >= n)
            || output.seed_positions.iter().any(|&i| i >= n)
        {
            return Err("sampled batch arrays do not agree".into());
        }
        let features = self
            .features
            .as_slice::<f32>()
            .map_err(|e| e.to_string())?
            .to_vec();
        if features.len() != self.feature_dim * output.nodes.len() && !features.is_empty() {
            return Err(format!(
                "{} feature floats for {} nodes of {}",
                features.len(),
                n,
                self.feature_dim
            ));
        }
        let seeds = tensor_u64(&self.seeds)?.to_vec();
        if seeds.len() != output.seed_positions.len() {
            return Err("seeds and seed positions differ in length".into());
        }
        Ok(SampledBatch {
            epoch: self.epoch,
            index: self.index,
            seeds,
            output,
            node_features: features,
            feature_dim: self.feature_dim,
        })
    }
}

/// Global ids as a one-dimensional `i64` tensor (one copy, into aligned
/// memory).
pub(crate) fn ids_tensor(ids: &[u64]) -> Result<Tensor, GraphError> {
    let signed: &[i64] = bytemuck::cast_slice(ids);
    Tensor::from_slice(&[ids.len()], signed).map_err(|e| GraphError::Invalid(e.to_string()))
}

/// The ids of a tensor made by [`ids_tensor`], viewed in place.
pub(crate) fn tensor_u64(t: &Tensor) -> Result<&[u64], String> {
    if t.ndim() != 1 {
        return Err(format!("id tensor of shape {:?}", t.shape()));
    }
    let signed = t.as_slice::<i64>().map_err(|e| e.to_string())?;
    Ok(bytemuck::cast_slice(signed))
}

/// The node book as an `i32` tensor.
pub(crate) fn book_tensor(parts: &[u32]) -> Result<Tensor, GraphError> {
    let signed: &[i32] = bytemuck::cast_slice(parts);
    Tensor::from_slice(&[parts.len()], signed).map_err(|e| GraphError::Invalid(e.to_string()))
}

/// The node book back from [`book_tensor`].
pub(crate) fn tensor_u32(t: &Tensor) -> Result<Vec<u32>, String> {
    if t.ndim() != 1 {
        return Err(format!("book tensor of shape {:?}", t.shape()));
    }
    let signed = t.as_slice::<i32>().map_err(|e| e.to_string())?;
    Ok(bytemuck::cast_slice(signed).to_vec())
}

/// Gathers the rows of `ids` straight into the aligned buffer of a new
/// `[ids.len(), dim]` tensor: one copy per row, none after.
pub(crate) fn gather_tensor(f: &Features, ids: &[u64]) -> Result<Tensor, GraphError> {
    let (n, dim) = (ids.len(), f.dim());
    let len = n * dim * 4;
    // `vec![0; _]` of a large size is fresh zeroed pages from the kernel:
    // no memset, and the pages are written only once, by the gather.
    let mut buf = vec![0u8; len + ALIGN - 1];
    let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN - 1);
    let dst: &mut [f32] = bytemuck::try_cast_slice_mut(&mut buf[start..start + len])
        .map_err(|e| GraphError::Invalid(format!("feature buffer: {e}")))?;
    // Large gathers are bound by memory latency: spread them over the cores.
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    f.gather_into_slice_par(ids, dst, threads)?;
    let data = Bytes::from(buf).slice(start..start + len);
    Tensor::from_bytes(DType::F32, &[n, dim], data).map_err(|e| GraphError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_books_round_trip_and_bad_shapes_fail() {
        let ids = [0u64, 7, u64::MAX, 3];
        assert_eq!(tensor_u64(&ids_tensor(&ids).unwrap()).unwrap(), &ids);
        assert_eq!(
            tensor_u32(&book_tensor(&[1, 0, 2]).unwrap()).unwrap(),
            vec![1, 0, 2]
        );
        let square = Tensor::from_slice(&[1, 1], &[1i64]).unwrap();
        assert!(tensor_u64(&square).is_err());
        let floats = Tensor::from_slice(&[1], &[1f32]).unwrap();
        assert!(tensor_u64(&floats).is_err());
    }

    #[test]
    fn answers_are_checked_against_the_request() {
        let b = NeighborBatch {
            counts: vec![1, 2],
            neighbors: vec![5, 6, 7],
            edge_ids: vec![],
        };
        let a = SampleAnswer::from_batch(&b).unwrap();
        assert_eq!(a.into_batch(2).unwrap(), b);
        let a = SampleAnswer::from_batch(&b).unwrap();
        assert!(a.into_batch(3).is_err());
    }

    #[test]
    fn gathered_tensor_is_aligned_and_in_order() {
        let f = Features::new(2, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let t = gather_tensor(&f, &[2, 0]).unwrap();
        assert!(t.is_aligned());
        assert_eq!(t.shape(), &[2, 2]);
        assert_eq!(t.as_slice::<f32>().unwrap(), &[4.0, 5.0, 0.0, 1.0]);
        assert!(gather_tensor(&f, &[3]).is_err());
    }
}
