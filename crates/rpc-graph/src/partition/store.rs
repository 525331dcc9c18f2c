//! Per-partition directories: writing them from a [`Dataset`] and a book,
//! and loading one back as a [`Partition`].
//!
//! Layout of the output directory:
//! - `meta.json`: [`PartitionMeta`].
//! - `node_pb.npy`: the node book (int64, `N`).
//! - `global_indptr.npy`: the global row pointer, which is the edge book
//!   ([`EdgeBook`]) since edges go with their source.
//! - `part_{i}/`: `node_ids.npy` (owned global ids, ascending: local row
//!   order), `indptr.npy`, `indices.npy` (global neighbour ids, global
//!   order), `edge_ids.npy` (global edge ids), and when present
//!   `node_feat.npy` and `labels.npy` (owned nodes, local order) and
//!   `edge_feat.npy` (owned edges, local order).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{EdgeBook, PartitionBook, PartitionStats, Partitioner};
use crate::io::{Dataset, check_1d, files, npy, read_features};
use crate::{Csr, Features, GraphError, IdMap, LocalGraph, Progress};

const META: &str = "meta.json";
const NODE_PB: &str = "node_pb.npy";
const GLOBAL_INDPTR: &str = "global_indptr.npy";
const NODE_IDS: &str = "node_ids.npy";
/// The metadata format this code writes and reads.
const META_VERSION: u32 = 1;

/// What `meta.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// Format version.
    pub version: u32,
    /// The number of partitions.
    pub num_partitions: u32,
    /// Nodes in the whole graph.
    pub num_nodes: u64,
    /// Edges in the whole graph.
    pub num_edges: u64,
    /// How the nodes were assigned.
    pub partitioner: Partitioner,
    /// Cut and balance.
    pub stats: PartitionStats,
    /// Node feature dimension (0 = none).
    pub node_feature_dim: usize,
    /// Edge feature dimension (0 = none).
    pub edge_feature_dim: usize,
    /// Whether labels are stored.
    pub has_labels: bool,
}

/// One loaded partition.
#[derive(Clone, Debug)]
pub struct Partition {
    /// Which partition.
    pub index: u32,
    /// The metadata.
    pub meta: PartitionMeta,
    /// The owned nodes' out-edges, answering [`NeighborSource`] by global
    /// id.
    ///
    /// [`NeighborSource`]: crate::NeighborSource
    pub graph: LocalGraph,
    /// Features of the owned nodes, by global id.
    pub node_features: Option<Features>,
    /// Features of the owned edges, by global edge id.
    pub edge_features: Option<Features>,
    /// Labels of the owned nodes, in local order (see
    /// [`Partition::label`]).
    pub labels: Option<Vec<i64>>,
    /// Node → partition for the whole graph.
    pub node_book: Arc<PartitionBook>,
    /// Edge → partition for the whole graph.
    pub edge_book: Arc<EdgeBook>,
}

impl Partition {
    /// Loads partition `index` from `root`, checking every array.
    pub fn load(root: &Path, index: u32, progress: Progress) -> Result<Self, GraphError> {
        let meta = read_meta(root)?;
        if index >= meta.num_partitions {
            return Err(GraphError::InvalidArgument(format!(
                "partition {index} of {}",
                meta.num_partitions
            )));
        }
        let stage = progress.stage("load part", 6);
        let (pb, shape) = npy::read_u64(&root.join(NODE_PB))?;
        check_1d(root, NODE_PB, &shape)?;
        let parts = pb
            .into_iter()
            .map(|p| u32::try_from(p).unwrap_or(u32::MAX))
            .collect();
        let node_book = PartitionBook::new(parts, meta.num_partitions)?;
        if node_book.num_nodes() != meta.num_nodes {
            return Err(meta_err(root, "node book size differs from num_nodes"));
        }
        let (global_indptr, _) = npy::read_u64(&root.join(GLOBAL_INDPTR))?;
        if global_indptr.len() as u64 != meta.num_nodes + 1
            || global_indptr.last().copied() != Some(meta.num_edges)
        {
            return Err(meta_err(
                root,
                "global_indptr does not match the graph size",
            ));
        }
        stage.inc(1);
        let dir = part_dir(root, index);
        let (node_ids, _) = npy::read_u64(&dir.join(NODE_IDS))?;
        if node_ids
            .iter()
            .any(|&v| node_book.partition_of(v) != Some(index))
        {
            return Err(meta_err(root, "node_ids disagree with the node book"));
        }
        let nodes = Arc::new(IdMap::new(node_ids, meta.num_nodes)?);
        stage.inc(1);
        let (indptr, _) = npy::read_u64(&dir.join(files::INDPTR))?;
        let (indices, _) = npy::read_u64(&dir.join(files::INDICES))?;
        let (edge_ids, _) = npy::read_u64(&dir.join(files::EDGE_IDS))?;
        stage.inc(1);
        if edge_ids.iter().any(|&e| e >= meta.num_edges) {
            return Err(meta_err(root, "edge id out of range"));
        }
        let edge_map = dir
            .join(files::EDGE_FEAT)
            .exists()
            .then(|| IdMap::new(edge_ids.clone(), meta.num_edges).map(Arc::new))
            .transpose()?;
        let csr = Csr::new(indptr, indices, Some(edge_ids))?;
        let graph = LocalGraph::new(csr, nodes.clone())?;
        stage.inc(1);
        let node_features = read_features(&dir.join(files::NODE_FEAT))?
            .map(|f| {
                let dim = f.dim();
                Features::with_ids(dim, f.into_data(), nodes.clone())
            })
            .transpose()?;
        let edge_features = match (read_features(&dir.join(files::EDGE_FEAT))?, edge_map) {
            (Some(f), Some(map)) => Some(Features::with_ids(f.dim(), f.into_data(), map)?),
            _ => None,
        };
        stage.inc(1);
        let labels_path = dir.join(files::LABELS);
        let labels = if labels_path.exists() {
            let (l, _) = npy::read_i64(&labels_path)?;
            if l.len() != nodes.len() {
                return Err(meta_err(root, "labels do not match the owned nodes"));
            }
            Some(l)
        } else {
            None
        };
        stage.inc(1);
        stage.finish();
        Ok(Self {
            index,
            meta,
            graph,
            node_features,
            edge_features,
            labels,
            node_book: Arc::new(node_book),
            edge_book: Arc::new(EdgeBook::new(global_indptr)),
        })
    }

    /// The whole of `ds` as partition 0 of 1 (hash-partitioned, trivially),
    /// for a single process that serves or samples everything.
    pub fn whole(ds: Dataset) -> Result<Self, GraphError> {
        ds.validate()?;
        let n = ds.graph.num_rows() as u64;
        let book = PartitionBook::new(vec![0; n as usize], 1)?;
        let partitioner = Partitioner::Hash { seed: 0 };
        let stats = PartitionStats::measure(&ds.graph, &book)?;
        let meta = PartitionMeta {
            version: META_VERSION,
            num_partitions: 1,
            num_nodes: n,
            num_edges: ds.graph.num_edges() as u64,
            partitioner,
            stats,
            node_feature_dim: ds.node_features.as_ref().map_or(0, Features::dim),
            edge_feature_dim: ds.edge_features.as_ref().map_or(0, Features::dim),
            has_labels: ds.labels.is_some(),
        };
        let nodes = Arc::new(IdMap::new((0..n).collect(), n)?);
        let edge_book = Arc::new(EdgeBook::new(ds.graph.indptr().to_vec()));
        Ok(Self {
            index: 0,
            meta,
            graph: LocalGraph::new(ds.graph, nodes)?,
            node_features: ds.node_features,
            edge_features: ds.edge_features,
            labels: ds.labels,
            node_book: Arc::new(book),
            edge_book,
        })
    }

    /// The label of owned node `id`.
    #[must_use]
    pub fn label(&self, id: u64) -> Option<i64> {
        let l = self.graph.nodes().local(id)?;
        self.labels.as_ref()?.get(l).copied()
    }
}

/// Writes `ds` split by `book` under `root`; `partitioner` and `stats` go
/// into the metadata. Memory: one partition's arrays at a time on top of
/// the dataset.
pub fn write_partitions(
    ds: &Dataset,
    book: &PartitionBook,
    partitioner: Partitioner,
    stats: &PartitionStats,
    root: &Path,
    progress: Progress,
) -> Result<PartitionMeta, GraphError> {
    ds.validate()?;
    let g = &ds.graph;
    if book.num_nodes() != g.num_rows() as u64 {
        return Err(GraphError::Invalid(format!(
            "book of {} nodes for a graph of {}",
            book.num_nodes(),
            g.num_rows()
        )));
    }
    fs::create_dir_all(root).map_err(|e| GraphError::io("create dir", root, e))?;
    let k = book.num_partitions();
    let meta = PartitionMeta {
        version: META_VERSION,
        num_partitions: k,
        num_nodes: g.num_rows() as u64,
        num_edges: g.num_edges() as u64,
        partitioner,
        stats: stats.clone(),
        node_feature_dim: ds.node_features.as_ref().map_or(0, Features::dim),
        edge_feature_dim: ds.edge_features.as_ref().map_or(0, Features::dim),
        has_labels: ds.labels.is_some(),
    };
    let pb: Vec<u64> = book.as_slice().iter().map(|&p| u64::from(p)).collect();
    npy::write_u64(&root.join(NODE_PB), &pb, &[pb.len()])?;
    drop(pb);
    npy::write_u64(&root.join(GLOBAL_INDPTR), g.indptr(), &[g.indptr().len()])?;
    let stage = progress.stage("write parts", u64::from(k));
    for p in 0..k {
        write_one(ds, book.nodes_of(p), &part_dir(root, p))?;
        stage.inc(1);
    }
    stage.finish();
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| meta_err(root, &e.to_string()))?;
    let path = root.join(META);
    fs::write(&path, json).map_err(|e| GraphError::io("write", path, e))?;
    Ok(meta)
}

/// Writes the partition owning `owned` (ascending global ids) to `dir`.
fn write_one(ds: &Dataset, owned: Vec<u64>, dir: &Path) -> Result<(), GraphError> {
    fs::create_dir_all(dir).map_err(|e| GraphError::io("create dir", dir, e))?;
    let g = &ds.graph;
    let mut indptr = Vec::with_capacity(owned.len() + 1);
    indptr.push(0u64);
    let mut edge_ids = Vec::new();
    for &v in &owned {
        let (a, b) = (g.indptr()[v as usize], g.indptr()[v as usize + 1]);
        edge_ids.extend(a..b);
        indptr.push(edge_ids.len() as u64);
    }
    let indices: Vec<u64> = edge_ids.iter().map(|&e| g.indices()[e as usize]).collect();
    npy::write_u64(&dir.join(NODE_IDS), &owned, &[owned.len()])?;
    npy::write_u64(&dir.join(files::INDPTR), &indptr, &[indptr.len()])?;
    npy::write_u64(&dir.join(files::INDICES), &indices, &[indices.len()])?;
    drop(indices);
    npy::write_u64(&dir.join(files::EDGE_IDS), &edge_ids, &[edge_ids.len()])?;
    let mut rows = Vec::new();
    if let Some(f) = &ds.node_features {
        f.gather_into(&owned, &mut rows)?;
        npy::write_f32(&dir.join(files::NODE_FEAT), &rows, &[owned.len(), f.dim()])?;
    }
    if let Some(f) = &ds.edge_features {
        f.gather_into(&edge_ids, &mut rows)?;
        npy::write_f32(
            &dir.join(files::EDGE_FEAT),
            &rows,
            &[edge_ids.len(), f.dim()],
        )?;
    }
    if let Some(l) = &ds.labels {
        let mine: Vec<i64> = owned.iter().map(|&v| l[v as usize]).collect();
        npy::write_i64(&dir.join(files::LABELS), &mine, &[mine.len()])?;
    }
    Ok(())
}

/// Reads and checks `meta.json`.
pub(crate) fn read_meta(root: &Path) -> Result<PartitionMeta, GraphError> {
    let path = root.join(META);
    let text = fs::read(&path).map_err(|e| GraphError::io("read", &path, e))?;
    let meta: PartitionMeta =
        serde_json::from_slice(&text).map_err(|e| meta_err(root, &e.to_string()))?;
    if meta.version != META_VERSION {
        return Err(meta_err(root, &format!("version {}", meta.version)));
    }
    Ok(meta)
}

fn part_dir(root: &Path, p: u32) -> PathBuf {
    root.join(format!("part_{p}"))
}

fn meta_err(root: &Path, detail: &str) -> GraphError {
    GraphError::Meta {
        path: root.join(META),
        detail: detail.into(),
    }
}
