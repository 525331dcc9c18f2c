//! [`Csr`] adjacency, [`IdMap`] (global ↔ local ids) and the
//! [`NeighborSource`] trait that sampling reads through.

use std::sync::Arc;

use crate::GraphError;

/// Compressed sparse rows: the out-neighbours of row `r` are
/// `indices[indptr[r]..indptr[r + 1]]`, in stored order.
///
/// Neighbour ids are global node ids (of the destination node type in a
/// heterogeneous graph). Edge ids are the CSR positions unless explicit
/// ones are given (a partition keeps the global ids of its edges).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Csr {
    indptr: Vec<u64>,
    indices: Vec<u64>,
    edge_ids: Option<Vec<u64>>,
}

impl Csr {
    /// Checks and wraps the arrays: `indptr` starts at 0, never decreases
    /// and ends at `indices.len()`; `edge_ids`, if given, has one id per
    /// edge.
    pub fn new(
        indptr: Vec<u64>,
        indices: Vec<u64>,
        edge_ids: Option<Vec<u64>>,
    ) -> Result<Self, GraphError> {
        if indptr.first() != Some(&0) {
            return Err(GraphError::Invalid("indptr must start with 0".into()));
        }
        if indptr.windows(2).any(|w| w[0] > w[1]) {
            return Err(GraphError::Invalid("indptr decreases".into()));
        }
        if indptr.last().copied() != Some(indices.len() as u64) {
            return Err(GraphError::Invalid(format!(
                "indptr ends at {:?}, but there are {} indices",
                indptr.last(),
                indices.len()
            )));
        }
        if let Some(ids) = &edge_ids
            && ids.len() != indices.len()
        {
            return Err(GraphError::Invalid(format!(
                "{} edge ids for {} edges",
                ids.len(),
                indices.len()
            )));
        }
        Ok(Self {
            indptr,
            indices,
            edge_ids,
        })
    }

    /// Builds a CSR with `num_rows` rows from `(src, dst)` pairs, keeping
    /// the input order within each row (a stable counting sort). Edge ids
    /// are the CSR positions.
    pub fn from_edges(num_rows: u64, edges: &[(u64, u64)]) -> Result<Self, GraphError> {
        let n = usize::try_from(num_rows)
            .map_err(|_| GraphError::InvalidArgument(format!("{num_rows} rows")))?;
        let mut indptr = vec![0u64; n + 1];
        for &(s, _) in edges {
            if s >= num_rows {
                return Err(GraphError::Invalid(format!(
                    "source {s} out of range for {num_rows} rows"
                )));
            }
            indptr[s as usize + 1] += 1;
        }
        for i in 0..n {
            indptr[i + 1] += indptr[i];
        }
        let mut cursor = indptr.clone();
        let mut indices = vec![0u64; edges.len()];
        for &(s, d) in edges {
            let c = &mut cursor[s as usize];
            indices[*c as usize] = d;
            *c += 1;
        }
        Self::new(indptr, indices, None)
    }

    /// The number of rows.
    #[must_use]
    pub fn num_rows(&self) -> usize {
        self.indptr.len() - 1
    }

    /// The number of edges.
    #[must_use]
    pub fn num_edges(&self) -> usize {
        self.indices.len()
    }

    /// The row pointer (`num_rows + 1` entries).
    #[must_use]
    pub fn indptr(&self) -> &[u64] {
        &self.indptr
    }

    /// The neighbour ids of all rows, concatenated.
    #[must_use]
    pub fn indices(&self) -> &[u64] {
        &self.indices
    }

    /// The explicit edge ids, if any (else edge id = position).
    #[must_use]
    pub fn edge_ids(&self) -> Option<&[u64]> {
        self.edge_ids.as_deref()
    }

    /// The degree of row `row`; 0 past the last row.
    #[must_use]
    pub fn degree(&self, row: usize) -> usize {
        match (self.indptr.get(row), self.indptr.get(row + 1)) {
            (Some(&a), Some(&b)) => (b - a) as usize,
            _ => 0,
        }
    }

    /// The neighbours of `row` and their edge ids, `None` past the last row.
    #[inline]
    #[must_use]
    pub fn row(&self, row: usize) -> Option<Neighbors<'_>> {
        let start = *self.indptr.get(row)? as usize;
        let end = *self.indptr.get(row + 1)? as usize;
        let targets = self.indices.get(start..end)?;
        let edge_ids = match &self.edge_ids {
            Some(ids) => EdgeIds::Explicit(ids.get(start..end)?),
            None => EdgeIds::Implicit(start as u64),
        };
        Some(Neighbors { targets, edge_ids })
    }

    /// Checks that every neighbour id is below `num_cols`.
    pub fn check_targets(&self, num_cols: u64) -> Result<(), GraphError> {
        match self.indices.iter().find(|&&d| d >= num_cols) {
            Some(d) => Err(GraphError::Invalid(format!(
                "neighbour {d} out of range for {num_cols} nodes"
            ))),
            None => Ok(()),
        }
    }

    /// The reverse graph (CSC of this one) with `num_cols` rows: row `v`
    /// lists the rows that point to `v`, in increasing row order, with the
    /// edge ids of this graph. Used to sample by in-edges.
    pub fn reverse(&self, num_cols: u64) -> Result<Self, GraphError> {
        self.check_targets(num_cols)?;
        let n = num_cols as usize;
        let mut indptr = vec![0u64; n + 1];
        for &d in &self.indices {
            indptr[d as usize + 1] += 1;
        }
        for i in 0..n {
            indptr[i + 1] += indptr[i];
        }
        let mut cursor = indptr.clone();
        let mut indices = vec![0u64; self.indices.len()];
        let mut eids = vec![0u64; self.indices.len()];
        for r in 0..self.num_rows() {
            let (a, b) = (self.indptr[r] as usize, self.indptr[r + 1] as usize);
            for pos in a..b {
                let d = self.indices[pos] as usize;
                let c = cursor[d] as usize;
                indices[c] = r as u64;
                eids[c] = match &self.edge_ids {
                    Some(ids) => ids[pos],
                    None => pos as u64,
                };
                cursor[d] += 1;
            }
        }
        Self::new(indptr, indices, Some(eids))
    }

    /// Takes the arrays back.
    #[must_use]
    pub fn into_parts(self) -> (Vec<u64>, Vec<u64>, Option<Vec<u64>>) {
        (self.indptr, self.indices, self.edge_ids)
    }
}

/// The edge ids of one row's neighbours.
#[derive(Clone, Copy, Debug)]
pub enum EdgeIds<'a> {
    /// Consecutive ids starting here (a global CSR: id = position).
    Implicit(u64),
    /// One id per neighbour.
    Explicit(&'a [u64]),
}

impl EdgeIds<'_> {
    /// The id of the `i`-th neighbour.
    #[inline]
    #[must_use]
    pub fn get(&self, i: usize) -> u64 {
        match self {
            Self::Implicit(first) => first + i as u64,
            Self::Explicit(ids) => ids[i],
        }
    }
}

/// One node's out-neighbours (global ids) and their edge ids.
#[derive(Clone, Copy, Debug)]
pub struct Neighbors<'a> {
    /// Neighbour ids, in stored order.
    pub targets: &'a [u64],
    /// Their edge ids.
    pub edge_ids: EdgeIds<'a>,
}

/// Where sampling reads a node's neighbours from.
///
/// Contract:
/// - `neighbors(id)` takes a **global** node id and returns that node's
///   out-neighbours as global ids, with global edge ids, or `None` when the
///   node is not held here (out of range, or owned by another partition).
/// - The neighbour order of a node is the same in every source that holds
///   it (the global graph and the partition that owns the node): sampling
///   picks positions, so equal order means equal samples.
///
/// ```
/// use rpc_graph::{Csr, NeighborSource};
/// let g = Csr::from_edges(3, &[(0, 1), (0, 2), (1, 2)]).unwrap();
/// assert_eq!(g.neighbors(0).unwrap().targets, &[1, 2]);
/// assert!(g.neighbors(3).is_none());
/// ```
pub trait NeighborSource {
    /// The out-neighbours of global node `id`, or `None` if not held here.
    fn neighbors(&self, id: u64) -> Option<Neighbors<'_>>;
}

impl NeighborSource for Csr {
    #[inline]
    fn neighbors(&self, id: u64) -> Option<Neighbors<'_>> {
        self.row(usize::try_from(id).ok()?)
    }
}

impl<T: NeighborSource + ?Sized> NeighborSource for &T {
    #[inline]
    fn neighbors(&self, id: u64) -> Option<Neighbors<'_>> {
        (**self).neighbors(id)
    }
}

impl<T: NeighborSource + ?Sized> NeighborSource for Arc<T> {
    #[inline]
    fn neighbors(&self, id: u64) -> Option<Neighbors<'_>> {
        (**self).neighbors(id)
    }
}

/// A set of global ids with their local positions: local → global by
/// index, global → local through a dense table of `u32` over the global id
/// space (4 bytes per global id; the partition book is as large).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMap {
    global: Vec<u64>,
    local: Vec<u32>,
}

/// Marks a global id that is not in an [`IdMap`].
const ABSENT: u32 = u32::MAX;

impl IdMap {
    /// Maps `global[i]` to local `i`, over a global id space of
    /// `num_global` ids. Ids must be unique and below `num_global`.
    pub fn new(global: Vec<u64>, num_global: u64) -> Result<Self, GraphError> {
        if global.len() >= ABSENT as usize {
            return Err(GraphError::InvalidArgument(format!(
                "{} local ids do not fit the u32 map",
                global.len()
            )));
        }
        let n = usize::try_from(num_global)
            .map_err(|_| GraphError::InvalidArgument(format!("{num_global} global ids")))?;
        let mut local = vec![ABSENT; n];
        for (i, &g) in global.iter().enumerate() {
            let slot = local
                .get_mut(g as usize)
                .filter(|_| g < num_global)
                .ok_or_else(|| GraphError::Invalid(format!("id {g} out of range {num_global}")))?;
            if *slot != ABSENT {
                return Err(GraphError::Invalid(format!("id {g} listed twice")));
            }
            *slot = i as u32;
        }
        Ok(Self { global, local })
    }

    /// The local position of global id `id`, if held.
    #[inline]
    #[must_use]
    pub fn local(&self, id: u64) -> Option<usize> {
        match self.local.get(usize::try_from(id).ok()?) {
            Some(&l) if l != ABSENT => Some(l as usize),
            _ => None,
        }
    }

    /// The global ids, by local position.
    #[must_use]
    pub fn global_ids(&self) -> &[u64] {
        &self.global
    }

    /// The number of ids held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.global.len()
    }

    /// Whether no id is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.global.is_empty()
    }

    /// The size of the global id space.
    #[must_use]
    pub fn num_global(&self) -> u64 {
        self.local.len() as u64
    }
}

/// A partition's graph: the out-edges of the nodes it owns, rows in local
/// order, neighbours and edge ids global. Answers [`NeighborSource`] by
/// global id, exactly like the global graph for the nodes it owns.
#[derive(Clone, Debug)]
pub struct LocalGraph {
    csr: Csr,
    nodes: Arc<IdMap>,
}

impl LocalGraph {
    /// Wraps a CSR whose row `i` is global node `nodes.global_ids()[i]`.
    pub fn new(csr: Csr, nodes: Arc<IdMap>) -> Result<Self, GraphError> {
        if csr.num_rows() != nodes.len() {
            return Err(GraphError::Invalid(format!(
                "{} rows for {} owned nodes",
                csr.num_rows(),
                nodes.len()
            )));
        }
        csr.check_targets(nodes.num_global())?;
        Ok(Self { csr, nodes })
    }

    /// The local CSR.
    #[must_use]
    pub fn csr(&self) -> &Csr {
        &self.csr
    }

    /// The owned nodes.
    #[must_use]
    pub fn nodes(&self) -> &Arc<IdMap> {
        &self.nodes
    }
}

impl NeighborSource for LocalGraph {
    #[inline]
    fn neighbors(&self, id: u64) -> Option<Neighbors<'_>> {
        self.csr.row(self.nodes.local(id)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_edges_keeps_row_order_and_reverse_inverts() {
        let g = Csr::from_edges(3, &[(1, 2), (0, 2), (1, 0), (0, 1)]).unwrap();
        assert_eq!(g.indptr(), &[0, 2, 4, 4]);
        assert_eq!(g.indices(), &[2, 1, 2, 0]);
        let r = g.reverse(3).unwrap();
        assert_eq!(r.indptr(), &[0, 1, 2, 4]);
        assert_eq!(r.indices(), &[1, 0, 0, 1]);
        assert_eq!(r.edge_ids().unwrap(), &[3, 1, 0, 2]);
    }

    #[test]
    fn bad_arrays_are_errors() {
        assert!(Csr::new(vec![1, 1], vec![0], None).is_err());
        assert!(Csr::new(vec![0, 2, 1], vec![0], None).is_err());
        assert!(Csr::new(vec![0, 1], vec![0, 0], None).is_err());
        assert!(Csr::new(vec![0, 1], vec![0], Some(vec![])).is_err());
        assert!(Csr::from_edges(1, &[(1, 0)]).is_err());
        assert!(IdMap::new(vec![0, 0], 2).is_err());
        assert!(IdMap::new(vec![5], 2).is_err());
    }
}
