//! The engine over real sockets: several transports in one peer, and
//! reconnection to a restarted server on the same port.

use std::time::Duration;

use rpc_core::{CallOptions, Config, Error, MemNetwork, Rpc};
use rpc_transport_tcp::TcpTransport;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn one_peer_serves_tcp_and_memory_at_once() {
    let net = MemNetwork::new();
    let server = Rpc::new();
    server.set_name("server").unwrap();
    server.add_transport(TcpTransport::default());
    server.add_transport(net.transport());
    server
        .define("via", |(): ()| async { Ok("server") })
        .unwrap();
    let tcp_addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let mem_addr = server.listen("mem://server").await.unwrap();

    let over_tcp = Rpc::new();
    over_tcp.set_name("over-tcp").unwrap();
    over_tcp.add_transport(TcpTransport::default());
    over_tcp
        .connect(tcp_addr.as_str())
        .unwrap()
        .established(LONG)
        .await
        .unwrap();

    let over_mem = Rpc::new();
    over_mem.set_name("over-mem").unwrap();
    over_mem.add_transport(net.transport());
    over_mem
        .connect(mem_addr.as_str())
        .unwrap()
        .established(LONG)
        .await
        .unwrap();

    assert_eq!(
        over_tcp.call::<String>("server", "via", &()).await.unwrap(),
        "server"
    );
    assert_eq!(
        over_mem.call::<String>("server", "via", &()).await.unwrap(),
        "server"
    );
    let info = server.debug_info();
    assert_eq!(info.transports, vec!["mem", "tcp"]);
    let transport_of = |name: &str| {
        let peer = info.peers.iter().find(|p| p.name == name).unwrap();
        peer.connections[0].transport.clone()
    };
    assert_eq!(transport_of("over-tcp"), "tcp");
    assert_eq!(transport_of("over-mem"), "mem");
}

#[tokio::test]
async fn reconnects_to_a_server_restarted_on_the_same_port() {
    let first = Rpc::new();
    first.set_name("server").unwrap();
    first.add_transport(TcpTransport::default());
    first
        .define("generation", |(): ()| async { Ok(1u32) })
        .unwrap();
    let addr = first.listen("tcp://127.0.0.1:0").await.unwrap();

    let mut config = Config::default();
    config.reconnect_max = Duration::from_millis(200);
    let client = Rpc::with_config(config);
    client.add_transport(TcpTransport::default());
    client
        .connect(addr.as_str())
        .unwrap()
        .established(LONG)
        .await
        .unwrap();
    assert_eq!(
        client
            .call::<u32>("server", "generation", &())
            .await
            .unwrap(),
        1
    );

    first.shutdown();
    first.wait_for_shutdown().await;
    drop(first);

    let second = Rpc::new();
    second.set_name("server").unwrap();
    second.add_transport(TcpTransport::default());
    second
        .define("generation", |(): ()| async { Ok(2u32) })
        .unwrap();
    assert_eq!(second.listen(addr.as_str()).await.unwrap(), addr);
    let opts = CallOptions::default().timeout(LONG);
    // A call may race the client noticing that the old connection closed; it
    // then fails with `Disconnected` (it may have reached the old server), and
    // the next one waits for the new connection.
    let generation = match client
        .call_with::<u32>("server", "generation", &(), opts.clone())
        .await
    {
        Err(Error::Disconnected { .. }) => {
            client.call_with("server", "generation", &(), opts).await
        }
        other => other,
    };
    assert_eq!(generation.unwrap(), 2);
}

#[tokio::test]
async fn a_peer_on_the_same_host_gets_a_host_local_connection_too() {
    // The in-memory transport is host-local (it reaches this process only),
    // so it stands in for shared memory here.
    let net = MemNetwork::new();
    let server = Rpc::new();
    server.set_name("server").unwrap();
    server.add_transport(TcpTransport::default());
    server.add_transport(net.transport());
    server.define("f", |(): ()| async { Ok(()) }).unwrap();
    server.listen("mem://server").await.unwrap();
    let tcp_addr = server.listen("tcp://127.0.0.1:0").await.unwrap();

    let client = Rpc::new();
    client.set_name("client").unwrap();
    client.add_transport(TcpTransport::default());
    client.add_transport(net.transport());
    // The client only knows the TCP address.
    client
        .connect(tcp_addr.as_str())
        .unwrap()
        .established(LONG)
        .await
        .unwrap();
    // The host-local connection comes up in the background; wait until the
    // client, which picks connections for its calls, has it.
    let local_up = async {
        loop {
            let info = client.debug_info();
            let peer = info.peers.iter().find(|p| p.name == "server");
            if peer.is_some_and(|p| p.connections.iter().any(|c| c.host_local)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(LONG, local_up)
        .await
        .expect("a host-local connection");
    for _ in 0..10 {
        client.call::<()>("server", "f", &()).await.unwrap();
    }
    let info = client.debug_info();
    let conns = &info
        .peers
        .iter()
        .find(|p| p.name == "server")
        .unwrap()
        .connections;
    let sent = |transport: &str| {
        conns
            .iter()
            .find(|c| c.transport == transport)
            .unwrap()
            .frames_sent
    };
    assert!(
        sent("mem") >= 10,
        "calls go over the host-local connection: {info}"
    );
    assert_eq!(sent("tcp"), 0, "the network connection idles: {info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_from_plain_threads_are_written_over_tcp() {
    let server = Rpc::new();
    server.set_name("server").unwrap();
    server.add_transport(TcpTransport::default());
    server
        .define_deferred(
            "later",
            |responder: rpc_core::Responder<Vec<u8>>, n: usize| {
                // The answer is written from this plain thread, outside any
                // runtime; large ones must still go out whole.
                std::thread::spawn(move || responder.ok(vec![7u8; n]));
            },
        )
        .unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Rpc::new();
    client.add_transport(TcpTransport::default());
    client
        .connect(addr.as_str())
        .unwrap()
        .established(LONG)
        .await
        .unwrap();
    for n in [0usize, 10, 100_000, 8 << 20] {
        let got: Vec<u8> = client.call("server", "later", &n).await.unwrap();
        assert_eq!(got.len(), n);
        assert!(got.iter().all(|&b| b == 7));
    }
}
