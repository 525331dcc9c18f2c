//! `rpc graph ...`: generate, partition, serve and sample graphs
//! (`rpc-graph` over TCP).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Subcommand, ValueEnum};
use rpc_core::Rpc;
use rpc_graph::{
    Dataset, DistDataset, DistNeighborLoader, LoaderOptions, NeighborSource, Partition,
    PartitionServer, Partitioner, Progress, RemoteClient, RemoteOptions, RmatConfig, SamplerConfig,
    WorkerMode, partition, write_partitions,
};
use rpc_transport_tcp::TcpTransport;

/// The `graph` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum GraphCommand {
    /// Write an R-MAT dataset directory (`indptr.npy`, `indices.npy`,
    /// `node_feat.npy`, `labels.npy`).
    Generate {
        /// The output directory.
        #[arg(long)]
        out: PathBuf,
        /// log2 of the number of nodes.
        #[arg(long, default_value_t = 20)]
        scale: u32,
        /// Edges per node before dropping self loops and duplicates.
        #[arg(long, default_value_t = 16)]
        edge_factor: u32,
        /// Node feature dimension (0: none).
        #[arg(long, default_value_t = 128)]
        feature_dim: usize,
        /// Label classes (0: no labels).
        #[arg(long, default_value_t = 0)]
        classes: u32,
        /// The generator seed.
        #[arg(long, default_value_t = 20_240_601)]
        seed: u64,
    },
    /// Partition a dataset directory into `part_{i}/` directories.
    Partition {
        /// The dataset directory.
        #[arg(long)]
        data: PathBuf,
        /// The output directory.
        #[arg(long)]
        out: PathBuf,
        /// Number of partitions.
        #[arg(long, short = 'k', default_value_t = 2)]
        parts: u32,
        /// How to assign nodes.
        #[arg(long, value_enum, default_value_t = Method::Hash)]
        method: Method,
        /// Hash seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// LDG's allowed imbalance (a fraction: 0.05 is 5 %).
        #[arg(long, default_value_t = 0.05, value_parser = parse_slack)]
        slack: f64,
    },
    /// Serve one partition until interrupted; prints `ready ...` once
    /// listening.
    Serve {
        /// The partitioned directory.
        #[arg(long)]
        root: PathBuf,
        /// The partition to serve.
        #[arg(long)]
        part: u32,
        /// Where to listen (port 0 picks one; the ready line tells).
        #[arg(long, default_value = "tcp://127.0.0.1:0")]
        listen: String,
        /// Servers of the other partitions, for remote sampling producers.
        #[arg(long = "peer")]
        peers: Vec<String>,
        /// The engine's name (default: `graph-part{PART}-{PID}`).
        #[arg(long)]
        name: Option<String>,
        /// Deadline of calls to peers, in seconds.
        #[arg(long, default_value = "30", value_parser = crate::parse_seconds)]
        timeout: Duration,
    },
    /// Run a loader and print its throughput.
    Sample(SampleArgs),
}

/// Partitioners by name.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Method {
    /// `hash(node) % k`.
    Hash,
    /// Linear deterministic greedy (streaming, locality-aware).
    Ldg,
}

/// `rpc graph sample`.
#[derive(Debug, clap::Args)]
pub(crate) struct SampleArgs {
    /// A dataset directory, sampled whole in this process.
    #[arg(long, conflicts_with_all = ["root", "remote"])]
    data: Option<PathBuf>,
    /// A partitioned directory: this process holds `--part` and reaches
    /// the others through `--server`.
    #[arg(long, requires = "part")]
    root: Option<PathBuf>,
    /// The local partition (with `--root`).
    #[arg(long)]
    part: Option<u32>,
    /// Servers of the other partitions (or of all, with `--remote`).
    #[arg(long = "server")]
    servers: Vec<String>,
    /// Let the servers sample (server–client mode).
    #[arg(long)]
    remote: bool,
    /// Fanouts per hop, comma-separated (-1: all).
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        default_value = "15,10,5"
    )]
    fanouts: Vec<i32>,
    /// Seeds per batch.
    #[arg(long, default_value_t = 1024)]
    batch_size: usize,
    /// Timed batches.
    #[arg(long, default_value_t = 50)]
    batches: usize,
    /// Untimed batches first.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Collect the sampled nodes' features.
    #[arg(long)]
    features: bool,
    /// Sampling tasks (0: collocated, in the loader's task).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Batches sampled ahead (worker and remote modes).
    #[arg(long, default_value_t = 4)]
    prefetch: usize,
    /// Sampler and shuffle seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Deadline of every remote call, in seconds.
    #[arg(long, default_value = "30", value_parser = crate::parse_seconds)]
    timeout: Duration,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs a `graph` subcommand.
/// Parses LDG's slack: a finite fraction from 0 to 10.
fn parse_slack(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=10.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{text:?} is not a slack: give a fraction from 0 to 10"
        )),
    }
}

pub(crate) async fn run(cmd: GraphCommand) -> Result<()> {
    match cmd {
        GraphCommand::Generate {
            out,
            scale,
            edge_factor,
            feature_dim,
            classes,
            seed,
        } => {
            let mut cfg = RmatConfig::new(scale, edge_factor, seed);
            cfg.feature_dim = feature_dim;
            cfg.num_classes = classes;
            let t = Instant::now();
            let g = tokio::task::spawn_blocking(move || cfg.write_dir(&out, Progress::stderr()))
                .await??;
            println!(
                "generated {} nodes, {} edges in {:.1} s",
                g.num_rows(),
                g.num_edges(),
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        GraphCommand::Partition {
            data,
            out,
            parts,
            method,
            seed,
            slack,
        } => {
            tokio::task::spawn_blocking(move || {
                partition_dir(&data, &out, parts, method, seed, slack)
            })
            .await?
        }
        GraphCommand::Serve {
            root,
            part,
            listen,
            peers,
            name,
            timeout,
        } => serve(&root, part, &listen, peers, name, timeout).await,
        GraphCommand::Sample(args) => sample(args).await,
    }
}

fn partition_dir(
    data: &Path,
    out: &Path,
    parts: u32,
    method: Method,
    seed: u64,
    slack: f64,
) -> Result<()> {
    let ds = Dataset::load_dir(data, Progress::stderr())?;
    let method = match method {
        Method::Hash => Partitioner::Hash { seed },
        Method::Ldg => Partitioner::Ldg { slack },
    };
    let (book, stats) = partition(&ds.graph, parts, method, Progress::stderr())?;
    write_partitions(&ds, &book, method, &stats, out, Progress::stderr())?;
    println!(
        "{parts} partitions: edge cut {:.3}, node balance {:.3}, edge balance {:.3}",
        stats.edge_cut_fraction, stats.node_balance, stats.edge_balance
    );
    Ok(())
}

async fn serve(
    root: &Path,
    part: u32,
    listen: &str,
    peers: Vec<String>,
    name: Option<String>,
    timeout: Duration,
) -> Result<()> {
    let root_owned = root.to_owned();
    let p =
        tokio::task::spawn_blocking(move || Partition::load(&root_owned, part, Progress::stderr()))
            .await??;
    let k = p.meta.num_partitions;
    let rpc = Rpc::new();
    let name = name.unwrap_or_else(|| format!("graph-part{part}-{}", std::process::id()));
    rpc.set_name(&name)?;
    rpc.add_transport(TcpTransport::new());
    let server = PartitionServer::start(&rpc, Arc::new(p), peers, timeout)?;
    let addr = rpc.listen(listen).await?;
    println!("ready partition {part} of {k} at {addr} as {name}");
    std::io::stdout().flush()?;
    crate::node::shutdown_signal().await;
    server.shutdown().await;
    rpc.shutdown();
    rpc.wait_for_shutdown().await;
    Ok(())
}

async fn sample(a: SampleArgs) -> Result<()> {
    let timeout = a.timeout;
    let config = SamplerConfig::new(a.fanouts.clone(), a.seed);
    let options = LoaderOptions {
        batch_size: a.batch_size,
        shuffle: true,
        drop_last: false,
        collect_features: a.features,
        seed: a.seed,
        prefetch: a.prefetch,
    };
    let mode = match a.workers {
        0 => WorkerMode::Collocated,
        n => WorkerMode::Workers { num_workers: n },
    };
    let rpc = Rpc::new();
    rpc.add_transport(TcpTransport::new());
    let (mut loader, what) = if let Some(data) = &a.data {
        let data = data.clone();
        let part = tokio::task::spawn_blocking(move || {
            Partition::whole(Dataset::load_dir(&data, Progress::stderr())?)
        })
        .await??;
        let seeds = owned_seeds(&part);
        let ds = DistDataset::local_only(part)?;
        let l = DistNeighborLoader::new(&ds, seeds, config, options, mode)?;
        (l, "single process")
    } else if a.remote {
        if a.servers.is_empty() {
            bail!("--remote needs --server addresses");
        }
        let client = RemoteClient::connect(&rpc, &a.servers, timeout).await?;
        let n = client.servers().first().map_or(0, |(_, i)| i.num_nodes);
        let seeds: Vec<u64> = (0..n).collect();
        let remote = RemoteOptions {
            num_workers: a.workers.max(1),
            timeout,
        };
        (
            client.loader(&seeds, config, options, remote).await?,
            "remote servers",
        )
    } else {
        let (Some(root), Some(p)) = (&a.root, a.part) else {
            bail!("give --data DIR, --root DIR --part I [--server ...], or --remote --server ...");
        };
        let root = root.clone();
        let part =
            tokio::task::spawn_blocking(move || Partition::load(&root, p, Progress::stderr()))
                .await??;
        let part = Arc::new(part);
        let seeds = owned_seeds(&part);
        let ds = DistDataset::connect(&rpc, Some(part), &a.servers, timeout).await?;
        (
            DistNeighborLoader::new(&ds, seeds, config, options, mode)?,
            "local partition + servers",
        )
    };
    let mut done = 0usize;
    let (mut edges, mut nodes, mut seeds) = (0u64, 0u64, 0u64);
    let mut t0 = Instant::now();
    let mut in_epoch = 0usize;
    while done < a.warmup + a.batches {
        let Some(batch) = loader.next().await else {
            if in_epoch == 0 {
                bail!("an epoch had no batches (no seeds?)");
            }
            in_epoch = 0;
            continue;
        };
        in_epoch += 1;
        let batch = batch.context("sampling")?;
        done += 1;
        if done == a.warmup {
            t0 = Instant::now();
        }
        if done > a.warmup {
            edges += batch.output.num_edges() as u64;
            nodes += batch.output.nodes.len() as u64;
            seeds += batch.seeds.len() as u64;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    loader.shutdown().await?;
    rpc.shutdown();
    let n = a.batches.max(1) as f64;
    let report = serde_json::json!({
        "mode": what,
        "workers": a.workers,
        "features": a.features,
        "batches": a.batches,
        "secs": secs,
        "ms_per_batch": secs * 1e3 / n,
        "batches_per_s": n / secs,
        "edges_per_s": edges as f64 / secs,
        "seeds_per_s": seeds as f64 / secs,
        "edges_per_batch": edges as f64 / n,
        "nodes_per_batch": nodes as f64 / n,
        "vm_hwm_kib": vm_hwm_kib(std::process::id()),
    });
    if a.json {
        println!("{report}");
    } else {
        println!(
            "{what}: {:.1} ms/batch, {:.2} batches/s, {:.2} M sampled edges/s, {:.0} seeds/s ({:.0} edges, {:.0} nodes per batch; peak RSS {} MiB)",
            secs * 1e3 / n,
            n / secs,
            edges as f64 / secs / 1e6,
            seeds as f64 / secs,
            edges as f64 / n,
            nodes as f64 / n,
            vm_hwm_kib(std::process::id()).unwrap_or(0) / 1024
        );
    }
    Ok(())
}

/// The partition's own nodes with out-edges, as seeds (GLT's benchmark
/// used each rank's own nodes with out-degree > 0).
fn owned_seeds(part: &Partition) -> Vec<u64> {
    part.graph
        .nodes()
        .global_ids()
        .iter()
        .copied()
        .filter(|&v| {
            part.graph
                .neighbors(v)
                .is_some_and(|n| !n.targets.is_empty())
        })
        .collect()
}

/// Peak resident memory of process `pid` in KiB (`VmHWM`), on Linux.
pub(crate) fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
