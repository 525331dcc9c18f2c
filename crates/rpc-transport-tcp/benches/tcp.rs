//! Loopback benchmarks of the TCP transport: our whole `Rpc` stack against a
//! raw tokio `TcpStream` ping-pong, the floor any TCP RPC on tokio stands on.
//!
//! The server and the client each run on their own OS thread with their own
//! tokio `current_thread` runtime: the server on a spawned thread, the client
//! on the benchmark's main thread. This mirrors two processes talking over
//! loopback, which is how the reference floors in
//! `shared/reference/rust-peers.md` ("1. Measured here") were measured, and
//! it keeps the two sides from fighting over one scheduler on a 2-vCPU
//! machine.
//!
//! In one run it measures, with criterion:
//!
//! - `floor/tcp-tokio/8B`: the client writes 8 bytes and the server echoes
//!   them (`read_exact`/`write_all`, `TCP_NODELAY` on both sides).
//! - `ours/tcp/echo/{8B,64KiB,1MiB}`: `rpc.call::<Blob>("server", "echo", ..)`
//!   round trips through the whole engine. An 8 B blob is encoded inline in
//!   the body; the larger ones travel as attachments.
//! - `ours/tcp/inflight/{1,16,256}`: 8 B echo calls with that many kept in
//!   flight on one connection, reported as calls per second.
//!
//! Every sample enters the client runtime once (`iter_custom` with the loop
//! inside one `block_on`), for the floor and for ours alike.
//!
//! Then, in the same process, a ratio report times single 8 B round trips
//! of the floor and of ours with `Instant`, alternating the two in chunks so
//! that machine noise hits both equally, and prints their p50 and p99 and
//! the ratio ours/floor. Ours runs with the default `TcpConfig` (receivers
//! poll the socket for up to 50 µs before they sleep); the report also
//! times `ours/tcp-nospin`, which never polls, like the floor.
//!
//! Other jobs may share the machine: each criterion group and the ratio
//! report first wait (a while) for other processes to use under 10 % of the
//! CPUs, the report is repeated (up to three times in all) when they used
//! more while it ran, and what they used is printed alongside.
//!
//! Environment:
//!
//! - `RPC_BENCH_POLL=1`: hold `/dev/cpu_dma_latency` at 0 for the run, so
//!   idle CPUs poll instead of halting (needs root). On a VM whose idle vCPUs
//!   halt, every wake-up otherwise costs a VM exit and entry (~30 µs here).
//! - `RPC_BENCH_QUICK=1`: short measurement times and few samples, for
//!   smoke runs.
//!
//! A criterion filter that matches nothing (`cargo bench --bench tcp --
//! ratio-only`) skips the criterion groups and runs the ratio report only.
//! Under criterion's `--profile-time` (for `perf`), `--list`, and in test
//! mode (`cargo test --benches`) the ratio report is skipped.

use std::hint::black_box;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bench_support::{CpuMeter, QUIET, env_flag, hold_poll_idle, percentiles, wait_for_quiet};
use criterion::{BenchmarkGroup, Criterion, Throughput, measurement::WallTime};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rpc_core::{Blob, Rpc};
use rpc_transport_tcp::{TcpConfig, TcpTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// The name the server registers under.
const SERVER: &str = "server";
/// The echo function's name.
const ECHO: &str = "echo";
/// The payload size of the small round trips.
const SMALL: usize = 8;

/// How long and how often to measure.
struct Settings {
    warm_up: Duration,
    measurement: Duration,
    samples: usize,
    /// Ratio report: round trips of each case before timing.
    ratio_warm_up: usize,
    /// Ratio report: rounds, each timing one chunk of each case.
    ratio_rounds: usize,
    /// Ratio report: round trips per case and round.
    ratio_chunk: usize,
    /// The longest to wait for other processes to go quiet before a group.
    quiet_wait: Duration,
    /// Whether criterion measures (`--bench` without `--list` or
    /// `--profile-time`); otherwise the ratio report and the waits for a
    /// quiet machine are skipped.
    measuring: bool,
}

impl Settings {
    fn from_env() -> Self {
        let measuring = bench_support::criterion_measuring();
        let quiet_wait = |secs| {
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
                ratio_warm_up: 500,
                ratio_rounds: 4,
                ratio_chunk: 500,
                quiet_wait: quiet_wait(2),
                measuring,
            }
        } else {
            Self {
                warm_up: Duration::from_secs(1),
                measurement: Duration::from_secs(3),
                samples: 30,
                ratio_warm_up: 2_000,
                ratio_rounds: 10,
                ratio_chunk: 2_000,
                quiet_wait: quiet_wait(20),
                measuring,
            }
        }
    }
}

/// The server thread: an `Rpc` serving `echo` and a raw 8-byte echo
/// listener, on one `current_thread` runtime.
struct Server {
    rpc_addr: String,
    nospin_addr: String,
    raw_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Server {
    fn start() -> Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-server".into())
            .spawn(move || -> Result<()> {
                let rt = current_thread_runtime()?;
                rt.block_on(async move {
                    let rpc = Rpc::new();
                    rpc.set_name(SERVER)?;
                    rpc.add_transport(TcpTransport::default());
                    rpc.define(ECHO, |b: Blob| async move { Ok(b) })?;
                    let rpc_addr = rpc.listen("tcp://127.0.0.1:0").await?;
                    // The same service over a transport that never polls
                    // before it sleeps (`TcpConfig::spin` zero).
                    let nospin = Rpc::new();
                    nospin.set_name(SERVER)?;
                    nospin.add_transport(nospin_transport());
                    nospin.define(ECHO, |b: Blob| async move { Ok(b) })?;
                    let nospin_addr = nospin.listen("tcp://127.0.0.1:0").await?;
                    let raw = TcpListener::bind("127.0.0.1:0").await?;
                    let raw_addr = raw.local_addr()?;
                    tokio::spawn(raw_echo_server(raw));
                    ready_tx
                        .send((rpc_addr.to_string(), nospin_addr.to_string(), raw_addr))
                        .context("the bench's main thread went away")?;
                    // Either a stop message or the main thread dropping the
                    // sender ends the server.
                    let _ = stop_rx.await;
                    rpc.shutdown();
                    nospin.shutdown();
                    rpc.wait_for_shutdown().await;
                    nospin.wait_for_shutdown().await;
                    Ok(())
                })
            })
            .context("spawning the server thread")?;
        match ready_rx.recv() {
            Ok((rpc_addr, nospin_addr, raw_addr)) => Ok(Self {
                rpc_addr,
                nospin_addr,
                raw_addr,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            // The thread ended before it was ready: its result says why.
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e.context("starting the server")),
                Ok(Ok(())) => bail!("the server thread ended before it was ready"),
                Err(_) => bail!("the server thread panicked"),
            },
        }
    }

    fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => bail!("the server thread panicked"),
            None => Ok(()),
        }
    }
}

fn current_thread_runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a current_thread runtime")
}

/// Echoes 8-byte messages on every accepted connection.
async fn raw_echo_server(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            if stream.set_nodelay(true).is_err() {
                return;
            }
            let mut buf = [0u8; SMALL];
            // The client closing its end (an error here) ends the loop.
            while stream.read_exact(&mut buf).await.is_ok() {
                if stream.write_all(&buf).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The client side: its runtime (driven on this thread), a connected `Rpc`
/// and a raw stream to the raw echo server.
struct Client {
    rt: Runtime,
    rpc: Rpc,
    /// Connected to the server's endpoint that never polls, not polling
    /// either.
    nospin: Rpc,
    raw: TcpStream,
}

/// The variant that never polls before it sleeps (the default polls for
/// `TcpConfig::spin`, 50 µs).
fn nospin_transport() -> TcpTransport {
    TcpTransport::with_config(TcpConfig::default().with_spin(Duration::ZERO))
}

impl Client {
    fn connect(server: &Server) -> Result<Self> {
        let rt = current_thread_runtime()?;
        let (rpc, nospin, raw) = rt.block_on(async {
            // Created inside the runtime, so the engine runs on it.
            let rpc = Rpc::new();
            rpc.add_transport(TcpTransport::default());
            let peer = rpc
                .connect(&server.rpc_addr)?
                .established(Duration::from_secs(30))
                .await?;
            anyhow::ensure!(peer == SERVER, "connected to {peer:?}, not {SERVER:?}");
            let nospin = Rpc::new();
            nospin.add_transport(nospin_transport());
            nospin
                .connect(&server.nospin_addr)?
                .established(Duration::from_secs(30))
                .await?;
            let raw = TcpStream::connect(server.raw_addr).await?;
            raw.set_nodelay(true)?;
            Ok((rpc, nospin, raw))
        })?;
        let (rpc, nospin, raw) = (rpc, nospin, raw);
        let mut client = Self {
            rt,
            rpc,
            nospin,
            raw,
        };
        // One of each before anything is timed: the method name travels by
        // name only on a connection's first call.
        client.rt.block_on(async {
            raw_rtt(&mut client.raw, &mut [0; SMALL]).await?;
            echo(&client.nospin, &Blob::from(vec![0; SMALL])).await?;
            echo(&client.rpc, &Blob::from(vec![0; SMALL])).await
        })?;
        Ok(client)
    }

    fn close(self) {
        let Self {
            rt,
            rpc,
            nospin,
            raw,
        } = self;
        drop(raw);
        rt.block_on(async {
            nospin.shutdown();
            rpc.shutdown();
            // Bounded, so that a stuck connection cannot hang the bench.
            let _ = tokio::time::timeout(Duration::from_secs(5), rpc.wait_for_shutdown()).await;
        });
    }

    /// `iters` raw round trips; the time they took.
    fn floor_loop(&mut self, iters: u64) -> Duration {
        let Self { rt, raw, .. } = self;
        rt.block_on(async {
            let mut buf = [7u8; SMALL];
            let start = Instant::now();
            for _ in 0..iters {
                must(raw_rtt(raw, &mut buf).await);
            }
            start.elapsed()
        })
    }

    /// `iters` echo calls, one at a time; the time they took.
    fn echo_loop(&mut self, blob: &Blob, iters: u64) -> Duration {
        let Self { rt, rpc, .. } = self;
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(must(echo(rpc, blob).await));
            }
            start.elapsed()
        })
    }

    /// `iters` echo calls, `window` of them in flight at a time; the time
    /// they took.
    fn inflight_loop(&mut self, blob: &Blob, window: u64, iters: u64) -> Duration {
        let Self { rt, rpc, .. } = self;
        rt.block_on(async {
            let start = Instant::now();
            let mut calls = FuturesUnordered::new();
            let mut started = 0;
            while started < iters.min(window) {
                calls.push(rpc.call::<Blob>(SERVER, ECHO, blob));
                started += 1;
            }
            while let Some(answer) = calls.next().await {
                black_box(must(answer.map_err(anyhow::Error::from)));
                if started < iters {
                    calls.push(rpc.call::<Blob>(SERVER, ECHO, blob));
                    started += 1;
                }
            }
            start.elapsed()
        })
    }

    /// Times `n` single raw round trips into `out`, in nanoseconds.
    fn floor_samples(&mut self, n: usize, out: &mut Vec<u64>) -> Result<()> {
        let Self { rt, raw, .. } = self;
        rt.block_on(async {
            let mut buf = [7u8; SMALL];
            for _ in 0..n {
                let start = Instant::now();
                raw_rtt(raw, &mut buf).await?;
                out.push(nanos(start.elapsed()));
            }
            Ok(())
        })
    }

    /// Times `n` single 8 B echo calls into `out`, in nanoseconds, over the
    /// endpoint that never polls if `nospin`.
    fn echo_samples(
        &mut self,
        blob: &Blob,
        n: usize,
        nospin: bool,
        out: &mut Vec<u64>,
    ) -> Result<()> {
        let Self {
            rt,
            rpc,
            nospin: nospin_rpc,
            ..
        } = self;
        let rpc = if nospin { nospin_rpc } else { rpc };
        rt.block_on(async {
            for _ in 0..n {
                let start = Instant::now();
                black_box(echo(rpc, blob).await?);
                out.push(nanos(start.elapsed()));
            }
            Ok(())
        })
    }
}

/// One raw round trip: 8 bytes out, 8 bytes back.
async fn raw_rtt(stream: &mut TcpStream, buf: &mut [u8; SMALL]) -> Result<()> {
    stream.write_all(buf).await?;
    stream.read_exact(buf).await?;
    Ok(())
}

/// One echo call through the whole stack, checking the answer's length.
async fn echo(rpc: &Rpc, blob: &Blob) -> Result<Blob> {
    let back: Blob = rpc.call(SERVER, ECHO, blob).await?;
    anyhow::ensure!(
        back.len() == blob.len(),
        "echo returned {} bytes for {}",
        back.len(),
        blob.len()
    );
    Ok(back)
}

/// Criterion's routines cannot return errors; a failed round trip ends the
/// bench with its cause.
fn must<T>(result: Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("round trip failed: {e:#}"))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>, s: &Settings) {
    group
        .warm_up_time(s.warm_up)
        .measurement_time(s.measurement)
        .sample_size(s.samples);
}

fn bench_floor(c: &mut Criterion, client: &mut Client, s: &Settings) {
    let mut group = c.benchmark_group("floor/tcp-tokio");
    configure(&mut group, s);
    group.bench_function("8B", |b| b.iter_custom(|iters| client.floor_loop(iters)));
    group.finish();
}

fn bench_echo(c: &mut Criterion, client: &mut Client, s: &Settings) {
    let mut group = c.benchmark_group("ours/tcp/echo");
    configure(&mut group, s);
    for (name, len) in [("8B", SMALL), ("64KiB", 64 << 10), ("1MiB", 1 << 20)] {
        let blob = Blob::from(vec![0x5a; len]);
        if len > SMALL {
            // Bytes moved both ways per round trip, as in the reference
            // table's "2 × 1 MiB / RTT".
            group.throughput(Throughput::BytesDecimal(2 * len as u64));
        }
        group.bench_function(name, |b| {
            b.iter_custom(|iters| client.echo_loop(&blob, iters))
        });
    }
    group.finish();
}

fn bench_inflight(c: &mut Criterion, client: &mut Client, s: &Settings) {
    let mut group = c.benchmark_group("ours/tcp/inflight");
    configure(&mut group, s);
    // One element is one call, so criterion prints calls per second.
    group.throughput(Throughput::Elements(1));
    let blob = Blob::from(vec![0x5a; SMALL]);
    for window in [1u64, 16, 256] {
        group.bench_function(window.to_string(), |b| {
            b.iter_custom(|iters| client.inflight_loop(&blob, window, iters));
        });
    }
    group.finish();
}

/// Times single 8 B round trips of the floor and of ours, alternating in
/// chunks (ABBA order, so neither always goes first), and prints the table
/// and the ratios. A measurement during which other processes used more
/// than [`QUIET`] of the machine is repeated, up to three times in all.
fn ratio_report(client: &mut Client, s: &Settings, idle_mode: &str) -> Result<()> {
    let blob = Blob::from(vec![0x5a; SMALL]);
    let timed = s.ratio_rounds * s.ratio_chunk;
    let (mut floor, mut ours, mut slept) = (
        Vec::with_capacity(timed),
        Vec::with_capacity(timed),
        Vec::with_capacity(timed),
    );
    let mut background = 0.0;
    for attempt in 1..=3 {
        wait_for_quiet(s.quiet_wait);
        floor.clear();
        ours.clear();
        slept.clear();
        let meter = CpuMeter::start();
        client.floor_samples(s.ratio_warm_up, &mut Vec::new())?;
        client.echo_samples(&blob, s.ratio_warm_up, false, &mut Vec::new())?;
        client.echo_samples(&blob, s.ratio_warm_up, true, &mut Vec::new())?;
        for round in 0..s.ratio_rounds {
            if round % 2 == 0 {
                client.floor_samples(s.ratio_chunk, &mut floor)?;
                client.echo_samples(&blob, s.ratio_chunk, false, &mut ours)?;
                client.echo_samples(&blob, s.ratio_chunk, true, &mut slept)?;
            } else {
                client.echo_samples(&blob, s.ratio_chunk, true, &mut slept)?;
                client.echo_samples(&blob, s.ratio_chunk, false, &mut ours)?;
                client.floor_samples(s.ratio_chunk, &mut floor)?;
            }
        }
        background = meter.background();
        if background <= QUIET {
            break;
        }
        eprintln!(
            "ratio report attempt {attempt}: other processes used {:.0} % of the CPUs",
            background * 100.0
        );
    }
    let p = |samples: &mut Vec<u64>| percentiles(samples).unwrap_or((f64::NAN, f64::NAN));
    let (floor_p50, floor_p99) = p(&mut floor);
    let (ours_p50, ours_p99) = p(&mut ours);
    let (slept_p50, slept_p99) = p(&mut slept);

    println!();
    println!("## 8 B round trip, ours vs floor (idle mode: {idle_mode})");
    println!();
    println!("| case | p50 µs | p99 µs | samples |");
    println!("|---|---:|---:|---:|");
    println!(
        "| floor/tcp-tokio/8B | {floor_p50:.1} | {floor_p99:.1} | {} |",
        floor.len()
    );
    println!(
        "| ours/tcp/echo/8B | {ours_p50:.1} | {ours_p99:.1} | {} |",
        ours.len()
    );
    println!(
        "| ours/tcp-nospin/echo/8B | {slept_p50:.1} | {slept_p99:.1} | {} |",
        slept.len()
    );
    println!();
    println!(
        "ratio ours/floor p50 = {:.2} (target <= 1.15)",
        ours_p50 / floor_p50
    );
    println!(
        "ratio ours-nospin/floor p50 = {:.2}, p99 = {:.2} (TcpConfig::spin = 0 on both sides)",
        slept_p50 / floor_p50,
        slept_p99 / floor_p99
    );
    println!(
        "ratio ours/floor p99 = {:.2} (target <= 1.15)",
        ours_p99 / floor_p99
    );
    println!(
        "other processes' CPU during the report: {:.0} %",
        background * 100.0
    );
    Ok(())
}

/// Runs one criterion group once the machine is quiet, and reports how much
/// CPU other processes used meanwhile.
fn quietly(name: &str, s: &Settings, run: impl FnOnce()) {
    wait_for_quiet(s.quiet_wait);
    let meter = CpuMeter::start();
    run();
    if s.measuring {
        eprintln!(
            "[{name}: other processes' CPU during the group: {:.0} %]",
            meter.background() * 100.0
        );
    }
}

fn main() -> Result<()> {
    let settings = Settings::from_env();
    // Kept open until the end of main: closing it gives the latency
    // request back.
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
    println!("idle mode: {idle_mode}");

    let server = Server::start()?;
    let mut client = Client::connect(&server)?;

    let mut c = Criterion::default()
        .warm_up_time(settings.warm_up)
        .measurement_time(settings.measurement)
        .sample_size(settings.samples)
        .configure_from_args();
    quietly("floor/tcp-tokio", &settings, || {
        bench_floor(&mut c, &mut client, &settings);
    });
    quietly("ours/tcp/echo", &settings, || {
        bench_echo(&mut c, &mut client, &settings);
    });
    quietly("ours/tcp/inflight", &settings, || {
        bench_inflight(&mut c, &mut client, &settings);
    });
    c.final_summary();

    if settings.measuring {
        ratio_report(&mut client, &settings, idle_mode)?;
    }

    client.close();
    server.stop()?;
    drop(poll_guard);
    Ok(())
}
