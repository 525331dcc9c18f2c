//! Reading and writing graphs: [`Dataset`] directories of `.npy` arrays,
//! and edge lists.

mod edgelist;
pub mod npy;

use std::fs;
use std::path::Path;

pub use edgelist::{EdgeListOptions, load_edge_list};

use crate::{Csr, Features, GraphError, Progress};

/// File names in a dataset directory.
pub mod files {
    /// Row pointer, int64, `N + 1`.
    pub const INDPTR: &str = "indptr.npy";
    /// Neighbour ids, int64, `E`.
    pub const INDICES: &str = "indices.npy";
    /// Explicit edge ids, int64, `E` (partitions only).
    pub const EDGE_IDS: &str = "edge_ids.npy";
    /// Node features, float32, `N × D`.
    pub const NODE_FEAT: &str = "node_feat.npy";
    /// Edge features, float32, `E × D`.
    pub const EDGE_FEAT: &str = "edge_feat.npy";
    /// Node labels, int64, `N`.
    pub const LABELS: &str = "labels.npy";
}

/// A homogeneous graph with optional node features, edge features and
/// node labels, as stored in a directory of `.npy` arrays (see [`files`]).
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// The out-edge CSR; edge ids are positions.
    pub graph: Csr,
    /// One row per node.
    pub node_features: Option<Features>,
    /// One row per edge (by edge id).
    pub edge_features: Option<Features>,
    /// One label per node.
    pub labels: Option<Vec<i64>>,
}

impl Dataset {
    /// A dataset of a graph alone.
    #[must_use]
    pub fn new(graph: Csr) -> Self {
        Self {
            graph,
            ..Self::default()
        }
    }

    /// The number of nodes.
    #[must_use]
    pub fn num_nodes(&self) -> u64 {
        self.graph.num_rows() as u64
    }

    /// Checks that features and labels match the graph.
    pub fn validate(&self) -> Result<(), GraphError> {
        let n = self.graph.num_rows();
        self.graph.check_targets(n as u64)?;
        if let Some(f) = &self.node_features
            && f.num_rows() != n
        {
            return Err(GraphError::Invalid(format!(
                "{} node feature rows for {n} nodes",
                f.num_rows()
            )));
        }
        if let Some(f) = &self.edge_features
            && f.num_rows() != self.graph.num_edges()
        {
            return Err(GraphError::Invalid(format!(
                "{} edge feature rows for {} edges",
                f.num_rows(),
                self.graph.num_edges()
            )));
        }
        if let Some(l) = &self.labels
            && l.len() != n
        {
            return Err(GraphError::Invalid(format!(
                "{} labels for {n} nodes",
                l.len()
            )));
        }
        Ok(())
    }

    /// Loads `dir`: `indptr.npy` and `indices.npy`, and the optional
    /// arrays when present. Every shape is checked.
    pub fn load_dir(dir: &Path, progress: Progress) -> Result<Self, GraphError> {
        let stage = progress.stage("load", 5);
        let (indptr, shape) = npy::read_u64(&dir.join(files::INDPTR))?;
        check_1d(dir, files::INDPTR, &shape)?;
        stage.inc(1);
        let (indices, shape) = npy::read_u64(&dir.join(files::INDICES))?;
        check_1d(dir, files::INDICES, &shape)?;
        stage.inc(1);
        let graph = Csr::new(indptr, indices, None)?;
        let mut ds = Self::new(graph);
        ds.node_features = read_features(&dir.join(files::NODE_FEAT))?;
        stage.inc(1);
        ds.edge_features = read_features(&dir.join(files::EDGE_FEAT))?;
        stage.inc(1);
        let labels = dir.join(files::LABELS);
        if labels.exists() {
            let (l, shape) = npy::read_i64(&labels)?;
            check_1d(dir, files::LABELS, &shape)?;
            ds.labels = Some(l);
        }
        stage.inc(1);
        ds.validate()?;
        stage.finish();
        Ok(ds)
    }

    /// Writes the dataset to `dir` (created if missing).
    pub fn write_dir(&self, dir: &Path, progress: Progress) -> Result<(), GraphError> {
        self.validate()?;
        fs::create_dir_all(dir).map_err(|e| GraphError::io("create dir", dir, e))?;
        let stage = progress.stage("write", 4);
        let g = &self.graph;
        npy::write_u64(&dir.join(files::INDPTR), g.indptr(), &[g.indptr().len()])?;
        npy::write_u64(&dir.join(files::INDICES), g.indices(), &[g.num_edges()])?;
        stage.inc(2);
        for (f, name) in [
            (&self.node_features, files::NODE_FEAT),
            (&self.edge_features, files::EDGE_FEAT),
        ] {
            if let Some(f) = f {
                npy::write_f32(&dir.join(name), f.data(), &[f.num_rows(), f.dim()])?;
            }
        }
        stage.inc(1);
        if let Some(l) = &self.labels {
            npy::write_i64(&dir.join(files::LABELS), l, &[l.len()])?;
        }
        stage.inc(1);
        stage.finish();
        Ok(())
    }
}

/// Reads an optional `N × D` float32 matrix.
pub(crate) fn read_features(path: &Path) -> Result<Option<Features>, GraphError> {
    if !path.exists() {
        return Ok(None);
    }
    let (data, shape) = npy::read_f32(path)?;
    let &[_, dim] = shape.as_slice() else {
        return Err(GraphError::Npy {
            path: path.to_owned(),
            detail: format!("features must be 2-D, shape is {shape:?}"),
        });
    };
    Features::new(dim, data).map(Some)
}

pub(crate) fn check_1d(dir: &Path, name: &str, shape: &[usize]) -> Result<(), GraphError> {
    if shape.len() == 1 {
        Ok(())
    } else {
        Err(GraphError::Npy {
            path: dir.join(name),
            detail: format!("must be 1-D, shape is {shape:?}"),
        })
    }
}
