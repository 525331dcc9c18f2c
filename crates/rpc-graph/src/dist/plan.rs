//! [`EpochPlan`]: which seeds go in which batch of an epoch (pure).

use super::LoaderOptions;
use crate::GraphError;
use crate::rng::{WyRand, mix64};

/// The batches of one epoch: the seeds in epoch order (shuffled by
/// `(options.seed, stream, epoch)` when asked) cut into runs of
/// `batch_size`, the last one shorter unless dropped. Pure: the same
/// arguments give the same plan in any process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochPlan {
    order: Vec<u64>,
    batch_size: usize,
    num_batches: usize,
    stream: u64,
    epoch: u64,
}

impl EpochPlan {
    /// The plan of epoch `epoch` over `seeds` for the producer `stream`
    /// (0 for a single producer; remote producers get one each so that
    /// their shuffles and randomness keys differ).
    pub fn new(
        seeds: &[u64],
        options: &LoaderOptions,
        stream: u64,
        epoch: u64,
    ) -> Result<Self, GraphError> {
        let bs = options.batch_size;
        if bs == 0 {
            return Err(GraphError::InvalidArgument("batch size 0".into()));
        }
        let mut order = seeds.to_vec();
        if options.shuffle {
            let mut rng = WyRand::for_key(mix64(options.seed ^ mix64(stream)), epoch);
            for i in (1..order.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                order.swap(i, j);
            }
        }
        let num_batches = if options.drop_last {
            order.len() / bs
        } else {
            order.len().div_ceil(bs)
        };
        Ok(Self {
            order,
            batch_size: bs,
            num_batches,
            stream,
            epoch,
        })
    }

    /// The number of batches.
    #[must_use]
    pub fn num_batches(&self) -> usize {
        self.num_batches
    }

    /// The seeds of batch `i`.
    #[must_use]
    pub fn batch(&self, i: usize) -> Option<&[u64]> {
        if i >= self.num_batches {
            return None;
        }
        let start = i * self.batch_size;
        self.order
            .get(start..(start + self.batch_size).min(self.order.len()))
    }

    /// The epoch.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The sampling randomness key of batch `i` (the `batch` argument of
    /// the samplers): unique per stream, epoch and batch.
    #[must_use]
    pub fn key(&self, i: usize) -> u64 {
        mix64(self.stream) ^ (self.epoch << 32 | i as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(batch_size: usize, shuffle: bool, drop_last: bool) -> LoaderOptions {
        LoaderOptions {
            batch_size,
            shuffle,
            drop_last,
            ..LoaderOptions::default()
        }
    }

    #[track_caller]
    fn check(n: u64, o: LoaderOptions, expect_sizes: &[usize]) {
        let seeds: Vec<u64> = (0..n).collect();
        let plan = EpochPlan::new(&seeds, &o, 0, 3).unwrap();
        let sizes: Vec<usize> = (0..plan.num_batches())
            .map(|i| plan.batch(i).unwrap().len())
            .collect();
        assert_eq!(sizes, expect_sizes);
        assert!(plan.batch(plan.num_batches()).is_none());
    }

    #[test]
    fn batch_sizes() {
        check(10, opts(4, false, false), &[4, 4, 2]);
        check(10, opts(4, false, true), &[4, 4]);
        check(8, opts(4, true, true), &[4, 4]);
        check(3, opts(4, false, true), &[]);
        check(0, opts(4, false, false), &[]);
        assert!(EpochPlan::new(&[1], &opts(0, false, false), 0, 0).is_err());
    }

    #[test]
    fn shuffle_is_a_seeded_permutation_per_epoch() {
        let seeds: Vec<u64> = (0..100).collect();
        let o = opts(7, true, false);
        let a = EpochPlan::new(&seeds, &o, 0, 1).unwrap();
        let b = EpochPlan::new(&seeds, &o, 0, 1).unwrap();
        let c = EpochPlan::new(&seeds, &o, 0, 2).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.order, c.order);
        assert_ne!(a.order, seeds);
        let mut sorted = a.order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, seeds);
    }
}
