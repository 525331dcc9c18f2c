//! A small TCP chaos proxy for tests and soaks: it forwards every
//! connection it accepts to a target, and injects faults that a test
//! switches at run time.
//!
//! - **delay**: each chunk waits this long before it is forwarded;
//! - **drop**: a chunk is lost with this probability, which tears the byte
//!   stream (the receiver sees a malformed frame and closes the connection,
//!   as after a middlebox that corrupts data);
//! - **reset**: every connection is aborted at once with an RST (linger 0);
//! - **stall**: forwarding stops, both ways, until it is resumed; the
//!   connections stay open;
//! - **half-open**: the connections open now stop forwarding for good and
//!   are never closed, as when a peer's host vanished without a FIN; new
//!   connections are unaffected.
//!
//! Used by `tests/chaos.rs`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The largest chunk forwarded at once.
const CHUNK: usize = 16 << 10;

/// A running proxy; dropping it stops accepting (connections already
/// proxied end with their peers).
pub(crate) struct ChaosProxy {
    addr: SocketAddr,
    ctl: Arc<Ctl>,
    accept: tokio::task::JoinHandle<()>,
}

/// The faults in force, shared with every pump.
struct Ctl {
    delay_us: AtomicU64,
    /// The probability of dropping a chunk, in millionths.
    drop_ppm: AtomicU64,
    stalled: watch::Sender<bool>,
    /// Bumped to abort every connection open at the time.
    resets: watch::Sender<u64>,
    /// Bumped to freeze every connection open at the time.
    freezes: watch::Sender<u64>,
    rng: Mutex<u64>,
    open: AtomicUsize,
    accepted: AtomicU64,
    dropped_chunks: AtomicU64,
    refuse: AtomicBool,
}

impl Ctl {
    /// A cheap seeded coin (xorshift): true with `ppm` millionths.
    fn coin(&self, ppm: u64) -> bool {
        if ppm == 0 {
            return false;
        }
        let mut s = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s % 1_000_000 < ppm
    }
}

impl ChaosProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub(crate) async fn start(target: SocketAddr, seed: u64) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let ctl = Arc::new(Ctl {
            delay_us: AtomicU64::new(0),
            drop_ppm: AtomicU64::new(0),
            stalled: watch::channel(false).0,
            resets: watch::channel(0).0,
            freezes: watch::channel(0).0,
            rng: Mutex::new(seed | 1),
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            dropped_chunks: AtomicU64::new(0),
            refuse: AtomicBool::new(false),
        });
        let accept = tokio::spawn(accept_loop(listener, target, ctl.clone()));
        Ok(Self { addr, ctl, accept })
    }

    /// Where clients connect.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Delays every chunk by `delay`.
    pub(crate) fn set_delay(&self, delay: Duration) {
        self.ctl
            .delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// Drops each chunk with `probability`.
    pub(crate) fn set_drop(&self, probability: f64) {
        self.ctl
            .drop_ppm
            .store((probability * 1e6) as u64, Ordering::Relaxed);
    }

    /// Aborts every open connection with an RST.
    pub(crate) fn reset_all(&self) {
        self.ctl.resets.send_modify(|n| *n += 1);
    }

    /// Stops (true) or resumes (false) all forwarding.
    pub(crate) fn set_stalled(&self, stalled: bool) {
        self.ctl.stalled.send_replace(stalled);
    }

    /// Freezes every open connection for good, without closing it.
    pub(crate) fn half_open_all(&self) {
        self.ctl.freezes.send_modify(|n| *n += 1);
    }

    /// Refuses (closes at once) new connections while `refuse` holds.
    pub(crate) fn set_refusing(&self, refuse: bool) {
        self.ctl.refuse.store(refuse, Ordering::Relaxed);
    }

    /// Connections being proxied now.
    pub(crate) fn open(&self) -> usize {
        self.ctl.open.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> u64 {
        self.ctl.accepted.load(Ordering::Relaxed)
    }

    /// Chunks dropped so far.
    pub(crate) fn dropped_chunks(&self) -> u64 {
        self.ctl.dropped_chunks.load(Ordering::Relaxed)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, ctl: Arc<Ctl>) {
    while let Ok((client, _)) = listener.accept().await {
        if ctl.refuse.load(Ordering::Relaxed) {
            drop(client);
            continue;
        }
        ctl.accepted.fetch_add(1, Ordering::Relaxed);
        let ctl = ctl.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            ctl.open.fetch_add(1, Ordering::Relaxed);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let resets = ctl.resets.subscribe();
            let freezes = ctl.freezes.subscribe();
            let up = pump(cr, sw, ctl.clone(), resets.clone(), freezes.clone());
            let down = pump(sr, cw, ctl.clone(), resets, freezes);
            let (a, b) = tokio::join!(up, down);
            ctl.open.fetch_sub(1, Ordering::Relaxed);
            // Reset: both sockets end with an RST; otherwise they close.
            if let (Some((cr, sw)), Some((sr, cw))) = (a, b) {
                for (r, w) in [(cr, cw), (sr, sw)] {
                    if let Ok(stream) = r.reunite(w) {
                        let _ = socket_abort(stream);
                    }
                }
            }
        });
    }
}

/// Forwards `from` to `to` until either ends; returns the halves when the
/// connection must be aborted with an RST.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    ctl: Arc<Ctl>,
    mut resets: watch::Receiver<u64>,
    mut freezes: watch::Receiver<u64>,
) -> Option<(OwnedReadHalf, OwnedWriteHalf)> {
    let mut stalled = ctl.stalled.subscribe();
    let mut buf = vec![0u8; CHUNK];
    resets.mark_unchanged();
    freezes.mark_unchanged();
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return None;
                }
                Ok(n) => n,
            },
            _ = resets.changed() => return Some((from, to)),
            _ = freezes.changed() => {
                // Half-open: hold both sockets and forward nothing, until a
                // reset aborts them.
                let _ = resets.changed().await;
                return Some((from, to));
            }
        };
        let delay = ctl.delay_us.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
        while *stalled.borrow_and_update() {
            tokio::select! {
                _ = stalled.changed() => {}
                _ = resets.changed() => return Some((from, to)),
            }
        }
        if ctl.coin(ctl.drop_ppm.load(Ordering::Relaxed)) {
            ctl.dropped_chunks.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return None;
        }
    }
}

/// Closes `stream` with an RST.
fn socket_abort(stream: TcpStream) -> std::io::Result<()> {
    stream.set_zero_linger()?;
    drop(stream);
    Ok(())
}
