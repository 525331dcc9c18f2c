//! Bulk pull of 64 MiB over shared memory against memcpy, in one process
//! (two engines, each with its own `ShmTransport`, connected over shm):
//!
//! - `memcpy`: one copy of 64 MiB between two private buffers (warm).
//! - `pull`: `bulk_pull` of the whole read-only region, warm: one round trip
//!   on the owner's bulk socket, and a slice of the reader's mapping.
//! - `pull+read`: the same, then reading every byte (a sum of u64 words),
//!   which is what a consumer of the data pays at least once.
//! - `pull+copy`: the same, then copying it out into a private buffer: the
//!   worst case of a mapped pull, comparable to memcpy by construction.
//! - `cold pull`: expose a new region and pull it once: the owner copies it
//!   into a sealed memfd, the reader maps it and touches every page.
//! - `framed pull`: the same 64 MiB from a writable region, which the
//!   engine copies through frames (the arena): what the bulk level saves.
//!
//! Prints the median of each and its bandwidth as a ratio of memcpy's.
//! Without `--bench` (as under `cargo test --benches`) it runs each case
//! once.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use bytes::Bytes;
use rpc_core::{BulkMode, BulkRegion, Rpc};
use rpc_transport_shm::ShmTransport;

const LEN: usize = 64 << 20;

fn main() -> Result<()> {
    let measuring = std::env::args().any(|a| a == "--bench");
    let runs = if measuring { 30 } else { 1 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(runs))
}

async fn run(runs: usize) -> Result<()> {
    let (owner_shm, client_shm) = (ShmTransport::new(), ShmTransport::new());
    let owner = Rpc::new();
    owner.set_name("owner")?;
    owner.add_transport(owner_shm.clone());
    let addr = owner.listen("shm://0").await?;
    let client = Rpc::new();
    client.set_name("client")?;
    client.add_transport(client_shm.clone());
    client
        .connect(addr.as_str())?
        .established(Duration::from_secs(30))
        .await?;

    let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let ro = owner.expose(Bytes::from(data.clone()), BulkMode::ReadOnly);
    let rw = owner.expose(BulkRegion::new(data.clone()), BulkMode::ReadWrite);
    let mut dst = vec![0u8; LEN];

    let memcpy = median(runs, || {
        let t = Instant::now();
        dst.copy_from_slice(black_box(&data));
        black_box(&dst);
        Ok(t.elapsed())
    })?;
    // Warm the mapping once.
    ensure!(client.bulk_pull(&ro, 0, LEN as u64).await?[..] == data[..]);
    let mut pull = Vec::new();
    let mut read = Vec::new();
    let mut copy = Vec::new();
    let mut framed = Vec::new();
    let mut cold = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let got = client.bulk_pull(&ro, 0, LEN as u64).await?;
        pull.push(t.elapsed());
        black_box(&got);

        let t = Instant::now();
        let got = client.bulk_pull(&ro, 0, LEN as u64).await?;
        black_box(sum(&got));
        read.push(t.elapsed());

        let t = Instant::now();
        let got = client.bulk_pull(&ro, 0, LEN as u64).await?;
        dst.copy_from_slice(&got);
        black_box(&dst);
        copy.push(t.elapsed());

        let t = Instant::now();
        let got = client.bulk_pull(&rw, 0, LEN as u64).await?;
        black_box(sum(&got));
        framed.push(t.elapsed());
        drop(got);

        let fresh = owner.expose(Bytes::from(data.clone()), BulkMode::ReadOnly);
        let t = Instant::now();
        let got = client.bulk_pull(&fresh, 0, LEN as u64).await?;
        black_box(sum(&got));
        cold.push(t.elapsed());
        drop(got);
        owner.unexpose(&fresh);
    }
    let stats = client_shm.stats();
    ensure!(
        stats.bulk_gets as usize == 1 + 4 * runs,
        "pulls were mapped"
    );

    println!("bulk pull of 64 MiB over shm, median of {runs} (ratio = memcpy time / time):");
    let row = |name: &str, d: Duration| {
        let gbs = LEN as f64 / d.as_secs_f64() / 1e9;
        let ratio = memcpy.as_secs_f64() / d.as_secs_f64();
        println!(
            "  {name:<12} {:>10.1} µs {gbs:>9.1} GB/s {ratio:>9.2}× memcpy",
            d.as_secs_f64() * 1e6
        );
    };
    row("memcpy", memcpy);
    row("pull", mid(pull));
    row("pull+read", mid(read));
    row("pull+copy", mid(copy));
    row("cold pull", mid(cold));
    row("framed pull", mid(framed));
    Ok(())
}

fn sum(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(8)
        .map(|w| u64::from_ne_bytes(w.try_into().unwrap_or_default()))
        .fold(0u64, u64::wrapping_add)
}

fn median(runs: usize, mut f: impl FnMut() -> Result<Duration>) -> Result<Duration> {
    (0..runs).map(|_| f()).collect::<Result<Vec<_>>>().map(mid)
}

fn mid(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
