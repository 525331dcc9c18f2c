//! Single-process benchmark of `rpc-graph` on an R-MAT graph: generation,
//! partitioning, one-thread neighbour sampling and feature gather against
//! memcpy, with peak resident memory.
//!
//! `cargo bench -p rpc-graph --bench graph`. Knobs (environment):
//! `RPC_GRAPH_SCALE` (20), `RPC_GRAPH_EDGE_FACTOR` (16), `RPC_GRAPH_DIM`
//! (128), `RPC_GRAPH_BATCH` (1024), `RPC_GRAPH_BATCHES` (50 timed),
//! `RPC_GRAPH_PARTITION_DIR` (if set, partitions are written there, and
//! partition 0 is loaded back and sampled).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rpc_graph::{
    Features, NeighborSampler, NeighborSource, Partition, Partitioner, Progress, RmatConfig,
    SampleOptions, SamplerConfig, SamplerOutput, WyRand, partition, write_partitions,
};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "n/a".into())
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() -> Result<()> {
    let scale = env("RPC_GRAPH_SCALE", 20) as u32;
    let ef = env("RPC_GRAPH_EDGE_FACTOR", 16) as u32;
    let dim = env("RPC_GRAPH_DIM", 128) as usize;
    let batch = env("RPC_GRAPH_BATCH", 1024) as usize;
    let batches = env("RPC_GRAPH_BATCHES", 50) as usize;
    let progress = Progress::stderr();

    println!("# rpc-graph bench: R-MAT scale {scale}, edge factor {ef}, dim {dim}, batch {batch}");
    let t = Instant::now();
    let mut cfg = RmatConfig::new(scale, ef, 20240601);
    cfg.feature_dim = dim;
    cfg.num_classes = 16;
    let ds = cfg.generate(progress)?;
    let g = &ds.graph;
    println!(
        "generate: {:.2} s, {} nodes, {} edges, VmHWM {}",
        t.elapsed().as_secs_f64(),
        g.num_rows(),
        g.num_edges(),
        vm_hwm()
    );

    for (name, method) in [
        ("hash", Partitioner::Hash { seed: 1 }),
        ("ldg", Partitioner::Ldg { slack: 0.05 }),
    ] {
        let t = Instant::now();
        let (_, stats) = partition(g, 2, method, progress)?;
        println!(
            "partition {name} x2: {:.2} s, edge cut {:.3}, node balance {:.3}, edge balance {:.3}",
            t.elapsed().as_secs_f64(),
            stats.edge_cut_fraction,
            stats.node_balance,
            stats.edge_balance
        );
    }

    // Seeds: shuffled nodes with out-degree > 0, like a training split.
    let mut seeds: Vec<u64> = (0..g.num_rows())
        .filter(|&v| g.degree(v) > 0)
        .map(|v| v as u64)
        .collect();
    let mut rng = WyRand::new(7);
    for i in (1..seeds.len()).rev() {
        seeds.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let chunks: Vec<&[u64]> = seeds.chunks_exact(batch).collect();
    anyhow::ensure!(
        chunks.len() > batches + 5,
        "graph too small for {batches} batches"
    );

    let mut out = SamplerOutput::default();
    for (fanouts, replace) in [
        (vec![15, 10, 5], false),
        (vec![10, 10], false),
        (vec![15, 10, 5], true),
    ] {
        let stats = bench_sampling(g, &chunks, batches, &fanouts, replace, &mut out)?;
        println!(
            "sample {fanouts:?}{}: {:.2} ms/batch (median), {:.2} M sampled edges/s, {:.0} seeds/s, {:.0} edges/batch, {:.0} nodes/batch",
            if replace { " with replacement" } else { "" },
            stats.0.as_secs_f64() * 1e3,
            stats.1 / 1e6,
            stats.2,
            stats.3,
            stats.4
        );
    }

    if let Some(features) = &ds.node_features {
        // The rows a training step fetches: the nodes of [15,10,5] batches.
        let mut s = NeighborSampler::new(SamplerConfig::new(vec![15, 10, 5], 42))?;
        let mut lists = Vec::new();
        for (i, c) in chunks.iter().take(batches.min(20)).enumerate() {
            lists.push(s.sample_from_nodes(g, c, i as u64)?.nodes);
        }
        bench_gather(features, &lists, dim)?;
    }

    if let Ok(dir) = std::env::var("RPC_GRAPH_PARTITION_DIR") {
        let dir = PathBuf::from(dir);
        let method = Partitioner::Ldg { slack: 0.05 };
        let t = Instant::now();
        let (book, stats) = partition(g, 2, method, progress)?;
        write_partitions(&ds, &book, method, &stats, &dir, progress)?;
        println!("write 2 partitions: {:.2} s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let part = Partition::load(&dir, 0, progress)?;
        println!(
            "load partition 0: {:.2} s, {} nodes",
            t.elapsed().as_secs_f64(),
            part.graph.nodes().len()
        );
        let mine: Vec<u64> = seeds
            .iter()
            .copied()
            .filter(|&v| part.graph.neighbors(v).is_some())
            .collect();
        let mut s = NeighborSampler::new(SamplerConfig::new(vec![1], 3))?;
        let t = Instant::now();
        let mut edges = 0;
        for (i, c) in mine.chunks(batch).take(batches).enumerate() {
            edges += s.sample_from_nodes(&part.graph, c, i as u64)?.num_edges();
        }
        println!(
            "partition 0 one-hop sampling: {edges} edges in {:.3} s",
            t.elapsed().as_secs_f64()
        );
    }
    println!("peak resident memory (VmHWM): {}", vm_hwm());
    Ok(())
}

/// Times `batches` batches after 5 warm-up ones: (median per batch, edges/s,
/// seeds/s, edges/batch, nodes/batch).
fn bench_sampling(
    g: &rpc_graph::Csr,
    chunks: &[&[u64]],
    batches: usize,
    fanouts: &[i32],
    replace: bool,
    out: &mut SamplerOutput,
) -> Result<(Duration, f64, f64, f64, f64)> {
    let mut config = SamplerConfig::new(fanouts.to_vec(), 42);
    config.options = SampleOptions {
        replace,
        with_edge_ids: false,
    };
    let mut sampler = NeighborSampler::new(config)?;
    for (i, c) in chunks.iter().take(5).enumerate() {
        sampler.sample_from_nodes_into(g, c, i as u64, out)?;
    }
    let (mut times, mut edges, mut nodes) = (Vec::new(), 0usize, 0usize);
    let start = Instant::now();
    for (i, c) in chunks.iter().skip(5).take(batches).enumerate() {
        let t = Instant::now();
        sampler.sample_from_nodes_into(g, c, i as u64 + 5, out)?;
        times.push(t.elapsed());
        edges += out.num_edges();
        nodes += out.nodes.len();
    }
    let total = start.elapsed().as_secs_f64();
    let seeds = (batches * chunks[0].len()) as f64;
    Ok((
        median(times),
        edges as f64 / total,
        seeds / total,
        edges as f64 / batches as f64,
        nodes as f64 / batches as f64,
    ))
}

/// Gathers each batch's node rows into a reused buffer, and copies as
/// many contiguous bytes with memcpy, alternating.
fn bench_gather(features: &Features, id_lists: &[Vec<u64>], dim: usize) -> Result<()> {
    let per_batch = id_lists.iter().map(Vec::len).min().unwrap_or(0);
    let id_lists: Vec<&[u64]> = id_lists.iter().map(|l| &l[..per_batch]).collect();
    let bytes = (per_batch * dim * 4) as f64;
    let mut out: Vec<f32> = Vec::with_capacity(per_batch * dim);
    let mut par_out = vec![0f32; per_batch * dim];
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let src = features.data();
    let mut dst = vec![0f32; per_batch * dim];
    let (mut tg, mut tp, mut tm) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        for (i, ids) in id_lists.iter().enumerate() {
            let t = Instant::now();
            features.gather_into(ids, &mut out).context("gather")?;
            let e = t.elapsed();
            let t = Instant::now();
            features
                .gather_into_slice_par(ids, &mut par_out, threads)
                .context("parallel gather")?;
            let p = t.elapsed();
            // Contiguous source at a moving offset, out of cache like the gather.
            let max_off = src.len() - dst.len();
            let off = (i * 7919 * dim) % (max_off + 1);
            let t = Instant::now();
            dst.copy_from_slice(&src[off..off + per_batch * dim]);
            let m = t.elapsed();
            if round > 0 {
                tg.push(e);
                tp.push(p);
                tm.push(m);
            }
        }
    }
    std::hint::black_box((&out, &par_out, &dst));
    let (g, p, m) = (median(tg), median(tp), median(tm));
    let gbs = bytes / g.as_secs_f64() / 1e9;
    let pbs = bytes / p.as_secs_f64() / 1e9;
    let mbs = bytes / m.as_secs_f64() / 1e9;
    println!(
        "gather {per_batch} rows x {dim} f32 ({:.1} MB) into a reused buffer: {:.2} ms, {gbs:.2} GB/s; memcpy {:.2} ms, {mbs:.2} GB/s; ratio {:.2}",
        bytes / 1e6,
        g.as_secs_f64() * 1e3,
        m.as_secs_f64() * 1e3,
        gbs / mbs
    );
    println!(
        "gather on {threads} threads (gather_into_slice_par): {:.2} ms, {pbs:.2} GB/s; ratio to the one-thread memcpy {:.2}",
        p.as_secs_f64() * 1e3,
        pbs / mbs
    );
    Ok(())
}
