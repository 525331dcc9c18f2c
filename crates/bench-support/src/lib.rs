//! What the benchmarks share (`crates/rpc-transport-tcp/benches/tcp.rs`,
//! `crates/rpc-transport-shm/benches/shm.rs` and `crates/rpc-bench`): how
//! busy the rest of the machine is, holding idle CPUs in polling, pinning,
//! and nearest-rank percentiles.
//!
//! Benchmarks compare cases measured in one run, so the numbers that matter
//! are ratios; what this crate offers is the means to tell a run disturbed
//! by other processes, and to state the idle mode it ran in.
//!
//! ```
//! let mut samples = vec![4_000, 1_000, 3_000, 2_000]; // nanoseconds
//! assert_eq!(bench_support::percentiles(&mut samples), Some((2.0, 4.0)));
//! ```

use std::fs::File;
use std::io::{self, Write};
use std::time::{Duration, Instant};

/// The share of the machine other processes may use while we measure.
pub const QUIET: f64 = 0.10;

/// The PM QoS file that holds idle CPUs out of deep states while open.
pub const CPU_DMA_LATENCY: &str = "/dev/cpu_dma_latency";

/// Whether the environment variable `name` is set to something other than
/// empty or `0`.
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Whether a criterion benchmark binary was started to measure (`--bench`,
/// as `cargo bench` does) rather than to list its cases or to profile
/// (`--list`, `--profile-time`), or as a test (`cargo test --benches`):
/// only measuring runs wait for a quiet machine and print ratio reports.
pub fn criterion_measuring() -> bool {
    measuring_args(std::env::args())
}

fn measuring_args(args: impl IntoIterator<Item = String>) -> bool {
    let args: Vec<String> = args.into_iter().collect();
    args.iter().any(|a| a == "--bench")
        && !args
            .iter()
            .any(|a| a == "--list" || a.starts_with("--profile-time"))
}

/// p50 and p99 (nearest rank) of samples in nanoseconds, sorted in place,
/// in microseconds; `None` without samples.
pub fn percentiles(samples: &mut [u64]) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = |p: f64| {
        let i = (p * samples.len() as f64).ceil() as usize;
        samples[i.clamp(1, samples.len()) - 1] as f64 / 1e3
    };
    Some((rank(0.50), rank(0.99)))
}

/// Measures how much CPU other processes use, from `/proc/stat` and
/// `/proc/self/stat`. Child processes count as "other".
#[derive(Clone, Copy, Debug)]
pub struct CpuMeter {
    machine: Option<Ticks>,
    own: Option<u64>,
}

impl CpuMeter {
    /// Starts measuring now.
    pub fn start() -> Self {
        Self {
            machine: machine_ticks(),
            own: process_ticks(std::process::id()),
        }
    }

    /// The share of all CPUs' time since `start` that other processes used
    /// (zero where `/proc` cannot be read).
    pub fn background(&self) -> f64 {
        let (Some(t0), Some(own0)) = (self.machine, self.own) else {
            return 0.0;
        };
        let (Some(t1), Some(own1)) = (machine_ticks(), process_ticks(std::process::id())) else {
            return 0.0;
        };
        let total = t1.total.saturating_sub(t0.total).max(1);
        let others = t1
            .busy
            .saturating_sub(t0.busy)
            .saturating_sub(own1.saturating_sub(own0));
        others as f64 / total as f64
    }
}

/// Clock ticks of all CPUs together, from the first line of `/proc/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticks {
    /// Running anything.
    pub busy: u64,
    /// Stolen by the hypervisor.
    pub steal: u64,
    /// All of them.
    pub total: u64,
}

/// The machine's clock ticks so far; `None` where `/proc/stat` cannot be
/// read.
pub fn machine_ticks() -> Option<Ticks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_ticks(&stat)
}

/// [`Ticks`] from the text of `/proc/stat`.
pub fn parse_machine_ticks(stat: &str) -> Option<Ticks> {
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks[..] else {
        return None;
    };
    let busy = user + nice + system + irq + softirq;
    Some(Ticks {
        busy,
        steal,
        total: busy + idle + iowait + steal,
    })
}

/// Clock ticks process `pid` (all its threads) has run.
pub fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_process_ticks(&stat)
}

/// utime + stime from the text of a `/proc/PID/stat` file.
pub fn parse_process_ticks(stat: &str) -> Option<u64> {
    // Fields after the command name, which may hold spaces and parentheses:
    // state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Waits, up to `max`, until other processes use at most [`QUIET`] of the
/// machine over half a second; says so on stderr if they never do.
pub fn wait_for_quiet(max: Duration) {
    if max.is_zero() {
        return;
    }
    let start = Instant::now();
    loop {
        let meter = CpuMeter::start();
        std::thread::sleep(Duration::from_millis(500));
        let background = meter.background();
        if background <= QUIET {
            return;
        }
        if start.elapsed() >= max {
            eprintln!(
                "other processes still use {:.0} % of the CPUs after {max:?}; measuring anyway",
                background * 100.0
            );
            return;
        }
    }
}

/// Holds [`CPU_DMA_LATENCY`] at 0 while the returned file is open, so that
/// idle CPUs poll instead of halting. Fails without root.
pub fn hold_poll_idle() -> io::Result<File> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(CPU_DMA_LATENCY)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {CPU_DMA_LATENCY}: {e}")))?;
    file.write_all(&0i32.to_ne_bytes())
        .map_err(|e| io::Error::new(e.kind(), format!("writing 0 to {CPU_DMA_LATENCY}: {e}")))?;
    Ok(file)
}

/// The number of online CPUs (not `available_parallelism`, which a child
/// that inherited a pinning would see as one).
pub fn online_cpus() -> usize {
    // SAFETY: plain call.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Pins this thread (and the threads it starts later) to CPU `cpu` modulo
/// the online CPUs, unless there is only one or `RPC_BENCH_NO_PIN=1`.
/// Returns whether it pinned.
pub fn pin_to(cpu: usize) -> bool {
    if env_flag("RPC_BENCH_NO_PIN") {
        return false;
    }
    let cpus = online_cpus();
    if cpus < 2 {
        return false;
    }
    // SAFETY: `cpu_set_t` is plain data; CPU_SET stays within it, and
    // sched_setaffinity reads it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % cpus, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_percentiles(samples: &[u64], expect: Option<(f64, f64)>) {
        assert_eq!(percentiles(&mut samples.to_vec()), expect);
    }

    #[test]
    fn nearest_rank_percentiles_in_microseconds() {
        check_percentiles(&[], None);
        check_percentiles(&[5_000], Some((5.0, 5.0)));
        check_percentiles(&[4_000, 1_000, 3_000, 2_000], Some((2.0, 4.0)));
        let hundred: Vec<u64> = (1..=100).map(|i| i * 1_000).collect();
        check_percentiles(&hundred, Some((50.0, 99.0)));
    }

    #[test]
    fn parses_proc_stat() {
        let stat = "cpu  10 1 5 100 2 3 4 7 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        let expect = Ticks {
            busy: 23,
            steal: 7,
            total: 132,
        };
        assert_eq!(parse_machine_ticks(stat), Some(expect));
        assert_eq!(parse_machine_ticks("cpu 1 2\n"), None);
        assert_eq!(parse_machine_ticks(""), None);
    }

    #[test]
    fn tells_measuring_runs_from_listing_and_profiling() {
        let run = |args: &[&str]| measuring_args(args.iter().map(|a| a.to_string()));
        assert!(run(&["tcp", "--bench"]));
        assert!(run(&["tcp", "--bench", "ours"]));
        assert!(!run(&["tcp"]));
        assert!(!run(&["tcp", "--bench", "--list"]));
        assert!(!run(&["tcp", "--bench", "--profile-time", "5"]));
    }

    #[track_caller]
    fn check_ticks(stat: &str, expect: Option<u64>) {
        assert_eq!(parse_process_ticks(stat), expect);
    }

    #[test]
    fn parses_process_ticks_past_a_name_with_spaces() {
        check_ticks(
            "42 (rpc-bench) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0",
            Some(12),
        );
        check_ticks(
            "42 (a b) c) R 1 42 42 0 -1 0 0 0 0 0 30 12 0 0 20 0 1 0",
            Some(42),
        );
        check_ticks("42 (short) S 1", None);
        check_ticks("garbage", None);
    }
}
