//! The table of connected peers, by name.

use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};

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
}

impl Peers {
    /// Adds a connection. Refuses it when another live incarnation holds the
    /// name.
    pub(crate) fn register(&self, conn: Arc<ConnHandle>) -> Result<(), Reject> {
        let mut inner = lock(&self.inner);
        let entry = inner
            .by_name
            .entry(conn.peer.clone())
            .or_insert_with(|| PeerEntry {
                incarnation: conn.incarnation,
                conns: Vec::new(),
                next: 0,
            });
        entry.conns.retain(|c| !c.is_closed());
        if entry.incarnation != conn.incarnation {
            if !entry.conns.is_empty() {
                return Err(Reject::DuplicateName(conn.peer.to_string()));
            }
            // The old process is gone: this is its restart.
            entry.incarnation = conn.incarnation;
        }
        entry.conns.push(conn);
        Ok(())
    }

    /// Removes a connection.
    pub(crate) fn unregister(&self, conn: &ConnHandle) {
        let mut inner = lock(&self.inner);
        if let Some(entry) = inner.by_name.get_mut(&conn.peer) {
            entry.conns.retain(|c| c.id != conn.id);
        }
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

    /// Whether `name` has a live host-local connection.
    pub(crate) fn has_local(&self, name: &str) -> bool {
        lock(&self.inner)
            .by_name
            .get(name)
            .is_some_and(|e| e.conns.iter().any(|c| c.local && !c.is_closed()))
    }

    /// Whether `name` was ever connected.
    pub(crate) fn known(&self, name: &str) -> bool {
        lock(&self.inner).by_name.contains_key(name)
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
