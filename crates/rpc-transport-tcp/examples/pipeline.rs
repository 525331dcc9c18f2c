//! 8 B echo calls over TCP loopback with a window of calls in flight, the
//! server on a thread of its own (its own current-thread runtime), as
//! `ours/tcp/inflight64/8B` in `rpc-bench` but in one process, for
//! profilers.
//!
//! ```text
//! cargo build --release -p rpc-transport-tcp --example pipeline
//! target/release/examples/pipeline 500000 64          # calls, window
//! target/release/examples/pipeline 500000 64 50       # both sides poll 50 us before sleeping
//! perf record -g target/release/examples/pipeline 2000000 64
//! ```
//!
//! Prints calls per second. A window of 1 is the one-at-a-time round trip.
//! With `PIN=1` the client thread runs on CPU 0 and the server's on CPU 1,
//! as the benchmarks place them.

use std::time::Duration;

use rpc_core::{Blob, Rpc};
use rpc_transport_tcp::{TcpConfig, TcpTransport};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(500_000);
    let window: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(64);
    let spin_us: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let transport = move || {
        TcpTransport::with_config(TcpConfig::default().with_spin(Duration::from_micros(spin_us)))
    };
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let pin = std::env::var_os("PIN").is_some();
    std::thread::spawn(move || {
        if pin {
            bench_support::pin_to(1);
        }
        let rt = runtime();
        rt.block_on(async {
            let host = Rpc::new();
            host.set_name("host").expect("a fresh name");
            host.add_transport(transport());
            host.define("echo", |b: Blob| async move {
                Ok::<_, rpc_core::HandlerError>(b)
            })
            .expect("echo is defined once");
            let addr = host.listen("tcp://127.0.0.1:0").await.expect("listen");
            addr_tx.send(addr.to_string()).expect("main waits");
            std::future::pending::<()>().await;
        });
    });
    let addr = addr_rx.recv().expect("the server starts");
    if pin {
        bench_support::pin_to(0);
    }
    runtime().block_on(async {
        let client = Rpc::new();
        client.add_transport(transport());
        client
            .connect(&addr)
            .expect("connect")
            .established(Duration::from_secs(5))
            .await
            .expect("connected");
        let secs = rpc_core::testing::time_echo_calls(&client, "host", "echo", n, window)
            .await
            .as_secs_f64();
        println!(
            "{n} calls, {window} in flight: {:.1} k calls/s, {:.2} us per call",
            n as f64 / secs / 1e3,
            secs * 1e6 / n as f64
        );
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}
