//! Induced subgraphs.

use serde::{Deserialize, Serialize};

use super::Inducer;
use crate::{GraphError, NeighborSource};

/// The subgraph induced by a node set: every edge of the graph between two
/// of its nodes, in local indices.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subgraph {
    /// Global id of each local index (the input nodes, deduplicated, in
    /// input order).
    pub nodes: Vec<u64>,
    /// Edge sources (local indices), in node order then stored order.
    pub rows: Vec<u64>,
    /// Edge targets (local indices).
    pub cols: Vec<u64>,
    /// Global edge ids.
    pub edge_ids: Vec<u64>,
}

/// The subgraph of `source` induced by `nodes` (global ids); every node
/// must be held by `source`.
pub fn induced_subgraph<S: NeighborSource + ?Sized>(
    source: &S,
    nodes: &[u64],
) -> Result<Subgraph, GraphError> {
    let mut ind = Inducer::new();
    let mut positions = Vec::new();
    ind.add_seeds(nodes, &mut positions);
    let mut out = Subgraph::default();
    for (row, &id) in ind.nodes().iter().enumerate() {
        let nbrs = source
            .neighbors(id)
            .ok_or(GraphError::NodeNotFound { node: id })?;
        for (i, &t) in nbrs.targets.iter().enumerate() {
            if let Some(col) = ind.get(t) {
                out.rows.push(row as u64);
                out.cols.push(col);
                out.edge_ids.push(nbrs.edge_ids.get(i));
            }
        }
    }
    ind.take_nodes(&mut out.nodes);
    Ok(out)
}
