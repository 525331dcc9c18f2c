//! A caller outside any task receives its answers over shared memory in
//! place (`rpc_core::Config::caller_spin`), unless the connection is
//! configured never to spin.
//!
//! The server runs on a runtime of its own (its worker threads stand for
//! another process); the client calls from `block_on` on a current-thread
//! runtime. The spin is far longer than an answer takes, so every answer
//! is received in place for certain.

mod common;

use std::time::Duration;

use rpc_core::{Config, Rpc};
use rpc_transport_shm::{ShmConfig, ShmTransport};

const CALLS: u64 = 100;

/// Echo calls from `block_on` with the client's shm configured by `shm`;
/// how many answers the caller received in place.
fn answered_in_place(shm: ShmConfig) -> u64 {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (_server, addr) = server_rt.block_on(async {
        let server = Rpc::new();
        server.set_name("server").unwrap();
        server.add_transport(ShmTransport::new());
        server
            .define("echo", |x: u64| async move { Ok(x) })
            .unwrap();
        let addr = server.listen("shm://0").await.unwrap();
        (server, addr)
    });
    common::runtime().block_on(async {
        let mut config = Config::default();
        config.caller_spin = Duration::from_secs(20);
        config.timeout = Duration::from_secs(10);
        let client = Rpc::with_config(config);
        client.add_transport(ShmTransport::with_config(shm));
        common::connect(&client, addr.as_str(), Duration::from_secs(30)).await;
        for i in 0..CALLS {
            let back: u64 = client.call("server", "echo", &i).await.unwrap();
            assert_eq!(back, i);
        }
        client
            .debug_info()
            .peers
            .iter()
            .flat_map(|p| &p.connections)
            .map(|c| c.answered_in_place)
            .sum()
    })
}

#[test]
fn a_caller_outside_any_task_receives_shm_answers_in_place() {
    // All but the first: a caller spins once the connection's previous
    // lone caller was polled with the same waker (this `block_on`'s).
    assert_eq!(answered_in_place(ShmConfig::default()), CALLS - 1);
}

#[test]
fn a_connection_that_never_spins_leaves_answers_to_the_reader() {
    let never = ShmConfig::default().with_spin(Duration::ZERO);
    assert_eq!(answered_in_place(never), 0);
}
