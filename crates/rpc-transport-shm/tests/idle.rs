//! An idle connection costs no CPU: once the spin budget runs out, both
//! sides sleep in the kernel until there is something to do.

mod common;

use std::time::Duration;

use rpc_core::Rpc;
use rpc_transport_shm::ShmTransport;

/// How long the connection stays idle while we measure.
const IDLE: Duration = Duration::from_secs(2);

#[test]
fn an_idle_connection_costs_no_cpu() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let shm = ShmTransport::new();
    let (used, sleeps) = rt.block_on(async {
        let server = Rpc::new();
        server.set_name("server").unwrap();
        server.add_transport(shm.clone());
        server
            .define("add", |(a, b): (u64, u64)| async move { Ok(a + b) })
            .unwrap();
        let addr = server.listen("shm://0").await.unwrap();
        let client = Rpc::new();
        client.set_name("client").unwrap();
        client.add_transport(shm.clone());
        common::connect(&client, addr.as_str(), Duration::from_secs(30)).await;
        let sum: u64 = client.call("server", "add", &(2u64, 3u64)).await.unwrap();
        assert_eq!(sum, 5);
        // Let the spin budget run out, then measure a quiet stretch.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sleeps = shm.stats().data_sleeps;
        let before = common::cpu_time();
        tokio::time::sleep(IDLE).await;
        let used = common::cpu_time() - before;
        // The connection still works after the quiet stretch.
        let sum: u64 = client.call("server", "add", &(4u64, 5u64)).await.unwrap();
        assert_eq!(sum, 9);
        (used, shm.stats().data_sleeps - sleeps)
    });
    eprintln!("{IDLE:?} idle cost {used:?} of CPU; {sleeps} sleeps ended meanwhile");
    // 5 % of one core: far above what sleeping costs, far below a spinner.
    assert!(
        used < IDLE / 20,
        "an idle connection used {used:?} of CPU in {IDLE:?}"
    );
}
