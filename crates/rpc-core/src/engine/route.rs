//! Name routing: calls to peers with no direct connection, and relaying.
//!
//! The engine itself only knows its direct connections. A [`Router`]
//! (installed by discovery with [`Rpc::set_router`]) names, for a peer that
//! is not directly connected, the directly connected peer to hand its frames
//! to. Such a request carries a routing envelope ([`Route`]: source,
//! destination, hops left).
//!
//! A peer that receives a request for someone else relays it: it picks the
//! next connection the same way (direct, else its router), decrements the
//! hop count, shrinks the deadline budget by [`Config::hop_reserve`] and
//! sends it on under a request id of its own. The answer comes back the same
//! way, through the relay's pending table, so answers need no envelope and
//! every hop can cancel: a cancel or a lost connection on either side
//! reaches the other. A relay never sends a frame back to the peer it came
//! from, and a frame whose hops are used up is refused, so a frame cannot
//! circle: loops end with [`Error::Unreachable`].
//!
//! [`Config::hop_reserve`]: crate::Config::hop_reserve

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::call::CancelOnDrop;
use super::conn::ConnHandle;
use super::control::WireError;
use super::handler::{IncomingTable, error_frame, lock};
use super::peers::{LinkState, LossPolicy};
use super::{Inner, Rpc, Waiter};
use crate::error::Error;
use crate::wire::{Frame, FrameKind, Route};

/// Chooses the next hop towards peers that are not directly connected.
///
/// Contract:
/// - [`next_hop`](Self::next_hop) returns the name of a peer this engine
///   should currently be directly connected to, or `None` when it knows no
///   path. The engine checks that the connection exists and never forwards
///   a frame back to the peer it came from.
/// - [`unreachable`](Self::unreachable) returns a reason when the router
///   *knows* the peer is gone (for example, membership declared it dead), so
///   that calls fail at once with [`Error::Unreachable`] instead of waiting
///   for their deadline. `None` means "unknown or reachable": callers wait
///   for a route until their deadline.
/// - Both are called on the engine's hot path for routed frames: they must
///   not block and should be cheap (a map lookup).
/// - When its view changes, the router calls [`Rpc::routes_changed`] so that
///   calls waiting for a route look again.
pub trait Router: Send + Sync + 'static {
    /// The directly connected peer to forward frames for `dst` to.
    fn next_hop(&self, dst: &str) -> Option<Arc<str>>;

    /// Why `dst` cannot be reached, when that is known for sure.
    fn unreachable(&self, dst: &str) -> Option<String> {
        let _ = dst;
        None
    }
}

impl Rpc {
    /// Installs the router that finds paths to peers with no direct
    /// connection, replacing any earlier one. Without a router, calls reach
    /// only directly connected peers and routed frames are refused.
    pub fn set_router(&self, router: Arc<dyn Router>) {
        *self
            .inner
            .router
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(router);
        self.routes_changed();
    }

    /// Tells calls waiting for a route that the router's view changed.
    pub fn routes_changed(&self) {
        self.inner.bump_peers();
    }

    /// Why the direct link to `peer` is down, when this engine had one and
    /// lost it and it has not come back (a refused reconnect, a reset, the
    /// peer's goodbye); `None` while connected, or for a peer never
    /// connected or already forgotten ([`Config::forget_after`]).
    ///
    /// [`Config::forget_after`]: crate::Config::forget_after
    pub fn link_lost(&self, peer: &str) -> Option<String> {
        self.inner.peers.lost_cause(peer)
    }

    /// The names of the peers with a live direct connection, sorted.
    pub fn connected_peers(&self) -> Vec<String> {
        self.inner
            .peers
            .snapshot()
            .into_iter()
            .filter(|(_, _, conns)| !conns.is_empty())
            .map(|(name, _, _)| name.to_string())
            .collect()
    }

    /// A counter that grows whenever a direct connection comes up or goes
    /// down (or [`routes_changed`](Self::routes_changed) is called).
    pub fn peers_generation(&self) -> u64 {
        self.inner.peers_gen.load(Ordering::SeqCst)
    }

    /// Waits until [`peers_generation`](Self::peers_generation) exceeds
    /// `seen`, or the engine shuts down; returns the new generation.
    pub async fn peers_changed(&self, seen: u64) -> u64 {
        loop {
            let changed = self.inner.peer_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = self.peers_generation();
            if now > seen || self.inner.is_shut() {
                return now;
            }
            changed.await;
        }
    }
}

impl Inner {
    fn router(&self) -> Option<Arc<dyn Router>> {
        self.router
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Counts a change of the peer table and wakes whoever waits on one.
    pub(crate) fn bump_peers(&self) {
        self.peers_gen.fetch_add(1, Ordering::SeqCst);
        self.peer_changed.notify_waiters();
    }

    /// The connection to send a frame for `dst` on, and the envelope it
    /// needs if that is not `dst` itself; never the connection to `except`.
    ///
    /// A peer whose direct link was lost is not routed around: the local
    /// evidence (a refused reconnect, say) decides, before any router,
    /// which may not have heard of the loss yet.
    fn next_conn(
        &self,
        dst: &str,
        except: Option<&str>,
    ) -> Result<(Arc<ConnHandle>, bool), NoPath> {
        if let Some((conn, _)) = self.pick(dst) {
            return Ok((conn, false));
        }
        let policy = LossPolicy {
            grace: self.config.reconnect_grace,
            fresh: self.config.reconnect_min,
        };
        match self.peers.link_state(dst, Instant::now(), policy) {
            LinkState::Gone(reason) => return Err(NoPath::Gone(reason)),
            LinkState::Waiting(until) => return Err(NoPath::Wait(until)),
            LinkState::Unknown => {}
        }
        let Some(router) = self.router() else {
            return Err(NoPath::Wait(None));
        };
        if let Some(hop) = router.next_hop(dst)
            && Some(&*hop) != except
            && let Some((conn, _)) = self.pick(&hop)
        {
            return Ok((conn, true));
        }
        Err(router
            .unreachable(dst)
            .map_or(NoPath::Wait(None), NoPath::Gone))
    }
}

/// Why [`Inner::next_conn`] found no connection.
enum NoPath {
    /// Nothing yet: a connection or route may come; look again on a change
    /// of the peer table, or at the given instant.
    Wait(Option<Instant>),
    /// The peer is known to be gone, for this reason.
    Gone(String),
}

/// Where a call goes first.
pub(crate) struct Path {
    /// The connection to send it on.
    pub conn: Arc<ConnHandle>,
    /// Its routing envelope, if `conn` leads to a relay.
    pub route: Option<Box<Route>>,
    /// Whether the transport policy chose `conn` and hears the round trip.
    pub measure: bool,
    /// Whether finding it took a wait (for a connection or a route).
    pub waited: bool,
}

/// The connection to send a call for `peer` on, and its routing envelope if
/// it goes through a relay. Waits for a connection or a route until
/// `deadline`; fails at once when the router knows the peer is gone.
pub(crate) async fn resolve(inner: &Inner, peer: &str, deadline: Instant) -> Result<Path, Error> {
    // The common case: connected already, no need to wait.
    if let Some((conn, measure)) = inner.pick(peer) {
        return Ok(Path {
            conn,
            route: None,
            measure,
            waited: false,
        });
    }
    // Boxed: its notifier and timer would otherwise make every call's
    // future larger (and every move of it dearer) for a rare path.
    Box::pin(resolve_slow(inner, peer, deadline)).await
}

/// [`resolve`] when no connection is up: a route, or a wait.
async fn resolve_slow(inner: &Inner, peer: &str, deadline: Instant) -> Result<Path, Error> {
    loop {
        let changed = inner.peer_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if inner.is_shut() {
            return Err(Error::ShutDown);
        }
        match inner.next_conn(peer, None) {
            Ok((conn, relayed)) => {
                let route = relayed.then(|| {
                    Box::new(Route {
                        src: inner.name(),
                        dst: Arc::from(peer),
                        hops_left: inner.config.max_hops,
                    })
                });
                return Ok(Path {
                    conn,
                    route,
                    measure: false,
                    waited: true,
                });
            }
            Err(NoPath::Gone(reason)) => {
                return Err(Error::Unreachable {
                    peer: peer.to_owned(),
                    reason,
                });
            }
            Err(NoPath::Wait(until)) => {
                if let Some(until) = until.filter(|u| *u < deadline) {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(until) => {}
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            () = changed => {}
            () = tokio::time::sleep_until(deadline) => {
                // The call never left: whatever the cause, it was not
                // delivered.
                return Err(match inner.peers.lost_cause(peer) {
                    Some(cause) => Error::Unreachable {
                        peer: peer.to_owned(),
                        reason: format!("connection lost ({cause}) and not back before the deadline"),
                    },
                    None => Error::NoSuchPeer { peer: peer.to_owned() },
                });
            }
        }
    }
}

/// Relays a request or one-way frame that arrived on `from` for another
/// peer. Refusals go back to `from` as error frames.
pub(crate) fn relay(
    inner: &Arc<Inner>,
    from: &Arc<ConnHandle>,
    mut frame: Frame,
    incoming: &IncomingTable,
) {
    let Some(route) = frame.route.clone() else {
        return;
    };
    let orig_id = frame.request_id;
    let is_request = frame.kind == FrameKind::Request;
    let refuse = |reason: String| {
        if is_request {
            from.send(error_frame(
                orig_id,
                &WireError::Unreachable {
                    peer: route.dst.to_string(),
                    reason,
                },
            ));
        }
    };
    let me = inner.name();
    if route.hops_left == 0 {
        refuse(format!("hop limit reached at {me}"));
        return;
    }
    let max = inner.config.max_handler_time;
    let budget = frame.deadline.map_or(max, |d| d.min(max));
    let Some(onward) = budget
        .checked_sub(inner.config.hop_reserve)
        .filter(|d| !d.is_zero())
    else {
        refuse(format!("deadline budget used up at {me}"));
        return;
    };
    let out = match inner.next_conn(&route.dst, Some(&from.peer)) {
        Ok((conn, _)) => conn,
        Err(NoPath::Gone(reason)) => {
            refuse(format!("at relay {me}: {reason}"));
            return;
        }
        Err(NoPath::Wait(_)) => {
            refuse(match inner.peers.lost_cause(&route.dst) {
                Some(cause) => format!("relay {me} lost its link to it just now ({cause})"),
                None => format!("relay {me} has no link or route to it"),
            });
            return;
        }
    };
    inner.relayed.fetch_add(1, Ordering::Relaxed);
    frame.route = Some(Box::new(Route {
        hops_left: route.hops_left - 1,
        ..(*route).clone()
    }));
    frame.deadline = Some(onward);
    if !is_request {
        out.send(frame);
        return;
    }
    let (tx, rx) = oneshot::channel();
    let until = Instant::now() + onward;
    let (id, earliest) = lock(&inner.pending).insert_until(out.id, until, Waiter::new(tx));
    if earliest {
        inner.deadlines_changed();
    }
    frame.request_id = id;
    let token = CancellationToken::new();
    incoming.insert(orig_id, token.clone());
    out.send(frame);
    let (inner2, from, incoming) = (inner.clone(), from.clone(), incoming.clone());
    let dst = route.dst;
    inner.spawn(async move {
        let guard = CancelOnDrop {
            inner: &inner2,
            conn: &out,
            id,
        };
        let outcome = tokio::select! {
            answer = rx => Some(answer),
            () = token.cancelled() => None,
        };
        incoming.remove(orig_id);
        let answer = match outcome {
            Some(Ok(Ok(mut answer))) => {
                answer.request_id = orig_id;
                answer
            }
            // Past the budget: the deadline task removed the call; tell the
            // next hop to stop. The caller times out by itself.
            Some(Ok(Err(Error::Timeout { .. }))) => {
                std::mem::forget(guard);
                out.send(Frame::new(FrameKind::Cancel, id));
                return;
            }
            // The request went on, so the destination may have run it: a
            // lost link here is a disconnection, never "unreachable"
            // (which promises the call was not delivered).
            Some(Ok(Err(Error::ShutDown))) => error_frame(orig_id, &WireError::ShuttingDown),
            Some(Ok(Err(e))) => {
                let reason = match e {
                    Error::Disconnected { reason, .. } => reason,
                    other => other.to_string(),
                };
                error_frame(
                    orig_id,
                    &WireError::Disconnected {
                        peer: dst.to_string(),
                        reason: format!("at relay {}: {reason}", inner2.name()),
                    },
                )
            }
            Some(Err(_)) => error_frame(orig_id, &WireError::ShuttingDown),
            // Cancelled: the guard tells the next hop to stop.
            None => return,
        };
        std::mem::forget(guard);
        from.send(answer);
    });
}
