//! An in-memory transport: connections are pairs of channels inside one
//! process. Tests use it to run the engine without sockets, and the
//! conformance suite runs against it like against every other transport.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;

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
#[derive(Clone, Debug, Default)]
pub struct MemNetwork {
    inner: Arc<NetInner>,
}

#[derive(Debug, Default)]
struct NetInner {
    listeners: Mutex<HashMap<String, (u64, mpsc::UnboundedSender<MemConnection>)>>,
    next_id: AtomicU64,
}

impl MemNetwork {
    /// A new, empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport attached to this network, serving the `mem` scheme.
    pub fn transport(&self) -> MemTransport {
        MemTransport { net: self.clone() }
    }
}

/// The in-memory [`Transport`]. Addresses are `mem://NAME`; listening on
/// `mem://0` picks a fresh unique name.
#[derive(Clone, Debug)]
pub struct MemTransport {
    net: MemNetwork,
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
        "mem"
    }

    /// Only engines in this process (on the same [`MemNetwork`]) are
    /// reachable, so the engine treats it as host-local.
    fn locality(&self) -> Locality {
        Locality::SameHost
    }

    async fn listen(
        &self,
        addr: &Address,
        opts: &ConnOptions,
    ) -> Result<Box<dyn Listener>, TransportError> {
        check_scheme(addr)?;
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
            if listeners.get(&name).is_some_and(|(_, l)| !l.is_closed()) {
                return Err(TransportError::io(
                    "bind",
                    std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        format!("mem://{name} is in use"),
                    ),
                ));
            }
            listeners.insert(name.clone(), (id, tx));
        }
        Ok(Box::new(MemListener {
            id,
            addr: Address::parse(&format!("mem://{name}"))?,
            incoming: rx,
            max_frame_len: opts.max_frame_len,
            net: self.net.clone(),
            name,
        }))
    }

    async fn connect(
        &self,
        addr: &Address,
        opts: &ConnOptions,
    ) -> Result<Box<dyn Connection>, TransportError> {
        check_scheme(addr)?;
        let refused = || {
            TransportError::io(
                "connect",
                std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    format!("nobody listens on {addr}"),
                ),
            )
        };
        let listener = lock(&self.net.inner.listeners)
            .get(addr.rest())
            .map(|(_, tx)| tx.clone())
            .ok_or_else(refused)?;
        let id = self.net.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let client_name = format!("mem://client-{id}");
        let (to_server, server_rx) = mpsc::channel(CHANNEL_DEPTH);
        let (to_client, client_rx) = mpsc::channel(CHANNEL_DEPTH);
        let server = MemConnection {
            info: ConnInfo {
                transport: "mem",
                local: addr.to_string(),
                remote: client_name.clone(),
            },
            tx: to_client,
            rx: server_rx,
            // The listener fills in its own limit when it accepts.
            max_frame_len: u64::MAX,
        };
        listener.send(server).map_err(|_| refused())?;
        Ok(Box::new(MemConnection {
            info: ConnInfo {
                transport: "mem",
                local: client_name,
                remote: addr.to_string(),
            },
            tx: to_server,
            rx: client_rx,
            max_frame_len: opts.max_frame_len,
        }))
    }
}

fn check_scheme(addr: &Address) -> Result<(), TransportError> {
    if addr.scheme() == "mem" {
        Ok(())
    } else {
        Err(TransportError::InvalidAddress {
            addr: addr.to_string(),
            reason: "the mem transport serves mem:// addresses".into(),
        })
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
}

#[async_trait]
impl Listener for MemListener {
    fn local_addr(&self) -> &Address {
        &self.addr
    }

    async fn accept(&mut self) -> Result<Box<dyn Connection>, TransportError> {
        let mut conn = self.incoming.recv().await.ok_or(TransportError::Closed)?;
        conn.max_frame_len = self.max_frame_len;
        Ok(Box::new(conn))
    }
}

impl Drop for MemListener {
    fn drop(&mut self) {
        let mut listeners = lock(&self.net.inner.listeners);
        // Remove the entry only if it is still ours, not a newer listener's.
        if listeners
            .get(&self.name)
            .is_some_and(|(id, _)| *id == self.id)
        {
            listeners.remove(&self.name);
        }
    }
}

#[derive(Debug)]
struct MemConnection {
    info: ConnInfo,
    tx: mpsc::Sender<Frame>,
    rx: mpsc::Receiver<Frame>,
    max_frame_len: u64,
}

impl Connection for MemConnection {
    fn info(&self) -> &ConnInfo {
        &self.info
    }

    fn split(self: Box<Self>) -> (Box<dyn FrameSink>, Box<dyn FrameStream>) {
        (
            Box::new(MemSink { tx: Some(self.tx) }),
            Box::new(MemStream {
                rx: Some(self.rx),
                max_frame_len: self.max_frame_len,
            }),
        )
    }
}

struct MemSink {
    tx: Option<mpsc::Sender<Frame>>,
}

#[async_trait]
impl FrameSink for MemSink {
    async fn feed(&mut self, frame: Frame) -> Result<(), TransportError> {
        let tx = self.tx.as_ref().ok_or(TransportError::Closed)?;
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
}

struct MemStream {
    rx: Option<mpsc::Receiver<Frame>>,
    max_frame_len: u64,
}

#[async_trait]
impl FrameStream for MemStream {
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        let Some(rx) = self.rx.as_mut() else {
            return Err(TransportError::Closed);
        };
        match rx.recv().await {
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
