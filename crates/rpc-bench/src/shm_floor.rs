//! The raw shared-memory floor: an 8-byte ping-pong between two processes
//! with no RPC stack at all, as in `shared/reference/rust-peers.md` §1.
//!
//! The benchmark creates a memfd, the server process inherits it (its
//! number in `RPC_BENCH_SHM_FD`) and both map it. Line 0 holds the request
//! `{seq u32, waiters u32, payload u64}`, line 1 the reply in the same
//! layout, line 2 the spin budget. The payload shares the cache line of the
//! seq that publishes it, so a hop moves one line.
//!
//! A waiter polls its seq for the spin budget, then sets `waiters` and
//! sleeps in a shared (not `FUTEX_PRIVATE`) `FUTEX_WAIT` on the seq word;
//! the publisher checks `waiters` after a `SeqCst` fence (a Dekker pair
//! with the waiter's), so the fast path makes no system call and no wake-up
//! is lost. `floor/shm-spin/8B` polls forever; `floor/shm-futex/8B` sleeps
//! at once, which shows what one wake-up costs on this machine.

use std::cell::Cell;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use memmap2::{MmapOptions, MmapRaw};
use tokio::runtime::Runtime;

use crate::child::{ServerKind, ServerProcess, announce};
use crate::harness::{RoundTrip, nanos};

/// The environment variable that passes the memfd's number to the server.
const FD_VAR: &str = "RPC_BENCH_SHM_FD";
/// Bytes between the lines: two cache lines, against adjacent-line
/// prefetching.
const LINE: usize = 128;
/// Bytes mapped.
const LEN: usize = 4096;
/// A spin budget that never ends.
pub(crate) const SPIN_FOREVER: u64 = u64::MAX;
/// A futex wait's timeout: a backstop that looks at the seq again.
const FUTEX_TIMEOUT: Duration = Duration::from_millis(100);

/// One direction's line.
#[repr(C)]
struct Side {
    seq: AtomicU32,
    waiters: AtomicU32,
    payload: AtomicU64,
}

/// The mapping, as both processes see it.
struct Shared {
    map: MmapRaw,
}

impl Shared {
    fn map(fd: &OwnedFd) -> Result<Self> {
        let map = MmapOptions::new()
            .len(LEN)
            .map_raw(fd.as_raw_fd())
            .context("mapping the floor's memfd")?;
        Ok(Self { map })
    }

    /// Line 0 (`0`), the request, or line 1 (`1`), the reply.
    fn side(&self, i: usize) -> &Side {
        debug_assert!(i < 2);
        // SAFETY: lines 0 and 1 lie inside the page-aligned mapping of LEN
        // bytes, hold only atomics (valid for any bit pattern, zero
        // included), and the mapping lives as long as `self`.
        unsafe { &*self.map.as_ptr().add(i * LINE).cast::<Side>() }
    }

    /// Line 2: how long waiters poll before they sleep, in nanoseconds.
    fn spin_ns(&self) -> &AtomicU64 {
        // SAFETY: as in `side`, for line 2.
        unsafe { &*self.map.as_ptr().add(2 * LINE).cast::<AtomicU64>() }
    }
}

/// The client's side of the floor, shared by the spin and futex cases.
pub(crate) struct Floor {
    shared: Shared,
    /// The last request seq sent.
    seq: Cell<u32>,
    /// Kept alive for as long as the mapping is used.
    _server: ServerProcess,
}

impl Floor {
    /// Creates the memfd and starts the echoing server process.
    pub(crate) fn start() -> Result<Rc<Self>> {
        // SAFETY: a valid C string and flags; the result is checked. No
        // MFD_CLOEXEC: the server inherits the descriptor.
        let raw = unsafe { libc::memfd_create(c"rpc-bench-floor".as_ptr(), 0) };
        if raw < 0 {
            bail!("memfd_create: {}", std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: a plain call on our own descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), LEN as libc::off_t) } != 0 {
            bail!("ftruncate: {}", std::io::Error::last_os_error());
        }
        let shared = Shared::map(&fd)?;
        let server = ServerProcess::spawn_with(ServerKind::ShmFloor, |command| {
            command.env(FD_VAR, fd.as_raw_fd().to_string());
        })?;
        // Closed here, so that processes started later do not inherit it;
        // both mappings keep the memory.
        drop(fd);
        Ok(Rc::new(Self {
            shared,
            seq: Cell::new(0),
            _server: server,
        }))
    }

    /// One round trip carrying 8 bytes each way.
    fn rtt(&self, payload: u64) -> Result<()> {
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        let (req, rep) = (self.shared.side(0), self.shared.side(1));
        req.payload.store(payload, Ordering::Relaxed);
        publish(req, seq);
        wait_for(rep, seq, self.shared.spin_ns());
        let back = rep.payload.load(Ordering::Relaxed);
        if back != payload {
            bail!("the floor echoed {back:#x} for {payload:#x}");
        }
        Ok(())
    }
}

/// One variant of the floor: its spin budget.
pub(crate) struct PingPong {
    floor: Rc<Floor>,
    spin_ns: u64,
}

impl PingPong {
    /// The floor polling for `spin_ns` (or [`SPIN_FOREVER`]) before it
    /// sleeps.
    pub(crate) fn new(floor: Rc<Floor>, spin_ns: u64) -> Self {
        Self { floor, spin_ns }
    }
}

impl RoundTrip for PingPong {
    fn run(&mut self, _rt: &Runtime, n: usize, out: &mut Vec<u64>) -> Result<()> {
        let budget = self.floor.shared.spin_ns();
        budget.store(self.spin_ns, Ordering::Relaxed);
        // One untimed round trip, so that a server still asleep from the
        // other variant is awake before the clock runs.
        self.floor.rtt(0)?;
        let result = (0..n).try_for_each(|i| {
            let start = Instant::now();
            self.floor.rtt(i as u64)?;
            out.push(nanos(start.elapsed()));
            Ok(())
        });
        // Between chunks the server sleeps rather than burn a CPU that the
        // other cases need.
        budget.store(0, Ordering::Relaxed);
        result
    }
}

/// Waits until `side.seq == want`: polls for the spin budget, then sleeps
/// on the futex.
fn wait_for(side: &Side, want: u32, spin_ns: &AtomicU64) {
    let start = Instant::now();
    let mut polls = 0u32;
    loop {
        if side.seq.load(Ordering::Acquire) == want {
            return;
        }
        // The budget is read first (a zero budget sleeps at once) and then
        // again now and then, so that a change ends a spin that was meant
        // to last forever.
        if polls.is_multiple_of(64) {
            let budget = spin_ns.load(Ordering::Relaxed);
            if budget != SPIN_FOREVER && nanos(start.elapsed()) >= budget {
                break;
            }
        }
        polls = polls.wrapping_add(1);
        std::hint::spin_loop();
    }
    loop {
        let seen = side.seq.load(Ordering::Acquire);
        if seen == want {
            return;
        }
        side.waiters.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if side.seq.load(Ordering::Acquire) == seen {
            futex_wait(&side.seq, seen);
        }
        side.waiters.store(0, Ordering::Relaxed);
    }
}

/// Publishes `seq`, waking the other side if it announced that it sleeps.
fn publish(side: &Side, seq: u32) {
    side.seq.store(seq, Ordering::Release);
    fence(Ordering::SeqCst);
    if side.waiters.load(Ordering::Relaxed) != 0 {
        futex_wake(&side.seq);
    }
}

fn futex_wait(word: &AtomicU32, expected: u32) {
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: FUTEX_TIMEOUT.as_nanos() as libc::c_long,
    };
    // SAFETY: a shared futex wait (no FUTEX_PRIVATE_FLAG: the word lies in
    // memory shared between processes) on a live, aligned u32, with a valid
    // timeout. Its result does not matter: the caller looks at the seq
    // again either way.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &raw const timeout,
            std::ptr::null::<u32>(),
            0,
        )
    };
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: a shared futex wake of one waiter on a live, aligned u32.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            1,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0,
        )
    };
}

/// `rpc-bench serve shm-floor`: maps the inherited memfd and echoes every
/// request until the process is stopped.
pub(crate) fn serve() -> Result<()> {
    let fd: i32 = std::env::var(FD_VAR)
        .with_context(|| format!("{FD_VAR} is not set"))?
        .parse()
        .with_context(|| format!("{FD_VAR} is not a descriptor number"))?;
    // SAFETY: the benchmark passed us this inherited descriptor to own, and
    // nothing else in this process uses it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let shared = Shared::map(&fd)?;
    drop(fd);
    announce(&["ready"])?;
    let (req, rep) = (shared.side(0), shared.side(1));
    let mut seq = 0u32;
    loop {
        seq = seq.wrapping_add(1);
        wait_for(req, seq, shared.spin_ns());
        rep.payload
            .store(req.payload.load(Ordering::Relaxed), Ordering::Relaxed);
        publish(rep, seq);
    }
}
