//! A loop of 8 B calls over TCP loopback, client and server on one thread:
//! the engine's cost per call without scheduling noise, for instruction
//! counts (machine noise does not change them).
//!
//! ```text
//! cargo build --release -p rpc-transport-tcp --example call_loop
//! valgrind --tool=callgrind target/release/examples/call_loop 20000
//! callgrind_annotate callgrind.out.*
//! ```
//!
//! The argument is the number of calls (default 20000).

use rpc_core::Rpc;
use rpc_transport_tcp::TcpTransport;
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let host = Rpc::new();
        host.set_name("host").unwrap();
        host.add_transport(TcpTransport::default());
        host.define("echo", |b: Vec<u8>| async move {
            Ok::<_, rpc_core::HandlerError>(b)
        })
        .unwrap();
        let addr = host.listen("tcp://127.0.0.1:0").await.unwrap();
        let client = Rpc::new();
        client.add_transport(TcpTransport::default());
        client
            .connect(addr.as_str())
            .unwrap()
            .established(std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let p = vec![1u8; 8];
        for _ in 0..n {
            let r: Vec<u8> = client.call("host", "echo", &p).await.unwrap();
            assert_eq!(r.len(), 8);
        }
    });
}
