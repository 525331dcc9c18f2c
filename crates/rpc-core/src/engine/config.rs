//! Engine settings.

use std::time::Duration;

use crate::wire::DEFAULT_MAX_FRAME_LEN;

/// Settings of an [`Rpc`](crate::Rpc) engine. Start from
/// [`Config::default`] and change what you need.
///
/// ```
/// use std::time::Duration;
/// let mut config = rpc_core::Config::default();
/// config.timeout = Duration::from_secs(5);
/// config.max_frame_len = 64 << 20;
/// let rpc = rpc_core::Rpc::with_config(config);
/// # drop(rpc);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The default timeout of a call. Default: 30 s.
    pub timeout: Duration,
    /// The largest frame this engine accepts, in bytes. Peers learn it in the
    /// handshake and refuse to send larger frames. Default: 256 MiB.
    pub max_frame_len: u64,
    /// How many blocking handlers may run at once (moolib's max threads).
    /// Default: the number of CPUs.
    pub max_blocking_threads: usize,
    /// How many calls a [`Queue`](crate::Queue) holds before further calls are
    /// answered with [`Error::Overloaded`](crate::Error::Overloaded).
    /// Default: 4096.
    pub queue_capacity: usize,
    /// The longest a handler may run for a caller who sent no deadline, and
    /// the cap on deadlines callers send. Default: 1 hour.
    pub max_handler_time: Duration,
    /// The most inbound connections (handshaking or up) this engine keeps
    /// at once; past it, new ones are closed as soon as they are accepted,
    /// with a rate-limited warning. Default: 4096.
    pub max_connections: usize,
    /// The most requests a peer may have in progress on one connection
    /// (handlers that did not answer at once: spawned, blocking, deferred
    /// or queued). Past it the connection's reader stops reading until one
    /// ends, so the peer's sends wait: back-pressure, not an unbounded
    /// queue. Default: 1024.
    pub max_in_flight: usize,
    /// How long a new connection may take to say hello. Default: 10 s.
    pub handshake_timeout: Duration,
    /// The largest frame accepted on a connection before its handshake
    /// completes (a hello is a few hundred bytes); [`max_frame_len`]
    /// applies after it. Default: 64 KiB.
    ///
    /// [`max_frame_len`]: Self::max_frame_len
    pub handshake_max_frame_len: u64,
    /// The first reconnect delay. Default: 50 ms.
    pub reconnect_min: Duration,
    /// The longest reconnect delay. Default: 5 s.
    pub reconnect_max: Duration,
    /// How long one connection attempt may take before it counts as
    /// failed. Default: 10 s.
    pub connect_timeout: Duration,
    /// How long calls wait for a lost peer that this engine cannot redial
    /// (the peer had connected to us) to come back, before they fail with
    /// [`Error::Unreachable`](crate::Error::Unreachable). A peer we redial
    /// needs no grace: the first reconnect's outcome decides at once.
    /// Default: 1 s.
    pub reconnect_grace: Duration,
    /// How long the engine remembers a peer whose every connection closed
    /// (for the cause it reports to calls) before it forgets it; a peer
    /// that `connect` keeps redialing is never forgotten. Keeps per-peer
    /// state proportional to live peers when clients come and go.
    /// Default: 60 s.
    pub forget_after: Duration,
    /// How many relays a routed call may pass through (see
    /// [`Router`](crate::Router)). Default: 8.
    pub max_hops: u8,
    /// How much of a call's deadline budget each relay keeps for the
    /// answer's way back: the budget shrinks by this much per hop, and a
    /// relay refuses a call whose budget is smaller. Default: 1 ms.
    pub hop_reserve: Duration,
    /// How long a caller outside any task (in a `block_on`, say) may spin
    /// in place for its answer, receiving on the connection itself, when
    /// its call is the only one waiting there and the transport lets it
    /// (shared memory, the in-process transport; see
    /// [`FrameStream::try_recv_is_live`](crate::transport::FrameStream::try_recv_is_live)).
    /// It saves the runtime's driver poll and two task switches per call,
    /// but holds the thread meanwhile; spins that end in vain make the
    /// following calls skip theirs (see
    /// [`Spinner`](crate::transport::Spinner)). A caller spins only if the
    /// connection's previous lone caller was polled with the same waker
    /// (calls made one after another), so that concurrent calls with wakers
    /// of their own (a `FuturesUnordered`) stay concurrent; the branches of
    /// a `join!`, which share one waker, may then take a round trip each.
    /// Zero never spins. Default: 50 µs.
    pub caller_spin: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_blocking_threads: std::thread::available_parallelism().map_or(4, usize::from),
            queue_capacity: 4096,
            max_handler_time: Duration::from_secs(3600),
            max_connections: 4096,
            max_in_flight: 1024,
            handshake_timeout: Duration::from_secs(10),
            handshake_max_frame_len: 64 << 10,
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            reconnect_grace: Duration::from_secs(1),
            forget_after: Duration::from_secs(60),
            max_hops: 8,
            hop_reserve: Duration::from_millis(1),
            caller_spin: Duration::from_micros(50),
        }
    }
}
