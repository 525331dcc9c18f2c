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

/// Output size from which [`Features::gather_into_slice_par`] uses threads.
pub const PARALLEL_MIN_BYTES: usize = 1 << 20;

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

    /// Like [`gather_into_slice`](Self::gather_into_slice), split over up
    /// to `threads` threads. A random-row gather is bound by memory latency,
    /// so more threads keep more cache misses in flight (as torch's
    /// `index_select`, which GraphLearn-for-PyTorch uses, does with
    /// OpenMP). Gathers under [`PARALLEL_MIN_BYTES`] run on this thread:
    /// starting threads would cost more than they save.
    pub fn gather_into_slice_par(
        &self,
        ids: &[u64],
        out: &mut [f32],
        threads: usize,
    ) -> Result<(), GraphError> {
        let bytes = std::mem::size_of_val(out);
        let threads = threads.clamp(1, ids.len().max(1));
        if threads == 1 || bytes < PARALLEL_MIN_BYTES || self.dim == 0 {
            return self.gather_into_slice(ids, out);
        }
        if out.len() != ids.len() * self.dim {
            return self.gather_into_slice(ids, out);
        }
        let per = ids.len().div_ceil(threads);
        std::thread::scope(|s| {
            let mut parts = Vec::with_capacity(threads);
            let mut rest = &mut *out;
            for chunk in ids.chunks(per) {
                let (mine, tail) = std::mem::take(&mut rest).split_at_mut(chunk.len() * self.dim);
                rest = tail;
                parts.push((chunk, mine));
            }
            let last = parts.pop();
            let handles: Vec<_> = parts
                .into_iter()
                .map(|(chunk, mine)| s.spawn(move || self.gather_into_slice(chunk, mine)))
                .collect();
            let mine = last.map_or(Ok(()), |(chunk, mine)| self.gather_into_slice(chunk, mine));
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(GraphError::Invalid("a gather thread panicked".into()))
                    })
                })
                .chain(std::iter::once(mine))
                .collect::<Result<(), GraphError>>()
        })
    }

    /// Takes the data back.
    #[must_use]
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parallel_gather_equals_the_serial_one_and_reports_unknown_ids() {
        let dim = 64;
        let f = Features::new(dim, (0..1000 * dim).map(|i| i as f32).collect()).unwrap();
        // About 5 MiB of output: above PARALLEL_MIN_BYTES.
        let ids: Vec<u64> = (0..20_000u64).map(|i| (i * 7919) % 1000).collect();
        assert!(ids.len() * dim * 4 >= PARALLEL_MIN_BYTES);
        let mut serial = vec![0f32; ids.len() * dim];
        f.gather_into_slice(&ids, &mut serial).unwrap();
        for threads in [1, 2, 3, 64] {
            let mut par = vec![0f32; ids.len() * dim];
            f.gather_into_slice_par(&ids, &mut par, threads).unwrap();
            assert_eq!(par, serial, "{threads} threads");
        }
        let mut bad = ids.clone();
        bad[17_000] = 5000;
        let mut out = vec![0f32; bad.len() * dim];
        let e = f.gather_into_slice_par(&bad, &mut out, 2).unwrap_err();
        assert!(matches!(e, GraphError::NodeNotFound { node: 5000 }), "{e}");
        let e = f.gather_into_slice_par(&ids, &mut out[1..], 2).unwrap_err();
        assert!(matches!(e, GraphError::InvalidArgument(_)), "{e}");
    }
}
