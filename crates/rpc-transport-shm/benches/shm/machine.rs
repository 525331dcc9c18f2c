//! The machine around the benchmark: other processes' CPU use, the idle
//! mode, and percentiles. The same method as the TCP benchmark
//! (`crates/rpc-transport-tcp/benches/tcp.rs`).

use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

/// The share of the machine other processes may use while we measure.
pub(crate) const QUIET: f64 = 0.10;

/// p50 and p99 (nearest rank) of samples in nanoseconds, sorted in place,
/// in microseconds.
pub(crate) fn percentiles(samples: &mut [u64]) -> (f64, f64) {
    samples.sort_unstable();
    let rank = |p: f64| {
        let i = (p * samples.len() as f64).ceil() as usize;
        samples[i.clamp(1, samples.len()) - 1] as f64 / 1e3
    };
    (rank(0.50), rank(0.99))
}

/// Measures how much CPU other processes use, from `/proc/stat` and
/// `/proc/self/stat`. Our child processes count as "other".
pub(crate) struct CpuMeter {
    machine: Option<(u64, u64)>,
    own: Option<u64>,
}

impl CpuMeter {
    pub(crate) fn start() -> Self {
        Self {
            machine: machine_ticks(),
            own: own_ticks(),
        }
    }

    /// The share of all CPUs' time since `start` that other processes used.
    pub(crate) fn background(&self) -> f64 {
        let (Some((busy0, total0)), Some(own0)) = (self.machine, self.own) else {
            return 0.0;
        };
        let (Some((busy1, total1)), Some(own1)) = (machine_ticks(), own_ticks()) else {
            return 0.0;
        };
        let total = total1.saturating_sub(total0).max(1);
        let others = busy1
            .saturating_sub(busy0)
            .saturating_sub(own1.saturating_sub(own0));
        others as f64 / total as f64
    }
}

fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
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
    Some((busy, busy + idle + iowait + steal))
}

fn own_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Waits, up to `max`, until other processes use at most [`QUIET`] of the
/// machine over half a second.
pub(crate) fn wait_for_quiet(max: Duration) {
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

/// Holds `/dev/cpu_dma_latency` at 0 while the returned file is open, so
/// that idle CPUs poll instead of halting.
pub(crate) fn hold_poll_idle() -> Result<File> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/cpu_dma_latency")
        .context("opening /dev/cpu_dma_latency for writing")?;
    file.write_all(&0i32.to_ne_bytes())
        .context("writing 0 to /dev/cpu_dma_latency")?;
    Ok(file)
}

/// Pins this process's threads to CPU `cpu` (modulo the CPUs there are),
/// unless `RPC_BENCH_NO_PIN=1`: the client on CPU 0 and the children on
/// CPU 1, so that the two sides of a round trip never wait for each other
/// to be scheduled on the same CPU. Returns whether it pinned.
pub(crate) fn pin_to(cpu: usize) -> bool {
    if crate::env_flag("RPC_BENCH_NO_PIN") {
        return false;
    }
    // Online CPUs, not `available_parallelism`, which a child that
    // inherited our pinning would see as one.
    // SAFETY: plain call.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    if cpus < 2 {
        return false;
    }
    // SAFETY: `cpu_set_t` is plain data; CPU_SET stays within it, and
    // sched_setaffinity reads it for the calling process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % cpus, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}
