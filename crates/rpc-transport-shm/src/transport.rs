//! [`ShmTransport`], the `Transport` implementation, and [`ShmStats`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use rpc_core::BulkTransport;
use rpc_core::TransportError;
use rpc_core::transport::{Address, ConnOptions, Connection, Listener, Locality, Transport};

use crate::bulk::ShmBulk;
use crate::config::ShmConfig;
use crate::conn::{self, Ctx};
use crate::listener::ShmListener;
use crate::unix::Endpoint;
use crate::wait::Stats;

/// The shared-memory [`Transport`], serving the `shm` scheme. See the
/// [crate docs](crate) for what it does.
///
/// Clones share their configuration, their [`stats`](Self::stats) and
/// their bulk level: read-only regions exposed through an engine holding
/// this transport are pulled by peers on the same host by mapping a sealed
/// snapshot of them, without frames and without a copy (see
/// [`Transport::bulk`]).
#[derive(Clone, Debug)]
pub struct ShmTransport {
    config: ShmConfig,
    stats: Arc<Stats>,
    bulk: Arc<ShmBulk>,
}

/// Counters of one [`ShmTransport`] and its clones, over all their
/// connections, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShmStats {
    /// Connections established, both ways.
    pub connections: u64,
    /// Times a receiver slept on its eventfd after spinning in vain.
    pub data_sleeps: u64,
    /// Times a sender slept on its eventfd waiting for room in the ring.
    pub space_sleeps: u64,
    /// Eventfd writes to wake a sleeping peer.
    pub wakes: u64,
    /// Attachments sent through the arena.
    pub arena_attachments: u64,
    /// Large attachments streamed through the ring because the arena was
    /// full.
    pub arena_fallbacks: u64,
    /// Sleeps ended by the one-second backstop timer that then found work:
    /// a lost wake-up. Always zero unless a peer misbehaves.
    pub backstop_rescues: u64,
    /// Read-only regions registered with the bulk level, as an owner.
    pub bulk_registered: u64,
    /// Sealed snapshots made of them for readers, as an owner: once per
    /// region, and again after the owner wrote to it.
    pub bulk_snapshots: u64,
    /// Snapshots mapped, as a reader.
    pub bulk_maps: u64,
    /// Bulk reads served from a mapping, without frames or copies, as a
    /// reader.
    pub bulk_gets: u64,
    /// Bulk reads left to the engine's framed copy, as a reader: the owner
    /// is not reachable here, or refused (an unknown or unexposed region).
    pub bulk_declined: u64,
}

impl Default for ShmTransport {
    fn default() -> Self {
        Self::with_config(ShmConfig::default())
    }
}

impl ShmTransport {
    /// A transport with the default [`ShmConfig`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport with the given configuration.
    pub fn with_config(config: ShmConfig) -> Self {
        let stats = Arc::<Stats>::default();
        Self {
            config,
            bulk: Arc::new(ShmBulk::new(stats.clone())),
            stats,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ShmConfig {
        &self.config
    }

    /// The counters so far.
    pub fn stats(&self) -> ShmStats {
        let s = &self.stats;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        ShmStats {
            connections: get(&s.connections),
            data_sleeps: get(&s.data_sleeps),
            space_sleeps: get(&s.space_sleeps),
            wakes: get(&s.wakes),
            arena_attachments: get(&s.arena_attachments),
            arena_fallbacks: get(&s.arena_fallbacks),
            backstop_rescues: get(&s.backstop_rescues),
            bulk_registered: get(&s.bulk_registered),
            bulk_snapshots: get(&s.bulk_snapshots),
            bulk_maps: get(&s.bulk_maps),
            bulk_gets: get(&s.bulk_gets),
            bulk_declined: get(&s.bulk_declined),
        }
    }

    fn ctx(&self, opts: &ConnOptions) -> Ctx {
        Ctx {
            config: self.config.clone(),
            stats: self.stats.clone(),
            max_frame_len: opts.max_frame_len,
        }
    }
}

#[async_trait]
impl Transport for ShmTransport {
    fn scheme(&self) -> &'static str {
        "shm"
    }

    /// Only processes on this host, in this network namespace: the
    /// listeners are abstract Unix sockets, scoped by the namespace.
    fn locality(&self) -> Locality {
        Locality::SameHost
    }

    async fn listen(
        &self,
        addr: &Address,
        opts: &ConnOptions,
    ) -> Result<Box<dyn Listener>, TransportError> {
        Ok(Box::new(ShmListener::bind(addr, self.ctx(opts))?))
    }

    async fn connect(
        &self,
        addr: &Address,
        opts: &ConnOptions,
    ) -> Result<Box<dyn Connection>, TransportError> {
        let endpoint = Endpoint::parse(addr)?;
        Ok(Box::new(conn::client(&endpoint, &self.ctx(opts)).await?))
    }

    /// Maps read-only regions for peers on this host; see
    /// [`ShmTransport`].
    fn bulk(&self) -> Option<&dyn BulkTransport> {
        Some(&*self.bulk)
    }
}
