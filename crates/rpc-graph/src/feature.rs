//! [`Features`]: an f32 row-major matrix addressed by global id.

use std::sync::Arc;

use crate::{GraphError, IdMap};

/// Feature rows (`dim` f32 each, row-major), addressed by global id: row =
/// id for a whole graph, or through an [`IdMap`] for the rows a partition
/// owns.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    dim: usize,
    data: Vec<f32>,
    rows: Option<Arc<IdMap>>,
}

impl Features {
    /// A whole-graph matrix: row `i` is node (or edge) `i`.
    pub fn new(dim: usize, data: Vec<f32>) -> Result<Self, GraphError> {
        if dim == 0 && !data.is_empty() || dim > 0 && !data.len().is_multiple_of(dim) {
            return Err(GraphError::Invalid(format!(
                "{} floats do not make rows of {dim}",
                data.len()
            )));
        }
        Ok(Self {
            dim,
            data,
            rows: None,
        })
    }

    /// A partition's matrix: row `i` is global id `rows.global_ids()[i]`.
    pub fn with_ids(dim: usize, data: Vec<f32>, rows: Arc<IdMap>) -> Result<Self, GraphError> {
        let mut f = Self::new(dim, data)?;
        if f.num_rows() != rows.len() {
            return Err(GraphError::Invalid(format!(
                "{} feature rows for {} ids",
                f.num_rows(),
                rows.len()
            )));
        }
        f.rows = Some(rows);
        Ok(f)
    }

    /// Floats per row.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Rows stored.
    #[must_use]
    pub fn num_rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// All rows, in storage order.
    #[must_use]
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The id map, for a partition's matrix.
    #[must_use]
    pub fn ids(&self) -> Option<&Arc<IdMap>> {
        self.rows.as_ref()
    }

    /// The storage row of global id `id`, if held.
    #[inline]
    #[must_use]
    pub fn row_of(&self, id: u64) -> Option<usize> {
        match &self.rows {
            Some(map) => map.local(id),
            None => usize::try_from(id).ok().filter(|&r| r < self.num_rows()),
        }
    }

    /// The row of global id `id`, if held.
    #[must_use]
    pub fn row(&self, id: u64) -> Option<&[f32]> {
        let r = self.row_of(id)?;
        self.data.get(r * self.dim..(r + 1) * self.dim)
    }

    /// Gathers the rows of `ids` into `out`, replacing its contents: `out`
    /// keeps its capacity between calls, so a reused buffer makes this a
    /// sequence of row copies with no allocation and no zeroing.
    pub fn gather_into(&self, ids: &[u64], out: &mut Vec<f32>) -> Result<(), GraphError> {
        out.clear();
        out.reserve(ids.len() * self.dim);
        for &id in ids {
            let row = self.row(id).ok_or(GraphError::NodeNotFound { node: id })?;
            out.extend_from_slice(row);
        }
        Ok(())
    }

    /// Gathers the rows of `ids` into `out`, which must hold exactly
    /// `ids.len() * dim` floats (a send buffer, a tensor being filled).
    pub fn gather_into_slice(&self, ids: &[u64], out: &mut [f32]) -> Result<(), GraphError> {
        if out.len() != ids.len() * self.dim {
            return Err(GraphError::InvalidArgument(format!(
                "output of {} floats for {} rows of {}",
                out.len(),
                ids.len(),
                self.dim
            )));
        }
        if self.dim == 0 {
            return Ok(());
        }
        for (&id, dst) in ids.iter().zip(out.chunks_exact_mut(self.dim)) {
            let row = self.row(id).ok_or(GraphError::NodeNotFound { node: id })?;
            dst.copy_from_slice(row);
        }
        Ok(())
    }

    /// Takes the data back.
    #[must_use]
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
}
