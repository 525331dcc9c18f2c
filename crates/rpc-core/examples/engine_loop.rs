//! The engine's own cost per call, without a network: a client and a server
//! `Rpc` on one thread, over the in-memory transport.
//!
//! ```text
//! cargo run --release -p rpc-core --example engine_loop -- 200000        # one call at a time
//! cargo run --release -p rpc-core --example engine_loop -- 200000 64     # 64 in flight
//! perf record -g target/release/examples/engine_loop 2000000 64
//! valgrind --tool=callgrind target/release/examples/engine_loop 20000
//! ```
//!
//! Prints the nanoseconds per call (both sides of each call run on this one
//! thread, so it is the sum of the caller's and the callee's CPU).

use rpc_core::{Blob, MemNetwork, Rpc};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let in_flight: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    rt.block_on(async {
        let net = MemNetwork::new();
        let host = Rpc::new();
        host.set_name("host").expect("a fresh name");
        host.add_transport(net.transport());
        host.define("echo", |b: Blob| async move {
            Ok::<_, rpc_core::HandlerError>(b)
        })
        .expect("echo is defined once");
        let addr = host.listen("mem://host").await.expect("listen");
        let client = Rpc::new();
        client.add_transport(net.transport());
        client
            .connect(addr.as_str())
            .expect("connect")
            .established(std::time::Duration::from_secs(5))
            .await
            .expect("connected");
        let elapsed =
            rpc_core::testing::time_echo_calls(&client, "host", "echo", n, in_flight).await;
        println!(
            "{n} calls, {in_flight} in flight: {:.0} ns per call",
            elapsed.as_nanos() as f64 / n as f64
        );
    });
}
