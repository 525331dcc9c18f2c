//! The table of outgoing calls waiting for a response, and deadline budgets.
//!
//! Pure logic: no I/O, no clock. Time is passed in as `now`.

use rustc_hash::FxHashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Identifies one connection inside an engine.
pub type ConnId = u64;

/// Outgoing calls by request id, each bound to the connection it was sent on.
///
/// `W` is whatever wakes the caller (the engine uses a oneshot sender).
#[derive(Debug)]
pub struct PendingCalls<W> {
    entries: FxHashMap<u64, Entry<W>>,
    next_id: u64,
    /// No deadline of a pending call is earlier (it may be earlier than
    /// the earliest: entries leave without updating it).
    next_deadline: Option<Instant>,
}

#[derive(Debug)]
struct Entry<W> {
    conn: ConnId,
    deadline: Option<Instant>,
    waiter: W,
}

impl<W> PendingCalls<W> {
    /// An empty table whose first request id is `first_id`. Starting at a
    /// random id makes stale responses from an earlier incarnation unlikely to
    /// match.
    pub fn new(first_id: u64) -> Self {
        Self {
            entries: FxHashMap::default(),
            next_id: first_id,
            next_deadline: None,
        }
    }

    /// Registers a call sent on `conn` and returns its request id. Ids are
    /// unique among pending calls, also after the counter wraps.
    pub fn insert(&mut self, conn: ConnId, waiter: W) -> u64 {
        self.insert_entry(conn, None, waiter)
    }

    /// Registers a call that [`expire`](Self::expire) ends at `deadline`.
    /// Returns its request id, and whether its deadline is now the earliest
    /// (whoever expires calls must then look again).
    pub fn insert_until(&mut self, conn: ConnId, deadline: Instant, waiter: W) -> (u64, bool) {
        let id = self.insert_entry(conn, Some(deadline), waiter);
        let earliest = self.next_deadline.is_none_or(|d| deadline < d);
        if earliest {
            self.next_deadline = Some(deadline);
        }
        (id, earliest)
    }

    fn insert_entry(&mut self, conn: ConnId, deadline: Option<Instant>, waiter: W) -> u64 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            if let std::collections::hash_map::Entry::Vacant(slot) = self.entries.entry(id) {
                slot.insert(Entry {
                    conn,
                    deadline,
                    waiter,
                });
                return id;
            }
        }
    }

    /// Removes every call whose deadline is at or before `now`, and returns
    /// their ids and waiters. Afterwards [`next_deadline`](Self::next_deadline)
    /// is the earliest deadline left.
    pub fn expire(&mut self, now: Instant) -> Vec<(u64, W)> {
        let due: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        let expired = due
            .into_iter()
            .filter_map(|id| self.entries.remove(&id).map(|e| (id, e.waiter)))
            .collect();
        self.next_deadline = self.entries.values().filter_map(|e| e.deadline).min();
        expired
    }

    /// No pending call's deadline is earlier than this; `None` when no
    /// call has one.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_deadline
    }

    /// Removes the call `id` when its response arrives on `conn`. A response
    /// on another connection than the request's is ignored.
    pub fn complete(&mut self, conn: ConnId, id: u64) -> Option<W> {
        match self.entries.get(&id) {
            Some(e) if e.conn == conn => self.entries.remove(&id).map(|e| e.waiter),
            _ => None,
        }
    }

    /// Removes the call `id` (the caller gave up). Returns its connection.
    pub fn remove(&mut self, id: u64) -> Option<(ConnId, W)> {
        self.entries.remove(&id).map(|e| (e.conn, e.waiter))
    }

    /// Removes every call sent on `conn`, which was lost.
    pub fn remove_conn(&mut self, conn: ConnId) -> Vec<W> {
        let ids: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.conn == conn)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.entries.remove(&id).map(|e| e.waiter))
            .collect()
    }

    /// Removes every call.
    pub fn drain(&mut self) -> Vec<W> {
        self.entries.drain().map(|(_, e)| e.waiter).collect()
    }

    /// The number of pending calls.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no call is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The budget left until `deadline` at `now`: zero once it has passed.
pub fn remaining(deadline: Instant, now: Instant) -> Duration {
    deadline.saturating_duration_since(now)
}

/// The deadline for a budget received in a frame at `now`, capped by the
/// local limit `cap` (a server never waits longer than it allows).
pub fn deadline_from_budget(now: Instant, budget: Option<Duration>, cap: Duration) -> Instant {
    now + budget.map_or(cap, |b| b.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_responses_match_their_connection() {
        let mut t = PendingCalls::new(7);
        let a = t.insert(1, "a");
        let b = t.insert(2, "b");
        assert_eq!((a, b), (7, 8));
        assert_eq!(t.complete(1, b), None, "response on the wrong connection");
        assert_eq!(t.complete(2, b), Some("b"));
        assert_eq!(t.complete(2, b), None, "second response for the same id");
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove(a), Some((1, "a")));
        assert!(t.is_empty());
    }

    #[test]
    fn calls_expire_at_their_deadline_and_the_earliest_is_tracked() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = PendingCalls::new(0);
        let (a, first) = t.insert_until(1, t0 + s(5), "a");
        assert!(first);
        let (b, earlier) = t.insert_until(1, t0 + s(2), "b");
        assert!(earlier);
        let (_, later) = t.insert_until(2, t0 + s(9), "c");
        assert!(!later);
        t.insert(1, "no deadline");
        assert_eq!(t.next_deadline(), Some(t0 + s(2)));
        assert!(t.expire(t0 + s(1)).is_empty());
        assert_eq!(t.expire(t0 + s(2)), vec![(b, "b")]);
        assert_eq!(t.next_deadline(), Some(t0 + s(5)));
        // Completed calls never expire; the estimate catches up on expiry.
        assert_eq!(t.complete(1, a), Some("a"));
        assert!(t.expire(t0 + s(5)).is_empty());
        assert_eq!(t.next_deadline(), Some(t0 + s(9)));
        assert_eq!(t.expire(t0 + s(60)).len(), 1);
        assert_eq!(t.next_deadline(), None);
        assert_eq!(t.len(), 1, "the call without a deadline stays");
    }

    #[test]
    fn wrap_around_skips_ids_in_use() {
        let mut t = PendingCalls::new(u64::MAX - 1);
        let ids: Vec<u64> = (0..3).map(|i| t.insert(0, i)).collect();
        assert_eq!(ids, vec![u64::MAX - 1, u64::MAX, 0]);
        // Force the counter back onto an id still pending.
        t.next_id = u64::MAX;
        assert_eq!(t.insert(0, 9), 1);
    }

    #[test]
    fn losing_a_connection_fails_only_its_calls() {
        let mut t = PendingCalls::new(0);
        for i in 0..10 {
            t.insert(i % 2, i);
        }
        let mut lost = t.remove_conn(1);
        lost.sort_unstable();
        assert_eq!(lost, vec![1, 3, 5, 7, 9]);
        assert_eq!(t.len(), 5);
        assert_eq!(t.drain().len(), 5);
    }

    #[test]
    fn budgets() {
        let now = Instant::now();
        let cap = Duration::from_secs(60);
        assert_eq!(
            remaining(now + Duration::from_secs(3), now),
            Duration::from_secs(3)
        );
        assert_eq!(remaining(now, now + Duration::from_secs(1)), Duration::ZERO);
        assert_eq!(deadline_from_budget(now, None, cap), now + cap);
        assert_eq!(
            deadline_from_budget(now, Some(Duration::from_secs(2)), cap),
            now + Duration::from_secs(2)
        );
        assert_eq!(
            deadline_from_budget(now, Some(Duration::from_secs(600)), cap),
            now + cap
        );
    }
}
