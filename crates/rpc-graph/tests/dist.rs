//! The distributed half over in-process engines (`MemNetwork`): feature
//! lookup and sampling across partitions equal the single-process results,
//! loaders in all three modes, and server loss.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{TempDir, check_output};
use rpc_core::{MemNetwork, Rpc};
use rpc_graph::dist::{EpochPlan, ServerInfo};
use rpc_graph::{
    Dataset, DistDataset, DistNeighborLoader, DistNeighborSampler, GraphError, LoaderOptions,
    NeighborSampler, Partition, PartitionServer, Partitioner, Progress, RemoteClient,
    RemoteOptions, RmatConfig, SampleOptions, SampledBatch, SamplerConfig, WorkerMode, partition,
    write_partitions,
};

const LONG: Duration = Duration::from_secs(60);

fn dataset() -> Dataset {
    let mut cfg = RmatConfig::new(9, 8, 11);
    cfg.feature_dim = 8;
    cfg.num_classes = 4;
    cfg.generate(Progress::hidden()).unwrap()
}

fn partitions(ds: &Dataset, k: u32, method: Partitioner) -> Vec<Arc<Partition>> {
    let dir = TempDir::new("dist");
    let (book, stats) = partition(&ds.graph, k, method, Progress::hidden()).unwrap();
    write_partitions(ds, &book, method, &stats, dir.path(), Progress::hidden()).unwrap();
    (0..k)
        .map(|p| Arc::new(Partition::load(dir.path(), p, Progress::hidden()).unwrap()))
        .collect()
}

/// Servers for `parts[first..]`, each on its own simulated host `hostP`
/// with engine `partP` at `mem://partP`, knowing each other as peers.
struct Cluster {
    net: MemNetwork,
    engines: Vec<Rpc>,
    servers: Vec<PartitionServer>,
    addrs: Vec<String>,
}

impl Cluster {
    async fn start(parts: &[Arc<Partition>], first: usize, timeout: Duration) -> Self {
        let net = MemNetwork::new();
        let addrs: Vec<String> = (0..parts.len()).map(|p| format!("mem://part{p}")).collect();
        let mut engines = Vec::new();
        let mut servers = Vec::new();
        for (p, part) in parts.iter().enumerate().skip(first) {
            let rpc = Rpc::new();
            rpc.set_name(&format!("part{p}")).unwrap();
            rpc.add_transport(net.transport_on(&format!("host{p}")));
            rpc.listen(&addrs[p]).await.unwrap();
            let peers = addrs
                .iter()
                .skip(first)
                .filter(|a| **a != addrs[p])
                .cloned()
                .collect();
            servers.push(PartitionServer::start(&rpc, part.clone(), peers, timeout).unwrap());
            engines.push(rpc);
        }
        Self {
            net,
            engines,
            servers,
            addrs: addrs[first..].to_vec(),
        }
    }

    fn client(&self) -> Rpc {
        let rpc = Rpc::new();
        rpc.set_name("client").unwrap();
        rpc.add_transport(self.net.transport_on("client"));
        rpc
    }

    async fn shutdown(self) {
        for s in &self.servers {
            s.shutdown().await;
        }
        for e in &self.engines {
            e.shutdown();
            e.wait_for_shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_through_dist_feature_equal_global_rows() {
    let ds = dataset();
    let global = ds.node_features.as_ref().unwrap();
    let parts = partitions(&ds, 3, Partitioner::Hash { seed: 2 });
    let n = ds.num_nodes();
    let ids: Vec<u64> = (0..700).map(|i| (i * 7919 + i / 3) % n).collect();
    let mut expect = Vec::new();
    global.gather_into(&ids, &mut expect).unwrap();
    // Partition 0 in process and the others remote; then all remote.
    let cluster = Cluster::start(&parts, 1, LONG).await;
    let rpc = cluster.client();
    let with_local = DistDataset::connect(&rpc, Some(parts[0].clone()), &cluster.addrs, LONG)
        .await
        .unwrap();
    let f = with_local.node_features().unwrap();
    let mut out = vec![1.0; 3];
    for _ in 0..2 {
        f.get_into(&ids, &mut out).await.unwrap();
        assert_eq!(out, expect);
    }
    f.get_into(&[], &mut out).await.unwrap();
    assert!(out.is_empty());
    let mine = parts[0].graph.nodes().global_ids();
    f.local_get(&mine[..5], &mut out).unwrap();
    global.gather_into(&mine[..5], &mut expect).unwrap();
    assert_eq!(out, expect);
    assert!(f.get_into(&[n], &mut out).await.is_err(), "unknown node");
    drop(with_local);
    let cluster0 = Cluster::start(&parts, 0, LONG).await;
    let rpc0 = cluster0.client();
    let remote = DistDataset::connect(&rpc0, None, &cluster0.addrs, LONG)
        .await
        .unwrap();
    assert_eq!(remote.book().as_slice(), parts[0].node_book.as_slice());
    remote
        .node_features()
        .unwrap()
        .get_into(&ids, &mut out)
        .await
        .unwrap();
    global.gather_into(&ids, &mut expect).unwrap();
    assert_eq!(out, expect);
    cluster.shutdown().await;
    cluster0.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_sampling_equals_the_single_process_sampler() {
    let ds = dataset();
    let g = &ds.graph;
    let global = ds.node_features.as_ref().unwrap();
    let seeds: Vec<u64> = (0..g.num_rows() as u64).rev().step_by(3).collect();
    for method in [
        Partitioner::Hash { seed: 1 },
        Partitioner::Ldg { slack: 0.05 },
    ] {
        for k in [2, 4] {
            let parts = partitions(&ds, k, method);
            let cluster = Cluster::start(&parts, 1, LONG).await;
            let rpc = cluster.client();
            let dds = DistDataset::connect(&rpc, Some(parts[0].clone()), &cluster.addrs, LONG)
                .await
                .unwrap();
            for replace in [false, true] {
                let mut cfg = SamplerConfig::new(vec![6, 4, 3], 17);
                cfg.options = SampleOptions {
                    replace,
                    with_edge_ids: true,
                };
                let mut local = NeighborSampler::new(cfg.clone()).unwrap();
                let mut dist = DistNeighborSampler::new(&dds, cfg.clone(), true).unwrap();
                for batch in 0..3u64 {
                    let c = &seeds[batch as usize * 40..][..40];
                    let whole = local.sample_from_nodes(g, c, batch).unwrap();
                    let b = dist.sample_batch(c, batch, 0, batch).await.unwrap();
                    assert_eq!(b.output, whole, "{method:?} k={k} replace={replace}");
                    check_output(g, &b.output, c, &cfg.fanouts, replace);
                    let mut rows = Vec::new();
                    global.gather_into(&b.output.nodes, &mut rows).unwrap();
                    assert_eq!((b.feature_dim, &b.node_features), (8, &rows));
                }
            }
            cluster.shutdown().await;
        }
    }
}

/// Every seed of `seeds` exactly once across `batches`.
#[track_caller]
fn check_epoch(seeds: &[u64], batches: &[SampledBatch]) {
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for b in batches {
        for &s in &b.seeds {
            *seen.entry(s).or_default() += 1;
        }
        assert_eq!(b.output.seed_positions.len(), b.seeds.len());
    }
    assert_eq!(seen.len(), seeds.len());
    assert!(seen.values().all(|&c| c == 1), "every seed exactly once");
    assert!(seeds.iter().all(|s| seen.contains_key(s)));
}

async fn epoch(loader: &mut DistNeighborLoader) -> Vec<SampledBatch> {
    let mut out = Vec::new();
    while let Some(b) = loader.next().await {
        out.push(b.unwrap());
    }
    out
}

fn options(batch_size: usize, shuffle: bool, drop_last: bool) -> LoaderOptions {
    LoaderOptions {
        batch_size,
        shuffle,
        drop_last,
        collect_features: true,
        seed: 5,
        prefetch: 3,
    }
}

#[tokio::test]
async fn collocated_loader_covers_every_seed_reproducibly() {
    let ds = dataset();
    let whole = Dataset {
        graph: ds.graph.clone(),
        node_features: ds.node_features.clone(),
        edge_features: None,
        labels: ds.labels.clone(),
    };
    let dds = DistDataset::local_only(Partition::whole(whole).unwrap()).unwrap();
    let seeds: Vec<u64> = (0..300).collect();
    let cfg = SamplerConfig::new(vec![5, 3], 9);
    let mk = |o| {
        DistNeighborLoader::new(&dds, seeds.clone(), cfg.clone(), o, WorkerMode::Collocated)
            .unwrap()
    };
    let mut a = mk(options(64, true, false));
    let e0 = epoch(&mut a).await;
    assert_eq!(e0.len(), 5);
    check_epoch(&seeds, &e0);
    assert_eq!(e0.last().unwrap().seeds.len(), 300 - 4 * 64);
    // Each batch is the single-process sampler's for the plan's key.
    let plan = EpochPlan::new(&seeds, &options(64, true, false), 0, 0).unwrap();
    let mut single = NeighborSampler::new(cfg.clone()).unwrap();
    for (i, b) in e0.iter().enumerate() {
        assert_eq!(b.seeds, plan.batch(i).unwrap());
        let expect = single
            .sample_from_nodes(&ds.graph, &b.seeds, plan.key(i))
            .unwrap();
        assert_eq!(b.output, expect);
        assert_eq!(b.node_features.len(), b.output.nodes.len() * 8);
    }
    let e1 = epoch(&mut a).await;
    check_epoch(&seeds, &e1);
    assert_ne!(e0[0].seeds, e1[0].seeds, "reshuffled per epoch");
    let mut b = mk(options(64, true, false));
    assert_eq!(
        epoch(&mut b).await,
        e0,
        "same seed, same epoch, same batches"
    );
    let mut c = mk(options(64, false, true));
    let e = epoch(&mut c).await;
    assert_eq!(e.len(), 4);
    assert!(e.iter().all(|b| b.seeds.len() == 64));
    assert_eq!(e[0].seeds, &seeds[..64]);
}

#[tokio::test(start_paused = true)]
async fn worker_mode_covers_every_seed_and_bounds_prefetch() {
    let ds = dataset();
    let dds = DistDataset::local_only(Partition::whole(ds).unwrap()).unwrap();
    let seeds: Vec<u64> = (0..400).rev().collect();
    let cfg = SamplerConfig::new(vec![4, 4], 3);
    let mode = WorkerMode::Workers { num_workers: 2 };
    let mut loader =
        DistNeighborLoader::new(&dds, seeds.clone(), cfg, options(10, true, false), mode).unwrap();
    for round in 0..2 {
        let first = loader.next().await.unwrap().unwrap();
        // Paused time advances only once every task is idle: the workers
        // have sampled all they can.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sampled = loader.sampled() - round * 40;
        assert!(sampled <= 1 + 3 + 2, "sampled {sampled} with prefetch 3");
        assert!(sampled >= 4, "the channel filled: {sampled}");
        let mut all = vec![first];
        all.extend(epoch(&mut loader).await);
        assert_eq!(all.len(), 40);
        check_epoch(&seeds, &all);
    }
    loader.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_mode_end_to_end() {
    let ds = dataset();
    let global = ds.node_features.as_ref().unwrap();
    let parts = partitions(&ds, 2, Partitioner::Ldg { slack: 0.1 });
    let cluster = Cluster::start(&parts, 0, LONG).await;
    let rpc = cluster.client();
    let client = RemoteClient::connect(&rpc, &cluster.addrs, LONG)
        .await
        .unwrap();
    let infos: Vec<&ServerInfo> = client.servers().iter().map(|(_, i)| i).collect();
    assert_eq!(
        infos.iter().map(|i| i.partition).collect::<Vec<_>>(),
        [0, 1]
    );
    let seeds: Vec<u64> = (0..ds.num_nodes()).step_by(2).collect();
    let cfg = SamplerConfig::new(vec![5, 5], 21);
    let remote = RemoteOptions {
        num_workers: 2,
        timeout: LONG,
    };
    let mut loader = client
        .loader(&seeds, cfg.clone(), options(32, true, false), remote)
        .await
        .unwrap();
    let mut first_epoch = Vec::new();
    for _ in 0..2 {
        let batches = epoch(&mut loader).await;
        check_epoch(&seeds, &batches);
        for b in &batches {
            check_output(&ds.graph, &b.output, &b.seeds, &cfg.fanouts, false);
            let mut rows = Vec::new();
            global.gather_into(&b.output.nodes, &mut rows).unwrap();
            assert_eq!(b.node_features, rows);
        }
        first_epoch.push(batches.len());
    }
    assert_eq!(loader.epoch(), 2);
    loader.shutdown().await.unwrap();
    rpc.shutdown();
    cluster.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn losing_a_server_fails_the_loader_within_the_deadline() {
    let deadline = Duration::from_secs(5);
    let ds = dataset();
    let parts = partitions(&ds, 2, Partitioner::Hash { seed: 4 });
    let seeds: Vec<u64> = (0..ds.num_nodes()).collect();
    let cfg = SamplerConfig::new(vec![5, 5], 1);
    // Collocated with partition 1 remote: the server's host goes down.
    let cluster = Cluster::start(&parts, 1, deadline).await;
    let rpc = cluster.client();
    let dds = DistDataset::connect(&rpc, Some(parts[0].clone()), &cluster.addrs, deadline)
        .await
        .unwrap();
    let mut loader = DistNeighborLoader::new(
        &dds,
        seeds.clone(),
        cfg.clone(),
        options(64, false, false),
        WorkerMode::Collocated,
    )
    .unwrap();
    loader.next().await.unwrap().unwrap();
    cluster.net.isolate("host1");
    let t0 = tokio::time::Instant::now();
    let err = loader.next().await.unwrap().unwrap_err();
    assert!(t0.elapsed() <= deadline, "{:?}", t0.elapsed());
    assert!(
        matches!(err, GraphError::Remote { partition: 1, .. }) && err.is_server_lost(),
        "{err}"
    );
    assert!(err.to_string().contains("part1"), "{err}");

    // A server that accepts requests and never answers: the deadline.
    let net = MemNetwork::new();
    let stall = Rpc::new();
    stall.set_name("stall").unwrap();
    stall.add_transport(net.transport());
    stall.listen("mem://stall").await.unwrap();
    let info = ServerInfo::of(&parts[1]);
    stall
        .define("graph.info", move |(): ()| {
            let info = info.clone();
            async move { Ok(info) }
        })
        .unwrap();
    stall
        .define("graph.features", |_: rpc_tensor::Tensor| {
            std::future::pending::<Result<(), rpc_core::HandlerError>>()
        })
        .unwrap();
    let rpc = Rpc::new();
    rpc.add_transport(net.transport());
    let dds = DistDataset::connect(
        &rpc,
        Some(parts[0].clone()),
        &["mem://stall".into()],
        deadline,
    )
    .await
    .unwrap();
    let features = dds.node_features().unwrap();
    let t0 = tokio::time::Instant::now();
    let err = features
        .get_into(&seeds, &mut Vec::new())
        .await
        .unwrap_err();
    let took = t0.elapsed();
    assert!(
        took >= deadline && took < deadline + Duration::from_secs(1),
        "{took:?}"
    );
    assert!(
        matches!(
            &err,
            GraphError::Remote {
                partition: 1,
                source: rpc_core::Error::Timeout { .. },
                ..
            }
        ),
        "{err}"
    );
    stall.shutdown();
}

#[tokio::test(start_paused = true)]
async fn remote_loader_reports_a_server_shut_down_mid_epoch() {
    let deadline = Duration::from_secs(5);
    let ds = dataset();
    let parts = partitions(&ds, 2, Partitioner::Hash { seed: 4 });
    let cluster = Cluster::start(&parts, 0, deadline).await;
    let rpc = cluster.client();
    let client = RemoteClient::connect(&rpc, &cluster.addrs, deadline)
        .await
        .unwrap();
    let seeds: Vec<u64> = (0..ds.num_nodes()).collect();
    let opts = LoaderOptions {
        prefetch: 1,
        ..options(8, false, false)
    };
    let mut loader = client
        .loader(
            &seeds,
            SamplerConfig::new(vec![3], 2),
            opts,
            RemoteOptions {
                num_workers: 1,
                timeout: deadline,
            },
        )
        .await
        .unwrap();
    loader.next().await.unwrap().unwrap();
    cluster.engines[1].shutdown();
    let t0 = tokio::time::Instant::now();
    let err = loop {
        match loader.next().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("the epoch ended without the lost server"),
        }
    };
    // Server 0 may report first that it lost partition 1 while sampling;
    // either way the error names the lost partition, within the deadline.
    assert!(
        t0.elapsed() <= deadline + Duration::from_millis(10),
        "{:?}",
        t0.elapsed()
    );
    assert!(err.to_string().contains("partition 1"), "{err}");
    assert!(err.is_server_lost(), "{err}");
    // The other server still answers; its producer is destroyed cleanly,
    // the lost one's is reported.
    assert!(loader.shutdown().await.is_err());
    rpc.shutdown();
    cluster.shutdown().await;
}
