//! Helpers shared by the multi-process tests: re-running the test binary as
//! a child process in a given role, and process CPU time.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The environment variable that tells a re-run test binary its role.
pub(crate) const ROLE: &str = "RPC_SHM_TEST_ROLE";
/// The environment variable that passes the address to connect to.
pub(crate) const ADDR: &str = "RPC_SHM_TEST_ADDR";

/// Starts this test binary again, running only the test `entry` (which
/// must do nothing unless [`ROLE`] is set), as `role`, connecting to
/// `addr`.
pub(crate) fn spawn_child(entry: &str, role: &str, addr: &str, stdout: Stdio) -> Child {
    Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([entry, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE, role)
        .env(ADDR, addr)
        .stdin(Stdio::null())
        .stdout(stdout)
        .spawn()
        .expect("spawning the test binary as a child")
}

/// The role this process was started in, if it is a child.
pub(crate) fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// Connects `client` to the engine listening at `addr` and waits until the
/// connection is up (at most `within`), returning the peer's name.
pub(crate) async fn connect(client: &rpc_core::Rpc, addr: &str, within: Duration) -> String {
    client
        .connect(addr)
        .expect("a valid address")
        .established(within)
        .await
        .expect("connected")
}

/// A current-thread tokio runtime with I/O and timers.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The CPU time (user + system) this process has used so far.
pub(crate) fn cpu_time() -> Duration {
    // SAFETY: `rusage` is plain data, filled by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out pointer.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Busy-waits for `d`, without yielding: how a test makes the peer's spin
/// run out, so that it sleeps.
pub(crate) fn busy_wait(d: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Entries of `/dev/shm` whose name mentions this transport.
pub(crate) fn dev_shm_entries() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains("rpc-shm"))
                .collect()
        })
        .unwrap_or_default()
}

/// Mappings of our segments in this process (`memfd:rpc-shm`).
pub(crate) fn mapped_segments() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .map(|maps| maps.lines().filter(|l| l.contains("memfd:rpc-shm")).count())
        .unwrap_or(0)
}
