//! [`ShmTransport`], the `Transport` implementation, and [`ShmStats`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use rpc_core::TransportError;
use rpc_core::transport::{Address, ConnOptions, Connection, Listener, Locality, Transport};

use crate::config::ShmConfig;
use crate::conn::{self, Ctx};
use crate::listener::ShmListener;
use crate::unix::Endpoint;
use crate::wait::Stats;

/// The shared-memory [`Transport`], serving the `shm` scheme. See the
/// [crate docs](crate) for what it does.
///
/// Clones share their configuration and their [`stats`](Self::stats).
#[derive(Clone, Debug, Default)]
pub struct ShmTransport {
    config: ShmConfig,
    stats: Arc<Stats>,
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
}

impl ShmTransport {
    /// A transport with the default [`ShmConfig`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport with the given configuration.
    pub fn with_config(config: ShmConfig) -> Self {
        Self {
            config,
            stats: Arc::default(),
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
}
