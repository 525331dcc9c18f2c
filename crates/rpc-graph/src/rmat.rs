//! A deterministic R-MAT generator (Graph500 parameters by default).
//!
//! Edges are drawn in fixed chunks, each from its own generator keyed by
//! `(seed, chunk)`, so the output depends on the seed alone, not on the
//! thread count. Vertex ids are scrambled by a seeded bijection of
//! `0..2^scale` (no permutation table), so that degree does not follow id;
//! self loops and duplicate edges are removed and each row is sorted.
//! Peak memory is about 16 bytes per drawn edge plus 8 per node.

use std::path::Path;
use std::thread;

use crate::io::{Dataset, files, npy};
use crate::rng::{WyRand, mix64};
use crate::{Csr, Features, GraphError, Progress};

/// Edges per generation chunk (the unit of determinism and of progress).
const CHUNK: u64 = 1 << 16;
/// Feature rows generated per streamed piece.
const FEATURE_ROWS_PER_PIECE: usize = 1 << 14;

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct RmatConfig {
    /// `2^scale` nodes (at most 32).
    pub scale: u32,
    /// `edge_factor * 2^scale` edges drawn (before removing self loops and
    /// duplicates).
    pub edge_factor: u32,
    /// Probability of the top-left quadrant (Graph500: 0.57).
    pub a: f64,
    /// Top-right (0.19).
    pub b: f64,
    /// Bottom-left (0.19); bottom-right is `1 - a - b - c` (0.05).
    pub c: f64,
    /// The seed.
    pub seed: u64,
    /// Random node features of this dimension (0 = none), uniform in
    /// `[-1, 1)`.
    pub feature_dim: usize,
    /// Random labels in `0..num_classes` (0 = none).
    pub num_classes: u32,
    /// Generator threads (0 = available parallelism).
    pub threads: usize,
}

impl RmatConfig {
    /// Graph500 parameters, no features or labels.
    #[must_use]
    pub fn new(scale: u32, edge_factor: u32, seed: u64) -> Self {
        Self {
            scale,
            edge_factor,
            a: 0.57,
            b: 0.19,
            c: 0.19,
            seed,
            feature_dim: 0,
            num_classes: 0,
            threads: 0,
        }
    }

    /// The number of nodes.
    #[must_use]
    pub fn num_nodes(&self) -> u64 {
        1u64 << self.scale
    }

    fn check(&self) -> Result<(), GraphError> {
        let d = 1.0 - self.a - self.b - self.c;
        if self.scale == 0 || self.scale > 32 {
            return Err(GraphError::InvalidArgument(format!(
                "R-MAT scale {} (1..=32)",
                self.scale
            )));
        }
        if [self.a, self.b, self.c, d]
            .iter()
            .any(|&p| !(0.0..=1.0).contains(&p))
        {
            return Err(GraphError::InvalidArgument(
                "R-MAT probabilities must be in [0, 1] and sum to at most 1".into(),
            ));
        }
        Ok(())
    }

    fn threads(&self) -> usize {
        match self.threads {
            0 => thread::available_parallelism().map_or(1, usize::from),
            t => t,
        }
    }

    /// Generates the graph (and features and labels, if configured) in
    /// memory.
    pub fn generate(&self, progress: Progress) -> Result<Dataset, GraphError> {
        let graph = self.generate_graph(progress)?;
        let n = graph.num_rows();
        let mut ds = Dataset::new(graph);
        if self.feature_dim > 0 {
            let dim = self.feature_dim;
            let mut data = vec![0f32; n * dim];
            let per = n.div_ceil(self.threads()).max(1);
            thread::scope(|s| {
                for (t, part) in data.chunks_mut(per * dim).enumerate() {
                    s.spawn(move || self.fill_features((t * per) as u64, part));
                }
            });
            ds.node_features = Some(Features::new(dim, data)?);
        }
        if self.num_classes > 0 {
            ds.labels = Some((0..n as u64).map(|r| self.label(r)).collect());
        }
        Ok(ds)
    }

    /// Generates and writes a dataset directory, streaming the features
    /// (never holding them all in memory). Returns the graph.
    pub fn write_dir(&self, dir: &Path, progress: Progress) -> Result<Csr, GraphError> {
        let graph = self.generate_graph(progress)?;
        let ds = Dataset::new(graph);
        ds.write_dir(dir, progress)?;
        let graph = ds.graph;
        let n = graph.num_rows();
        if self.feature_dim > 0 {
            let dim = self.feature_dim;
            let path = dir.join(files::NODE_FEAT);
            let mut w = npy::NpyWriter::create(&path, "<f4", &[n, dim])?;
            let stage = progress.stage("features", n as u64);
            let mut piece = vec![0f32; FEATURE_ROWS_PER_PIECE * dim];
            for first in (0..n).step_by(FEATURE_ROWS_PER_PIECE) {
                let rows = FEATURE_ROWS_PER_PIECE.min(n - first);
                let part = &mut piece[..rows * dim];
                self.fill_features(first as u64, part);
                w.write_f32(part)?;
                stage.inc(rows as u64);
            }
            w.finish()?;
            stage.finish();
        }
        if self.num_classes > 0 {
            let labels: Vec<i64> = (0..n as u64).map(|r| self.label(r)).collect();
            npy::write_i64(&dir.join(files::LABELS), &labels, &[n])?;
        }
        Ok(graph)
    }

    /// The label of node `r`.
    fn label(&self, r: u64) -> i64 {
        (mix64(self.seed ^ 0x004C_4142_454C ^ mix64(r)) % u64::from(self.num_classes)) as i64
    }

    /// Fills `out` with the feature rows starting at row `first`.
    fn fill_features(&self, first: u64, out: &mut [f32]) {
        let dim = self.feature_dim;
        for (i, row) in out.chunks_exact_mut(dim).enumerate() {
            let mut rng = WyRand::for_key(self.seed ^ 0x4645_4154, first + i as u64);
            for pair in row.chunks_mut(2) {
                let r = rng.next_u64();
                for (j, x) in pair.iter_mut().enumerate() {
                    let bits = (r >> (32 * j)) as u32;
                    *x = (bits >> 8) as f32 * (2.0 / (1u32 << 24) as f32) - 1.0;
                }
            }
        }
    }

    /// Generates the out-edge CSR: rows sorted, no self loops, no
    /// duplicates.
    pub fn generate_graph(&self, progress: Progress) -> Result<Csr, GraphError> {
        self.check()?;
        let n = 1usize << self.scale;
        let m = u64::from(self.edge_factor) << self.scale;
        let chunks = m.div_ceil(CHUNK);
        let threads = self.threads().min(chunks.max(1) as usize);
        let stage = progress.stage("generate", chunks);
        let per = chunks.div_ceil(threads as u64);
        // Each thread draws a contiguous block of chunks; concatenating the
        // blocks in order gives the same edges whatever the thread count.
        let parts: Vec<Vec<u64>> = thread::scope(|s| {
            let handles: Vec<_> = (0..threads as u64)
                .map(|t| {
                    let stage = stage.clone();
                    s.spawn(move || {
                        let lo = (t * per).min(chunks);
                        let hi = ((t + 1) * per).min(chunks);
                        let mut out = Vec::with_capacity(((hi - lo) * CHUNK) as usize);
                        for chunk in lo..hi {
                            let count = CHUNK.min(m - chunk * CHUNK);
                            self.draw_chunk(chunk, count, &mut out);
                            stage.inc(1);
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        stage.finish();
        let drawn: usize = parts.iter().map(Vec::len).sum();
        if drawn as u64 != m {
            return Err(GraphError::Invalid(
                "an R-MAT generator thread failed".into(),
            ));
        }
        let stage = progress.stage("build CSR", 3);
        // Counting sort by source.
        let mut indptr = vec![0u64; n + 1];
        for &e in parts.iter().flatten() {
            indptr[(e >> 32) as usize + 1] += 1;
        }
        for i in 0..n {
            indptr[i + 1] += indptr[i];
        }
        let mut cursor = indptr.clone();
        let mut indices = vec![0u64; drawn];
        for &e in parts.iter().flatten() {
            let c = &mut cursor[(e >> 32) as usize];
            indices[*c as usize] = e & 0xFFFF_FFFF;
            *c += 1;
        }
        drop(parts);
        drop(cursor);
        stage.inc(1);
        let kept = sort_dedup_rows(&indptr, &mut indices, threads);
        stage.inc(1);
        // Compact the rows left, in place.
        let mut write = 0usize;
        for r in 0..n {
            let start = indptr[r] as usize;
            indptr[r] = write as u64;
            indices.copy_within(start..start + kept[r] as usize, write);
            write += kept[r] as usize;
        }
        indptr[n] = write as u64;
        indices.truncate(write);
        indices.shrink_to_fit();
        stage.inc(1);
        stage.finish();
        Csr::new(indptr, indices, None)
    }

    /// Appends `count` edges of chunk `chunk`, packed `src << 32 | dst`.
    fn draw_chunk(&self, chunk: u64, count: u64, out: &mut Vec<u64>) {
        let to_u32 = |p: f64| (p * 4_294_967_296.0).min(4_294_967_295.0) as u64;
        let ta = to_u32(self.a);
        let tab = to_u32(self.a + self.b);
        let tabc = to_u32(self.a + self.b + self.c);
        let scramble = Scramble::new(self.seed, self.scale);
        let mut rng = WyRand::for_key(self.seed, chunk);
        for _ in 0..count {
            let (mut src, mut dst) = (0u64, 0u64);
            let mut bits = 0u64;
            for level in 0..self.scale {
                if level % 2 == 0 {
                    bits = rng.next_u64();
                }
                let r = (bits >> (32 * (level % 2))) & 0xFFFF_FFFF;
                let (i, j) = if r < ta {
                    (0, 0)
                } else if r < tab {
                    (0, 1)
                } else if r < tabc {
                    (1, 0)
                } else {
                    (1, 1)
                };
                src = src << 1 | i;
                dst = dst << 1 | j;
            }
            out.push(scramble.apply(src) << 32 | scramble.apply(dst));
        }
    }
}

/// A seeded bijection of `0..2^bits`: odd multiplications and xor-shifts,
/// each invertible modulo `2^bits`.
#[derive(Clone, Copy)]
struct Scramble {
    mask: u64,
    mul: [u64; 2],
    shift: u32,
}

impl Scramble {
    fn new(seed: u64, bits: u32) -> Self {
        Self {
            mask: if bits >= 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            },
            mul: [mix64(seed ^ 1) | 1, mix64(seed ^ 2) | 1],
            shift: (bits / 2).max(1),
        }
    }

    #[inline]
    fn apply(&self, mut x: u64) -> u64 {
        for m in self.mul {
            x = x.wrapping_mul(m) & self.mask;
            x ^= x >> self.shift;
        }
        x
    }
}

/// Sorts each row of `indices`, drops duplicates and self loops (moving the
/// kept ones to the row's front), in parallel over row blocks. Returns the
/// kept count per row.
fn sort_dedup_rows(indptr: &[u64], indices: &mut [u64], threads: usize) -> Vec<u64> {
    let n = indptr.len() - 1;
    let mut kept = vec![0u64; n];
    // Split rows into blocks of about equal edge counts.
    let total = indptr[n];
    let mut bounds = vec![0usize];
    for t in 1..threads as u64 {
        let target = total * t / threads as u64;
        let r = indptr.partition_point(|&p| p < target).min(n);
        if r > *bounds.last().unwrap_or(&0) {
            bounds.push(r);
        }
    }
    bounds.push(n);
    thread::scope(|s| {
        let mut rest_idx = &mut indices[..];
        let mut rest_kept = &mut kept[..];
        for w in bounds.windows(2) {
            let (r0, r1) = (w[0], w[1]);
            let len = (indptr[r1] - indptr[r0]) as usize;
            let (idx, ri) = rest_idx.split_at_mut(len);
            let (kp, rk) = rest_kept.split_at_mut(r1 - r0);
            rest_idx = ri;
            rest_kept = rk;
            s.spawn(move || {
                let base = indptr[r0];
                for r in r0..r1 {
                    let row =
                        &mut idx[(indptr[r] - base) as usize..(indptr[r + 1] - base) as usize];
                    row.sort_unstable();
                    let mut k = 0;
                    for i in 0..row.len() {
                        let v = row[i];
                        if v != r as u64 && (k == 0 || row[k - 1] != v) {
                            row[k] = v;
                            k += 1;
                        }
                    }
                    kp[r - r0] = k as u64;
                }
            });
        }
    });
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scramble_is_a_bijection() {
        for bits in [1, 2, 5, 10] {
            let s = Scramble::new(42, bits);
            let mut seen: Vec<u64> = (0..1u64 << bits).map(|x| s.apply(x)).collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), 1 << bits);
        }
    }
}
