//! `rpc-discovery`: membership, name routing, transport choice and
//! mpreg-style cluster calls on top of `rpc-core`.
//!
//! - **Membership** ([`Node`]): every peer advertises a [`PeerRecord`]
//!   (name and incarnation, listen addresses, host key, functions with
//!   provider ids, resources, direct links, groups). Failure detection and
//!   dissemination are SWIM, through the `foca` crate; its packets and the
//!   records (foca custom broadcasts) travel as one-way calls of the engine.
//!   Joining needs one seed address; a name held by a live peer is refused
//!   ([`DiscoveryError::DuplicateName`]).
//! - **Name routing**: a call to a peer that is not directly connected goes
//!   through relays along the shortest path over the links peers advertise
//!   (`routing`), with the engine's hop limit and a deadline budget that
//!   shrinks at each hop. A member the membership declared dead fails at
//!   once with `Unreachable`.
//! - **Cluster calls** ([`Node::call_any`]): to a live node having the
//!   function and every requested resource, by the power of two choices
//!   over calls in flight; nodes without resources are balancers.
//! - **Plans** (`plan`): named commands whose arguments reference other
//!   commands' results, resolved level by level inside the cluster.
//! - **Groups** ([`Group`]): roles, ranks, `barrier`, `all_gather`,
//!   `broadcast`, which fail with the lost member's name instead of hanging.
//! - **Transport choice** ([`bandit`]): a softmax bandit over decayed,
//!   size-normalised latencies.
//!
//! # Layout
//!
//! - `record`: [`PeerRecord`], [`NodeId`], [`GroupTag`].
//! - `membership`: the foca driver task, record broadcasts, the router.
//! - `rejoin`: when and to whom a disconnected foca announces itself (pure).
//! - `routing`: [`RouteTable`], link-state shortest paths (pure).
//! - `node`: [`Node`], joining, members, `call_any`.
//! - `group`: [`Group`] and the coordinator of collectives.
//! - `plan`: plans (pure) and their generic execution.
//! - `mpreg`: JSON functions, built-ins, plans run inside the cluster.
//! - `bandit`: transport choice (pure); `choice`: the engine policy using it.
//! - `error`: [`DiscoveryError`].

#![forbid(unsafe_code)]

pub mod bandit;
mod choice;
mod error;
mod group;
mod membership;
mod mpreg;
mod node;
pub mod plan;
mod record;
mod rejoin;
mod routing;

pub use error::DiscoveryError;
pub use group::{Group, Scope};
pub use membership::{MemberState, MembershipConfig};
pub use mpreg::{BUILTINS, PlanResult, register_builtins, request};
pub use node::{DiscoveryConfig, DiscoveryDebug, MemberInfo, Node, Served};
pub use record::{GroupTag, NodeId, PeerRecord};
pub use routing::RouteTable;

/// Locks a mutex whose critical sections leave the data consistent even if
/// one panicked.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
