//! The peer engine: [`Rpc`].
//!
//! # Layout
//!
//! - `mod.rs`: [`Rpc`], its shared state and the public API for naming,
//!   transports, listening, connecting and shutdown.
//! - `define.rs`: registering handlers ([`Provider`]).
//! - `bulk.rs`: bulk transfers ([`BulkRegion`], [`BulkHandle`]).
//! - `call.rs`: making calls ([`CallFuture`], [`CallOptions`]).
//! - `handler.rs`: handler kinds, [`Responder`], [`CallContext`].
//! - `queue.rs`: [`Queue`] for `define_queue`.
//! - `conn.rs`: one connection's handshake, reader and writer.
//! - `peers.rs`: the table of connected peers.
//! - `control.rs`: the engine's own messages.
//! - `debug.rs`: [`DebugInfo`].

mod bulk;
mod call;
mod choice;
mod config;
mod conn;
mod control;
mod deadline;
mod debug;
mod define;
mod handler;
mod inbox;
mod outbox;
mod peers;
mod queue;
mod ratelimit;
mod route;
mod signal;

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use bulk::{BulkHandle, BulkMode, BulkRegion};
pub use call::{CallFuture, CallOptions, Canceller};
pub use choice::TransportPolicy;
pub use config::Config;
pub use debug::{ConnectionDebug, DebugInfo, FunctionDebug, PeerDebug};
pub use define::Provider;
pub use handler::{CallContext, HandlerError, Responder};
pub use queue::Queue;
pub use route::Router;

use self::control::{Hello, WireError};
use self::handler::{Counters, Handler, IncomingTable, ReplyTo, lock};
use crate::error::{Error, TransportError};
use crate::pending::{ConnId, PendingCalls, deadline_from_budget};
use crate::transport::{Address, ConnOptions, Transport};
use crate::wire::{Frame, FrameKind, MAX_NAME_LEN};

/// Who waits for the answer to one of our calls.
pub(crate) struct Waiter {
    tx: oneshot::Sender<Result<Frame, Error>>,
    /// Whether the call was made outside any task (in a `block_on`): a
    /// current-thread runtime polls such a caller only once no task is
    /// ready, so the reader yields after answering it (`conn.rs`); such a
    /// caller may also receive its answer in place (`inbox.rs`).
    pub(crate) outside_task: bool,
}

impl Waiter {
    /// A waiter for the call being made in the current context.
    pub(crate) fn new(tx: oneshot::Sender<Result<Frame, Error>>) -> Self {
        Self {
            tx,
            outside_task: tokio::task::try_id().is_none(),
        }
    }

    /// Hands the caller its answer; `Err` if it stopped waiting.
    pub(crate) fn send(self, answer: Result<Frame, Error>) -> Result<(), Result<Frame, Error>> {
        self.tx.send(answer)
    }
}

/// One peer: a named RPC engine that defines functions, listens, connects
/// and calls other peers by name.
///
/// `Rpc` is a cheap handle: clones share one engine. The engine shuts down
/// when the last handle is dropped, or on [`shutdown`](Self::shutdown).
///
/// ```
/// use rpc_core::{MemNetwork, Rpc};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let net = MemNetwork::new();
/// let host = Rpc::new();
/// host.set_name("host")?;
/// host.add_transport(net.transport());
/// host.define("bar", |s: String| async move {
///     println!("{s}");
///     Ok(42)
/// })?;
/// let addr = host.listen("mem://host").await?;
///
/// let client = Rpc::new();
/// client.add_transport(net.transport());
/// client.connect(addr.as_str())?;
/// let answer: i32 = client.call("host", "bar", "hello world").await?;
/// assert_eq!(answer, 42);
/// # Ok::<_, rpc_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Rpc {
    inner: Arc<Inner>,
    _guard: Arc<ShutdownOnDrop>,
}

/// Shuts the engine down when the last user handle goes away. Background
/// tasks hold `Arc<Inner>` only, so they do not keep the engine alive.
struct ShutdownOnDrop(Arc<Inner>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.begin_shutdown();
    }
}

/// A registered function: its handler and counters.
#[derive(Clone)]
pub(crate) struct Registration {
    handler: Arc<dyn Handler>,
    counters: Arc<Counters>,
}

pub(crate) struct Inner {
    name: RwLock<Arc<str>>,
    /// The length of `name`: most names that are not ours differ from it in
    /// length, and [`is_named`](Self::is_named) then reads no lock.
    name_len: AtomicUsize,
    started: AtomicBool,
    incarnation: u128,
    config: Config,
    timeout_nanos: AtomicU64,
    transports: RwLock<HashMap<&'static str, Arc<dyn Transport>>>,
    registry: RwLock<FxHashMap<Arc<str>, FxHashMap<u16, Registration>>>,
    peers: peers::Peers,
    peer_changed: Notify,
    /// Wakes the task that fails calls past their deadline (`deadline.rs`).
    deadline_wake: Notify,
    deadline_task: AtomicBool,
    /// Grows with every change of the peer table (see `Rpc::peers_generation`).
    peers_gen: AtomicU64,
    router: RwLock<Option<Arc<dyn Router>>>,
    /// Transport restriction and policy (`engine/choice.rs`).
    choice: RwLock<choice::Choice>,
    /// Whether `choice` was ever set; until then calls do not read it.
    choice_set: AtomicBool,
    /// Frames relayed for other peers.
    relayed: AtomicU64,
    pending: Mutex<PendingCalls<Waiter>>,
    listening: Mutex<Vec<Address>>,
    /// Addresses `connect` keeps connected, each with the token that stops
    /// its loop (`Rpc::stop_connecting`).
    connecting: Mutex<Vec<Dialing>>,
    shutdown: CancellationToken,
    /// Set as shutdown begins; cheaper to check than the token.
    shut: AtomicBool,
    tracker: TaskTracker,
    remote_shutdown: AtomicBool,
    blocking: Arc<Semaphore>,
    next_conn: AtomicU64,
    runtime: tokio::runtime::Handle,
    owned_runtime: Mutex<Option<tokio::runtime::Runtime>>,
    bulk: bulk::BulkTable,
    /// Inbound connections accepted and not yet ended (handshaking or up).
    inbound: AtomicUsize,
    /// Limits the warnings about refused inbound connections.
    warn_refused: Mutex<ratelimit::RateLimit>,
}

impl Rpc {
    /// An engine with default settings and a random, globally unique name.
    ///
    /// Inside a tokio runtime it runs on that runtime; outside one it starts
    /// a small runtime of its own, so that plain blocking code can use it.
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// An engine with the given settings.
    pub fn with_config(config: Config) -> Self {
        let (runtime, owned) = match tokio::runtime::Handle::try_current() {
            Ok(h) => (h, None),
            Err(_) => {
                // Without a runtime there is nothing to run on; a failure to
                // start threads at all leaves no way to go on.
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("rpc-engine")
                    .enable_all()
                    .build()
                    .expect("cannot start the RPC engine's runtime threads");
                (rt.handle().clone(), Some(rt))
            }
        };
        let incarnation: u128 = rand::random();
        let inner = Arc::new(Inner {
            name: RwLock::new(Arc::from(format!("{incarnation:032x}"))),
            name_len: AtomicUsize::new(32),
            started: AtomicBool::new(false),
            incarnation,
            timeout_nanos: AtomicU64::new(duration_nanos(config.timeout)),
            blocking: Arc::new(Semaphore::new(config.max_blocking_threads.max(1))),
            config,
            transports: RwLock::default(),
            registry: RwLock::default(),
            peers: peers::Peers::default(),
            peer_changed: Notify::new(),
            deadline_wake: Notify::new(),
            deadline_task: AtomicBool::new(false),
            peers_gen: AtomicU64::new(0),
            router: RwLock::new(None),
            choice: RwLock::default(),
            choice_set: AtomicBool::new(false),
            relayed: AtomicU64::new(0),
            pending: Mutex::new(PendingCalls::new(rand::random())),
            listening: Mutex::default(),
            connecting: Mutex::default(),
            shutdown: CancellationToken::new(),
            shut: AtomicBool::new(false),
            tracker: TaskTracker::new(),
            remote_shutdown: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
            runtime,
            owned_runtime: Mutex::new(owned),
            bulk: bulk::BulkTable::default(),
            inbound: AtomicUsize::new(0),
            warn_refused: Mutex::default(),
        });
        Self {
            _guard: Arc::new(ShutdownOnDrop(inner.clone())),
            inner,
        }
    }

    /// Sets this peer's name. Call it before [`listen`](Self::listen) or
    /// [`connect`](Self::connect); afterwards it is an error.
    ///
    /// A name is 1 to 255 bytes of UTF-8 without control characters.
    pub fn set_name(&self, name: &str) -> Result<(), Error> {
        validate_name(name)?;
        if self.inner.started.load(Ordering::SeqCst) {
            return Err(Error::InvalidArgument(
                "set_name must be called before listen or connect".into(),
            ));
        }
        let mut ours = self
            .inner
            .name
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *ours = Arc::from(name);
        self.inner.name_len.store(name.len(), Ordering::Release);
        Ok(())
    }

    /// This peer's name: the one set with [`set_name`](Self::set_name), or a
    /// random 128-bit hex string.
    pub fn get_name(&self) -> String {
        self.inner.name().to_string()
    }

    /// Sets the default timeout of calls made from now on.
    pub fn set_timeout(&self, timeout: Duration) {
        self.inner
            .timeout_nanos
            .store(duration_nanos(timeout), Ordering::Relaxed);
    }

    /// The default timeout of calls.
    pub fn timeout(&self) -> Duration {
        Duration::from_nanos(self.inner.timeout_nanos.load(Ordering::Relaxed))
    }

    /// Adds a transport; it serves addresses of its scheme. A transport of
    /// the same scheme added before is replaced.
    pub fn add_transport(&self, transport: impl Transport) {
        self.add_transport_arc(Arc::new(transport));
    }

    /// Adds a shared transport.
    pub fn add_transport_arc(&self, transport: Arc<dyn Transport>) {
        self.inner
            .transports
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(transport.scheme(), transport);
    }

    /// Starts listening on `addr` (such as `tcp://127.0.0.1:0`) and returns
    /// the address actually bound. Accepting runs in the background.
    pub async fn listen(&self, addr: &str) -> Result<Address, Error> {
        let addr = Address::parse(addr)?;
        self.inner.start()?;
        let transport = self.inner.transport_for(&addr)?;
        let listener = transport.listen(&addr, &self.inner.conn_options()).await?;
        let bound = listener.local_addr().clone();
        lock(&self.inner.listening).push(bound.clone());
        self.inner
            .spawn(conn::accept_loop(self.inner.clone(), listener));
        tracing::info!(name = %self.inner.name(), addr = %bound, "listening");
        Ok(bound)
    }

    /// Connects to `addr` in the background and keeps the connection up,
    /// reconnecting with exponential backoff when it drops. Returns at once.
    ///
    /// Calls to the peer made before the connection is up wait for it, until
    /// their deadline. The returned [`Connecting`] tells when the connection
    /// is up, or why it was refused. Each call keeps a connection of its
    /// own (two calls to one address give two connections, which calls to
    /// the peer take turns on); see [`is_connecting`](Self::is_connecting).
    pub fn connect(&self, addr: &str) -> Result<Connecting, Error> {
        let addr = Address::parse(addr)?;
        self.inner.start()?;
        self.inner.transport_for(&addr)?;
        if !self.inner.allows(addr.scheme()) {
            return Err(Error::InvalidArgument(format!(
                "{addr}: transport {:?} is not among those allowed by set_transports",
                addr.scheme()
            )));
        }
        let mut connecting = lock(&self.inner.connecting);
        connecting.retain(|d| !d.stop.is_cancelled());
        let stop = self.inner.shutdown.child_token();
        let (tx, rx) = watch::channel(ConnectStatus::Pending);
        connecting.push(Dialing {
            addr: addr.clone(),
            stop: stop.clone(),
        });
        drop(connecting);
        let report = Arc::new(move |r: Result<Arc<str>, Error>| {
            tx.send_modify(|s| {
                *s = match r {
                    Ok(name) => ConnectStatus::Up(name.to_string()),
                    // Once up, a later failure (a reconnect) changes nothing
                    // for those who wait to learn that it came up.
                    Err(_) if matches!(s, ConnectStatus::Up(_)) => return,
                    Err(e) => ConnectStatus::Failed(Arc::new(Failure::new(e))),
                };
            });
        });
        self.inner
            .spawn(conn::keep_connected(self.inner.clone(), addr, stop, report));
        Ok(Connecting { rx })
    }

    /// Stops reconnecting to `addr` (every [`connect`](Self::connect) to
    /// it): a connection that is up stays up until it closes, and is then
    /// not redialed. Returns whether anything was connecting to `addr`.
    /// Discovery calls it for members the membership declared dead, so
    /// that the engine does not redial them forever.
    pub fn stop_connecting(&self, addr: &str) -> bool {
        let Ok(addr) = Address::parse(addr) else {
            return false;
        };
        let mut stopped = false;
        lock(&self.inner.connecting).retain(|d| {
            if d.addr == addr {
                d.stop.cancel();
                stopped = true;
            }
            d.addr != addr
        });
        stopped
    }

    /// Whether a [`connect`](Self::connect) to `addr` is still keeping it
    /// connected (not stopped, not refused for good).
    pub fn is_connecting(&self, addr: &str) -> bool {
        Address::parse(addr).is_ok_and(|addr| {
            lock(&self.inner.connecting)
                .iter()
                .any(|d| d.addr == addr && !d.stop.is_cancelled())
        })
    }

    /// The functions this engine defines, as (name, provider id), sorted;
    /// built-ins (reserved names) are left out. Cheaper than
    /// [`debug_info`](Self::debug_info).
    pub fn functions(&self) -> Vec<(String, u16)> {
        let registry = self
            .inner
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut v: Vec<(String, u16)> = registry
            .iter()
            .filter(|(name, _)| !name.starts_with(control::RESERVED_PREFIX))
            .flat_map(|(name, providers)| providers.keys().map(move |p| (name.to_string(), *p)))
            .collect();
        v.sort();
        v
    }

    /// The addresses this engine listens on.
    pub fn listening(&self) -> Vec<String> {
        self.inner.listening()
    }

    /// The schemes of the transports added, sorted.
    pub fn transport_schemes(&self) -> Vec<String> {
        self.inner.transport_schemes()
    }

    /// Whether `peer` has a live connection over transport `scheme`.
    pub fn connected_over(&self, peer: &str, scheme: &str) -> bool {
        self.inner.peers.connected_over(peer, scheme)
    }

    /// Lets peers shut this engine down remotely (off by default).
    pub fn enable_remote_shutdown(&self, enabled: bool) {
        self.inner.remote_shutdown.store(enabled, Ordering::SeqCst);
    }

    /// Asks `peer` to shut down. Fails with [`Error::Refused`] unless the
    /// peer enabled remote shutdown.
    pub async fn shutdown_peer(&self, peer: &str) -> Result<(), Error> {
        self.call_with(peer, control::SHUTDOWN_METHOD, &(), CallOptions::default())
            .await
    }

    /// Starts shutting down: stops listening, closes connections, fails
    /// pending calls with [`Error::ShutDown`], and cancels running handlers.
    /// Returns at once; see [`wait_for_shutdown`](Self::wait_for_shutdown).
    pub fn shutdown(&self) {
        self.inner.begin_shutdown();
    }

    /// Whether shutdown has begun.
    pub fn is_shut_down(&self) -> bool {
        self.inner.is_shut()
    }

    /// Waits until the engine has shut down (locally or by a remote request)
    /// and every task it started has finished.
    pub async fn wait_for_shutdown(&self) {
        self.inner.shutdown.cancelled().await;
        self.inner.tracker.wait().await;
    }

    /// A snapshot of peers, connections, transports, calls in flight and
    /// per-function counters. Its `Display` is a readable report.
    pub fn debug_info(&self) -> DebugInfo {
        debug::collect(&self.inner)
    }
}

impl Default for Rpc {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rpc")
            .field("name", &self.inner.name())
            .finish_non_exhaustive()
    }
}

/// One address that `connect` keeps connected.
struct Dialing {
    addr: Address,
    /// Stops its loop.
    stop: CancellationToken,
}

/// The state of a background connection started by [`Rpc::connect`].
#[derive(Debug)]
pub struct Connecting {
    rx: watch::Receiver<ConnectStatus>,
}

#[derive(Debug, Clone)]
enum ConnectStatus {
    /// No attempt has ended yet.
    Pending,
    /// The last attempt failed; more follow unless the failure is `fatal`
    /// (a refused name, an invalid address).
    Failed(Arc<Failure>),
    /// The connection came up, to the peer of this name.
    Up(String),
}

/// A failed connection attempt: its error, for the first to ask.
#[derive(Debug)]
struct Failure {
    error: Mutex<Option<Error>>,
    text: String,
    fatal: bool,
}

impl Failure {
    fn new(error: Error) -> Self {
        Self {
            text: error.to_string(),
            fatal: conn::fatal_connect_error(&error),
            error: Mutex::new(Some(error)),
        }
    }

    /// The error itself the first time, its text after that.
    fn take(&self) -> Error {
        lock(&self.error)
            .take()
            .unwrap_or_else(|| Error::Transport(TransportError::Backend(self.text.clone().into())))
    }
}

impl Connecting {
    /// Waits until the connection is up and returns the peer's name, while
    /// the background loop retries failed attempts. Fails at once with
    /// [`Error::DuplicateName`] if the peer refused our name, or with the
    /// error of an address no attempt can reach (invalid, or of a scheme no
    /// transport serves); after `timeout`, with the last attempt's error.
    pub async fn established(&mut self, timeout: Duration) -> Result<String, Error> {
        let done = |s: &ConnectStatus| match s {
            ConnectStatus::Up(_) => true,
            ConnectStatus::Failed(f) => f.fatal,
            ConnectStatus::Pending => false,
        };
        self.wait(timeout, done).await
    }

    /// Waits for the first attempt's outcome: the peer's name, or why that
    /// attempt failed (a refused connection, say). The background loop
    /// keeps trying either way; command-line tools use this to fail fast.
    pub async fn first_attempt(&mut self, timeout: Duration) -> Result<String, Error> {
        self.wait(timeout, |s| !matches!(s, ConnectStatus::Pending))
            .await
    }

    async fn wait(
        &mut self,
        timeout: Duration,
        done: impl FnMut(&ConnectStatus) -> bool,
    ) -> Result<String, Error> {
        let outcome = match tokio::time::timeout(timeout, self.rx.wait_for(done)).await {
            Ok(Ok(s)) => Some(s.clone()),
            Ok(Err(_)) => return Err(Error::ShutDown),
            Err(_) => None,
        };
        let waited = outcome.unwrap_or_else(|| self.rx.borrow().clone());
        match waited {
            ConnectStatus::Up(name) => Ok(name),
            ConnectStatus::Failed(f) => Err(f.take()),
            ConnectStatus::Pending => Err(Error::Transport(TransportError::io(
                "connect",
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no attempt ended within {timeout:?}"),
                ),
            ))),
        }
    }
}

impl Inner {
    /// See [`Rpc::listening`].
    pub(crate) fn listening(&self) -> Vec<String> {
        lock(&self.listening)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// See [`Rpc::transport_schemes`].
    pub(crate) fn transport_schemes(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .transports
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .map(|s| (*s).to_owned())
            .collect();
        v.sort();
        v
    }

    pub(crate) fn name(&self) -> Arc<str> {
        self.name
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether `name` is this engine's name (without cloning it).
    pub(crate) fn is_named(&self, name: &str) -> bool {
        // The name changes only before the engine starts, under the lock.
        name.len() == self.name_len.load(Ordering::Acquire)
            && **self
                .name
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                == *name
    }

    /// Whether shutdown has begun.
    pub(crate) fn is_shut(&self) -> bool {
        self.shut.load(Ordering::SeqCst)
    }

    fn start(&self) -> Result<(), Error> {
        if self.is_shut() {
            return Err(Error::ShutDown);
        }
        self.started.store(true, Ordering::SeqCst);
        Ok(())
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_nanos(self.timeout_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn transport_for(&self, addr: &Address) -> Result<Arc<dyn Transport>, Error> {
        self.transports
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(addr.scheme())
            .cloned()
            .ok_or_else(|| {
                Error::Transport(TransportError::UnsupportedScheme {
                    scheme: addr.scheme().to_owned(),
                })
            })
    }

    /// The locality of the transport serving `scheme`.
    pub(crate) fn locality_of(&self, scheme: &str) -> crate::transport::Locality {
        self.transports
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(scheme)
            .map_or(crate::transport::Locality::Network, |t| t.locality())
    }

    pub(crate) fn conn_options(&self) -> ConnOptions {
        ConnOptions::with_max_frame_len(self.config.max_frame_len)
    }

    pub(crate) fn hello(&self) -> Hello {
        Hello {
            protocol: control::ENGINE_PROTOCOL,
            name: self.name().to_string(),
            incarnation: self.incarnation,
            max_frame_len: self.config.max_frame_len,
            listen: lock(&self.listening)
                .iter()
                .map(ToString::to_string)
                .collect(),
            host_key: crate::transport::host_key(),
        }
    }

    pub(crate) fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn_on(fut, &self.runtime);
    }

    pub(crate) fn pending_complete(&self, conn: ConnId, id: u64) -> Option<Waiter> {
        lock(&self.pending).complete(conn, id)
    }

    pub(crate) fn pending_remove_conn(&self, conn: ConnId) -> Vec<Waiter> {
        lock(&self.pending).remove_conn(conn)
    }

    fn begin_shutdown(&self) {
        if self.shut.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::info!(name = %self.name(), "shutting down");
        self.shutdown.cancel();
        // Every reader loop ends; a connection that registers after this
        // snapshot sees `shut` and ends itself.
        for (_, _, conns) in self.peers.snapshot() {
            for conn in conns {
                conn.stop();
            }
        }
        self.tracker.close();
        for waiter in lock(&self.pending).drain() {
            let _ = waiter.send(Err(Error::ShutDown));
        }
        // Dropping the handlers closes every queue, so their owners see the end.
        self.registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.bump_peers();
        if let Some(rt) = lock(&self.owned_runtime).take() {
            // The runtime may be dropped from one of its own threads, where a
            // blocking drop would panic.
            rt.shutdown_background();
        }
    }

    /// Looks up the handler for a request and starts it, or answers with the
    /// reason there is none.
    pub(crate) fn dispatch(
        self: &Arc<Self>,
        peer: Arc<str>,
        frame: Frame,
        reply: ReplyTo,
        token: handler::CallToken,
        tracked: Option<IncomingTable>,
        arrival: &mut conn::Arrival,
    ) {
        let method = frame.method.clone().unwrap_or_else(|| Arc::from(""));
        // Only reserved names can be built in; users cannot define those,
        // so every other name goes straight to the registry.
        let builtin = if !method.starts_with(control::RESERVED_PREFIX) {
            None
        } else if conn::is_shutdown_method(&method) {
            Some(self.shutdown_registration())
        } else {
            bulk::registration(self, &method)
        };
        let lookup = match builtin {
            Some(reg) => Ok(reg),
            None => self.lookup(&method, frame.provider),
        };
        let _span = tracing::debug_span!("rpc.handle", peer = %peer, function = %method, request_id = frame.request_id)
            .entered();
        match lookup {
            Ok(reg) => {
                let deadline = (frame.kind == FrameKind::Request).then(|| {
                    deadline_from_budget(
                        arrival.now(),
                        frame.deadline,
                        self.config.max_handler_time,
                    )
                });
                let call = conn::incoming_call(
                    peer,
                    frame,
                    reply,
                    token,
                    tracked,
                    reg.counters.clone(),
                    deadline,
                );
                reg.handler.call(call, &self.runtime, &self.tracker);
            }
            Err(e) => {
                let responder = handler::RawResponder::new(
                    reply,
                    frame.request_id,
                    Arc::new(Counters::default()),
                    token,
                    tracked,
                );
                responder.err(e);
            }
        }
    }

    fn lookup(&self, method: &str, provider: u16) -> Result<Registration, WireError> {
        let registry = self
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let providers = registry.get(method).ok_or(WireError::NoSuchFunction)?;
        providers
            .get(&provider)
            .cloned()
            .ok_or(WireError::NoSuchProvider)
    }

    /// The built-in handler of remote shutdown requests.
    fn shutdown_registration(self: &Arc<Self>) -> Registration {
        let weak = Arc::downgrade(self);
        let handler = handler::DeferredHandler {
            f: move |responder: Responder<()>, (): ()| {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if inner.remote_shutdown.load(Ordering::SeqCst) {
                    tracing::info!(by = %responder.context().peer(), "remote shutdown");
                    responder.ok(());
                    inner.begin_shutdown();
                } else {
                    responder.raw_err(WireError::Refused(
                        "remote shutdown (not enabled on this peer)".into(),
                    ));
                }
            },
            _types: std::marker::PhantomData,
        };
        Registration {
            handler: Arc::new(handler),
            counters: Arc::new(Counters::default()),
        }
    }
}

fn validate_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "a name is 1 to {MAX_NAME_LEN} bytes without control characters, got {name:?}"
        )));
    }
    Ok(())
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
