//! Getting foca back into the cluster while it is disconnected (pure: time
//! is passed in).
//!
//! Foca runs its timers (probes, gossip, announcing to down members) only
//! while it is connected, and it disconnects in two ways: when it renews its
//! identity after being declared down (it then waits for a packet addressed
//! to the new identity; packets to the old one are dropped), and when every
//! member it knew is declared down. Nothing in foca brings it back: it
//! reconnects only when a packet reaches it. If every member is in that
//! state at once, nobody speaks again: both sides of a healed partition
//! that renew at the same moment, or two nodes that declared each other
//! down.
//!
//! So while foca is disconnected the driver announces us to a few members
//! [`Rejoin`] picks: foca accepts an announce addressed to any identity of
//! its name and answers it (a feed) to our current identity, which
//! reconnects both ends.

use std::time::Duration;

use foca::{Member, State};
use tokio::time::Instant;

use crate::record::NodeId;

/// How many members one round of announces goes to.
const FANOUT: usize = 3;

/// When, and to whom, a disconnected foca announces itself.
///
/// The first round goes out at once; the pause before each next one doubles
/// from `first_pause` up to `max_pause`. Members are taken in turn, live
/// ones first (they are the likeliest to answer), then those declared down,
/// each by name.
#[derive(Debug)]
pub(crate) struct Rejoin {
    /// Foca's connection state, mirrored from its notifications (`Active`
    /// sets it; `Idle`, `Rejoin` and `Defunct` clear it).
    connected: bool,
    /// When the next round is due; `None` while foca is connected.
    due: Option<Instant>,
    /// The pause after the next round.
    pause: Duration,
    first_pause: Duration,
    max_pause: Duration,
    /// Where the next round starts among the members.
    cursor: usize,
    /// The seed we joined through: announced to while foca knows no member
    /// yet (its first answer may have been lost).
    seed: Option<NodeId>,
}

impl Rejoin {
    /// Nothing due: foca has not joined yet.
    pub(crate) fn new(first_pause: Duration, max_pause: Duration) -> Self {
        Self {
            connected: false,
            due: None,
            pause: first_pause,
            first_pause,
            max_pause: max_pause.max(first_pause),
            cursor: 0,
            seed: None,
        }
    }

    /// When the next round of announces is due, if one is.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Foca disconnected (it renewed its identity or lost its last member):
    /// a round is due at once.
    pub(crate) fn disconnected(&mut self, now: Instant) {
        self.connected = false;
        self.due = Some(now);
        self.pause = self.first_pause;
    }

    /// Foca is connected: nothing is due.
    pub(crate) fn connected(&mut self) {
        self.connected = true;
        self.due = None;
    }

    /// Foca is out of the cluster for good (it left): nothing is due.
    pub(crate) fn defunct(&mut self) {
        self.connected = false;
        self.due = None;
    }

    /// We just announced ourselves to `seed`: unless foca is connected
    /// already, a round is due after the first pause (its answer connecting
    /// foca first cancels it).
    pub(crate) fn joined(&mut self, seed: NodeId, now: Instant) {
        self.seed = Some(seed);
        if !self.connected {
            self.due = Some(now + self.first_pause);
            self.pause = self.first_pause;
        }
    }

    /// The members to announce to in the round due now, out of all foca
    /// knows (down ones included), and when the next round is due. Without
    /// members (nor a seed) there is nobody to ask, and nothing is due.
    pub(crate) fn round<'a>(
        &mut self,
        members: impl IntoIterator<Item = &'a Member<NodeId>>,
        now: Instant,
    ) -> Vec<NodeId> {
        let mut known: Vec<(bool, &NodeId)> = members
            .into_iter()
            .map(|m| (m.state() == State::Down, m.id()))
            .collect();
        known.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
        let mut all: Vec<&NodeId> = known.into_iter().map(|(_, id)| id).collect();
        if all.is_empty() {
            all.extend(self.seed.as_ref());
        }
        if all.is_empty() {
            self.due = None;
            return Vec::new();
        }
        let start = self.cursor % all.len();
        let count = all.len().min(FANOUT);
        self.cursor = start + count;
        self.due = Some(now + self.pause);
        self.pause = (self.pause * 2).min(self.max_pause);
        all.into_iter()
            .cycle()
            .skip(start)
            .take(count)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn id(name: &str) -> NodeId {
        NodeId {
            name: name.to_owned(),
            incarnation: 7,
            bump: 0,
        }
    }

    /// `members` as "name" (alive) or "name!" (down); each round's names,
    /// and its pause until the next round.
    #[track_caller]
    fn check(members: &[&str], seed: Option<&str>, expect: &[(&[&str], u64)]) {
        let members: Vec<Member<NodeId>> = members
            .iter()
            .map(|m| match m.strip_suffix('!') {
                Some(name) => Member::down(id(name)),
                None => Member::alive(id(m)),
            })
            .collect();
        let now = Instant::now();
        let mut r = Rejoin::new(SECOND, 5 * SECOND);
        match seed {
            Some(s) => r.joined(id(s), now),
            None => r.disconnected(now),
        }
        for (names, pause) in expect {
            let got: Vec<String> = r.round(&members, now).into_iter().map(|i| i.name).collect();
            assert_eq!(got, *names);
            assert_eq!(r.due(), Some(now + SECOND * *pause as u32));
        }
    }

    #[test]
    fn rounds_take_members_in_turn_live_ones_first_with_a_growing_pause() {
        check(
            &["e!", "c", "a", "d!", "b"],
            None,
            &[
                (&["a", "b", "c"], 1),
                (&["d", "e", "a"], 2),
                (&["b", "c", "d"], 4),
                (&["e", "a", "b"], 5),
                (&["c", "d", "e"], 5),
            ],
        );
        check(&["b!", "a"], None, &[(&["a", "b"], 1), (&["a", "b"], 2)]);
    }

    #[test]
    fn the_seed_is_asked_while_no_member_is_known() {
        check(&[], Some("s"), &[(&["s"], 1), (&["s"], 2)]);
        check(&["a"], Some("s"), &[(&["a"], 1)]);
    }

    #[test]
    fn nobody_to_ask_means_nothing_is_due() {
        let now = Instant::now();
        let mut r = Rejoin::new(SECOND, 5 * SECOND);
        assert_eq!(r.due(), None);
        r.disconnected(now);
        assert_eq!(r.due(), Some(now));
        assert!(r.round(&[], now).is_empty());
        assert_eq!(r.due(), None);
    }

    #[test]
    fn joining_while_connected_schedules_nothing() {
        let now = Instant::now();
        let mut r = Rejoin::new(SECOND, 5 * SECOND);
        r.connected();
        r.joined(id("s"), now);
        assert_eq!(r.due(), None);
        r.disconnected(now);
        r.defunct();
        assert_eq!(r.due(), None);
    }

    #[test]
    fn connecting_cancels_and_disconnecting_again_starts_over() {
        let now = Instant::now();
        let members = [Member::alive(id("a"))];
        let mut r = Rejoin::new(SECOND, 5 * SECOND);
        r.disconnected(now);
        r.round(&members, now);
        r.round(&members, now);
        assert_eq!(r.due(), Some(now + 2 * SECOND));
        r.connected();
        assert_eq!(r.due(), None);
        r.disconnected(now);
        assert_eq!(r.due(), Some(now));
        r.round(&members, now);
        assert_eq!(r.due(), Some(now + SECOND));
    }
}
