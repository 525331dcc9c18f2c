//! Membership: SWIM (through foca) over the engine's own calls, records
//! disseminated as foca custom broadcasts, and the routes built from them.
//!
//! One task (the driver) owns the foca instance. Everything reaches it as an
//! [`Event`] on its inbox: packets from other peers, foca's timers, joins,
//! and changes of our own record. After each event it carries out what foca
//! asked for (send packets, arm timers, report members up or down), then
//! recomputes the routes and dials peers it can reach directly.
//!
//! SWIM packets travel as one-way calls to [`SWIM_FN`], so they follow the
//! engine's routing: a peer behind NAT that only dialled out is still probed,
//! through whoever it is connected to.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use foca::{
    AccumulatingRuntime, BroadcastHandler, Foca, Invalidates, OwnedNotification, PostcardCodec,
    Timer,
};
use rand_foca::SeedableRng;
use rand_foca::rngs::StdRng;
use rpc_core::{CallOptions, Router, Rpc};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::record::{NodeId, PeerRecord};
use crate::rejoin::Rejoin;
use crate::routing::RouteTable;

/// The one-way function SWIM packets are sent to.
pub(crate) const SWIM_FN: &str = "__disc.swim";
/// The function a joining peer calls on its seed.
pub(crate) const JOIN_FN: &str = "__disc.join";
/// The function that returns a peer's current record.
pub(crate) const RECORD_FN: &str = "__disc.record";

/// Settings of the membership protocol.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MembershipConfig {
    /// How often a random member is probed. Default: 1 s.
    pub probe_period: Duration,
    /// How long a probe waits for its ack before asking others to probe
    /// indirectly. Default: 500 ms.
    pub probe_rtt: Duration,
    /// How long a suspect member has to refute before it is declared down.
    /// Default: 3 s.
    pub suspect_to_down_after: Duration,
    /// How often members exchange updates outside probes. Default: 200 ms.
    pub gossip_period: Duration,
    /// How often we announce ourselves to members declared down, so that a
    /// healed partition merges again. Default: 5 s.
    pub announce_down_period: Duration,
    /// How often our own record is rebuilt from the engine (functions,
    /// links). Changes of connections rebuild it at once. Default: 500 ms.
    pub refresh_period: Duration,
    /// The expected cluster size, which sets how many times an update is
    /// retransmitted. Default: 32.
    pub cluster_size_hint: u32,
    /// Seeds foca's random choices, for reproducible simulations. Default:
    /// random.
    pub rng_seed: Option<u64>,
    /// How long a member declared down (crashed, or left) still shows in
    /// [`Node::members`](crate::Node::members). The membership keeps
    /// announcing itself to it meanwhile and after, so that a healed
    /// partition merges. Default: 5 minutes.
    pub show_down_for: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            suspect_to_down_after: Duration::from_secs(3),
            gossip_period: Duration::from_millis(200),
            announce_down_period: Duration::from_secs(5),
            refresh_period: Duration::from_millis(500),
            cluster_size_hint: 32,
            rng_seed: None,
            show_down_for: Duration::from_secs(300),
        }
    }
}

impl MembershipConfig {
    fn foca(&self) -> foca::Config {
        let size = NonZeroU32::new(self.cluster_size_hint.max(1)).unwrap_or(NonZeroU32::MIN);
        let mut c = foca::Config::new_lan(size);
        c.probe_period = self.probe_period;
        c.probe_rtt = self.probe_rtt;
        c.suspect_to_down_after = self.suspect_to_down_after;
        // Records ride along; the engine has no datagram limit to respect.
        c.max_packet_size = NonZeroUsize::new(64 * 1024).unwrap_or(NonZeroUsize::MIN);
        if let Some(g) = c.periodic_gossip.as_mut() {
            g.frequency = self.gossip_period;
        }
        if let Some(a) = c.periodic_announce_to_down_members.as_mut() {
            a.frequency = self.announce_down_period;
        }
        c
    }
}

/// The state of a member as we see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Alive: it answers probes (directly or through others).
    Alive,
    /// Declared down by the membership.
    Down,
}

/// Everything the membership knows, shared by the driver, the router and
/// the [`Node`](crate::Node) API.
#[derive(Debug, Default)]
pub(crate) struct View {
    pub records: HashMap<String, PeerRecord>,
    pub alive: HashMap<String, NodeId>,
    pub down: HashMap<String, NodeId>,
    /// When each member in `down` was declared down.
    pub down_at: HashMap<String, Instant>,
    pub mine: Option<PeerRecord>,
}

impl View {
    /// Live members' records (ours included).
    pub(crate) fn live_records(&self) -> impl Iterator<Item = &PeerRecord> {
        self.mine.iter().chain(self.records.values().filter(|r| {
            self.alive
                .get(r.name())
                .is_some_and(|id| id.incarnation == r.id.incarnation)
        }))
    }
}

/// State shared between the driver task, the router and the node handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub view: Mutex<View>,
    pub routes: RwLock<RouteTable>,
    /// Grows with every change of the view; `Node::wait_*` watch it.
    pub changed: watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            view: Mutex::default(),
            routes: RwLock::default(),
            changed: watch::channel(0).0,
        })
    }

    pub(crate) fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn bump(&self) {
        self.changed.send_modify(|g| *g += 1);
    }
}

/// The engine's router: next hops from the link-state table, and members
/// the membership declared down are unreachable at once.
pub(crate) struct DiscoveryRouter(pub Arc<Shared>);

impl Router for DiscoveryRouter {
    fn next_hop(&self, dst: &str) -> Option<Arc<str>> {
        self.0
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .next_hop(dst)
    }

    fn unreachable(&self, dst: &str) -> Option<String> {
        let view = self.0.view();
        (view.down.contains_key(dst) && !view.alive.contains_key(dst))
            .then(|| "the membership declared it dead".to_owned())
    }
}

/// What the driver reacts to.
#[derive(Debug)]
pub(crate) enum Event {
    /// A SWIM packet from another peer.
    Data(Bytes),
    /// One of foca's timers fired.
    Timer(Timer<NodeId>),
    /// We joined through a seed, which told us what it knows.
    Joined {
        seed: NodeId,
        records: Vec<PeerRecord>,
    },
    /// A joining peer's record, learnt by its seed (us).
    Learnt(PeerRecord),
    /// Rebuild our record now (resources or groups changed).
    Refresh,
    /// A direct fetch of this member's record ended (retry if still needed).
    Fetched(NodeId),
    /// Leave the cluster, then stop.
    Leave(tokio::sync::oneshot::Sender<()>),
}

/// Decodes records carried as foca custom broadcasts and keeps the newest.
struct Records {
    shared: Arc<Shared>,
}

/// Identifies a record broadcast: a newer version of a peer replaces older
/// ones in foca's queue.
#[derive(Debug)]
struct RecordKey {
    name: String,
    incarnation: u64,
    bump: u16,
    version: u64,
}

impl Invalidates for RecordKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.name == other.name
            && (self.incarnation != other.incarnation
                || (self.bump, self.version) >= (other.bump, other.version))
    }
}

/// A record broadcast that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("bad record broadcast: {0}")]
struct BadRecord(String);

impl BroadcastHandler<NodeId> for Records {
    type Key = RecordKey;
    type Error = BadRecord;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&NodeId>,
    ) -> Result<Option<RecordKey>, BadRecord> {
        let record = PeerRecord::from_wire(data).map_err(|e| BadRecord(e.to_string()))?;
        let key = RecordKey {
            name: record.id.name.clone(),
            incarnation: record.id.incarnation,
            bump: record.id.bump,
            version: record.version,
        };
        let mut view = self.shared.view();
        if view
            .mine
            .as_ref()
            .is_some_and(|m| m.id.name == record.id.name)
        {
            // Our own record: spread it when we add it (no sender), never
            // replace it with copies coming back.
            return Ok(sender.is_none().then_some(key));
        }
        let newer = view
            .records
            .get(&record.id.name)
            .is_none_or(|old| old.superseded_by(&record));
        if !newer {
            return Ok(None);
        }
        view.records.insert(record.id.name.clone(), record);
        drop(view);
        self.shared.bump();
        Ok(Some(key))
    }
}

/// Builds our own record from the engine's state.
pub(crate) struct RecordSource {
    pub rpc: Rpc,
    pub advertise: Option<Vec<String>>,
    pub resources: Arc<Mutex<BTreeSet<String>>>,
    pub groups: Arc<Mutex<BTreeSet<crate::record::GroupTag>>>,
}

impl RecordSource {
    /// Our record. Its links are our direct links to members only:
    /// clients that come and go (every `rpc plan` is one) change nothing
    /// the cluster needs to hear of. Reads the engine's functions and
    /// listen addresses, not its whole debug snapshot.
    fn build(&self, id: &NodeId, version: u64, view: &View) -> PeerRecord {
        let mut functions: Vec<(String, u16)> = self
            .rpc
            .functions()
            .into_iter()
            .filter(|(name, _)| !name.starts_with("__"))
            .collect();
        functions.dedup();
        PeerRecord {
            id: id.clone(),
            version,
            addresses: self
                .advertise
                .clone()
                .unwrap_or_else(|| self.rpc.listening()),
            host_key: rpc_core::transport::host_key(),
            functions,
            resources: crate::lock(&self.resources).clone(),
            links: self
                .rpc
                .connected_peers()
                .into_iter()
                .filter(|p| view.alive.contains_key(p) || view.records.contains_key(p))
                .collect(),
            groups: crate::lock(&self.groups).clone(),
        }
    }
}

/// Waits until `due`, or forever without one.
async fn until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The membership driver: owns foca, runs until the cancel fires.
pub(crate) struct Driver {
    pub rpc: Rpc,
    pub shared: Arc<Shared>,
    pub source: RecordSource,
    pub config: MembershipConfig,
    pub dial: bool,
    pub inbox_tx: mpsc::UnboundedSender<Event>,
    pub inbox: mpsc::UnboundedReceiver<Event>,
    pub stop: CancellationToken,
}

type SwimFoca = Foca<NodeId, PostcardCodec, StdRng, Records>;

impl Driver {
    pub(crate) async fn run(mut self, me: NodeId) {
        let rng = match self.config.rng_seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::seed_from_u64(rand::random()),
        };
        let mut foca: SwimFoca = Foca::with_custom_broadcast(
            me.clone(),
            self.config.foca(),
            rng,
            PostcardCodec,
            Records {
                shared: self.shared.clone(),
            },
        );
        let mut rt = AccumulatingRuntime::new();
        // Paced like foca's own announces to down members, which it makes
        // only while connected.
        let mut rejoin = Rejoin::new(self.config.probe_period, self.config.announce_down_period);
        let mut dialed: HashSet<(NodeId, String)> = HashSet::new();
        let mut fetching: HashSet<NodeId> = HashSet::new();
        // The view generation the routes and dials were last computed from.
        let mut routed: Option<u64> = None;
        let mut version = 0u64;
        self.refresh(&mut foca, &mut version);
        // Foca arms its periodic timers on the first interaction.
        let _ = foca.gossip(&mut rt);
        let mut generation = self.rpc.peers_generation();
        let mut tick = tokio::time::interval(self.config.refresh_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                ev = self.inbox.recv() => {
                    let Some(ev) = ev else { return };
                    match ev {
                        Event::Data(bytes) => {
                            if let Err(e) = foca.handle_data(&bytes, &mut rt) {
                                tracing::debug!("dropping a SWIM packet: {e}");
                            }
                        }
                        Event::Timer(t) => {
                            let _ = foca.handle_timer(t, &mut rt);
                        }
                        Event::Joined { seed, records } => {
                            self.learn(records);
                            let _ = foca.announce(seed.clone(), &mut rt);
                            rejoin.joined(seed, Instant::now());
                        }
                        Event::Learnt(record) => self.learn(vec![record]),
                        Event::Refresh => self.refresh(&mut foca, &mut version),
                        Event::Fetched(id) => {
                            fetching.remove(&id);
                        }
                        Event::Leave(done) => {
                            let _ = foca.leave_cluster(&mut rt);
                            self.drain(&mut foca, &mut rt, &mut rejoin);
                            let _ = done.send(());
                            return;
                        }
                    }
                }
                g = self.rpc.peers_changed(generation) => {
                    generation = g;
                    self.refresh(&mut foca, &mut version);
                    // Waiters on the node also watch connections (`Node::wait_until`).
                    self.shared.bump();
                }
                _ = tick.tick() => self.refresh(&mut foca, &mut version),
                () = until(rejoin.due()) => self.announce_while_disconnected(&mut foca, &mut rt, &mut rejoin),
            }
            self.drain(&mut foca, &mut rt, &mut rejoin);
            self.fetch_missing(&mut fetching);
            // Routes and dials depend only on the view (records, members,
            // our links), whose every change bumps the generation: most
            // SWIM packets change nothing and cost no recomputation.
            let seen = *self.shared.changed.borrow();
            if routed != Some(seen) {
                routed = Some(seen);
                self.reroute();
                if self.dial {
                    self.dial_new(&mut dialed);
                }
            }
        }
    }

    /// Carries out what foca asked for.
    fn drain(
        &self,
        foca: &mut SwimFoca,
        rt: &mut AccumulatingRuntime<NodeId>,
        rejoin: &mut Rejoin,
    ) {
        loop {
            let mut progressed = false;
            while let Some((to, data)) = rt.to_send() {
                progressed = true;
                self.redial_if_down(&to);
                let rpc = self.rpc.clone();
                let timeout = self.config.probe_rtt;
                tokio::spawn(async move {
                    let opts = CallOptions::default().timeout(timeout);
                    if let Err(e) = rpc
                        .notify_with(&to.name, SWIM_FN, &rpc_core::Blob::from(data), opts)
                        .await
                    {
                        tracing::trace!(to = %to.name, "SWIM packet not sent: {e}");
                    }
                });
            }
            while let Some((after, timer)) = rt.to_schedule() {
                progressed = true;
                let tx = self.inbox_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = tx.send(Event::Timer(timer));
                });
            }
            while let Some(n) = rt.to_notify() {
                progressed = true;
                self.on_notification(foca, n, rejoin);
            }
            if !progressed {
                break;
            }
        }
    }

    /// Dials a member the membership declared down (whose redialing
    /// stopped then) when foca speaks to it, which it does to announce us
    /// after a partition: the packet needs a link. An address still being
    /// dialed is left alone.
    fn redial_if_down(&self, to: &NodeId) {
        let view = self.shared.view();
        if view.alive.contains_key(&to.name) || !view.down.contains_key(&to.name) {
            return;
        }
        let Some(record) = view.records.get(&to.name) else {
            return;
        };
        let addresses = record.addresses.clone();
        drop(view);
        let transports = self.rpc.transport_schemes();
        for addr in addresses {
            let scheme = addr.split("://").next().unwrap_or_default();
            if transports.iter().any(|t| t == scheme)
                && !self.rpc.connected_over(&to.name, scheme)
                && !self.rpc.is_connecting(&addr)
            {
                let _ = self.rpc.connect(&addr);
            }
        }
    }

    /// Announces us to the members [`Rejoin`] picks while foca is
    /// disconnected: their answers reach our current identity.
    fn announce_while_disconnected(
        &self,
        foca: &mut SwimFoca,
        rt: &mut AccumulatingRuntime<NodeId>,
        rejoin: &mut Rejoin,
    ) {
        for id in rejoin.round(foca.iter_membership_state(), Instant::now()) {
            tracing::debug!(me = %foca.identity().name, to = %id.name, "announcing while disconnected");
            if let Err(e) = foca.announce(id, &mut *rt) {
                tracing::debug!("announce not sent: {e}");
            }
        }
    }

    fn on_notification(
        &self,
        foca: &mut SwimFoca,
        n: OwnedNotification<NodeId>,
        rejoin: &mut Rejoin,
    ) {
        let mut view = self.shared.view();
        match n {
            OwnedNotification::Active => {
                rejoin.connected();
                return;
            }
            OwnedNotification::Defunct => {
                rejoin.defunct();
                return;
            }
            OwnedNotification::Idle => {
                // Every member is down, so foca runs no timer (not even its
                // announces to down members) until someone reaches it.
                rejoin.disconnected(Instant::now());
                return;
            }
            OwnedNotification::MemberUp(id) => {
                tracing::debug!(me = %foca.identity().name, member = %id.name, "member up");
                view.down.remove(&id.name);
                view.down_at.remove(&id.name);
                view.alive.insert(id.name.clone(), id);
            }
            OwnedNotification::MemberDown(id) => {
                tracing::debug!(me = %foca.identity().name, member = %id.name, "member down");
                if view.alive.get(&id.name) == Some(&id) {
                    view.alive.remove(&id.name);
                }
                // Stop redialing it: it comes back as a new incarnation,
                // which is dialed afresh.
                if let Some(record) = view.records.get(&id.name) {
                    for addr in &record.addresses {
                        self.rpc.stop_connecting(addr);
                    }
                }
                view.down_at.insert(id.name.clone(), Instant::now());
                view.down.insert(id.name.clone(), id);
            }
            OwnedNotification::Rename(old, new) => {
                if view.alive.get(&old.name) == Some(&old) {
                    view.alive.insert(new.name.clone(), new);
                }
            }
            OwnedNotification::Rejoin(id) => {
                // Foca renewed its identity and waits, disconnected and with
                // no timer running, for a packet addressed to the new one.
                rejoin.disconnected(Instant::now());
                if let Some(mine) = view.mine.as_mut() {
                    mine.id = id;
                }
                drop(view);
                let _ = self.inbox_tx.send(Event::Refresh);
                self.shared.bump();
                return;
            }
        }
        drop(view);
        self.shared.bump();
    }

    /// Asks live members whose record we lack (or whose record is of an
    /// older identity) for it directly, once per identity: broadcasts reach
    /// only the members alive when they were sent.
    fn fetch_missing(&self, fetching: &mut HashSet<NodeId>) {
        let view = self.shared.view();
        let missing: Vec<NodeId> = view
            .alive
            .values()
            .filter(|id| view.records.get(&id.name).is_none_or(|r| r.id != **id))
            .filter(|id| !fetching.contains(*id))
            .cloned()
            .collect();
        drop(view);
        for id in missing {
            fetching.insert(id.clone());
            let (rpc, tx) = (self.rpc.clone(), self.inbox_tx.clone());
            let timeout = self.config.probe_period * 4;
            let retry_after = self.config.probe_period;
            tokio::spawn(async move {
                let opts = CallOptions::default().timeout(timeout);
                match rpc
                    .call_with::<Option<PeerRecord>>(&id.name, RECORD_FN, &(), opts)
                    .await
                {
                    Ok(Some(record)) => {
                        let stale = record.id != id;
                        let _ = tx.send(Event::Learnt(record));
                        if stale {
                            // The member has not rebuilt its record for this
                            // identity yet (it does on its next refresh):
                            // asking again at once would spin, and forever
                            // under paused time, which then never advances.
                            tokio::time::sleep(retry_after).await;
                        }
                    }
                    Ok(None) => tokio::time::sleep(retry_after).await,
                    Err(e) => {
                        tracing::debug!(member = %id.name, "record not fetched: {e}");
                        tokio::time::sleep(retry_after).await;
                    }
                }
                // Still missing (or a newer identity appeared meanwhile):
                // the next pass asks again.
                let _ = tx.send(Event::Fetched(id));
            });
        }
    }

    /// Takes in records learnt outside broadcasts (join, fetches).
    fn learn(&self, records: Vec<PeerRecord>) {
        let mut view = self.shared.view();
        let me = view.mine.as_ref().map(|m| m.id.name.clone());
        for r in records {
            if Some(&r.id.name) == me.as_ref() {
                continue;
            }
            let newer = view
                .records
                .get(r.name())
                .is_none_or(|old| old.superseded_by(&r));
            // A record of the member's live identity is the one the
            // membership needs, whatever a broadcast claimed before (a
            // forged record with a higher bump would otherwise stay, and
            // `fetch_missing` would fetch the real one again at once,
            // forever).
            let live = view.alive.get(r.name()) == Some(&r.id);
            if newer || live {
                view.records.insert(r.id.name.clone(), r);
            }
        }
        drop(view);
        self.shared.bump();
    }

    /// Rebuilds our record; broadcasts it when it changed.
    fn refresh(&self, foca: &mut SwimFoca, version: &mut u64) {
        let id = foca.identity().clone();
        let mut view = self.shared.view();
        let fresh = self.source.build(&id, *version, &view);
        let same = view.mine.as_ref().is_some_and(|m| {
            PeerRecord {
                version: m.version,
                ..fresh.clone()
            } == *m
        });
        if same {
            return;
        }
        *version += 1;
        let fresh = PeerRecord {
            version: *version,
            ..fresh
        };
        view.mine = Some(fresh.clone());
        drop(view);
        self.shared.bump();
        match fresh.to_wire() {
            Ok(bytes) => {
                // Our own handler ignores our record; foca still spreads it.
                if let Err(e) = foca.add_broadcast(&bytes) {
                    tracing::debug!("record not broadcast: {e}");
                }
            }
            Err(e) => tracing::warn!("record not encodable: {e}"),
        }
    }

    /// Recomputes the routes from live records and our direct links.
    fn reroute(&self) {
        let view = self.shared.view();
        let Some(mine) = view.mine.as_ref() else {
            return;
        };
        let me = mine.id.name.clone();
        let direct: BTreeSet<String> = self.rpc.connected_peers().into_iter().collect();
        let links: BTreeMap<String, BTreeSet<String>> = view
            .records
            .values()
            .filter(|r| view.alive.contains_key(r.name()))
            .map(|r| (r.id.name.clone(), r.links.clone()))
            .collect();
        drop(view);
        let table = RouteTable::compute(&me, &direct, &links);
        let mut routes = self
            .shared
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *routes != table {
            *routes = table;
            drop(routes);
            self.rpc.routes_changed();
        }
    }

    /// Dials live members, once per identity and transport we share, over
    /// each transport we have no connection on yet (the transport policy
    /// then chooses among them per call). Remembers only live members'
    /// identities, so a member declared dead (whose redialing stopped) is
    /// dialed again when it comes back under a renewed identity.
    fn dial_new(&self, dialed: &mut HashSet<(NodeId, String)>) {
        let view = self.shared.view();
        dialed.retain(|(id, _)| view.alive.get(&id.name) == Some(id));
        let mut todo: Vec<(NodeId, String, String)> = Vec::new();
        for r in view.records.values() {
            if view.alive.get(r.name()) != Some(&r.id) {
                continue;
            }
            for addr in &r.addresses {
                let scheme = addr.split("://").next().unwrap_or_default().to_owned();
                let key = (r.id.clone(), scheme);
                if !dialed.contains(&key) && !todo.iter().any(|t| (&t.0, &t.1) == (&key.0, &key.1))
                {
                    todo.push((key.0, key.1, addr.clone()));
                }
            }
        }
        drop(view);
        if todo.is_empty() {
            return;
        }
        let transports = self.rpc.transport_schemes();
        for (id, scheme, addr) in todo {
            let name = id.name.clone();
            dialed.insert((id, scheme.clone()));
            if !transports.contains(&scheme) || self.rpc.connected_over(&name, &scheme) {
                continue;
            }
            match self.rpc.connect(&addr) {
                Ok(_) => tracing::debug!(%name, %addr, "dialing a member"),
                Err(e) => tracing::trace!(%name, %addr, "cannot dial: {e}"),
            }
        }
    }
}
