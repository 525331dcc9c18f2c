//! An in-memory transport: connections are pairs of channels inside one
//! process. Tests use it to run the engine without sockets, and the
//! conformance suite runs against it like against every other transport.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    Address, ConnInfo, ConnOptions, Connection, FrameSink, FrameStream, Listener, Locality,
    Transport,
};
use crate::error::TransportError;
use crate::wire::Frame;

/// How many frames a direction of a connection buffers before `feed` waits.
const CHANNEL_DEPTH: usize = 4096;

/// A set of in-memory listeners that can reach each other: one simulated
/// network. Transports made from the same network see each other's
/// listeners; transports from different networks do not.
///
/// For tests of failures, transports can be placed on named hosts
/// ([`transport_on`](Self::transport_on)); links between hosts can then be
/// cut and healed, and a host isolated (as if it crashed or its network
/// failed). Cutting a link resets the connections on it at once, as a
/// crash would: no goodbye is exchanged.
#[derive(Clone, Debug, Default)]
pub struct MemNetwork {
    inner: Arc<NetInner>,
}

type ListenerEntry = (u64, Option<Arc<str>>, mpsc::UnboundedSender<MemConnection>);

#[derive(Debug, Default)]
struct NetInner {
    listeners: Mutex<HashMap<String, ListenerEntry>>,
    faults: Mutex<Faults>,
    next_id: AtomicU64,
    /// Silent frame loss on links between hosts (see
    /// [`MemNetwork::set_frame_loss`]).
    loss: Mutex<Option<Loss>>,
}

/// A probability of losing each frame, and the seeded dice.
#[derive(Debug)]
struct Loss {
    probability: f64,
    rng: rand::rngs::StdRng,
    lost: u64,
}

/// Cut links, isolated hosts, and the live connections between hosts.
#[derive(Debug, Default)]
struct Faults {
    cut: HashSet<(Arc<str>, Arc<str>)>,
    isolated: HashSet<Arc<str>>,
    links: Vec<(Arc<str>, Arc<str>, CancellationToken)>,
}

impl Faults {
    fn blocked(&self, a: &str, b: &str) -> bool {
        self.isolated.contains(a)
            || self.isolated.contains(b)
            || self.cut.iter().any(|(x, y)| {
                (x.as_ref() == a && y.as_ref() == b) || (x.as_ref() == b && y.as_ref() == a)
            })
    }

    /// Resets every live connection that is now blocked.
    fn enforce(&mut self) {
        let mut links = std::mem::take(&mut self.links);
        links.retain(|(a, b, kill)| {
            if kill.is_cancelled() {
                false
            } else if self.blocked(a, b) {
                kill.cancel();
                false
            } else {
                true
            }
        });
        self.links = links;
    }
}

impl MemNetwork {
    /// A new, empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport attached to this network, serving the `mem` scheme. It
    /// is on no host: faults never affect it.
    pub fn transport(&self) -> MemTransport {
        MemTransport {
            net: self.clone(),
            host: None,
            scheme: "mem",
            locality: Locality::SameHost,
            latency: Duration::ZERO,
        }
    }

    /// A transport on the simulated host `host`: its listeners and the
    /// connections it opens are subject to [`cut`](Self::cut) and
    /// [`isolate`](Self::isolate).
    pub fn transport_on(&self, host: &str) -> MemTransport {
        MemTransport {
            net: self.clone(),
            host: Some(Arc::from(host)),
            scheme: "mem",
            locality: Locality::SameHost,
            latency: Duration::ZERO,
        }
    }

    /// Cuts the link between hosts `a` and `b`: their connections reset and
    /// new ones are refused until [`heal`](Self::heal).
    pub fn cut(&self, a: &str, b: &str) {
        let mut faults = lock(&self.inner.faults);
        faults.cut.insert((Arc::from(a), Arc::from(b)));
        faults.enforce();
    }

    /// Restores the link between `a` and `b`.
    pub fn heal(&self, a: &str, b: &str) {
        lock(&self.inner.faults)
            .cut
            .retain(|(x, y)| !((&**x == a && &**y == b) || (&**x == b && &**y == a)));
    }

    /// Cuts every link of `host`, as if it crashed or lost its network.
    pub fn isolate(&self, host: &str) {
        let mut faults = lock(&self.inner.faults);
        faults.isolated.insert(Arc::from(host));
        faults.enforce();
    }

    /// Undoes [`isolate`](Self::isolate).
    pub fn restore(&self, host: &str) {
        lock(&self.inner.faults).isolated.remove(host);
    }

    /// Loses each frame sent between hosts (over transports made by
    /// [`transport_on`](Self::transport_on)) with `probability`, silently,
    /// as a lossy link would: the sender sees it sent, the receiver never
    /// gets it. The dice are seeded with `seed`, so a run on paused time is
    /// reproducible. Zero turns loss off.
    pub fn set_frame_loss(&self, probability: f64, seed: u64) {
        use rand::SeedableRng;
        *lock(&self.inner.loss) = (probability > 0.0).then(|| Loss {
            probability,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            lost: 0,
        });
    }

    /// How many frames [`set_frame_loss`](Self::set_frame_loss) has lost.
    pub fn frames_lost(&self) -> u64 {
        lock(&self.inner.loss).as_ref().map_or(0, |l| l.lost)
    }

    /// Whether the next frame between hosts is lost.
    fn loses_frame(&self) -> bool {
        use rand::Rng;
        let mut loss = lock(&self.inner.loss);
        let Some(loss) = loss.as_mut() else {
            return false;
        };
        let lost = loss.rng.random_bool(loss.probability.clamp(0.0, 1.0));
        loss.lost += u64::from(lost);
        lost
    }

    /// Undoes every cut and isolation.
    pub fn heal_all(&self) {
        let mut faults = lock(&self.inner.faults);
        faults.cut.clear();
        faults.isolated.clear();
    }
}

/// The in-memory [`Transport`]. Addresses are `mem://NAME`; listening on
/// `mem://0` picks a fresh unique name.
#[derive(Clone, Debug)]
pub struct MemTransport {
    net: MemNetwork,
    host: Option<Arc<str>>,
    scheme: &'static str,
    locality: Locality,
    latency: Duration,
}

impl MemTransport {
    /// The same network under another scheme and locality, so that tests
    /// can give engines several transports to choose from (a `Network`
    /// locality makes the engine treat it like TCP rather than like shared
    /// memory). Listeners of different schemes never see each other.
    pub fn with_scheme(mut self, scheme: &'static str, locality: Locality) -> Self {
        self.scheme = scheme;
        self.locality = locality;
        self
    }

    /// Delays every frame sent over connections this transport opens or
    /// accepts by `latency` (simulated time works).
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// The key of a listener: scheme and name.
    fn key(&self, name: &str) -> String {
        format!("{}://{name}", self.scheme)
    }

    fn check_scheme(&self, addr: &Address) -> Result<(), TransportError> {
        if addr.scheme() == self.scheme {
            Ok(())
        } else {
            Err(TransportError::InvalidAddress {
                addr: addr.to_string(),
                reason: format!("this transport serves {}:// addresses", self.scheme),
            })
        }
    }
}

impl MemTransport {
    /// A transport on a network of its own. Use [`MemNetwork::transport`] to
    /// let several engines reach each other.
    pub fn new() -> Self {
        MemNetwork::new().transport()
    }
}

impl Default for MemTransport {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Transport for MemTransport {
    fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// Only engines in this process (on the same [`MemNetwork`]) are
    /// reachable, so by default the engine treats it as host-local (see
    /// [`MemTransport::with_scheme`]).
    fn locality(&self) -> Locality {
        self.locality
    }

    async fn listen(
        &self,
        addr: &Address,
        opts: &ConnOptions,
    ) -> Result<Box<dyn Listener>, TransportError> {
        self.check_scheme(addr)?;
        let name = match addr.rest() {
            "0" => format!(
                "auto-{}",
                self.net.inner.next_id.fetch_add(1, Ordering::Relaxed)
            ),
            name => name.to_owned(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.net.inner.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut listeners = lock(&self.net.inner.listeners);
            let key = self.key(&name);
            if listeners.get(&key).is_some_and(|(_, _, l)| !l.is_closed()) {
                return Err(TransportError::io(
                    "bind",
                    std::io::Error::new(std::io::ErrorKind::AddrInUse, format!("{key} is in use")),
                ));
            }
            listeners.insert(key, (id, self.host.clone(), tx));
        }
        Ok(Box::new(MemListener {
            id,
            addr: Address::parse(&self.key(&name))?,
            incoming: rx,
            max_frame_len: opts.max_frame_len,
            net: self.net.clone(),
            name: self.key(&name),
            latency: self.latency,
        }))
    }

    async fn connect(
        &self,
        addr: &Address,
        opts: &ConnOptions,
    ) -> Result<Box<dyn Connection>, TransportError> {
        self.check_scheme(addr)?;
        let refused = || {
            TransportError::io(
                "connect",
                std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    format!("nobody listens on {addr}"),
                ),
            )
        };
        let (listener, their_host) = lock(&self.net.inner.listeners)
            .get(&self.key(addr.rest()))
            .map(|(_, host, tx)| (tx.clone(), host.clone()))
            .ok_or_else(refused)?;
        let kill = CancellationToken::new();
        if let (Some(a), Some(b)) = (&self.host, &their_host) {
            let mut faults = lock(&self.net.inner.faults);
            if faults.blocked(a, b) {
                return Err(refused());
            }
            faults.links.push((a.clone(), b.clone(), kill.clone()));
        } else if let Some(h) = self.host.as_ref().or(their_host.as_ref()) {
            let mut faults = lock(&self.net.inner.faults);
            if faults.isolated.contains(h) {
                return Err(refused());
            }
            faults.links.push((h.clone(), h.clone(), kill.clone()));
        }
        let id = self.net.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let client_name = format!("mem://client-{id}");
        let (to_server, server_rx) = mpsc::channel(CHANNEL_DEPTH);
        let (to_client, client_rx) = mpsc::channel(CHANNEL_DEPTH);
        let lossy = (self.host.is_some() || their_host.is_some()).then(|| self.net.clone());
        let server = MemConnection {
            lossy: lossy.clone(),
            info: ConnInfo {
                transport: self.scheme,
                local: addr.to_string(),
                remote: client_name.clone(),
            },
            tx: to_client,
            rx: server_rx,
            kill: kill.clone(),
            latency: Duration::ZERO,
            // The listener fills in its own limit when it accepts.
            max_frame_len: u64::MAX,
        };
        listener.send(server).map_err(|_| refused())?;
        Ok(Box::new(MemConnection {
            lossy,
            info: ConnInfo {
                transport: self.scheme,
                local: client_name,
                remote: addr.to_string(),
            },
            tx: to_server,
            rx: client_rx,
            kill,
            latency: self.latency,
            max_frame_len: opts.max_frame_len,
        }))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent: every
    // critical section is a single insert, get or remove.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug)]
struct MemListener {
    id: u64,
    addr: Address,
    name: String,
    incoming: mpsc::UnboundedReceiver<MemConnection>,
    max_frame_len: u64,
    net: MemNetwork,
    latency: Duration,
}

#[async_trait]
impl Listener for MemListener {
    fn local_addr(&self) -> &Address {
        &self.addr
    }

    async fn accept(&mut self) -> Result<Box<dyn Connection>, TransportError> {
        let mut conn = self.incoming.recv().await.ok_or(TransportError::Closed)?;
        conn.max_frame_len = self.max_frame_len;
        conn.latency = self.latency;
        Ok(Box::new(conn))
    }
}

impl Drop for MemListener {
    fn drop(&mut self) {
        let mut listeners = lock(&self.net.inner.listeners);
        // Remove the entry only if it is still ours, not a newer listener's.
        if listeners
            .get(&self.name)
            .is_some_and(|(id, _, _)| *id == self.id)
        {
            listeners.remove(&self.name);
        }
    }
}

#[derive(Debug)]
struct MemConnection {
    /// The network, when the connection runs between hosts (and so may
    /// lose frames).
    lossy: Option<MemNetwork>,
    info: ConnInfo,
    tx: mpsc::Sender<Frame>,
    rx: mpsc::Receiver<Frame>,
    max_frame_len: u64,
    /// Fires when a simulated fault resets the connection.
    kill: CancellationToken,
    /// Added to every frame sent.
    latency: Duration,
}

impl Connection for MemConnection {
    fn info(&self) -> &ConnInfo {
        &self.info
    }

    fn split(self: Box<Self>) -> (Box<dyn FrameSink>, Box<dyn FrameStream>) {
        (
            Box::new(MemSink {
                tx: Some(self.tx),
                kill: self.kill.clone(),
                latency: self.latency,
                lossy: self.lossy,
            }),
            Box::new(MemStream {
                rx: Some(self.rx),
                max_frame_len: self.max_frame_len,
                kill: self.kill,
            }),
        )
    }
}

struct MemSink {
    tx: Option<mpsc::Sender<Frame>>,
    kill: CancellationToken,
    latency: Duration,
    lossy: Option<MemNetwork>,
}

impl MemSink {
    /// Whether the network loses this frame.
    fn loses(&self) -> bool {
        self.lossy.as_ref().is_some_and(MemNetwork::loses_frame)
    }
}

fn reset() -> TransportError {
    TransportError::io(
        "mem",
        std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated network fault",
        ),
    )
}

#[async_trait]
impl FrameSink for MemSink {
    async fn feed(&mut self, frame: Frame) -> Result<(), TransportError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.kill.is_cancelled() {
            return Err(reset());
        }
        let tx = self.tx.as_ref().ok_or(TransportError::Closed)?;
        if self.loses() {
            return Ok(());
        }
        tx.send(frame).await.map_err(|_| TransportError::Closed)
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        match self.tx {
            Some(_) => Ok(()),
            None => Err(TransportError::Closed),
        }
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        self.tx = None;
        Ok(())
    }

    fn try_feed(&mut self, frame: Frame) -> Result<Option<Frame>, TransportError> {
        if !self.latency.is_zero() {
            return Ok(Some(frame));
        }
        if self.kill.is_cancelled() {
            return Err(reset());
        }
        let tx = self.tx.as_ref().ok_or(TransportError::Closed)?;
        if self.loses() {
            return Ok(None);
        }
        match tx.try_send(frame) {
            Ok(()) => Ok(None),
            Err(mpsc::error::TrySendError::Full(frame)) => Ok(Some(frame)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(TransportError::Closed),
        }
    }

    fn try_flush(&mut self) -> Result<bool, TransportError> {
        match self.tx {
            Some(_) => Ok(true),
            None => Err(TransportError::Closed),
        }
    }
}

struct MemStream {
    rx: Option<mpsc::Receiver<Frame>>,
    max_frame_len: u64,
    kill: CancellationToken,
}

#[async_trait]
impl FrameStream for MemStream {
    fn set_max_frame_len(&mut self, max: u64) {
        self.max_frame_len = max;
    }

    fn try_recv(&mut self) -> Option<Result<Option<Frame>, TransportError>> {
        if self.kill.is_cancelled() {
            return futures_util::FutureExt::now_or_never(self.recv());
        }
        let Some(rx) = self.rx.as_mut() else {
            return Some(Err(TransportError::Closed));
        };
        match rx.try_recv() {
            Ok(frame) if frame.wire_len() > self.max_frame_len => {
                self.rx = None;
                Some(Err(TransportError::FrameTooLarge {
                    len: frame.wire_len(),
                    max: self.max_frame_len,
                }))
            }
            Ok(frame) => Some(Ok(Some(frame))),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => {
                self.rx = None;
                Some(Ok(None))
            }
        }
    }

    /// `try_recv` takes from the channel the peer sends on.
    fn try_recv_is_live(&self) -> bool {
        true
    }

    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        let Some(rx) = self.rx.as_mut() else {
            return Err(TransportError::Closed);
        };
        let next = tokio::select! {
            biased;
            () = self.kill.cancelled() => {
                self.rx = None;
                return Err(reset());
            }
            next = rx.recv() => next,
        };
        match next {
            Some(frame) if frame.wire_len() > self.max_frame_len => {
                // Closing our receiver makes the peer's next feed fail, as a
                // socket would after we hang up.
                self.rx = None;
                Err(TransportError::FrameTooLarge {
                    len: frame.wire_len(),
                    max: self.max_frame_len,
                })
            }
            Some(frame) => Ok(Some(frame)),
            None => {
                self.rx = None;
                Ok(None)
            }
        }
    }
}
