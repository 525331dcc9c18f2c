//! Edge-seed sampling for link prediction, with negative sampling.

use serde::{Deserialize, Serialize};

use super::{HopKey, NeighborSampler, SamplerOutput};
use crate::rng::WyRand;
use crate::{GraphError, NeighborSource};

/// How many tries a negative pair gets to avoid an existing edge before
/// it is kept anyway (on a dense graph a non-edge may be rare).
const NEGATIVE_TRIES: usize = 8;

/// Negative edges to add to a batch of positive ones.
///
/// Negatives are uniform over all nodes, redrawn (up to a few times) when
/// the pair is an edge of the graph. The draws for positive edge `i` depend
/// only on the sampler seed, the batch number and `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NegativeSampling {
    /// `amount` random `(src, dst)` pairs per positive edge, appended to
    /// the labelled pairs with label 0.
    Binary {
        /// Negatives per positive edge.
        amount: u32,
    },
    /// `amount` random destinations per positive edge, for the positive
    /// edge's source ([`LinkSamplerOutput::neg_dst_index`]).
    Triplet {
        /// Negatives per positive edge.
        amount: u32,
    },
}

/// A batch sampled from seed edges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSamplerOutput {
    /// The multi-hop sample from every endpoint (positive and negative).
    pub sample: SamplerOutput,
    /// Local index of each labelled pair's source: the positive edges, then
    /// binary negatives.
    pub src_index: Vec<u64>,
    /// Local index of each labelled pair's destination.
    pub dst_index: Vec<u64>,
    /// 1 for a positive pair, 0 for a binary negative.
    pub edge_label: Vec<u8>,
    /// Triplet mode: `amount` negative destinations (local indices) per
    /// positive edge, edge after edge; else empty.
    pub neg_dst_index: Vec<u64>,
}

/// Samples around the endpoints of `edges` (global `(src, dst)` pairs):
/// negatives are drawn over `num_nodes` nodes, then every endpoint is a
/// seed of `sampler`, and the labelled pairs are returned in local indices.
pub fn sample_from_edges<S: NeighborSource + ?Sized>(
    sampler: &mut NeighborSampler,
    source: &S,
    num_nodes: u64,
    edges: &[(u64, u64)],
    negative: Option<NegativeSampling>,
    batch: u64,
) -> Result<LinkSamplerOutput, GraphError> {
    if negative.is_some() && num_nodes == 0 {
        return Err(GraphError::InvalidArgument(
            "negative sampling over zero nodes".into(),
        ));
    }
    let key = HopKey::new(sampler.config().seed, batch, u32::MAX).derive(0x004E_4547);
    let mut seeds: Vec<u64> = edges.iter().map(|e| e.0).collect();
    seeds.extend(edges.iter().map(|e| e.1));
    let mut labels = vec![1u8; edges.len()];
    let (mut neg_src, mut neg_dst) = (Vec::new(), Vec::new());
    if let Some(neg) = negative {
        let amount = match neg {
            NegativeSampling::Binary { amount } | NegativeSampling::Triplet { amount } => amount,
        };
        for (i, &(s, _)) in edges.iter().enumerate() {
            let mut rng = WyRand::for_key(key.0, i as u64);
            for _ in 0..amount {
                let triplet = matches!(neg, NegativeSampling::Triplet { .. });
                let (mut ns, mut nd) = (s, 0);
                for _ in 0..NEGATIVE_TRIES {
                    if !triplet {
                        ns = rng.below(num_nodes);
                    }
                    nd = rng.below(num_nodes);
                    if !is_edge(source, ns, nd) {
                        break;
                    }
                }
                if !triplet {
                    neg_src.push(ns);
                }
                neg_dst.push(nd);
            }
        }
    }
    seeds.extend_from_slice(&neg_src);
    seeds.extend_from_slice(&neg_dst);
    let mut out = LinkSamplerOutput::default();
    sampler.sample_from_nodes_into(source, &seeds, batch, &mut out.sample)?;
    let pos = &out.sample.seed_positions;
    let (n, m) = (edges.len(), neg_src.len());
    out.src_index.extend_from_slice(&pos[..n]);
    out.dst_index.extend_from_slice(&pos[n..2 * n]);
    if m > 0 {
        // Binary: negatives are labelled pairs too.
        out.src_index.extend_from_slice(&pos[2 * n..2 * n + m]);
        out.dst_index.extend_from_slice(&pos[2 * n + m..]);
        labels.resize(n + m, 0);
    } else {
        out.neg_dst_index.extend_from_slice(&pos[2 * n..]);
    }
    out.edge_label = labels;
    Ok(out)
}

/// Whether `src → dst` is an edge (a scan of `src`'s neighbours; a node not
/// held counts as having none).
fn is_edge<S: NeighborSource + ?Sized>(source: &S, src: u64, dst: u64) -> bool {
    source
        .neighbors(src)
        .is_some_and(|n| n.targets.contains(&dst))
}
