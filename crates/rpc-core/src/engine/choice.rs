//! Which connection a call to a peer takes, when there are several.
//!
//! - [`Rpc::set_transports`] restricts the transports the engine connects
//!   with and sends calls over.
//! - A host-local connection (shared memory) is taken at once when there is
//!   one: nothing on a network beats it.
//! - Otherwise, when the peer has live connections over more than one
//!   network transport, a [`TransportPolicy`] (installed by discovery:
//!   a bandit over measured latencies) picks the transport, and hears how
//!   long each call took. Without a policy, or with one transport, calls
//!   rotate over the connections.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::conn::ConnHandle;
use super::{Inner, Rpc};
use crate::error::Error;

/// Picks the transport of each call to a peer reachable over several
/// network transports, from what earlier calls measured.
///
/// Contract:
/// - [`choose`](Self::choose) gets the distinct schemes of the peer's live,
///   allowed network connections (at least two, sorted) and returns an index
///   into them; an index out of range counts as 0.
/// - [`observe`](Self::observe) hears every completed direct call over a
///   connection the policy chose: the scheme, the bytes of request and
///   answer on the wire, and the round trip. Failed calls are not reported.
/// - Both run on the caller's path: they must not block and should take
///   well under a microsecond (a lock, a few float operations).
pub trait TransportPolicy: Send + Sync + 'static {
    /// The index of the transport to use for the next call to `peer`.
    fn choose(&self, peer: &str, transports: &[&'static str]) -> usize;

    /// A call to `peer` over `transport` moved `bytes` in `rtt`.
    fn observe(&self, peer: &str, transport: &'static str, bytes: u64, rtt: Duration);

    /// A one-line account of the choice for `peer`, for `debug_info`.
    fn describe(&self, peer: &str) -> Option<String> {
        let _ = peer;
        None
    }
}

impl Rpc {
    /// Restricts the transports this engine connects with and sends its
    /// calls over to `schemes` (each one added with
    /// [`add_transport`](Self::add_transport)). Connections already up over
    /// other transports stay, but carry no new calls of ours; answers still
    /// go back the way requests came. An empty list lifts the restriction.
    pub fn set_transports(&self, schemes: &[&str]) -> Result<(), Error> {
        let added = self
            .inner
            .transports
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .copied()
            .collect::<Vec<_>>();
        for s in schemes {
            if !added.contains(s) {
                return Err(Error::InvalidArgument(format!(
                    "no transport serves {s:?}; added: {added:?}"
                )));
            }
        }
        let allowed =
            (!schemes.is_empty()).then(|| schemes.iter().map(|s| (*s).to_owned()).collect());
        let mut choice = self
            .inner
            .choice
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        choice.allowed = allowed;
        self.inner.choice_set.store(true, Ordering::Release);
        drop(choice);
        self.routes_changed();
        Ok(())
    }

    /// Installs the policy that picks among several network transports to
    /// one peer, replacing any earlier one.
    pub fn set_transport_policy(&self, policy: Arc<dyn TransportPolicy>) {
        let mut choice = self
            .inner
            .choice
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        choice.policy = Some(policy);
        self.inner.choice_set.store(true, Ordering::Release);
    }
}

/// The choice of an engine that never restricted its transports nor set a
/// policy: calls then read no lock to learn it.
static UNSET: Choice = Choice {
    allowed: None,
    policy: None,
};

/// What restricts and decides the choice of connection: read on every call.
#[derive(Default)]
pub(crate) struct Choice {
    /// The transports calls may use; `None`: all.
    pub allowed: Option<Vec<String>>,
    /// Chooses among several network transports.
    pub policy: Option<Arc<dyn TransportPolicy>>,
}

impl Choice {
    /// Whether calls may use the transport `scheme`.
    pub(crate) fn allows(&self, scheme: &str) -> bool {
        self.allowed
            .as_ref()
            .is_none_or(|a| a.iter().any(|s| s == scheme))
    }
}

/// The current choice: the engine's, or [`UNSET`] while it has none.
enum ChoiceRef<'a> {
    Unset,
    Set(std::sync::RwLockReadGuard<'a, Choice>),
}

impl std::ops::Deref for ChoiceRef<'_> {
    type Target = Choice;

    fn deref(&self) -> &Choice {
        match self {
            Self::Unset => &UNSET,
            Self::Set(guard) => guard,
        }
    }
}

impl Inner {
    fn choice(&self) -> ChoiceRef<'_> {
        // Set once and for good (`Release` after the write): until then the
        // lock is not worth its two atomic operations per call.
        if !self.choice_set.load(Ordering::Acquire) {
            return ChoiceRef::Unset;
        }
        ChoiceRef::Set(
            self.choice
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Whether calls may use the transport `scheme`.
    pub(crate) fn allows(&self, scheme: &str) -> bool {
        self.choice().allows(scheme)
    }

    pub(crate) fn policy(&self) -> Option<Arc<dyn TransportPolicy>> {
        self.choice().policy.clone()
    }

    /// The connection for the next call to `peer`, and whether the policy
    /// chose it (so that the call reports its round trip).
    pub(crate) fn pick(&self, peer: &str) -> Option<(Arc<ConnHandle>, bool)> {
        self.peers.pick_with(peer, &self.choice())
    }

    /// Whether [`pick`](Self::pick) would find a connection to `peer` now,
    /// without taking a turn of its rotation.
    pub(crate) fn can_pick(&self, peer: &str) -> bool {
        self.peers.has_usable(peer, &self.choice())
    }
}
