//! The raw shared-memory floor: a ping-pong between two processes with no
//! RPC stack at all, as in `shared/reference/rust-peers.md` §1.
//!
//! Line 0 holds the request `{seq u32, waiters u32, payload u64}`, line 1
//! the reply, line 2 the control words (spin budget in ns, stop). The
//! payload shares the cache line of the seq that publishes it. A waiter
//! polls its seq for the spin budget, then sets `waiters` and sleeps with a
//! shared (not `FUTEX_PRIVATE`) `FUTEX_WAIT` on the seq word; the publisher
//! checks `waiters` after a `SeqCst` fence, so the fast path makes no
//! system call. Large payloads go through two 1 MiB buffers with four
//! copies per round trip (in, out, in, out): the "ring that copies 4 times".

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use memmap2::{MmapOptions, MmapRaw};

/// The child role's environment variable value.
pub(crate) const ROLE: &str = "floor";
/// The environment variable passing the memfd's descriptor number.
const FD_VAR: &str = "RPC_BENCH_FLOOR_FD";
/// Bytes of each large-payload buffer.
pub(crate) const BIG: usize = 1 << 20;
const LINE: usize = 128;
const LEN: usize = 4096 + 2 * BIG;
/// Spin "forever" (the spin-only floor).
pub(crate) const SPIN_FOREVER: u64 = u64::MAX;
/// A futex wait's timeout: a backstop that re-checks the seq.
const FUTEX_TIMEOUT: Duration = Duration::from_millis(100);

#[repr(C)]
struct Side {
    seq: AtomicU32,
    waiters: AtomicU32,
    payload: AtomicU64,
}

/// The shared memory of the floor.
pub(crate) struct Floor {
    map: MmapRaw,
    /// The last request seq sent (parent) or seen (child).
    seq: u32,
    private: Vec<u8>,
}

impl Floor {
    fn side(&self, i: usize) -> &Side {
        // SAFETY: lines 0 and 1 lie in the mapping and hold only atomics.
        unsafe { &*self.map.as_ptr().add(i * LINE).cast::<Side>() }
    }

    fn spin_ns(&self) -> &AtomicU64 {
        // SAFETY: line 2 lies in the mapping and holds only atomics.
        unsafe { &*self.map.as_ptr().add(2 * LINE).cast::<AtomicU64>() }
    }

    fn stop(&self) -> &AtomicU32 {
        // SAFETY: as above, 8 bytes further.
        unsafe { &*self.map.as_ptr().add(2 * LINE + 8).cast::<AtomicU32>() }
    }

    fn buf(&self, i: usize) -> *mut u8 {
        // SAFETY: the buffers lie after the first page.
        unsafe { self.map.as_mut_ptr().add(4096 + i * BIG) }
    }

    /// Sets how long both sides poll before they sleep.
    pub(crate) fn set_spin(&self, spin_ns: u64) {
        self.spin_ns().store(spin_ns, Ordering::Relaxed);
    }

    /// One round trip carrying `len` bytes each way (8 inline, up to
    /// [`BIG`] through the buffers with four copies).
    pub(crate) fn rtt(&mut self, len: usize) {
        if len > 8 {
            // SAFETY: `len <= BIG`; the child does not touch the request
            // buffer until the seq is published.
            unsafe { std::ptr::copy_nonoverlapping(self.private.as_ptr(), self.buf(0), len) };
        }
        self.seq = self.seq.wrapping_add(1);
        let (req, rep) = (self.side(0), self.side(1));
        req.payload.store(len as u64, Ordering::Relaxed);
        publish(req, self.seq);
        wait_for(rep, self.seq, self.spin_ns());
        if len > 8 {
            // SAFETY: the reply is published; the child does not write the
            // reply buffer until the next request.
            unsafe { std::ptr::copy_nonoverlapping(self.buf(1), self.private.as_mut_ptr(), len) };
        }
    }
}

/// Waits until `side.seq == want`: polls for the spin budget, then sleeps
/// on the futex.
fn wait_for(side: &Side, want: u32, spin_ns: &AtomicU64) {
    let start = Instant::now();
    let mut n = 0u32;
    // A zero budget sleeps at once: the futex-only floor.
    while spin_ns.load(Ordering::Relaxed) != 0 {
        if side.seq.load(Ordering::Acquire) == want {
            return;
        }
        n = n.wrapping_add(1);
        if n.is_multiple_of(64) {
            let budget = spin_ns.load(Ordering::Relaxed);
            if budget != SPIN_FOREVER && start.elapsed().as_nanos() as u64 >= budget {
                break;
            }
        }
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
    // SAFETY: a shared futex wait (no FUTEX_PRIVATE_FLAG: the word is in
    // memory shared between processes) on a live, aligned u32.
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
    // SAFETY: a shared futex wake on a live, aligned u32.
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

/// The parent's side: creates the memfd and starts the echoing child.
pub(crate) fn start() -> Result<(Floor, Child)> {
    // SAFETY: valid name; the result is checked. No CLOEXEC: the child
    // inherits the descriptor.
    let raw = unsafe { libc::memfd_create(c"rpc-bench-floor".as_ptr(), 0) };
    if raw < 0 {
        bail!("memfd_create: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: plain call on our descriptor.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), LEN as libc::off_t) } != 0 {
        bail!("ftruncate: {}", std::io::Error::last_os_error());
    }
    let floor = map(&fd)?;
    floor.set_spin(0);
    let child = Command::new(std::env::current_exe()?)
        .env(super::CHILD_ROLE, ROLE)
        .env(FD_VAR, fd.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .spawn()
        .context("spawning the floor child")?;
    Ok((floor, child))
}

fn map(fd: &OwnedFd) -> Result<Floor> {
    let map = MmapOptions::new()
        .len(LEN)
        .map_raw(fd.as_raw_fd())
        .context("mmap")?;
    Ok(Floor {
        map,
        seq: 0,
        private: vec![0x5a; BIG],
    })
}

impl Floor {
    /// Stops the child.
    pub(crate) fn stop_child(&mut self, mut child: Child) -> Result<()> {
        self.stop().store(1, Ordering::Relaxed);
        self.seq = self.seq.wrapping_add(1);
        publish(self.side(0), self.seq);
        child.wait()?;
        Ok(())
    }
}

/// The child's side: echoes every request until told to stop.
pub(crate) fn child_main() -> Result<()> {
    // SAFETY: plain call; the child dies with the bench.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    bench_support::pin_to(1);
    let fd: i32 = std::env::var(FD_VAR)?.parse()?;
    // SAFETY: the parent passed us this descriptor to own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut floor = map(&fd)?;
    loop {
        let want = floor.seq.wrapping_add(1);
        wait_for(floor.side(0), want, floor.spin_ns());
        floor.seq = want;
        if floor.stop().load(Ordering::Relaxed) != 0 {
            return Ok(());
        }
        let len = floor.side(0).payload.load(Ordering::Relaxed) as usize;
        if len > 8 && len <= BIG {
            // SAFETY: the request is published and the reply not yet: both
            // buffers are ours until we publish.
            unsafe {
                std::ptr::copy_nonoverlapping(floor.buf(0), floor.private.as_mut_ptr(), len);
                std::ptr::copy_nonoverlapping(floor.private.as_ptr(), floor.buf(1), len);
            }
        }
        floor.side(1).payload.store(len as u64, Ordering::Relaxed);
        publish(floor.side(1), want);
    }
}
