//! [`Batcher`]: the pure part of batching. It collects items and says when
//! a batch is complete or due; it never reads the clock (time is passed
//! in) and never waits.

use std::time::Duration;

use tokio::time::Instant;

/// Collects items into batches of at most `max_batch`, and flushes a
/// partial batch `max_wait` after its first item arrived.
///
/// ```
/// use std::time::Duration;
/// use rpc_tensor::Batcher;
/// use tokio::time::Instant;
///
/// let mut b = Batcher::new(2, Duration::from_millis(5));
/// let t0 = Instant::now();
/// assert_eq!(b.push('a', t0), None);
/// assert_eq!(b.next_deadline(), Some(t0 + Duration::from_millis(5)));
/// assert_eq!(b.push('b', t0), Some(vec!['a', 'b']));
/// assert_eq!(b.push('c', t0), None);
/// assert_eq!(b.flush_due(t0 + Duration::from_millis(4)), None);
/// assert_eq!(b.flush_due(t0 + Duration::from_millis(5)), Some(vec!['c']));
/// ```
#[derive(Debug)]
pub struct Batcher<T> {
    max_batch: usize,
    max_wait: Duration,
    items: Vec<T>,
    /// When the current partial batch is due; `None` while empty.
    deadline: Option<Instant>,
}

impl<T> Batcher<T> {
    /// A batcher of batches of at most `max_batch` items (at least 1),
    /// flushed `max_wait` after their first item.
    pub fn new(max_batch: usize, max_wait: Duration) -> Self {
        Self {
            max_batch: max_batch.max(1),
            max_wait,
            items: Vec::new(),
            deadline: None,
        }
    }

    /// Adds an item that arrived at `now`; returns the batch it completes.
    pub fn push(&mut self, item: T, now: Instant) -> Option<Vec<T>> {
        if self.items.is_empty() {
            self.deadline = Some(now + self.max_wait);
            self.items.reserve(self.max_batch);
        }
        self.items.push(item);
        (self.items.len() >= self.max_batch).then(|| self.take())
    }

    /// When the partial batch is due, if there is one.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The partial batch, if it is due at `now`.
    pub fn flush_due(&mut self, now: Instant) -> Option<Vec<T>> {
        match self.deadline {
            Some(d) if d <= now => Some(self.take()),
            _ => None,
        }
    }

    /// The partial batch, due or not, if there is one.
    pub fn flush(&mut self) -> Option<Vec<T>> {
        (!self.items.is_empty()).then(|| self.take())
    }

    /// The number of items waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn take(&mut self) -> Vec<T> {
        self.deadline = None;
        std::mem::take(&mut self.items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds events to a batcher of `max` items and `wait` ms: a number
    /// pushes that item at time t, `None` flushes what is due at time t.
    /// Checks the batches that come out, with their times.
    #[track_caller]
    fn check(max: usize, wait: u64, events: &[(u64, Option<u32>)], expect: &[(u64, &[u32])]) {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut b = Batcher::new(max, Duration::from_millis(wait));
        let mut out = Vec::new();
        for &(t, ev) in events {
            let batch = match ev {
                Some(item) => b.push(item, at(t)),
                None => b.flush_due(at(t)),
            };
            if let Some(batch) = batch {
                out.push((t, batch));
            }
        }
        let expect: Vec<(u64, Vec<u32>)> = expect.iter().map(|(t, b)| (*t, b.to_vec())).collect();
        assert_eq!(out, expect);
    }

    #[test]
    fn batches_by_size_and_by_time() {
        // Full batches go out at once.
        check(
            3,
            10,
            &[(0, Some(1)), (0, Some(2)), (1, Some(3))],
            &[(1, &[1, 2, 3])],
        );
        check(
            1,
            10,
            &[(0, Some(1)), (0, Some(2))],
            &[(0, &[1]), (0, &[2])],
        );
        // A partial batch is due max_wait after its first item, not later
        // ones, and not before.
        check(
            3,
            10,
            &[
                (0, Some(1)),
                (5, Some(2)),
                (9, None),
                (10, None),
                (11, None),
            ],
            &[(10, &[1, 2])],
        );
        // The next batch's clock starts with its own first item.
        check(
            2,
            10,
            &[
                (0, Some(1)),
                (1, Some(2)),
                (3, Some(3)),
                (12, None),
                (13, None),
            ],
            &[(1, &[1, 2]), (13, &[3])],
        );
        // Nothing is due while empty.
        check(2, 0, &[(0, None), (5, None)], &[]);
        // A zero wait flushes at the next look.
        check(4, 0, &[(0, Some(1)), (0, None)], &[(0, &[1])]);
        // max_batch 0 is taken as 1.
        check(0, 10, &[(0, Some(1))], &[(0, &[1])]);
    }

    #[test]
    fn flush_takes_everything_and_resets_the_deadline() {
        let t0 = Instant::now();
        let mut b = Batcher::new(4, Duration::from_millis(10));
        assert_eq!(b.flush(), None);
        b.push(1, t0);
        b.push(2, t0);
        assert_eq!(b.len(), 2);
        assert_eq!(b.flush(), Some(vec![1, 2]));
        assert!(b.is_empty());
        assert_eq!(b.next_deadline(), None);
    }
}
