//! Round trips over shared memory between two processes, for profiling:
//! either 8 B echo calls through the whole engine, or 8 B frames echoed by
//! the transport alone.
//!
//! ```text
//! cargo build --release -p rpc-transport-shm --example shm_loop
//! target/release/examples/shm_loop rpc 200000      # the whole stack
//! target/release/examples/shm_loop rpc-task 200000 # the same, from a spawned task
//! target/release/examples/shm_loop frames 200000   # the transport alone
//! target/release/examples/shm_loop frames-spin 200000 # the same, the client spinning on try_recv
//! target/release/examples/shm_loop cpu              # the transport's CPU cost, one thread
//! target/release/examples/shm_loop inflight 500000 # 64 calls in flight
//! target/release/examples/shm_loop blocking 200000 # call_blocking from a plain thread
//! perf record -a -g target/release/examples/shm_loop rpc 1000000
//! strace -f -c target/release/examples/shm_loop rpc 100000
//! ```
//!
//! The server is this program re-run with `SHM_LOOP_SERVE` set; it prints
//! its address and serves until its stdin closes. Both sides run on tokio
//! `current_thread` runtimes, with the default [`ShmConfig`]
//! (rpc_transport_shm::ShmConfig); the client is pinned to CPU 0 and the
//! server to CPU 1. Prints the p50 and mean round trip, and the client's
//! transport counters.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rpc_core::transport::{Address, ConnOptions, Transport};
use rpc_core::wire::{Frame, FrameKind};
use rpc_core::{Blob, Rpc};
use rpc_transport_shm::ShmTransport;

const SERVE: &str = "SHM_LOOP_SERVE";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current_thread runtime")
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("cpu") {
        cpu();
        return;
    }
    if std::env::var_os(SERVE).is_some() {
        serve();
        return;
    }
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "rpc".to_owned());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .env(SERVE, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("the server's addresses");
    let mut addrs = line.split_whitespace();
    let (rpc_addr, raw_addr) = (
        addrs.next().expect("an engine address").to_owned(),
        addrs.next().expect("a raw address").to_owned(),
    );
    pin(0);
    let rt = runtime();
    let transport = ShmTransport::default();
    let mut samples = match mode.as_str() {
        "frames" => rt.block_on(frames(&transport, &raw_addr, n, false)),
        "frames-spin" => rt.block_on(frames(&transport, &raw_addr, n, true)),
        // The same calls from a spawned task rather than from `block_on`:
        // a current-thread runtime hands over to a `block_on` future only
        // after polling its drivers (a system call), to a task at once.
        "rpc-task" => {
            let (t, addr) = (transport.clone(), rpc_addr.clone());
            rt.block_on(async move { tokio::spawn(async move { calls(&t, &addr, n).await }).await })
                .expect("the calling task")
        }
        "inflight" => rt.block_on(inflight(&transport, &rpc_addr, n)),
        "blocking" => blocking(&transport, &rpc_addr, n),
        _ => rt.block_on(calls(&transport, &rpc_addr, n)),
    };
    drop(child.stdin.take());
    let _ = child.wait();
    samples.sort_unstable();
    let mean = samples.iter().sum::<u64>() / samples.len().max(1) as u64;
    println!(
        "{mode}: {n} round trips, p50 {} ns, mean {mean} ns",
        samples[samples.len() / 2]
    );
    println!("client transport: {:?}", transport.stats());
}

/// A client engine connected to the server at `addr`.
async fn client(transport: &ShmTransport, addr: &str) -> Rpc {
    let rpc = Rpc::new();
    rpc.add_transport(transport.clone());
    rpc.connect(addr)
        .expect("a valid address")
        .established(Duration::from_secs(10))
        .await
        .expect("connected");
    rpc
}

async fn calls(transport: &ShmTransport, addr: &str, n: usize) -> Vec<u64> {
    let rpc = client(transport, addr).await;
    let blob = Blob::from(vec![7u8; 8]);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let back: Blob = rpc.call("server", "echo", &blob).await.expect("echo");
        assert_eq!(back.len(), 8);
        out.push(start.elapsed().as_nanos() as u64);
    }
    report_in_place(&rpc, n);
    out
}

/// `call_blocking` from this thread, the engine running on a runtime
/// thread of its own (also pinned to CPU 0).
fn blocking(transport: &ShmTransport, addr: &str, n: usize) -> Vec<u64> {
    let engine_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let rpc = engine_rt.block_on(client(transport, addr));
    let blob = Blob::from(vec![7u8; 8]);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let back: Blob = rpc.call_blocking("server", "echo", &blob).expect("echo");
        assert_eq!(back.len(), 8);
        out.push(start.elapsed().as_nanos() as u64);
    }
    report_in_place(&rpc, n);
    out
}

/// Prints how many answers the caller received in place.
fn report_in_place(rpc: &Rpc, n: usize) {
    let in_place: u64 = rpc
        .debug_info()
        .peers
        .iter()
        .flat_map(|p| &p.connections)
        .map(|c| c.answered_in_place)
        .sum();
    println!("answers received in place by the caller: {in_place} of {n}");
}

/// `n` calls with 64 in flight, from `block_on`; one sample: the mean
/// time per call.
async fn inflight(transport: &ShmTransport, addr: &str, n: usize) -> Vec<u64> {
    use futures_util::StreamExt as _;
    let rpc = client(transport, addr).await;
    let blob = Blob::from(vec![7u8; 8]);
    let call = || {
        let (rpc, blob) = (&rpc, &blob);
        async move {
            let back: Blob = rpc.call("server", "echo", blob).await.expect("echo");
            assert_eq!(back.len(), 8);
        }
    };
    let start = Instant::now();
    let mut window = futures_util::stream::FuturesUnordered::new();
    let mut started = 0;
    while started < n.min(64) {
        window.push(call());
        started += 1;
    }
    while window.next().await.is_some() {
        if started < n {
            window.push(call());
            started += 1;
        }
    }
    let per_call = start.elapsed().as_nanos() as u64 / n.max(1) as u64;
    report_in_place(&rpc, n);
    println!("inflight: {:.1} k calls/s", 1e6 / per_call.max(1) as f64);
    vec![per_call]
}

async fn frames(transport: &ShmTransport, addr: &str, n: usize, spin: bool) -> Vec<u64> {
    let conn = transport
        .connect(
            &Address::parse(addr).expect("an address"),
            &ConnOptions::default(),
        )
        .await
        .expect("connected");
    let (mut tx, mut rx) = conn.split();
    let mut out = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let mut frame = Frame::new(FrameKind::Response, i);
        frame.body = bytes::Bytes::from_static(&[7u8; 8]);
        let start = Instant::now();
        let back = if spin {
            assert!(tx.try_feed(frame).expect("feed").is_none());
            assert!(tx.try_flush().expect("flush"));
            loop {
                if let Some(f) = rx.try_recv() {
                    break f.expect("recv").expect("a frame");
                }
                std::hint::spin_loop();
            }
        } else {
            tx.send(frame).await.expect("send");
            rx.recv().await.expect("recv").expect("a frame")
        };
        assert_eq!(back.request_id, i);
        out.push(start.elapsed().as_nanos() as u64);
    }
    out
}

/// The transport's CPU cost alone: both ends of one connection in this
/// thread, each 8 B frame sent and received at once (no waiting, no
/// cache line crossing CPUs). Three rounds of 10⁶ echoes.
fn cpu() {
    pin(0);
    runtime().block_on(async {
        let t = ShmTransport::default();
        let opts = ConnOptions::default();
        let mut listener = t
            .listen(&Address::parse("shm://0").expect("an address"), &opts)
            .await
            .expect("listen");
        let addr = listener.local_addr().clone();
        let (client, server) = tokio::join!(t.connect(&addr, &opts), listener.accept());
        let (mut ctx, mut crx) = client.expect("connected").split();
        let (mut stx, mut srx) = server.expect("accepted").split();
        let n = 1_000_000u64;
        let now = |rx: &mut Box<dyn rpc_core::transport::FrameStream>| {
            rx.try_recv()
                .expect("written at once")
                .expect("a frame")
                .expect("open")
        };
        for round in 0..3 {
            let start = Instant::now();
            for i in 0..n {
                let mut frame = Frame::new(FrameKind::Response, i);
                frame.body = bytes::Bytes::from_static(&[7u8; 8]);
                assert!(ctx.try_feed(frame).expect("feed").is_none());
                assert!(ctx.try_flush().expect("flush"));
                let f = now(&mut srx);
                assert!(stx.try_feed(f).expect("feed").is_none());
                assert!(stx.try_flush().expect("flush"));
                assert_eq!(now(&mut crx).request_id, i);
            }
            let per_frame = start.elapsed().as_nanos() as u64 / (2 * n);
            println!("cpu round {round}: {per_frame} ns per frame (sent and received)");
        }
    });
}

/// Pins this thread to `cpu`, if the machine lets us (client on CPU 0,
/// server on CPU 1, as in the benchmarks).
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the calls only read
    // it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn serve() {
    pin(1);
    runtime().block_on(async {
        let rpc = Rpc::new();
        rpc.set_name("server").expect("a fresh name");
        rpc.add_transport(ShmTransport::default());
        rpc.define("echo", |b: Blob| async move {
            Ok::<_, rpc_core::HandlerError>(b)
        })
        .expect("defined once");
        let addr = rpc.listen("shm://0").await.expect("listen");
        let raw = ShmTransport::default()
            .listen(
                &Address::parse("shm://0").expect("an address"),
                &ConnOptions::default(),
            )
            .await
            .expect("listen raw");
        let raw_addr = raw.local_addr().to_string();
        tokio::spawn(rpc_core::testing::echo_frames(raw));
        let mut out = std::io::stdout();
        writeln!(out, "{addr} {raw_addr}").expect("stdout");
        out.flush().expect("stdout");
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await;
    });
}
