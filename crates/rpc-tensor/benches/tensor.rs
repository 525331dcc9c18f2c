//! Tensor benchmarks, in one run:
//!
//! - `memcpy/{1MiB,64MiB}`: `copy_from_slice` into a buffer allocated
//!   beforehand, the floor of any copy.
//! - `echo/{tcp,shm}/{1MiB,64MiB}`: an f32 tensor through
//!   `rpc.call::<Tensor>("server", "echo", ..)` and back, over loopback TCP
//!   and over shared memory (skipped, with a note, if the shared-memory
//!   transport cannot listen here).
//! - `batched/{unbatched,8,64}`: 64 concurrent callers of a small model
//!   (a fixed cost per handler run, as a kernel launch or an interpreter
//!   call has, plus a 256 × 16 matrix-vector product per row) over TCP,
//!   defined plainly, and with `define_batched` at batch sizes 8 and 64.
//!
//! Then a ratio report times each case again with `Instant` (median of a
//! few rounds) and prints the ratios: echo bandwidth (bytes moved both ways
//! over time) against memcpy bandwidth, and batched against unbatched
//! throughput with the per-call cost at each batch size. Targets: 64 MiB
//! over shared memory at least 0.5× memcpy; a per-call cost that falls as
//! the batch grows.
//!
//! The server runs on its own two-thread runtime, the client on the
//! benchmark's thread. `RPC_BENCH_QUICK=1` measures briefly. In test mode
//! (`cargo test --benches`), under `--list` or `--profile-time`, the ratio
//! report is skipped.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use criterion::{Criterion, Throughput};
use futures_util::future::join_all;
use rpc_core::{HandlerError, Rpc, Transport};
use rpc_tensor::{Batch, BatchConfig, Tensor, define_batched};
use rpc_transport_shm::ShmTransport;
use rpc_transport_tcp::TcpTransport;
use tokio::runtime::Runtime;

const MIB: usize = 1 << 20;
const SIZES: [(&str, usize); 2] = [("1MiB", MIB), ("64MiB", 64 * MIB)];
/// Concurrent callers of the batched model.
const CALLERS: usize = 64;
/// The model's input and output widths.
const IN: usize = 256;
const OUT: usize = 16;
/// The model's fixed cost per handler run.
const FIXED_COST: Duration = Duration::from_micros(200);

struct Settings {
    warm_up: Duration,
    measurement: Duration,
    samples: usize,
    report_rounds: usize,
    measuring: bool,
}

impl Settings {
    fn from_env() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let measuring = args.iter().any(|a| a == "--bench")
            && !args
                .iter()
                .any(|a| a == "--list" || a.starts_with("--profile-time"));
        let quick = std::env::var("RPC_BENCH_QUICK").is_ok_and(|v| v == "1");
        Self {
            warm_up: Duration::from_millis(if quick { 200 } else { 1000 }),
            measurement: Duration::from_millis(if quick { 800 } else { 4000 }),
            samples: 10,
            report_rounds: if quick { 5 } else { 15 },
            measuring,
        }
    }
}

/// The server side: an engine on its own runtime.
struct Server {
    _rt: Runtime,
    rpc: Rpc,
}

/// The two ends of one transport.
struct Link {
    name: &'static str,
    server: Server,
    client: Rpc,
}

fn server_runtime() -> Result<Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Starts a server defining `echo` and the models, and connects a client
/// living on `client_rt`.
fn link(
    name: &'static str,
    client_rt: &Runtime,
    transport: impl Fn() -> Box<dyn Transport>,
    at: &str,
) -> Result<Link> {
    let rt = server_runtime()?;
    let (rpc, addr) = rt.block_on(async {
        let rpc = Rpc::new();
        rpc.set_name("server")?;
        rpc.add_transport_arc(transport().into());
        rpc.define("echo", |t: Tensor| async move { Ok(t) })?;
        rpc.define("model", |x: Tensor| async move { model(&x) })?;
        for max in [8, 64] {
            define_batched(
                &rpc,
                &format!("model/{max}"),
                BatchConfig::new(max, Duration::from_millis(1)),
                |batch: Batch<Tensor>| async move { model(&batch.into_args()) },
            )?;
        }
        let addr = rpc.listen(at).await?;
        Ok::<_, anyhow::Error>((rpc, addr))
    })?;
    let client = client_rt.block_on(async {
        let client = Rpc::new();
        client.add_transport_arc(transport().into());
        client.set_timeout(Duration::from_secs(120));
        client
            .connect(addr.as_str())?
            .established(Duration::from_secs(30))
            .await?;
        Ok::<_, anyhow::Error>(client)
    })?;
    Ok(Link {
        name,
        server: Server { _rt: rt, rpc },
        client,
    })
}

/// The model: a fixed cost, then each row of `x` ([rows, IN]) times a
/// fixed IN × OUT matrix.
fn model(x: &Tensor) -> Result<Tensor, HandlerError> {
    let start = Instant::now();
    while start.elapsed() < FIXED_COST {
        std::hint::spin_loop();
    }
    let input = x.as_slice::<f32>()?;
    let mut out: Vec<f32> = Vec::with_capacity(input.len() / IN * OUT);
    for row in input.chunks_exact(IN) {
        for j in 0..OUT {
            out.push(
                row.iter()
                    .enumerate()
                    .map(|(k, v)| v * ((k * OUT + j) % 7) as f32)
                    .sum(),
            );
        }
    }
    Ok(Tensor::from_slice(&[out.len() / OUT, OUT], &out)?)
}

fn tensor(bytes: usize) -> Tensor {
    let n = bytes / 4;
    let values: Vec<f32> = (0..n).map(|i| i as f32).collect();
    Tensor::from_slice(&[n], &values).expect("a valid shape")
}

/// One echo round trip.
async fn echo(client: &Rpc, t: &Tensor) -> Result<()> {
    let back: Tensor = client.call("server", "echo", t).await?;
    anyhow::ensure!(back.nbytes() == t.nbytes(), "echo lost bytes");
    black_box(back);
    Ok(())
}

/// 64 concurrent calls of `function`, one row each.
async fn model_calls(client: &Rpc, function: &str, rows: &[Tensor]) -> Result<()> {
    let calls = rows
        .iter()
        .map(|x| client.call::<Tensor>("server", function, x));
    for answer in join_all(calls).await {
        black_box(answer?);
    }
    Ok(())
}

fn memcpy(src: &[u8], dst: &mut [u8]) {
    dst.copy_from_slice(black_box(src));
    black_box(dst);
}

/// The median of `rounds` timings of `f`.
fn median(rounds: usize, mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    f()?;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn gib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / f64::from(1u32 << 30)
}

fn main() -> Result<()> {
    let settings = Settings::from_env();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut links = vec![link(
        "tcp",
        &client_rt,
        || Box::new(TcpTransport::new()),
        "tcp://127.0.0.1:0",
    )?];
    match link(
        "shm",
        &client_rt,
        || Box::new(ShmTransport::new()),
        "shm://0",
    ) {
        Ok(l) => links.push(l),
        Err(e) => {
            println!("shm cases skipped: the shared-memory transport is unusable here: {e:#}")
        }
    }
    let rows: Vec<Tensor> = (0..CALLERS)
        .map(|i| Tensor::from_slice(&[1, IN], &vec![i as f32; IN]).expect("a valid shape"))
        .collect();

    let mut c = Criterion::default()
        .warm_up_time(settings.warm_up)
        .measurement_time(settings.measurement)
        .sample_size(settings.samples)
        .configure_from_args();

    {
        let mut g = c.benchmark_group("memcpy");
        for (label, bytes) in SIZES {
            let src = vec![1u8; bytes];
            let mut dst = vec![0u8; bytes];
            g.throughput(Throughput::Bytes(bytes as u64));
            g.bench_function(label, |b| b.iter(|| memcpy(&src, &mut dst)));
        }
        g.finish();
    }
    for l in &links {
        let mut g = c.benchmark_group(format!("echo/{}", l.name));
        for (label, bytes) in SIZES {
            let t = tensor(bytes);
            // Both ways: the request and the answer each carry the tensor.
            g.throughput(Throughput::Bytes(2 * bytes as u64));
            g.bench_function(label, |b| {
                b.iter(|| client_rt.block_on(echo(&l.client, &t)).expect("echo"))
            });
        }
        g.finish();
    }
    {
        let tcp = &links[0];
        let mut g = c.benchmark_group("batched");
        g.throughput(Throughput::Elements(CALLERS as u64));
        for (label, function) in [("unbatched", "model"), ("8", "model/8"), ("64", "model/64")] {
            g.bench_function(label, |b| {
                b.iter(|| {
                    client_rt
                        .block_on(model_calls(&tcp.client, function, &rows))
                        .expect("model calls")
                })
            });
        }
        g.finish();
    }
    c.final_summary();

    if settings.measuring {
        report(&settings, &client_rt, &links, &rows)?;
    }
    for l in links {
        l.server.rpc.shutdown();
        l.client.shutdown();
    }
    Ok(())
}

/// Times every case again and prints the ratios.
fn report(s: &Settings, rt: &Runtime, links: &[Link], rows: &[Tensor]) -> Result<()> {
    println!(
        "\n== ratio report (median of {} rounds) ==",
        s.report_rounds
    );
    for (label, bytes) in SIZES {
        let src = vec![1u8; bytes];
        let mut dst = vec![0u8; bytes];
        let copy = median(s.report_rounds, || {
            memcpy(&src, &mut dst);
            Ok(())
        })?;
        println!(
            "memcpy {label:>6}: {:>9.3?}  {:>6.2} GiB/s",
            copy,
            gib_per_s(bytes, copy)
        );
        let t = tensor(bytes);
        for l in links {
            let realigned = rpc_tensor::realigned_bytes();
            let round_trip = median(s.report_rounds, || rt.block_on(echo(&l.client, &t)))
                .with_context(|| format!("echo over {}", l.name))?;
            // An echo moves the tensor twice; compare one transfer's time
            // with one memcpy of the same size.
            let one_way = round_trip / 2;
            println!(
                "echo   {label:>6} over {}: {:>9.3?} round trip, {:>6.2} GiB/s one way, {:.2}x memcpy",
                l.name,
                round_trip,
                gib_per_s(bytes, one_way),
                copy.as_secs_f64() / one_way.as_secs_f64()
            );
            println!(
                "       {label:>6} over {}: {} bytes copied to realign on receipt",
                l.name,
                rpc_tensor::realigned_bytes() - realigned
            );
        }
    }
    let tcp = &links[0];
    let time = |function: &str| {
        median(s.report_rounds, || {
            rt.block_on(model_calls(&tcp.client, function, rows))
        })
    };
    let unbatched = time("model")?;
    let per_call = |d: Duration| d / CALLERS as u32;
    println!(
        "model, {CALLERS} concurrent callers over tcp: unbatched {:>9.3?} ({:?} per call)",
        unbatched,
        per_call(unbatched)
    );
    for max in [8, 64] {
        let batched = time(&format!("model/{max}"))?;
        println!(
            "  batch size {max:>2}: {:>9.3?} ({:?} per call), {:.2}x the unbatched throughput",
            batched,
            per_call(batched),
            unbatched.as_secs_f64() / batched.as_secs_f64()
        );
    }
    Ok(())
}
