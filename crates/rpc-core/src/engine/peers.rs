//! The table of connected peers, by name.

use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::conn::ConnHandle;
use super::control::Reject;
use super::handler::lock;

/// Connected peers by name. A name maps to one incarnation (one process) at a
/// time; a second live process with the same name is refused, never merged.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    inner: Mutex<PeersInner>,
}

#[derive(Debug, Default)]
struct PeersInner {
    by_name: FxHashMap<Arc<str>, PeerEntry>,
}

#[derive(Debug)]
pub(crate) struct PeerEntry {
    pub incarnation: u128,
    pub conns: Vec<Arc<ConnHandle>>,
    next: usize,
    /// Set when the last connection closed, cleared when one comes up.
    lost: Option<Lost>,
    /// The wake-up of the task that keeps reconnecting to this peer (one
    /// started by `Rpc::connect`), while there is one.
    redial: Option<Arc<Notify>>,
}

/// What the engine knows of a peer whose every connection closed.
#[derive(Debug, Clone)]
struct Lost {
    since: Instant,
    /// Why the last connection ended.
    cause: String,
    /// The last reconnect attempt since, if it failed: local evidence that
    /// the peer is gone (a refused connect, say).
    failed: Option<(Instant, String)>,
}

impl Lost {
    /// The cause, and the failed reconnect if there was one.
    fn describe(&self) -> String {
        match &self.failed {
            Some((_, error)) => format!("{}; reconnecting failed: {error}", self.cause),
            None => self.cause.clone(),
        }
    }
}

/// What a call to a peer with no live connection should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkState {
    /// Nothing known against it: route or wait as usual.
    Unknown,
    /// The link was lost and a reconnect (or the peer's return) may come
    /// soon: wait for a change of the peer table, at most until the given
    /// instant (then look again).
    Waiting(Option<Instant>),
    /// The link was lost and the evidence says the peer is gone: fail now.
    Gone(String),
}

/// How long calls wait for a lost peer to come back, and how fresh a failed
/// reconnect must be to fail calls without asking for another attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LossPolicy {
    /// How long a peer we cannot redial (it connected to us) has to come
    /// back before calls to it fail.
    pub grace: Duration,
    /// A failed reconnect older than this makes a call ask for a new
    /// attempt (and wait for its outcome) before it fails.
    pub fresh: Duration,
}

impl Peers {
    /// Adds a connection. Refuses it when another live incarnation holds the
    /// name. `first` (the accepting side's welcome) is sent on it while the
    /// table is locked, so that it goes out before any call can pick the
    /// connection.
    pub(crate) fn register(
        &self,
        conn: Arc<ConnHandle>,
        first: Option<crate::wire::Frame>,
    ) -> Result<(), Reject> {
        let mut inner = lock(&self.inner);
        let entry = inner
            .by_name
            .entry(conn.peer.clone())
            .or_insert_with(|| PeerEntry {
                incarnation: conn.incarnation,
                conns: Vec::new(),
                next: 0,
                lost: None,
                redial: None,
            });
        entry.conns.retain(|c| !c.is_closed());
        if entry.incarnation != conn.incarnation {
            if !entry.conns.is_empty() {
                return Err(Reject::DuplicateName(conn.peer.to_string()));
            }
            // The old process is gone: this is its restart.
            entry.incarnation = conn.incarnation;
        }
        if let Some(frame) = first {
            conn.send(frame);
        }
        entry.conns.push(conn);
        entry.lost = None;
        Ok(())
    }

    /// Removes a connection that ended because of `cause`. Returns whether
    /// it was the peer's last one (the peer is now lost).
    pub(crate) fn unregister(&self, conn: &ConnHandle, cause: &str) -> bool {
        let mut inner = lock(&self.inner);
        let Some(entry) = inner.by_name.get_mut(&conn.peer) else {
            return false;
        };
        entry.conns.retain(|c| c.id != conn.id && !c.is_closed());
        if !entry.conns.is_empty() || entry.incarnation != conn.incarnation {
            return false;
        }
        entry.lost = Some(Lost {
            since: Instant::now(),
            cause: cause.to_owned(),
            failed: None,
        });
        true
    }

    /// Records that a reconnect to `name` failed with `error`, evidence
    /// that the peer is gone while it has no live connection.
    pub(crate) fn redial_failed(&self, name: &str, error: String) {
        let mut inner = lock(&self.inner);
        if let Some(lost) = inner.by_name.get_mut(name).and_then(|e| e.lost.as_mut()) {
            lost.failed = Some((Instant::now(), error));
        }
    }

    /// Notes that a task keeps reconnecting to `name`, woken early by
    /// `wake` when a call wants a fresh attempt; `None` when it stops.
    pub(crate) fn set_redial(&self, name: &str, wake: Option<Arc<Notify>>) {
        let mut inner = lock(&self.inner);
        if let Some(entry) = inner.by_name.get_mut(name) {
            entry.redial = wake;
        }
    }

    /// What a call to `name`, which has no live connection, should do.
    /// Asks the reconnecting task for an attempt now when the last failure
    /// is older than `policy.fresh`.
    pub(crate) fn link_state(&self, name: &str, now: Instant, policy: LossPolicy) -> LinkState {
        let inner = lock(&self.inner);
        let Some(entry) = inner.by_name.get(name) else {
            return LinkState::Unknown;
        };
        let Some(lost) = entry.lost.as_ref() else {
            return LinkState::Unknown;
        };
        if entry.conns.iter().any(|c| !c.is_closed()) {
            return LinkState::Unknown;
        }
        match (&lost.failed, &entry.redial) {
            (Some((at, _)), Some(wake)) if now.saturating_duration_since(*at) >= policy.fresh => {
                // Old evidence: the peer may be back. Ask for an attempt now
                // and wait for its outcome (a change of the peer table).
                wake.notify_one();
                LinkState::Waiting(None)
            }
            (Some(_), _) => LinkState::Gone(format!("connection lost ({})", lost.describe())),
            (None, Some(wake)) => {
                // A reconnect is due, at once after a connection that
                // lasted; but after one that ended at once the loop backs
                // off, possibly for seconds. Once the loss is no longer
                // fresh, ask for the attempt now (and look again then).
                let due = lost.since + policy.fresh;
                if now >= due {
                    wake.notify_one();
                    LinkState::Waiting(None)
                } else {
                    LinkState::Waiting(Some(due))
                }
            }
            (None, None) => {
                let until = lost.since + policy.grace;
                if now < until {
                    LinkState::Waiting(Some(until))
                } else {
                    LinkState::Gone(format!(
                        "connection lost ({}) and the peer did not come back within {:?}",
                        lost.cause, policy.grace
                    ))
                }
            }
        }
    }

    /// The cause of the loss of `name`'s link, while it has no live
    /// connection after having had one.
    pub(crate) fn lost_cause(&self, name: &str) -> Option<String> {
        let inner = lock(&self.inner);
        let entry = inner.by_name.get(name)?;
        let lost = entry.lost.as_ref()?;
        (!entry.conns.iter().any(|c| !c.is_closed())).then(|| lost.describe())
    }

    /// When `name` was lost, if it is.
    pub(crate) fn lost_since(&self, name: &str) -> Option<Instant> {
        lock(&self.inner)
            .by_name
            .get(name)?
            .lost
            .as_ref()
            .map(|l| l.since)
    }

    /// Forgets `name` if it is still lost since `since` and nothing
    /// reconnects to it: per-peer state stays proportional to live peers
    /// (and those we keep dialing).
    pub(crate) fn forget_if_lost(&self, name: &str, since: Instant) -> bool {
        let mut inner = lock(&self.inner);
        let forget = inner.by_name.get(name).is_some_and(|e| {
            e.conns.iter().all(|c| c.is_closed())
                && e.redial.is_none()
                && e.lost.as_ref().is_some_and(|l| l.since == since)
        });
        if forget {
            inner.by_name.remove(name);
            // A burst of clients leaves a table much larger than the peers
            // it holds: give the room back once it is mostly empty.
            if inner.by_name.capacity() > 64 && inner.by_name.len() < inner.by_name.capacity() / 4 {
                inner.by_name.shrink_to_fit();
            }
        }
        forget
    }

    /// A live connection to `name` allowed by `choice`, and whether its
    /// policy chose it. Host-local connections win; among network
    /// connections of several transports the policy chooses; otherwise
    /// calls rotate. Allocates only when a policy chooses.
    pub(crate) fn pick_with(
        &self,
        name: &str,
        choice: &super::choice::Choice,
    ) -> Option<(Arc<ConnHandle>, bool)> {
        let mut inner = lock(&self.inner);
        let entry = inner.by_name.get_mut(name)?;
        // The common case, one open connection the choice allows, without
        // the rotation's and the policy's passes.
        if let [only] = entry.conns.as_slice()
            && !only.is_closed()
            && choice.allows(only.info.transport)
        {
            entry.next = entry.next.wrapping_add(1);
            return Some((only.clone(), false));
        }
        if entry.conns.iter().any(|c| c.is_closed()) {
            entry.conns.retain(|c| !c.is_closed());
        }
        entry.next = entry.next.wrapping_add(1);
        let next = entry.next;
        let usable = || {
            entry
                .conns
                .iter()
                .filter(|c| choice.allows(c.info.transport))
        };
        let locals = usable().filter(|c| c.local).count();
        if locals > 0 {
            return usable()
                .filter(|c| c.local)
                .nth(next % locals)
                .map(|c| (c.clone(), false));
        }
        let count = usable().count();
        let first = usable().next()?;
        let single_scheme = usable().all(|c| c.info.transport == first.info.transport);
        match &choice.policy {
            Some(policy) if !single_scheme => {
                let mut schemes: Vec<&'static str> = usable().map(|c| c.info.transport).collect();
                schemes.sort_unstable();
                schemes.dedup();
                let i = policy.choose(name, &schemes);
                let scheme = schemes.get(i).copied().unwrap_or(schemes[0]);
                usable()
                    .find(|c| c.info.transport == scheme)
                    .map(|c| (c.clone(), true))
            }
            _ => usable().nth(next % count).map(|c| (c.clone(), false)),
        }
    }

    /// Whether [`pick_with`](Self::pick_with) would find a connection to
    /// `name` allowed by `choice`; takes no turn of the rotation.
    pub(crate) fn has_usable(&self, name: &str, choice: &super::choice::Choice) -> bool {
        lock(&self.inner).by_name.get(name).is_some_and(|e| {
            e.conns
                .iter()
                .any(|c| !c.is_closed() && choice.allows(c.info.transport))
        })
    }

    /// Whether `name` has a live connection over transport `scheme`.
    pub(crate) fn connected_over(&self, name: &str, scheme: &str) -> bool {
        lock(&self.inner).by_name.get(name).is_some_and(|e| {
            e.conns
                .iter()
                .any(|c| c.info.transport == scheme && !c.is_closed())
        })
    }

    /// Whether `name` has a live host-local connection.
    pub(crate) fn has_local(&self, name: &str) -> bool {
        lock(&self.inner)
            .by_name
            .get(name)
            .is_some_and(|e| e.conns.iter().any(|c| c.local && !c.is_closed()))
    }

    /// A snapshot for `debug_info`: (name, incarnation, connections).
    pub(crate) fn snapshot(&self) -> Vec<(Arc<str>, u128, Vec<Arc<ConnHandle>>)> {
        let inner = lock(&self.inner);
        let mut v: Vec<_> = inner
            .by_name
            .iter()
            .map(|(n, e)| {
                (
                    n.clone(),
                    e.incarnation,
                    e.conns.iter().filter(|c| !c.is_closed()).cloned().collect(),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}
