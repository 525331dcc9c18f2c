//! Heterogeneous graphs: node types, edge types `(src, relation, dst)`, one
//! [`Csr`] per edge type.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::rng::hash_str;
use crate::{Csr, Features, GraphError, NeighborSource};

/// An edge type: source node type, relation, destination node type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EdgeType {
    /// Source node type.
    pub src: String,
    /// Relation name.
    pub rel: String,
    /// Destination node type.
    pub dst: String,
}

impl EdgeType {
    /// `(src, rel, dst)`.
    #[must_use]
    pub fn new(src: &str, rel: &str, dst: &str) -> Self {
        Self {
            src: src.into(),
            rel: rel.into(),
            dst: dst.into(),
        }
    }

    /// A stable hash of the type, salting its sampling key.
    #[must_use]
    pub fn key(&self) -> u64 {
        hash_str(&self.to_string())
    }
}

impl fmt::Display for EdgeType {
    /// `src__rel__dst`, GraphLearn-for-PyTorch's spelling.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}__{}__{}", self.src, self.rel, self.dst)
    }
}

/// A heterogeneous graph: each node type has its own id space
/// `0..num_nodes(type)`; each edge type's CSR has a row per source node and
/// destination ids of the destination type.
#[derive(Clone, Debug, Default)]
pub struct HeteroGraph {
    node_counts: BTreeMap<String, u64>,
    relations: BTreeMap<EdgeType, Csr>,
    features: BTreeMap<String, Features>,
    labels: BTreeMap<String, Vec<i64>>,
}

/// Where heterogeneous sampling reads each edge type from.
pub trait HeteroSource {
    /// The neighbours by edge type `et`, or `None` if the type is unknown.
    fn relation(&self, et: &EdgeType) -> Option<&dyn NeighborSource>;
}

impl HeteroGraph {
    /// A graph with these node types and counts, and no edges.
    #[must_use]
    pub fn new(node_counts: impl IntoIterator<Item = (String, u64)>) -> Self {
        Self {
            node_counts: node_counts.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Adds (or replaces) edge type `et`, checking the CSR against the
    /// node counts of its two types.
    pub fn add_relation(&mut self, et: EdgeType, csr: Csr) -> Result<(), GraphError> {
        let rows = self.num_nodes(&et.src)?;
        let cols = self.num_nodes(&et.dst)?;
        if csr.num_rows() as u64 != rows {
            return Err(GraphError::Invalid(format!(
                "{et}: {} rows for {rows} {} nodes",
                csr.num_rows(),
                et.src
            )));
        }
        csr.check_targets(cols)?;
        self.relations.insert(et, csr);
        Ok(())
    }

    /// Sets the features of node type `ty` (one row per node).
    pub fn set_features(&mut self, ty: &str, features: Features) -> Result<(), GraphError> {
        let n = self.num_nodes(ty)?;
        if features.num_rows() as u64 != n {
            return Err(GraphError::Invalid(format!(
                "{} feature rows for {n} {ty} nodes",
                features.num_rows()
            )));
        }
        self.features.insert(ty.into(), features);
        Ok(())
    }

    /// Sets the labels of node type `ty`.
    pub fn set_labels(&mut self, ty: &str, labels: Vec<i64>) -> Result<(), GraphError> {
        let n = self.num_nodes(ty)?;
        if labels.len() as u64 != n {
            return Err(GraphError::Invalid(format!(
                "{} labels for {n} {ty} nodes",
                labels.len()
            )));
        }
        self.labels.insert(ty.into(), labels);
        Ok(())
    }

    /// The number of nodes of type `ty`.
    pub fn num_nodes(&self, ty: &str) -> Result<u64, GraphError> {
        self.node_counts
            .get(ty)
            .copied()
            .ok_or_else(|| GraphError::InvalidArgument(format!("unknown node type {ty}")))
    }

    /// Node types and counts.
    #[must_use]
    pub fn node_types(&self) -> &BTreeMap<String, u64> {
        &self.node_counts
    }

    /// The edge types, sorted.
    pub fn edge_types(&self) -> impl Iterator<Item = &EdgeType> {
        self.relations.keys()
    }

    /// The CSR of edge type `et`.
    #[must_use]
    pub fn csr(&self, et: &EdgeType) -> Option<&Csr> {
        self.relations.get(et)
    }

    /// The features of node type `ty`.
    #[must_use]
    pub fn features(&self, ty: &str) -> Option<&Features> {
        self.features.get(ty)
    }

    /// The labels of node type `ty`.
    #[must_use]
    pub fn labels(&self, ty: &str) -> Option<&[i64]> {
        self.labels.get(ty).map(Vec::as_slice)
    }
}

impl HeteroSource for HeteroGraph {
    fn relation(&self, et: &EdgeType) -> Option<&dyn NeighborSource> {
        self.relations.get(et).map(|c| c as &dyn NeighborSource)
    }
}
