//! [`TcpConfig`]: how the transport configures its sockets.

use std::io;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

/// Socket options for [`TcpTransport`](crate::TcpTransport).
///
/// Start from [`TcpConfig::default()`] and change what you need, with the
/// `with_*` methods or by assigning the fields:
///
/// ```
/// use std::time::Duration;
/// use rpc_transport_tcp::{TcpConfig, TcpTransport};
///
/// let config = TcpConfig::default()
///     .with_send_buffer_size(Some(4 << 20))
///     .with_recv_buffer_size(Some(4 << 20))
///     .with_connect_timeout(Duration::from_secs(3));
/// let tcp = TcpTransport::with_config(config);
/// assert!(tcp.config().nodelay);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpConfig {
    /// Sets `TCP_NODELAY`, so that a flushed frame is sent at once rather
    /// than held back by Nagle's algorithm. The transport coalesces small
    /// frames itself. Default `true`.
    pub nodelay: bool,
    /// `SO_SNDBUF` in bytes, or `None` for the system's default and
    /// autotuning. Default `None`.
    pub send_buffer_size: Option<usize>,
    /// `SO_RCVBUF` in bytes, or `None` for the system's default and
    /// autotuning. Default `None`.
    pub recv_buffer_size: Option<usize>,
    /// How long a connection may be idle before keepalive probes start, or
    /// `None` to send none. Default 30 s.
    pub keepalive: Option<Duration>,
    /// The time between keepalive probes, where the platform allows setting
    /// it, or `None` for the system's default. Default 10 s.
    pub keepalive_interval: Option<Duration>,
    /// How long one connection attempt to one resolved address may take.
    /// A host name that resolves to several addresses tries each in turn.
    /// Default 10 s.
    pub connect_timeout: Duration,
    /// How long a receiver keeps polling the socket for the next frame
    /// before it sleeps in the event loop. On machines whose idle CPUs halt,
    /// a wake-up from sleep costs tens of microseconds, several times a
    /// loopback round trip; polling for a short while avoids it when the
    /// answer comes quickly.
    ///
    /// The polling adapts (see [`rpc_core::transport::Spinner`]): a poll
    /// that finds nothing makes the next waits sleep at once, backing off to
    /// one poll in 64 waits, so a connection whose frames come seldom costs
    /// almost no CPU; polls resume as soon as frames come quickly again. An
    /// idle connection never polls. Polling lets other tasks and threads
    /// run every few microseconds. Each poll is a non-blocking read of the
    /// socket, which sees bytes as soon as the kernel has them. Default
    /// 50 µs; zero never polls.
    ///
    /// A transport that polls also writes a burst of frames in larger
    /// chunks (32 frames first rather than 16; see
    /// [`FrameSink::first_write`](rpc_core::transport::FrameSink::first_write)):
    /// its peers, configured alike, are awake to read, and each write is a
    /// system call. With 64 calls in flight on loopback that is about a
    /// fifth more calls per second; a peer that sleeps between messages on
    /// halting CPUs does better with the earlier first write.
    pub spin: Duration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            nodelay: true,
            send_buffer_size: None,
            recv_buffer_size: None,
            keepalive: Some(Duration::from_secs(30)),
            keepalive_interval: Some(Duration::from_secs(10)),
            connect_timeout: Duration::from_secs(10),
            spin: Duration::from_micros(50),
        }
    }
}

impl TcpConfig {
    /// The default configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`spin`](Self::spin).
    pub fn with_spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// Sets [`nodelay`](Self::nodelay).
    pub fn with_nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// Sets [`send_buffer_size`](Self::send_buffer_size).
    pub fn with_send_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.send_buffer_size = bytes;
        self
    }

    /// Sets [`recv_buffer_size`](Self::recv_buffer_size).
    pub fn with_recv_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.recv_buffer_size = bytes;
        self
    }

    /// Sets [`keepalive`](Self::keepalive).
    pub fn with_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.keepalive = idle;
        self
    }

    /// Sets [`keepalive_interval`](Self::keepalive_interval).
    pub fn with_keepalive_interval(mut self, interval: Option<Duration>) -> Self {
        self.keepalive_interval = interval;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Applies the buffer sizes, which a listening socket passes on to the
    /// sockets it accepts.
    pub(crate) fn apply_buffers<'s>(&self, socket: impl Into<SockRef<'s>>) -> io::Result<()> {
        let socket = socket.into();
        if let Some(size) = self.send_buffer_size {
            socket.set_send_buffer_size(size)?;
        }
        if let Some(size) = self.recv_buffer_size {
            socket.set_recv_buffer_size(size)?;
        }
        Ok(())
    }

    /// Applies every option to a socket about to connect.
    pub(crate) fn apply<'s>(&self, socket: impl Into<SockRef<'s>>) -> io::Result<()> {
        let socket = socket.into();
        self.apply_to_connected(&*socket)?;
        self.apply_buffers(&*socket)
    }

    /// Applies the options that an accepted socket does not inherit from its
    /// listener, or that may differ: `TCP_NODELAY` and keepalive. Buffer
    /// sizes are inherited, and setting them again after the handshake
    /// could shrink the window the handshake negotiated.
    pub(crate) fn apply_to_connected<'s>(&self, socket: impl Into<SockRef<'s>>) -> io::Result<()> {
        let socket = socket.into();
        socket.set_tcp_nodelay(self.nodelay)?;
        match self.keepalive {
            Some(idle) => {
                let mut params = TcpKeepalive::new().with_time(idle);
                if let Some(interval) = self.keepalive_interval {
                    params = params.with_interval(interval);
                }
                socket.set_tcp_keepalive(&params)
            }
            None => socket.set_keepalive(false),
        }
    }
}
