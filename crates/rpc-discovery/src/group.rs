//! Groups and collectives (GraphLearn-for-PyTorch's `init_worker_group`,
//! roles and ranks, `barrier`, `all_gather`), that never hang.
//!
//! A member joins a named group under a role with a rank and the role's
//! world size; the tag travels in its record, so every peer can map
//! "role R, rank k" to a name. A collective runs among the members of one
//! role ([`Scope::Role`]) or of every role of the group ([`Scope::Group`]).
//!
//! Each collective is one round at a coordinator, the participant with the
//! lowest (role, rank): every participant sends its contribution there
//! (numbered by a per-scope sequence number that advances identically on
//! every member), and the coordinator answers all of them at once when the
//! last arrives. A round fails, for everyone, with an error naming the
//! member when the membership declares a participant dead, and with an
//! error naming the missing ranks when the first caller's deadline passes.
//! A participant whose coordinator dies gets an error naming the
//! coordinator.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::{Blob, CallOptions, Responder, Rpc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::DiscoveryError;
use crate::membership::Shared;
use crate::node::Node;
use crate::record::GroupTag;

/// The function contributions are sent to.
const COLLECT_FN: &str = "__disc.collect";

/// Which members a collective spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The members of this member's role.
    Role,
    /// The members of every role of the group, ordered by (role, rank).
    Group,
}

/// One contribution to a round.
#[derive(Debug, Serialize, Deserialize)]
struct Contribution {
    /// `group` or `group/role`.
    scope: String,
    seq: u64,
    /// The participant's index in the round (rank within the scope).
    index: u32,
    /// Every participant's name, by index.
    participants: Vec<String>,
    value: Blob,
}

type RoundReply = Result<Vec<Blob>, String>;

/// A round in progress at its coordinator.
struct Round {
    participants: Vec<String>,
    values: BTreeMap<u32, Blob>,
    waiting: Vec<Responder<RoundReply>>,
}

impl Round {
    fn fail(self, reason: &str) {
        for r in self.waiting {
            r.ok(Err(reason.to_owned()));
        }
    }
}

/// The coordinator side: rounds by (scope, seq).
pub(crate) struct Collectives {
    rounds: Mutex<HashMap<(String, u64), Round>>,
    shared: Arc<Shared>,
}

impl Collectives {
    /// Registers the collect function and starts watching the membership.
    pub(crate) fn install(rpc: &Rpc, shared: Arc<Shared>) -> Result<Arc<Self>, DiscoveryError> {
        let this = Arc::new(Self {
            rounds: Mutex::default(),
            shared: shared.clone(),
        });
        let weak = Arc::downgrade(&this);
        rpc.define_deferred(
            COLLECT_FN,
            move |responder: Responder<RoundReply>, c: Contribution| {
                if let Some(this) = weak.upgrade() {
                    this.contribute(responder, c);
                } else {
                    responder.ok(Err("the node is shutting down".into()));
                }
            },
        )?;
        let weak = Arc::downgrade(&this);
        let mut rx = shared.changed.subscribe();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some(this) = weak.upgrade() else { return };
                this.fail_lost_members();
            }
        });
        Ok(this)
    }

    fn contribute(self: &Arc<Self>, responder: Responder<RoundReply>, c: Contribution) {
        let key = (c.scope.clone(), c.seq);
        let deadline = responder.context().deadline();
        let mut rounds = crate::lock(&self.rounds);
        let fresh = !rounds.contains_key(&key);
        let round = rounds.entry(key.clone()).or_insert_with(|| Round {
            participants: c.participants.clone(),
            values: BTreeMap::new(),
            waiting: Vec::new(),
        });
        round.values.insert(c.index, c.value);
        round.waiting.push(responder);
        if round.values.len() >= round.participants.len() {
            if let Some(done) = rounds.remove(&key) {
                let values: Vec<Blob> = done.values.into_values().collect();
                for r in done.waiting {
                    r.ok(Ok(values.clone()));
                }
            }
            return;
        }
        drop(rounds);
        if fresh && let Some(deadline) = deadline {
            // The round ends with the first caller's deadline at the latest.
            let weak = Arc::downgrade(self);
            tokio::spawn(async move {
                // A little before the callers give up, so that they hear who
                // is missing rather than a bare timeout.
                let now = tokio::time::Instant::now();
                let end = deadline - deadline.saturating_duration_since(now) / 10;
                tokio::time::sleep_until(end).await;
                let Some(this) = weak.upgrade() else { return };
                let Some(round) = crate::lock(&this.rounds).remove(&key) else {
                    return;
                };
                let missing: Vec<String> = round
                    .participants
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !round.values.contains_key(&(*i as u32)))
                    .map(|(i, n)| format!("{n} (index {i})"))
                    .collect();
                round.fail(&format!("timed out waiting for {}", missing.join(", ")));
            });
        }
        self.fail_lost_members();
    }

    /// Fails every round with a participant the membership declared dead.
    fn fail_lost_members(&self) {
        let lost: Vec<(String, u64)> = {
            let view = self.shared.view();
            let rounds = crate::lock(&self.rounds);
            rounds
                .iter()
                .filter(|(_, r)| {
                    r.participants
                        .iter()
                        .any(|p| view.down.contains_key(p) && !view.alive.contains_key(p))
                })
                .map(|(k, _)| k.clone())
                .collect()
        };
        for key in lost {
            let Some(round) = crate::lock(&self.rounds).remove(&key) else {
                continue;
            };
            let view = self.shared.view();
            let dead: Vec<String> = round
                .participants
                .iter()
                .filter(|p| view.down.contains_key(*p) && !view.alive.contains_key(*p))
                .cloned()
                .collect();
            drop(view);
            round.fail(&format!("member {} was lost", dead.join(", ")));
        }
    }
}

/// This node's membership in a group. Made by [`Node::join_group`].
#[derive(Clone)]
pub struct Group {
    node: Node,
    tag: GroupTag,
    seqs: Arc<[AtomicU64; 2]>,
}

impl Node {
    /// Joins `group` under `role` with `rank` of `world_size`. The tag is
    /// advertised in this node's record.
    pub fn join_group(
        &self,
        group: &str,
        role: &str,
        rank: u32,
        world_size: u32,
    ) -> Result<Group, DiscoveryError> {
        if rank >= world_size {
            return Err(DiscoveryError::InvalidArgument(format!(
                "rank {rank} is not below the world size {world_size}"
            )));
        }
        let tag = GroupTag {
            group: group.to_owned(),
            role: role.to_owned(),
            rank,
            world_size,
        };
        {
            let mut groups = crate::lock(&self.inner.groups);
            if groups.iter().any(|g| g.group == group && g.role == role) {
                return Err(DiscoveryError::InvalidArgument(format!(
                    "already in group {group:?} as {role:?}"
                )));
            }
            groups.insert(tag.clone());
        }
        let _ = self.inner.inbox.send(crate::membership::Event::Refresh);
        Ok(Group {
            node: self.clone(),
            tag,
            seqs: Arc::new([AtomicU64::new(0), AtomicU64::new(0)]),
        })
    }
}

impl Group {
    /// This member's rank in its role.
    pub fn rank(&self) -> u32 {
        self.tag.rank
    }

    /// The role's world size.
    pub fn world_size(&self) -> u32 {
        self.tag.world_size
    }

    /// The live member holding `rank` in `role` of this group.
    pub fn member(&self, role: &str, rank: u32) -> Option<String> {
        self.node.live_records().into_iter().find_map(|r| {
            r.groups
                .iter()
                .any(|g| g.group == self.tag.group && g.role == role && g.rank == rank)
                .then(|| r.id.name.clone())
        })
    }

    /// Calls `function` on the member holding `rank` in `role`.
    pub async fn call_rank<A, R>(
        &self,
        role: &str,
        rank: u32,
        function: &str,
        args: &A,
    ) -> Result<R, DiscoveryError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let name = self
            .member(role, rank)
            .ok_or_else(|| DiscoveryError::NoRoute {
                function: format!("{function} at {}/{role} rank {rank}", self.tag.group),
                resources: Default::default(),
            })?;
        Ok(self.node.rpc().call(&name, function, args).await?)
    }

    /// The participants of `scope` by index, once every one of them is
    /// alive (waits for them until `timeout`).
    pub async fn wait_ready(
        &self,
        scope: Scope,
        timeout: Duration,
    ) -> Result<Vec<String>, DiscoveryError> {
        let mut state = Readiness::Waiting;
        let _ = self
            .node
            .wait_until(timeout, |n| {
                state = participants(n, &self.tag, scope);
                !matches!(state, Readiness::Waiting)
            })
            .await;
        match state {
            Readiness::Ready(p) => Ok(p),
            Readiness::Lost(name) => {
                Err(self.error("wait_ready", format!("member {name} was lost")))
            }
            Readiness::Waiting => Err(self.error(
                "wait_ready",
                format!("not every member joined within {timeout:?}"),
            )),
        }
    }

    /// Waits until every participant of `scope` has reached the barrier.
    pub async fn barrier(&self, scope: Scope, timeout: Duration) -> Result<(), DiscoveryError> {
        self.round("barrier", scope, Blob::new(Vec::new()), timeout)
            .await
            .map(drop)
    }

    /// Gathers every participant's `value`, by index.
    pub async fn all_gather<T>(
        &self,
        scope: Scope,
        value: &T,
        timeout: Duration,
    ) -> Result<Vec<T>, DiscoveryError>
    where
        T: Serialize + DeserializeOwned,
    {
        let bytes =
            bincode::serialize(value).map_err(|e| self.error("all_gather", e.to_string()))?;
        let all = self
            .round("all_gather", scope, Blob::new(bytes), timeout)
            .await?;
        all.iter()
            .map(|b| {
                bincode::deserialize(b.as_ref())
                    .map_err(|e| self.error("all_gather", e.to_string()))
            })
            .collect()
    }

    /// Returns the value of the participant with index `root`; only the root
    /// passes `Some(value)`.
    pub async fn broadcast<T>(
        &self,
        scope: Scope,
        root: u32,
        value: Option<&T>,
        timeout: Duration,
    ) -> Result<T, DiscoveryError>
    where
        T: Serialize + DeserializeOwned,
    {
        let bytes = match value {
            Some(v) => bincode::serialize(v).map_err(|e| self.error("broadcast", e.to_string()))?,
            None => Vec::new(),
        };
        let all = self
            .round("broadcast", scope, Blob::new(bytes), timeout)
            .await?;
        let root_value = all
            .get(root as usize)
            .ok_or_else(|| self.error("broadcast", format!("no participant with index {root}")))?;
        bincode::deserialize(root_value.as_ref()).map_err(|e| {
            self.error(
                "broadcast",
                format!("the root sent no value or a bad one: {e}"),
            )
        })
    }

    fn error(&self, op: &'static str, reason: String) -> DiscoveryError {
        DiscoveryError::Collective {
            op,
            group: format!("{}/{}", self.tag.group, self.tag.role),
            reason,
        }
    }

    async fn round(
        &self,
        op: &'static str,
        scope: Scope,
        value: Blob,
        timeout: Duration,
    ) -> Result<Vec<Blob>, DiscoveryError> {
        let started = tokio::time::Instant::now();
        let participants = self.wait_ready(scope, timeout).await.map_err(|e| match e {
            DiscoveryError::Collective { reason, .. } => self.error(op, reason),
            other => other,
        })?;
        let me = self.node.name();
        let index = participants.iter().position(|p| p == me).ok_or_else(|| {
            self.error(
                op,
                format!("this node ({me}) is not among the participants {participants:?}"),
            )
        })? as u32;
        let (scope_name, slot) = match scope {
            Scope::Role => (format!("{}/{}", self.tag.group, self.tag.role), 0),
            Scope::Group => (self.tag.group.clone(), 1),
        };
        let seq = self.seqs[slot].fetch_add(1, Ordering::SeqCst);
        let coordinator = participants[0].clone();
        let left = timeout.saturating_sub(started.elapsed());
        let c = Contribution {
            scope: scope_name,
            seq,
            index,
            participants,
            value,
        };
        let reply: Result<RoundReply, rpc_core::Error> = self
            .node
            .rpc()
            .call_with(
                &coordinator,
                COLLECT_FN,
                &c,
                CallOptions::default().timeout(left),
            )
            .await;
        match reply {
            Ok(Ok(values)) => Ok(values),
            Ok(Err(reason)) => Err(self.error(op, reason)),
            Err(rpc_core::Error::Timeout { .. }) => {
                Err(self.error(op, format!("timed out after {timeout:?}")))
            }
            Err(e) => Err(self.error(op, format!("coordinator {coordinator} was lost: {e}"))),
        }
    }
}

/// Where the participants of a scope stand.
enum Readiness {
    /// Every rank of every role is held by a live member: names by index.
    Ready(Vec<String>),
    /// A member that holds one of the ranks was declared dead.
    Lost(String),
    /// Not every rank is taken yet.
    Waiting,
}

/// The participants of `scope` by index, ordered by (role, rank).
fn participants(node: &Node, tag: &GroupTag, scope: Scope) -> Readiness {
    let mut found: BTreeMap<(String, u32), String> = BTreeMap::new();
    let mut worlds: BTreeMap<String, u32> = BTreeMap::from([(tag.role.clone(), tag.world_size)]);
    for r in node.live_records() {
        for g in r.groups.iter().filter(|g| g.group == tag.group) {
            if scope == Scope::Role && g.role != tag.role {
                continue;
            }
            found.insert((g.role.clone(), g.rank), r.id.name.clone());
            worlds.insert(g.role.clone(), g.world_size);
        }
    }
    let complete = worlds
        .iter()
        .all(|(role, w)| (0..*w).all(|k| found.contains_key(&(role.clone(), k))));
    if complete {
        return Readiness::Ready(found.into_values().collect());
    }
    // A member known to hold a missing rank that is now down.
    for m in node.members() {
        if m.state != crate::MemberState::Down {
            continue;
        }
        let held = m.record.iter().flat_map(|r| r.groups.iter()).any(|g| {
            g.group == tag.group
                && (scope == Scope::Group || g.role == tag.role)
                && !found.contains_key(&(g.role.clone(), g.rank))
        });
        if held {
            return Readiness::Lost(m.name);
        }
    }
    Readiness::Waiting
}
