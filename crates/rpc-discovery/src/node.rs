//! [`Node`]: an engine taking part in the cluster.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::{Blob, CallOptions, HandlerError, Rpc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::error::DiscoveryError;
use crate::membership::{
    DiscoveryRouter, Driver, Event, JOIN_FN, MemberState, MembershipConfig, RECORD_FN,
    RecordSource, SWIM_FN, Shared,
};
use crate::record::{GroupTag, NodeId, PeerRecord};

/// Settings of a [`Node`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DiscoveryConfig {
    /// The membership protocol's timings.
    pub membership: MembershipConfig,
    /// The resources (datasets, models) this node advertises. Without any,
    /// the node is a balancer: it routes cluster calls but executes none.
    pub resources: BTreeSet<String>,
    /// The addresses to advertise. `None` advertises what the engine
    /// listens on; an empty list makes a node others cannot dial (behind
    /// NAT): it is reached through the peers it dials.
    pub advertise: Option<Vec<String>>,
    /// Whether to dial members we learn about. Default: true.
    pub dial: bool,
    /// How long joining through a seed may take. Default: 10 s.
    pub join_timeout: Duration,
    /// How calls pick among several network transports to one peer (a
    /// bandit over measured latencies); `None` leaves the engine's rotation.
    /// Restrict the transports themselves with `Rpc::set_transports`.
    pub transport_bandit: Option<crate::bandit::BanditConfig>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            membership: MembershipConfig::default(),
            resources: BTreeSet::new(),
            advertise: None,
            dial: true,
            join_timeout: Duration::from_secs(10),
            transport_bandit: Some(crate::bandit::BanditConfig::default()),
        }
    }
}

/// What the seed answers a joining peer: its identity and every record it
/// knows, or why the join is refused.
type JoinReply = Result<(NodeId, Vec<PeerRecord>), String>;

/// One member as [`Node::members`] reports it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MemberInfo {
    /// Its name.
    pub name: String,
    /// Alive or down.
    pub state: MemberState,
    /// Its record, once received.
    pub record: Option<PeerRecord>,
    /// The next hop towards it (itself when directly connected).
    pub next_hop: Option<String>,
    /// How many links a call to it crosses.
    pub hops: Option<u32>,
}

/// An engine taking part in a cluster: membership (SWIM), name routing with
/// relaying, cluster calls by function and resources, plans, and groups.
///
/// Dropping the node stops its membership task; the engine itself lives on
/// (it is shared, see [`Node::rpc`]).
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
}

pub(crate) struct NodeInner {
    pub rpc: Rpc,
    pub shared: Arc<Shared>,
    pub inbox: mpsc::UnboundedSender<Event>,
    pub me: NodeId,
    pub resources: Arc<Mutex<BTreeSet<String>>>,
    pub groups: Arc<Mutex<BTreeSet<GroupTag>>>,
    pub config: DiscoveryConfig,
    /// Cluster calls in flight per node, for load spreading.
    pub in_flight: Mutex<HashMap<String, usize>>,
    /// Functions whose cluster calls may run twice (see
    /// [`Node::set_idempotent`]).
    pub idempotent: Mutex<BTreeSet<String>>,
    /// Keeps the coordinator of collectives alive as long as the node.
    pub _collectives: Arc<crate::group::Collectives>,
    _stop: DropGuard,
}

impl Node {
    /// Makes `rpc` a cluster node: registers the membership functions,
    /// installs the router and starts the membership task. Call it inside a
    /// tokio runtime, after naming the engine and before or after
    /// `listen`; then [`join`](Self::join) a seed (the first node joins
    /// nobody).
    pub fn start(rpc: &Rpc, config: DiscoveryConfig) -> Result<Self, DiscoveryError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(DiscoveryError::InvalidArgument(
                "Node::start must be called inside a tokio runtime".into(),
            ));
        }
        let me = NodeId {
            name: rpc.get_name(),
            incarnation: rand::random(),
            bump: 0,
        };
        let shared = Shared::new();
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let resources = Arc::new(Mutex::new(config.resources.clone()));
        let groups = Arc::new(Mutex::new(BTreeSet::new()));

        let swim_tx = tx.clone();
        rpc.define(SWIM_FN, move |packet: Blob| {
            let _ = swim_tx.send(Event::Data(packet.into_bytes()));
            std::future::ready(Ok::<(), HandlerError>(()))
        })?;
        let (join_shared, join_tx, my_name, my_inc) =
            (shared.clone(), tx.clone(), me.name.clone(), me.incarnation);
        rpc.define(JOIN_FN, move |record: PeerRecord| {
            let reply = accept_join(&join_shared, &my_name, my_inc, &record);
            if reply.is_ok() {
                let _ = join_tx.send(Event::Learnt(record));
            }
            std::future::ready(Ok::<JoinReply, HandlerError>(reply))
        })?;
        let record_shared = shared.clone();
        rpc.define(RECORD_FN, move |(): ()| {
            let mine = record_shared.view().mine.clone();
            std::future::ready(Ok::<Option<PeerRecord>, HandlerError>(mine))
        })?;
        let collectives = crate::group::Collectives::install(rpc, shared.clone())?;
        rpc.set_router(Arc::new(DiscoveryRouter(shared.clone())));
        if let Some(bandit) = config.transport_bandit {
            rpc.set_transport_policy(Arc::new(crate::choice::BanditPolicy::new(bandit)));
        }

        let driver = Driver {
            rpc: rpc.clone(),
            shared: shared.clone(),
            source: RecordSource {
                rpc: rpc.clone(),
                advertise: config.advertise.clone(),
                resources: resources.clone(),
                groups: groups.clone(),
            },
            config: config.membership.clone(),
            dial: config.dial,
            inbox_tx: tx.clone(),
            inbox: rx,
            stop: stop.clone(),
        };
        tokio::spawn(driver.run(me.clone()));
        let node = Self {
            inner: Arc::new(NodeInner {
                rpc: rpc.clone(),
                shared,
                inbox: tx,
                me,
                resources,
                groups,
                config,
                in_flight: Mutex::default(),
                idempotent: Mutex::default(),
                _collectives: collectives,
                _stop: stop.drop_guard(),
            }),
        };
        node.serve_plans()?;
        Ok(node)
    }

    /// Asks the membership task to rebuild our record now.
    pub(crate) fn refresh(&self) {
        let _ = self.inner.inbox.send(Event::Refresh);
    }

    pub(crate) fn downgrade(&self) -> WeakNode {
        WeakNode(Arc::downgrade(&self.inner))
    }

    /// The engine.
    pub fn rpc(&self) -> &Rpc {
        &self.inner.rpc
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.inner.me.name
    }

    /// Joins the cluster through the peer listening on `seed`. Fails with
    /// [`DiscoveryError::DuplicateName`] when a live member already holds
    /// our name, and with [`DiscoveryError::JoinFailed`] as soon as the
    /// seed cannot be reached (a refused connection, a bad address).
    pub async fn join(&self, seed: &str) -> Result<String, DiscoveryError> {
        let rpc = &self.inner.rpc;
        let timeout = self.inner.config.join_timeout;
        // The first attempt decides: a refused seed fails the join at once
        // (and `join_any` tries the next), instead of after the timeout.
        let seed_name = match rpc.connect(seed)?.first_attempt(timeout).await {
            Ok(name) => name,
            Err(rpc_core::Error::DuplicateName { name }) => {
                return Err(DiscoveryError::DuplicateName { name });
            }
            Err(e) => {
                rpc.stop_connecting(seed);
                return Err(DiscoveryError::JoinFailed {
                    reason: format!("{seed}: {e}"),
                });
            }
        };
        let mine = self.wait_own_record().await;
        let reply: JoinReply = rpc
            .call_with(
                &seed_name,
                JOIN_FN,
                &mine,
                rpc_core::CallOptions::default().timeout(timeout),
            )
            .await?;
        match reply {
            Ok((seed_id, records)) => {
                let _ = self.inner.inbox.send(Event::Joined {
                    seed: seed_id,
                    records,
                });
                Ok(seed_name)
            }
            Err(_) => Err(DiscoveryError::DuplicateName {
                name: self.inner.me.name.clone(),
            }),
        }
    }

    /// Joins through the first of `seeds` that answers.
    pub async fn join_any(&self, seeds: &[String]) -> Result<String, DiscoveryError> {
        let mut last = DiscoveryError::JoinFailed {
            reason: "no seeds given".into(),
        };
        for seed in seeds {
            match self.join(seed).await {
                Ok(name) => return Ok(name),
                Err(e @ DiscoveryError::DuplicateName { .. }) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn wait_own_record(&self) -> PeerRecord {
        let mut rx = self.inner.shared.changed.subscribe();
        loop {
            if let Some(r) = self.inner.shared.view().mine.clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                // The driver is gone; build a record without it.
                return PeerRecord {
                    id: self.inner.me.clone(),
                    version: 0,
                    addresses: Vec::new(),
                    host_key: String::new(),
                    functions: Vec::new(),
                    resources: BTreeSet::new(),
                    links: BTreeSet::new(),
                    groups: BTreeSet::new(),
                };
            }
        }
    }

    /// Every member we know of (ourselves excluded), sorted by name: the
    /// live ones, and those declared down within
    /// [`MembershipConfig::show_down_for`](crate::MembershipConfig::show_down_for).
    pub fn members(&self) -> Vec<MemberInfo> {
        let view = self.inner.shared.view();
        let show_down_for = self.inner.config.membership.show_down_for;
        let now = tokio::time::Instant::now();
        let routes = self
            .inner
            .shared
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut names: BTreeSet<&String> = view.alive.keys().collect();
        names.extend(view.down.keys().filter(|n| {
            view.down_at
                .get(*n)
                .is_none_or(|at| now.saturating_duration_since(*at) < show_down_for)
        }));
        names
            .into_iter()
            .filter(|n| **n != self.inner.me.name)
            .map(|n| MemberInfo {
                name: n.clone(),
                state: if view.alive.contains_key(n) {
                    MemberState::Alive
                } else {
                    MemberState::Down
                },
                record: view.records.get(n).cloned(),
                next_hop: routes.next_hop(n).map(|h| h.to_string()),
                hops: routes.hops(n),
            })
            .collect()
    }

    /// The names of live members, ourselves included.
    pub fn alive(&self) -> BTreeSet<String> {
        let view = self.inner.shared.view();
        let mut names: BTreeSet<String> = view.alive.keys().cloned().collect();
        names.insert(self.inner.me.name.clone());
        names
    }

    /// The newest record of `name` (ours too).
    pub fn record(&self, name: &str) -> Option<PeerRecord> {
        let view = self.inner.shared.view();
        if name == self.inner.me.name {
            return view.mine.clone();
        }
        view.records.get(name).cloned()
    }

    /// Live members' records, ours included, sorted by name.
    pub fn live_records(&self) -> Vec<PeerRecord> {
        let view = self.inner.shared.view();
        let mut v: Vec<PeerRecord> = view.live_records().cloned().collect();
        v.sort_by(|a, b| a.id.name.cmp(&b.id.name));
        v
    }

    /// Waits until `done` holds for this node, re-checking on every change
    /// of the membership or of the engine's connections, for at most
    /// `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<(), DiscoveryError> {
        let mut rx = self.inner.shared.changed.subscribe();
        let wait = async {
            loop {
                if done(self) {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(DiscoveryError::Rpc(rpc_core::Error::ShutDown)),
            Err(_) => Err(DiscoveryError::Rpc(rpc_core::Error::Timeout {
                peer: self.inner.me.name.clone(),
                function: "wait_until".into(),
                after: timeout,
            })),
        }
    }

    /// Replaces the advertised resources.
    pub fn set_resources(&self, resources: BTreeSet<String>) {
        *crate::lock(&self.inner.resources) = resources;
        self.refresh();
    }

    /// Leaves the cluster: tells the others and stops the membership task.
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.inbox.send(Event::Leave(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Calls `function` with `args` on a live node that has it and every
    /// one of `resources` (a superset is fine), spreading the load with the
    /// power of two choices over calls in flight. Returns which node served.
    ///
    /// Fails over within the engine's timeout: a node whose direct link
    /// this engine lost is left out at once, and a call that certainly
    /// never reached a handler ([`rpc_core::Error::never_delivered`]: no
    /// path, a refused reconnect, no such function there, overloaded) is
    /// tried on another matching node. A call that was delivered and then
    /// lost its connection is tried again only if `function` was declared
    /// idempotent ([`set_idempotent`](Self::set_idempotent)); otherwise
    /// its `Disconnected` error is returned, since it may have run.
    pub async fn call_any<A, R>(
        &self,
        function: &str,
        resources: &[&str],
        args: &A,
    ) -> Result<Served<R>, DiscoveryError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let wanted: BTreeSet<String> = resources.iter().map(|s| (*s).to_owned()).collect();
        self.call_any_in(function, &wanted, args).await
    }

    /// Declares that running `function` twice is harmless, so that a
    /// cluster call to it that lost its node mid-call is tried on another
    /// node ([`call_any`](Self::call_any)). The built-in JSON functions are
    /// declared by [`register_builtins`](crate::register_builtins).
    pub fn set_idempotent(&self, function: &str) {
        crate::lock(&self.inner.idempotent).insert(function.to_owned());
    }

    /// [`call_any`](Self::call_any) with the resources as a set.
    pub(crate) async fn call_any_in<A, R>(
        &self,
        function: &str,
        resources: &BTreeSet<String>,
        args: &A,
    ) -> Result<Served<R>, DiscoveryError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let rpc = &self.inner.rpc;
        let deadline = tokio::time::Instant::now() + rpc.timeout();
        let idempotent = crate::lock(&self.inner.idempotent).contains(function);
        let mut tried = BTreeSet::new();
        let mut last: Option<rpc_core::Error> = None;
        loop {
            let target = match self.pick_server(function, resources, &tried) {
                Ok(target) => target,
                Err(none) => return Err(last.map_or(none, DiscoveryError::Rpc)),
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let options = CallOptions::default().timeout(left);
            let _guard = InFlight::new(self, &target);
            let error = match rpc.call_with(&target, function, args, options).await {
                Ok(value) => {
                    return Ok(Served {
                        node: target,
                        value,
                    });
                }
                Err(e) => e,
            };
            let again = error.never_delivered()
                || (idempotent && matches!(error, rpc_core::Error::Disconnected { .. }));
            if !again || left.is_zero() {
                return Err(error.into());
            }
            tracing::debug!(%function, node = %target, "cluster call failed over: {error}");
            tried.insert(target);
            last = Some(error);
        }
    }

    /// The live servers having `function` and `resources`, sorted.
    pub fn servers_for(&self, function: &str, resources: &BTreeSet<String>) -> Vec<String> {
        let view = self.inner.shared.view();
        let mut v: Vec<String> = view
            .live_records()
            .filter(|r| r.serves(function, resources))
            .map(|r| r.id.name.clone())
            .collect();
        v.sort();
        v
    }

    /// A node for a cluster call, not one of `tried`. Nodes whose direct
    /// link this engine lost are chosen only when no other is left (their
    /// calls then fail at once, naming the cause).
    pub(crate) fn pick_server(
        &self,
        function: &str,
        resources: &BTreeSet<String>,
        tried: &BTreeSet<String>,
    ) -> Result<String, DiscoveryError> {
        let mut candidates = self.servers_for(function, resources);
        candidates.retain(|c| !tried.contains(c));
        let rpc = &self.inner.rpc;
        if candidates.iter().any(|c| rpc.link_lost(c).is_none()) {
            candidates.retain(|c| rpc.link_lost(c).is_none());
        }
        let load = |n: &String| {
            crate::lock(&self.inner.in_flight)
                .get(n)
                .copied()
                .unwrap_or(0)
        };
        match candidates.len() {
            0 => Err(DiscoveryError::NoRoute {
                function: function.to_owned(),
                resources: resources.clone(),
            }),
            1 => Ok(candidates[0].clone()),
            n => {
                let a = rand::random_range(0..n);
                let b = (a + 1 + rand::random_range(0..n - 1)) % n;
                let (ca, cb) = (&candidates[a], &candidates[b]);
                Ok(if load(cb) < load(ca) { cb } else { ca }.clone())
            }
        }
    }

    /// A readable snapshot of the membership and routes.
    pub fn debug_info(&self) -> DiscoveryDebug {
        DiscoveryDebug {
            name: self.inner.me.name.clone(),
            members: self.members(),
            routes: self
                .inner
                .shared
                .routes
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entries(),
        }
    }
}

/// A [`Node`] that does not keep it alive (for handlers it registers).
pub(crate) struct WeakNode(std::sync::Weak<NodeInner>);

impl WeakNode {
    pub(crate) fn upgrade(&self) -> Option<Node> {
        self.0.upgrade().map(|inner| Node { inner })
    }
}

/// Counts a cluster call in flight on a node while it lives.
struct InFlight<'a> {
    node: &'a Node,
    target: String,
}

impl<'a> InFlight<'a> {
    fn new(node: &'a Node, target: &str) -> Self {
        *crate::lock(&node.inner.in_flight)
            .entry(target.to_owned())
            .or_default() += 1;
        Self {
            node,
            target: target.to_owned(),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut in_flight = crate::lock(&self.node.inner.in_flight);
        if let Some(n) = in_flight.get_mut(&self.target) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                in_flight.remove(&self.target);
            }
        }
    }
}

/// A cluster call's result and the node that served it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served<R> {
    /// The node that ran the function.
    pub node: String,
    /// Its result.
    pub value: R,
}

/// What [`Node::debug_info`] reports.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DiscoveryDebug {
    /// This node.
    pub name: String,
    /// Every member known.
    pub members: Vec<MemberInfo>,
    /// (destination, next hop, hops).
    pub routes: Vec<(String, String, u32)>,
}

impl fmt::Display for DiscoveryDebug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "node {:?}: {} member(s)", self.name, self.members.len())?;
        for m in &self.members {
            let via = match (&m.next_hop, m.hops) {
                (Some(h), Some(1)) if *h == m.name => "direct".to_owned(),
                (Some(h), Some(n)) => format!("via {h}, {n} hops"),
                _ => "no route".to_owned(),
            };
            let res = m
                .record
                .as_ref()
                .map(|r| r.resources.iter().cloned().collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            writeln!(f, "  {:<20} {:?} {via} [{res}]", m.name, m.state)?;
        }
        Ok(())
    }
}

/// The seed's check of a joining peer: its name must not be held by another
/// live process.
fn accept_join(
    shared: &Shared,
    my_name: &str,
    my_incarnation: u64,
    joiner: &PeerRecord,
) -> JoinReply {
    let view = shared.view();
    let name = &joiner.id.name;
    let taken = (name == my_name && joiner.id.incarnation != my_incarnation)
        || view
            .alive
            .get(name)
            .is_some_and(|id| id.incarnation != joiner.id.incarnation);
    if taken {
        return Err(format!("the name {name:?} is already held by a live peer"));
    }
    let mine = view.mine.clone();
    let mut records: Vec<PeerRecord> = view.live_records().cloned().collect();
    if let Some(m) = &mine
        && !records.iter().any(|r| r.id == m.id)
    {
        records.push(m.clone());
    }
    let me = mine.map_or_else(
        || NodeId {
            name: my_name.to_owned(),
            incarnation: my_incarnation,
            bump: 0,
        },
        |m| m.id,
    );
    Ok((me, records))
}
