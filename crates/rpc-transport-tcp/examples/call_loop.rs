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
//! The first argument is the number of calls (default 20000); a second
//! argument `floor` runs a raw tokio TCP ping-pong of 8 B instead, the floor
//! to compare with.

use rpc_core::Rpc;
use rpc_transport_tcp::TcpTransport;
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20000);
    let floor = std::env::args().nth(2).as_deref() == Some("floor");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if floor {
        rt.block_on(ping_pong(n));
        return;
    }
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

/// Raw tokio TCP: the client writes 8 bytes, the server echoes them.
async fn ping_pong(n: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; 8];
        while s.read_exact(&mut buf).await.is_ok() {
            s.write_all(&buf).await.unwrap();
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    let mut buf = [1u8; 8];
    for _ in 0..n {
        c.write_all(&buf).await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
    }
    drop(c);
    server.await.unwrap();
}
