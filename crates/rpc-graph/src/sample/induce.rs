//! [`Inducer`]: relabels global ids to dense local indices in order of
//! discovery, and turns [`NeighborBatch`]es into local edge lists.

use std::ops::Range;

use super::NeighborBatch;
use crate::GraphError;

/// An empty slot of the open-addressing table.
const EMPTY: u64 = u64::MAX;

/// Relabels the nodes of one sampled batch: global id → local index, in
/// the order nodes are first seen (seeds first, then each hop's new nodes).
///
/// The table is open addressing with linear probing, keyed by global id,
/// kept between batches (reset clears it without freeing). Pure: the same
/// calls give the same indices, whoever produced the batches.
///
/// Use, per batch: [`reset`](Self::reset), [`add_seeds`](Self::add_seeds),
/// then per hop [`advance`](Self::advance) (the frontier: the nodes found
/// since the last advance), sample the frontier's ids from
/// [`nodes`](Self::nodes) however (locally or remotely), and
/// [`induce`](Self::induce) the answer.
#[derive(Clone, Debug)]
pub struct Inducer {
    keys: Vec<u64>,
    vals: Vec<u32>,
    shift: u32,
    /// The local index of global id `u64::MAX`, which is the empty key.
    max_slot: Option<u32>,
    nodes: Vec<u64>,
    mark: usize,
}

impl Default for Inducer {
    fn default() -> Self {
        Self::new()
    }
}

impl Inducer {
    /// An empty inducer.
    #[must_use]
    pub fn new() -> Self {
        let cap = 1024;
        Self {
            keys: vec![EMPTY; cap],
            vals: vec![0; cap],
            shift: 64 - cap.trailing_zeros(),
            max_slot: None,
            nodes: Vec::new(),
            mark: 0,
        }
    }

    /// Forgets every node, keeping the buffers.
    pub fn reset(&mut self) {
        self.keys.fill(EMPTY);
        self.max_slot = None;
        self.nodes.clear();
        self.mark = 0;
    }

    /// The local index of `id`, inserting it if new.
    #[inline]
    pub fn insert(&mut self, id: u64) -> u64 {
        if id == EMPTY {
            return u64::from(*self.max_slot.get_or_insert_with(|| {
                self.nodes.push(id);
                (self.nodes.len() - 1) as u32
            }));
        }
        let mask = self.keys.len() - 1;
        let mut slot = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize;
        loop {
            let k = self.keys[slot];
            if k == id {
                return u64::from(self.vals[slot]);
            }
            if k == EMPTY {
                let local = self.nodes.len() as u32;
                self.keys[slot] = id;
                self.vals[slot] = local;
                self.nodes.push(id);
                if self.nodes.len() * 2 > self.keys.len() {
                    self.grow();
                }
                return u64::from(local);
            }
            slot = (slot + 1) & mask;
        }
    }

    /// The local index of `id`, if seen.
    #[must_use]
    pub fn get(&self, id: u64) -> Option<u64> {
        if id == EMPTY {
            return self.max_slot.map(u64::from);
        }
        let mask = self.keys.len() - 1;
        let mut slot = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize;
        loop {
            match self.keys[slot] {
                k if k == id => return Some(u64::from(self.vals[slot])),
                EMPTY => return None,
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    /// Doubles the table and re-inserts every node.
    fn grow(&mut self) {
        let cap = self.keys.len() * 2;
        self.keys = vec![EMPTY; cap];
        self.vals = vec![0; cap];
        self.shift = 64 - cap.trailing_zeros();
        let mask = cap - 1;
        for (local, &id) in self.nodes.iter().enumerate() {
            if id == EMPTY {
                continue;
            }
            let mut slot = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize;
            while self.keys[slot] != EMPTY {
                slot = (slot + 1) & mask;
            }
            self.keys[slot] = id;
            self.vals[slot] = local as u32;
        }
    }

    /// Inserts the seeds in order, pushing each seed's local index to
    /// `positions` (a repeated seed gets its first index).
    pub fn add_seeds(&mut self, seeds: &[u64], positions: &mut Vec<u64>) {
        positions.reserve(seeds.len());
        for &s in seeds {
            positions.push(self.insert(s));
        }
    }

    /// Every node seen, by local index.
    #[must_use]
    pub fn nodes(&self) -> &[u64] {
        &self.nodes
    }

    /// The local indices of the nodes found since the previous call (the
    /// next frontier), and starts a new round.
    pub fn advance(&mut self) -> Range<usize> {
        let r = self.mark..self.nodes.len();
        self.mark = self.nodes.len();
        r
    }

    /// Adds one hop's answer: `batch` answers the nodes with local indices
    /// `rows.start..rows.end` (counts in that order). Appends the edges as
    /// `(row local index, neighbour local index)` to `src`/`dst`, and the
    /// edge ids to `edge_ids` when given and present in the batch. New
    /// neighbours get new local indices. Returns the number of edges added.
    ///
    /// For heterogeneous graphs the rows belong to the source type's
    /// inducer and `self` is the destination type's.
    pub fn induce(
        &mut self,
        rows: Range<usize>,
        batch: &NeighborBatch,
        src: &mut Vec<u64>,
        dst: &mut Vec<u64>,
        edge_ids: Option<&mut Vec<u64>>,
    ) -> Result<usize, GraphError> {
        batch.validate(rows.len())?;
        let n = batch.neighbors.len();
        src.reserve(n);
        dst.reserve(n);
        let mut it = batch.neighbors.iter();
        for (row, &c) in rows.zip(&batch.counts) {
            for &nbr in it.by_ref().take(c as usize) {
                src.push(row as u64);
                dst.push(self.insert(nbr));
            }
        }
        if let Some(eids) = edge_ids
            && batch.edge_ids.len() == n
        {
            eids.extend_from_slice(&batch.edge_ids);
        }
        Ok(n)
    }

    /// Moves the node list out (to `out`, whose old buffer the inducer
    /// keeps for reuse) and resets.
    pub fn take_nodes(&mut self, out: &mut Vec<u64>) {
        std::mem::swap(out, &mut self.nodes);
        self.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relabels_in_order_of_discovery_across_growth() {
        let mut ind = Inducer::new();
        let ids: Vec<u64> = (0..5000u64).map(|i| i * 7919 % 10007).collect();
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(ind.insert(id), i as u64);
        }
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(ind.insert(id), i as u64);
            assert_eq!(ind.get(id), Some(i as u64));
        }
        assert_eq!(ind.insert(u64::MAX), 5000);
        assert_eq!(ind.get(u64::MAX), Some(5000));
        ind.reset();
        assert_eq!(ind.get(ids[3]), None);
        assert_eq!(ind.insert(ids[3]), 0);
    }

    #[test]
    fn induce_checks_the_batch_against_the_rows() {
        let mut ind = Inducer::new();
        let bad = NeighborBatch {
            counts: vec![2],
            neighbors: vec![1],
            edge_ids: vec![],
        };
        let (mut s, mut d) = (Vec::new(), Vec::new());
        assert!(ind.induce(0..1, &bad, &mut s, &mut d, None).is_err());
        assert!(ind.induce(0..2, &bad, &mut s, &mut d, None).is_err());
    }
}
