//! Waiting without a busy core: a bounded spin that yields to the scheduler,
//! then sleep on an eventfd; and watching the peer's Unix socket for its
//! death.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::UnixStream;

use crate::error::ShmError;

/// How long a sleeper waits for its eventfd before it looks at the ring
/// anyway. A wake-up is never lost by design (see `ring`); this bounds the
/// damage if a peer misbehaves, and [`Stats::backstop_rescues`] counts the
/// times it found work, which tests expect to be zero.
pub(crate) const BACKSTOP: Duration = Duration::from_secs(1);
/// Looks at the ring per round while spinning.
pub(crate) const LOOKS_PER_YIELD: u32 = 16;

/// A new eventfd, non-blocking and close-on-exec.
pub(crate) fn eventfd() -> Result<OwnedFd, ShmError> {
    // SAFETY: plain call; the result is checked.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(ShmError::last_os("eventfd"));
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Adds one to an eventfd, waking whoever sleeps on it. A full counter
/// (`EAGAIN`) means a wake is pending already; other errors cannot happen on
/// an eventfd and are ignored, as the backstop covers them.
pub(crate) fn notify(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64 to a descriptor we own.
    let _ = unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast(), 8) };
}

/// An eventfd this side sleeps on, registered with tokio.
#[derive(Debug)]
pub(crate) struct EventFd(AsyncFd<OwnedFd>);

impl EventFd {
    /// Registers `fd` with the current tokio runtime.
    pub(crate) fn new(fd: OwnedFd) -> Result<Self, ShmError> {
        // SAFETY: `OwnedFd` owns a valid descriptor that stays open, and
        // always the same, for as long as the `AsyncFd` owns it.
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map(Self)
            .map_err(|e| ShmError::Sys {
                op: "register eventfd",
                source: e.into(),
            })
    }

    /// Waits until the counter is not zero, and resets it.
    pub(crate) async fn wait(&self) -> io::Result<()> {
        loop {
            let mut guard = self.0.readable().await?;
            match guard.try_io(|fd| read_counter(fd.get_ref())) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

fn read_counter(fd: &OwnedFd) -> io::Result<()> {
    let mut value: u64 = 0;
    // SAFETY: reads 8 bytes into a valid u64.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut value).cast(), 8) };
    if n == 8 {
        Ok(())
    } else if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short eventfd read",
        ))
    }
}

/// Looks at the ring until `ready` holds or `budget` has passed (see
/// [`rpc_core::transport::spin_until`]); whether it held.
pub(crate) async fn spin(budget: Duration, mut ready: impl FnMut() -> bool) -> bool {
    rpc_core::transport::spin_until(budget, LOOKS_PER_YIELD, || ready().then_some(()))
        .await
        .is_some()
}

/// The Unix socket of the handshake, kept open for the connection's life:
/// the kernel closes it when the peer process dies, however it dies.
#[derive(Debug)]
pub(crate) struct Peer {
    sock: UnixStream,
    dead: AtomicBool,
}

impl Peer {
    /// Watches `sock`.
    pub(crate) fn new(sock: UnixStream) -> Self {
        Self {
            sock,
            dead: AtomicBool::new(false),
        }
    }

    /// Whether the peer's end of the socket is known to be closed.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Resolves once the peer's end of the socket closes. Nothing is sent
    /// on the socket after the handshake, so data on it is treated as a
    /// closed peer too. Cancel safe.
    pub(crate) async fn gone(&self) {
        while !self.is_dead() {
            if self.sock.readable().await.is_err() {
                break;
            }
            match self.sock.try_read(&mut [0; 64]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
        self.dead.store(true, Ordering::Release);
    }
}

/// Counters shared by every connection of one transport.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub connections: AtomicU64,
    pub data_sleeps: AtomicU64,
    pub space_sleeps: AtomicU64,
    pub wakes: AtomicU64,
    pub arena_attachments: AtomicU64,
    pub arena_fallbacks: AtomicU64,
    pub backstop_rescues: AtomicU64,
    pub bulk_registered: AtomicU64,
    pub bulk_snapshots: AtomicU64,
    pub bulk_maps: AtomicU64,
    pub bulk_gets: AtomicU64,
    pub bulk_declined: AtomicU64,
}

impl Stats {
    /// Adds one to a counter.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
