//! Benchmarks of the shared-memory transport against our TCP transport, a
//! raw shared-memory ping-pong between two processes, and memcpy.
//!
//! The echo server runs in a child process (this binary, re-run with
//! `RPC_BENCH_CHILD=server`), on a `current_thread` runtime, listening on
//! shm and TCP; the clients run on this process's main thread, one engine
//! per transport. The raw floor runs in another child (`floor`).
//!
//! In one run it measures, with criterion:
//!
//! - `floor/shm/{spin,spin-futex,futex}/8B`: the raw ping-pong, polling
//!   forever, polling 20 µs then sleeping on a shared futex, or sleeping at
//!   once; `floor/shm/4copy/1MiB`: 1 MiB each way through shared buffers
//!   with four copies per round trip.
//! - `floor/memcpy/64MiB`: one copy between two private buffers.
//! - `ours/shm/frames/8B`: a frame sent and echoed back through
//!   `ShmTransport` alone (`FrameSink::send`, `FrameStream::recv`), without
//!   the engine, from a spawned task (where the engine's reader runs): what
//!   the transport costs above the raw floor.
//! - `ours/shm/echo/{8B,64KiB,1MiB,64MiB}` and
//!   `ours/tcp/echo/{8B,64KiB,1MiB,64MiB}`: `rpc.call::<Blob>("server",
//!   "echo", ..)` through the whole engine.
//!
//! Then a ratio report times single round trips with `Instant`, alternating
//! the cases in chunks so that machine noise hits all of them alike, and
//! prints p50/p99 and the ratios against the targets of issue 3, with the
//! idle mode:
//!
//! - shm 8 B p50 ≤ 2 µs, and ≥ 10× faster than our TCP;
//! - shm 1 MiB no slower than the 4-copy floor;
//! - shm 64 MiB bandwidth (2 × 64 MiB per round trip) ≥ 0.5× memcpy's.
//!
//! The client process is pinned to CPU 0 and the children to CPU 1
//! (`RPC_BENCH_NO_PIN=1` leaves placement to the scheduler).
//!
//! Environment: `RPC_BENCH_POLL=1` holds `/dev/cpu_dma_latency` at 0 so that
//! idle CPUs poll instead of halting (needs root); `RPC_BENCH_QUICK=1` makes
//! short runs. Under `--list`, `--profile-time` and in test mode the ratio
//! report is skipped. A filter that matches nothing (`-- ratio-only`) runs
//! the report alone.

#[path = "shm/floor.rs"]
mod floor;
#[path = "shm/report.rs"]
mod report;
#[path = "shm/server.rs"]
mod server;

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use criterion::{BenchmarkGroup, Criterion, Throughput, measurement::WallTime};
use rpc_core::Blob;

use crate::floor::Floor;
use crate::server::{Client, Server, Via};
use bench_support::{CpuMeter, env_flag, hold_poll_idle, wait_for_quiet};

/// The environment variable that gives a re-run of this binary its role.
const CHILD_ROLE: &str = "RPC_BENCH_CHILD";
/// The payload sizes of the echo cases.
const SIZES: [(&str, usize); 4] = [
    ("8B", 8),
    ("64KiB", 64 << 10),
    ("1MiB", 1 << 20),
    ("64MiB", 64 << 20),
];
/// The spin budget of the spin-then-futex floor, as in the reference.
const FLOOR_SPIN_NS: u64 = 20_000;

/// How long and how often to measure.
pub(crate) struct Settings {
    warm_up: Duration,
    measurement: Duration,
    samples: usize,
    /// Ratio report: rounds, each timing one chunk of each case.
    pub(crate) rounds: usize,
    /// Ratio report: 8 B round trips per case and round.
    pub(crate) chunk: usize,
    /// Ratio report: 1 MiB round trips per case and round.
    pub(crate) big_chunk: usize,
    /// Ratio report: 64 MiB round trips (and copies) in all.
    pub(crate) huge: usize,
    /// The longest to wait for other processes to go quiet.
    pub(crate) quiet_wait: Duration,
    /// Whether criterion measures (`--bench` without `--list` or
    /// `--profile-time`).
    measuring: bool,
}

impl Settings {
    fn from_env() -> Self {
        let measuring = bench_support::criterion_measuring();
        let wait = |secs| {
            if measuring {
                Duration::from_secs(secs)
            } else {
                Duration::ZERO
            }
        };
        if env_flag("RPC_BENCH_QUICK") {
            Self {
                warm_up: Duration::from_millis(200),
                measurement: Duration::from_millis(600),
                samples: 10,
                rounds: 4,
                chunk: 500,
                big_chunk: 20,
                huge: 4,
                quiet_wait: wait(2),
                measuring,
            }
        } else {
            Self {
                warm_up: Duration::from_secs(1),
                measurement: Duration::from_secs(3),
                samples: 20,
                rounds: 10,
                chunk: 2_000,
                big_chunk: 60,
                huge: 12,
                quiet_wait: wait(20),
                measuring,
            }
        }
    }
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>, s: &Settings, len: usize) {
    group
        .warm_up_time(s.warm_up)
        .measurement_time(s.measurement)
        .sample_size(if len >= 64 << 20 { 10 } else { s.samples });
}

/// Runs one criterion group once the machine is quiet, and reports how much
/// CPU other processes used meanwhile.
fn quietly(name: &str, s: &Settings, run: impl FnOnce()) {
    wait_for_quiet(s.quiet_wait);
    let meter = CpuMeter::start();
    run();
    eprintln!(
        "[{name}: other processes' CPU during the group: {:.0} %]",
        meter.background() * 100.0
    );
}

fn bench_floor(c: &mut Criterion, floor: &mut Floor, s: &Settings) {
    let mut group = c.benchmark_group("floor/shm");
    configure(&mut group, s, 8);
    for (name, spin) in [
        ("spin/8B", floor::SPIN_FOREVER),
        ("spin-futex/8B", FLOOR_SPIN_NS),
        ("futex/8B", 0),
    ] {
        floor.set_spin(spin);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    floor.rtt(8);
                }
                start.elapsed()
            })
        });
    }
    floor.set_spin(FLOOR_SPIN_NS);
    group.throughput(Throughput::BytesDecimal(2 * floor::BIG as u64));
    group.bench_function("4copy/1MiB", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                floor.rtt(floor::BIG);
            }
            start.elapsed()
        })
    });
    // Idle from now on: the child sleeps instead of polling.
    floor.set_spin(0);
    group.finish();
}

/// Two private 64 MiB buffers, touched, for the memcpy floor.
pub(crate) struct Copy {
    src: Vec<u8>,
    dst: Vec<u8>,
}

impl Copy {
    fn new() -> Self {
        Self {
            src: vec![0x5a; 64 << 20],
            dst: vec![0xa5; 64 << 20],
        }
    }

    /// One 64 MiB copy; the time it took.
    pub(crate) fn once(&mut self) -> Duration {
        let start = Instant::now();
        self.dst.copy_from_slice(black_box(&self.src));
        black_box(&self.dst);
        start.elapsed()
    }
}

fn bench_memcpy(c: &mut Criterion, copy: &mut Copy, s: &Settings) {
    let mut group = c.benchmark_group("floor/memcpy");
    configure(&mut group, s, 64 << 20);
    group.throughput(Throughput::BytesDecimal(64 << 20));
    group.bench_function("64MiB", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| copy.once()).sum())
    });
    group.finish();
}

fn bench_echo(c: &mut Criterion, client: &mut Client, via: Via, s: &Settings) {
    let name = if via == Via::Shm {
        "ours/shm/echo"
    } else {
        "ours/tcp/echo"
    };
    let mut group = c.benchmark_group(name);
    for (size, len) in SIZES {
        configure(&mut group, s, len);
        let blob = Blob::from(vec![0x5a; len]);
        if len > 8 {
            // Bytes moved both ways per round trip.
            group.throughput(Throughput::BytesDecimal(2 * len as u64));
        }
        group.bench_function(size, |b| {
            b.iter_custom(|iters| client.loop_for(via, &blob, iters))
        });
    }
    group.finish();
}

fn bench_frames(c: &mut Criterion, client: &mut Client, s: &Settings) {
    let mut group = c.benchmark_group("ours/shm/frames");
    configure(&mut group, s, 8);
    let blob = Blob::from(vec![0x5a; 8]);
    group.bench_function("8B", |b| {
        b.iter_custom(|iters| client.loop_for(Via::Frames, &blob, iters))
    });
    group.finish();
}

fn main() -> Result<()> {
    if let Ok(role) = std::env::var(CHILD_ROLE) {
        return match role.as_str() {
            floor::ROLE => floor::child_main(),
            server::ROLE => server::child_main(),
            other => bail!("unknown child role {other:?}"),
        };
    }
    let settings = Settings::from_env();
    // Kept open until the end of main: closing it gives the request back.
    let poll_guard = if env_flag("RPC_BENCH_POLL") {
        match hold_poll_idle() {
            Ok(file) => Some(file),
            Err(e) => {
                eprintln!("RPC_BENCH_POLL=1 but {e:#}; continuing in halt mode");
                None
            }
        }
    } else {
        None
    };
    let idle_mode = if poll_guard.is_some() {
        "poll"
    } else {
        "halt (VM default)"
    };
    // Before the children start, which pin themselves to the other CPU.
    let pinned = bench_support::pin_to(0);
    println!(
        "idle mode: {idle_mode}; {}",
        if pinned {
            "client on CPU 0, server and floor children on CPU 1"
        } else {
            "not pinned"
        }
    );

    let (mut floor, floor_child) = floor::start()?;
    let server = Server::start()?;
    let mut client = Client::connect(&server)?;
    let mut copy = Copy::new();

    let mut c = Criterion::default()
        .warm_up_time(settings.warm_up)
        .measurement_time(settings.measurement)
        .sample_size(settings.samples)
        .configure_from_args();
    quietly("floor/shm", &settings, || {
        bench_floor(&mut c, &mut floor, &settings)
    });
    quietly("floor/memcpy", &settings, || {
        bench_memcpy(&mut c, &mut copy, &settings)
    });
    quietly("ours/shm/frames", &settings, || {
        bench_frames(&mut c, &mut client, &settings)
    });
    quietly("ours/shm/echo", &settings, || {
        bench_echo(&mut c, &mut client, Via::Shm, &settings)
    });
    quietly("ours/tcp/echo", &settings, || {
        bench_echo(&mut c, &mut client, Via::Tcp, &settings)
    });
    c.final_summary();

    if settings.measuring {
        report::run(&mut client, &mut floor, &mut copy, &settings, idle_mode)?;
    }

    client.close();
    server.stop()?;
    floor.stop_child(floor_child)?;
    drop(poll_guard);
    Ok(())
}
