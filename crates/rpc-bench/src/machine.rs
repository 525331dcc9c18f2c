//! The machine around the benchmark: other processes' CPU use, waiting for
//! quiet, the idle mode, and a description of the machine for the report.
//!
//! The method is the one of the TCP criterion bench
//! (`crates/rpc-transport-tcp/benches/tcp.rs`), extended to count our own
//! server processes as ours rather than as background.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};

pub(crate) use bench_support::QUIET;
use bench_support::{CPU_DMA_LATENCY, Ticks, machine_ticks, process_ticks};

/// The server processes this run started: their CPU time is ours, not
/// background.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Counts `pid`'s CPU time as ours from now on.
pub(crate) fn adopt(pid: u32) {
    lock_children().push(pid);
}

/// Stops counting `pid` (it is about to end).
pub(crate) fn disown(pid: u32) {
    lock_children().retain(|&p| p != pid);
}

fn lock_children() -> std::sync::MutexGuard<'static, Vec<u32>> {
    // A panic while holding this lock leaves a plain Vec behind, still
    // usable.
    CHILDREN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What others took of the machine over a while, as shares of all CPUs'
/// time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Usage {
    /// Time other processes ran (our servers are not others).
    pub(crate) others: f64,
    /// Time our vCPUs wanted to run but the hypervisor ran something else.
    pub(crate) steal: f64,
}

impl Usage {
    /// Whether both stay within [`QUIET`].
    pub(crate) fn quiet(self) -> bool {
        self.others <= QUIET && self.steal <= QUIET
    }
}

/// Measures how much CPU other processes and the hypervisor take, from
/// `/proc/stat` and the `stat` files of this process and its servers
/// (Linux only; elsewhere it reports nothing taken).
pub(crate) struct CpuMeter {
    machine: Option<Ticks>,
    own: Vec<(u32, u64)>,
}

impl CpuMeter {
    /// Starts measuring.
    pub(crate) fn start() -> Self {
        Self {
            machine: machine_ticks(),
            own: own_ticks(),
        }
    }

    /// What others took since [`start`](Self::start).
    pub(crate) fn usage(&self) -> Usage {
        let (Some(before), Some(after)) = (self.machine, machine_ticks()) else {
            return Usage::default();
        };
        // Only processes seen at both ends count as ours: one that ended in
        // between has no end figure.
        let now = own_ticks();
        let ours: u64 = self
            .own
            .iter()
            .filter_map(|&(pid, before)| {
                let after = now.iter().find(|&&(p, _)| p == pid)?.1;
                Some(after.saturating_sub(before))
            })
            .sum();
        let total = after.total.saturating_sub(before.total).max(1) as f64;
        let others = after.busy.saturating_sub(before.busy).saturating_sub(ours);
        let steal = after.steal.saturating_sub(before.steal);
        Usage {
            others: others as f64 / total,
            steal: steal as f64 / total,
        }
    }
}

/// Clock ticks run so far by this process and each of its servers.
fn own_ticks() -> Vec<(u32, u64)> {
    let mut pids = vec![std::process::id()];
    pids.extend(lock_children().iter().copied());
    pids.into_iter()
        .filter_map(|pid| Some((pid, process_ticks(pid)?)))
        .collect()
}

/// Waits, up to `max`, until other processes and the hypervisor take at
/// most [`QUIET`] of the machine over half a second; returns the last usage
/// seen.
pub(crate) fn wait_for_quiet(max: Duration) -> Usage {
    let start = Instant::now();
    loop {
        let meter = CpuMeter::start();
        std::thread::sleep(Duration::from_millis(500));
        let usage = meter.usage();
        if usage.quiet() || start.elapsed() >= max {
            return usage;
        }
    }
}

/// The CPUs this process may run on, in order (Linux only; empty if they
/// cannot be told).
pub(crate) fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let ok = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &raw mut set) };
    if ok != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, within the set.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Binds the calling thread, and the threads it starts from now on, to
/// `cpu`.
pub(crate) fn pin_to(cpu: usize) -> Result<()> {
    anyhow::ensure!(cpu < libc::CPU_SETSIZE as usize, "no CPU {cpu}");
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE, within the set.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set) } != 0 {
        return Err(std::io::Error::last_os_error()).context(format!("pinning to CPU {cpu}"));
    }
    Ok(())
}

/// The environment variable that tells a server process its CPU.
pub(crate) const CPU_VAR: &str = "RPC_BENCH_CPU";

/// Where the client and the servers run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// The client on one CPU, every server on another.
    Pinned {
        /// The client's CPU.
        client: usize,
        /// The servers' CPU.
        server: usize,
    },
    /// Wherever the scheduler puts them.
    Free,
}

impl Placement {
    /// Pins this thread (the client) and returns the placement: client on
    /// the first allowed CPU and servers on the second, or [`Free`] with
    /// `pin` false or fewer than two CPUs.
    ///
    /// [`Free`]: Self::Free
    pub(crate) fn choose(pin: bool) -> Result<Self> {
        let cpus = allowed_cpus();
        let (true, &[client, server, ..]) = (pin, cpus.as_slice()) else {
            return Ok(Self::Free);
        };
        pin_to(client)?;
        Ok(Self::Pinned { client, server })
    }

    /// The server CPU, for [`CPU_VAR`].
    pub(crate) fn server_cpu(self) -> Option<usize> {
        match self {
            Self::Pinned { server, .. } => Some(server),
            Self::Free => None,
        }
    }

    /// How the report describes it.
    pub(crate) fn describe(self) -> String {
        match self {
            Self::Pinned { client, server } => {
                format!("client pinned to CPU {client}, every server process to CPU {server}")
            }
            Self::Free => "not pinned: the scheduler places client and servers".to_owned(),
        }
    }
}

/// Whether idle CPUs halt (the VM default) or poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdleMode {
    /// Idle CPUs halt; every wake-up from sleep pays for it.
    Halt,
    /// `/dev/cpu_dma_latency` is held at 0: idle CPUs poll.
    Poll,
}

impl IdleMode {
    /// The name in the summary: `"halt"` or `"poll"`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Halt => "halt",
            Self::Poll => "poll",
        }
    }
}

/// Holds `/dev/cpu_dma_latency` at 0 while the returned file is open, so
/// that idle CPUs poll instead of halting. Fails without root.
pub(crate) fn hold_poll_idle() -> Result<File> {
    Ok(bench_support::hold_poll_idle()?)
}

/// Whether another process holds `/dev/cpu_dma_latency` open: then idle
/// CPUs may poll even in the halt half, and what it measures is not halt.
pub(crate) fn latency_held_elsewhere() -> bool {
    let me = std::process::id();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return false;
    };
    processes.flatten().any(|process| {
        let pid = process
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok());
        if pid.is_none_or(|pid| pid == me) {
            return false;
        }
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            return false;
        };
        fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| target == Path::new(CPU_DMA_LATENCY))
        })
    })
}

/// Lines describing the machine and the run, for the top of the report.
pub(crate) fn describe(modes: &[IdleMode], placement: Placement) -> Vec<String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut command = String::from("rpc-bench");
    for arg in &args {
        command.push(' ');
        command.push_str(arg);
    }
    let mut lines = vec![format!("date: {} UTC; `{command}`", utc_now())];
    if let Some(uname) = command_line("uname", &["-a"]) {
        lines.push(format!("uname -a: {uname}"));
    }
    // Not `available_parallelism`: this thread is pinned to one CPU by now.
    // SAFETY: sysconf only reads a system setting.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let model = cpu_model().unwrap_or_else(|| "unknown CPU".into());
    lines.push(format!("CPU: {model}, {cpus} CPUs online"));
    let idle = read_trimmed("/sys/devices/system/cpu/cpuidle/current_driver")
        .unwrap_or_else(|| "none".into());
    let halt_poll = read_trimmed("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
        .map(|ns| format!(", guest_halt_poll_ns={ns}"))
        .unwrap_or_default();
    let names: Vec<&str> = modes.iter().map(|m| m.name()).collect();
    lines.push(format!(
        "cpuidle driver: {idle}{halt_poll}; idle modes measured: {}",
        names.join(", ")
    ));
    lines.push(format!("placement: {}", placement.describe()));
    let mut versions = vec![format!("rpc-bench {}", env!("CARGO_PKG_VERSION"))];
    versions.extend(crate::report::peer_versions());
    if let Some(rustc) = command_line("rustc", &["-V"]) {
        versions.push(rustc);
    }
    lines.push(format!("versions: {}", versions.join(", ")));
    lines
}

/// The first line a command prints, if it runs.
fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next()?.trim().to_owned()).filter(|l| !l.is_empty())
}

fn read_trimmed(path: &str) -> Option<String> {
    Some(std::fs::read_to_string(path).ok()?.trim().to_owned())
}

/// The `model name` of the first CPU in `/proc/cpuinfo`.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

/// Now, as `YYYY-MM-DD HH:MM`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM` (UTC).
fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_utc(secs: u64, expect: &str) {
        assert_eq!(format_utc(secs), expect);
    }

    #[test]
    fn formats_utc_dates() {
        check_utc(0, "1970-01-01 00:00");
        check_utc(951_782_400, "2000-02-29 00:00");
        check_utc(1_795_312_800, "2026-11-22 02:00");
        check_utc(4_107_542_399, "2100-02-28 23:59");
    }
}
