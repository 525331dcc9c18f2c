//! Partition books, cut and balance, partition directories, and the
//! property the distributed sampler relies on: sampling through partitions
//! equals sampling the whole graph.

mod common;

use common::{TempDir, hand_made};
use rpc_graph::{
    Csr, Dataset, Features, Inducer, NeighborBatch, NeighborSampler, NeighborSource, Partition,
    PartitionBook, PartitionStats, Partitioner, Progress, RmatConfig, SampleOptions, SamplerConfig,
    SamplerOutput, partition, sample_neighbors, write_partitions,
};

#[test]
fn stats_on_the_hand_made_graph() {
    let g = hand_made();
    let book = PartitionBook::new(vec![0, 0, 0, 1, 1, 1], 2).unwrap();
    let s = PartitionStats::measure(&g, &book).unwrap();
    assert_eq!(s.nodes, vec![3, 3]);
    assert_eq!(s.edges, vec![8, 2]);
    assert_eq!(s.edge_cut, 5);
    assert_eq!(s.edge_cut_fraction, 0.5);
    assert_eq!(s.node_balance, 1.0);
    assert_eq!(s.edge_balance, 1.6);
    assert!(PartitionBook::new(vec![0, 2], 2).is_err());
    assert!(PartitionBook::new(vec![], 0).is_err());
}

#[test]
fn books_place_every_node_exactly_once() {
    let g = RmatConfig::new(10, 8, 5)
        .generate_graph(Progress::hidden())
        .unwrap();
    for method in [
        Partitioner::Hash { seed: 3 },
        Partitioner::Ldg { slack: 0.1 },
    ] {
        for k in [1, 2, 4] {
            let (book, stats) = partition(&g, k, method, Progress::hidden()).unwrap();
            let mut all: Vec<u64> = (0..k).flat_map(|p| book.nodes_of(p)).collect();
            all.sort_unstable();
            assert_eq!(all, (0..g.num_rows() as u64).collect::<Vec<_>>());
            assert_eq!(stats.nodes.iter().sum::<u64>(), g.num_rows() as u64);
            assert_eq!(stats.edges.iter().sum::<u64>(), g.num_edges() as u64);
            if k == 1 {
                assert_eq!(stats.edge_cut, 0);
            }
            if let Partitioner::Ldg { .. } = method {
                assert!(
                    stats.node_balance < 1.5 && stats.edge_balance < 1.5,
                    "{stats:?}"
                );
            }
        }
    }
    // LDG cuts far fewer edges than hashing on a graph with locality.
    let (_, hash) = partition(&g, 4, Partitioner::Hash { seed: 3 }, Progress::hidden()).unwrap();
    let (_, ldg) = partition(&g, 4, Partitioner::Ldg { slack: 0.1 }, Progress::hidden()).unwrap();
    assert!(ldg.edge_cut < hash.edge_cut, "ldg {ldg:?} hash {hash:?}");
}

#[test]
fn ldg_finds_the_locality_of_a_grid() {
    // A 32 x 32 grid, both directions: streaming in row-major order, LDG
    // should cut only around partition borders.
    let side = 32u64;
    let mut edges = Vec::new();
    for r in 0..side {
        for c in 0..side {
            let v = r * side + c;
            if c + 1 < side {
                edges.extend([(v, v + 1), (v + 1, v)]);
            }
            if r + 1 < side {
                edges.extend([(v, v + side), (v + side, v)]);
            }
        }
    }
    let g = Csr::from_edges(side * side, &edges).unwrap();
    let (_, ldg) = partition(&g, 4, Partitioner::Ldg { slack: 0.05 }, Progress::hidden()).unwrap();
    let (_, hash) = partition(&g, 4, Partitioner::Hash { seed: 1 }, Progress::hidden()).unwrap();
    assert!(ldg.edge_cut_fraction < 0.1, "{ldg:?}");
    assert!(hash.edge_cut_fraction > 0.6, "{hash:?}");
    assert!(ldg.node_balance <= 1.05 + 1e-9, "{ldg:?}");
}

/// A small R-MAT dataset with features and labels.
fn dataset() -> Dataset {
    let mut cfg = RmatConfig::new(9, 8, 11);
    cfg.feature_dim = 8;
    cfg.num_classes = 4;
    let mut ds = cfg.generate(Progress::hidden()).unwrap();
    let e = ds.graph.num_edges();
    let data = (0..e * 2).map(|i| i as f32).collect();
    ds.edge_features = Some(Features::new(2, data).unwrap());
    ds
}

fn write_and_load(ds: &Dataset, k: u32, method: Partitioner, dir: &TempDir) -> Vec<Partition> {
    let (book, stats) = partition(&ds.graph, k, method, Progress::hidden()).unwrap();
    let meta = write_partitions(ds, &book, method, &stats, dir.path(), Progress::hidden()).unwrap();
    assert_eq!(meta.num_partitions, k);
    assert_eq!(meta.stats, stats);
    (0..k)
        .map(|p| Partition::load(dir.path(), p, Progress::hidden()).unwrap())
        .collect()
}

/// The distributed sampler's loop, in one process: split each frontier by
/// owner, sample each part in its partition, merge, induce.
fn sample_through_partitions(
    parts: &[Partition],
    cfg: &SamplerConfig,
    seeds: &[u64],
    batch: u64,
) -> SamplerOutput {
    let book = &parts[0].node_book;
    let mut ind = Inducer::new();
    let mut out = SamplerOutput::default();
    ind.add_seeds(seeds, &mut out.seed_positions);
    let mut frontier = ind.advance();
    out.num_sampled_nodes.push(frontier.len() as u64);
    for (hop, &fanout) in cfg.fanouts.iter().enumerate() {
        let ids = ind.nodes()[frontier.clone()].to_vec();
        let answers: Vec<(Vec<usize>, NeighborBatch)> = book
            .split(&ids)
            .unwrap()
            .into_iter()
            .enumerate()
            .map(|(p, positions)| {
                let sub: Vec<u64> = positions.iter().map(|&i| ids[i]).collect();
                let key = cfg.hop_key(batch, hop);
                let b = sample_neighbors(&parts[p].graph, &sub, fanout, key, cfg.options).unwrap();
                (positions, b)
            })
            .collect();
        let refs: Vec<(&[usize], &NeighborBatch)> =
            answers.iter().map(|(p, b)| (p.as_slice(), b)).collect();
        let mut merged = NeighborBatch::default();
        NeighborBatch::merge(ids.len(), &refs, &mut merged).unwrap();
        let eids = cfg.options.with_edge_ids.then_some(&mut out.edge_ids);
        let n = ind
            .induce(frontier, &merged, &mut out.rows, &mut out.cols, eids)
            .unwrap();
        out.num_sampled_edges.push(n as u64);
        frontier = ind.advance();
        out.num_sampled_nodes.push(frontier.len() as u64);
    }
    ind.take_nodes(&mut out.nodes);
    out
}

#[test]
fn sampling_through_partitions_equals_sampling_the_whole_graph() {
    let ds = dataset();
    let g = &ds.graph;
    let seeds: Vec<u64> = (0..g.num_rows() as u64).rev().step_by(3).collect();
    for method in [
        Partitioner::Hash { seed: 1 },
        Partitioner::Ldg { slack: 0.05 },
    ] {
        for k in [2, 4] {
            let dir = TempDir::new("agree");
            let parts = write_and_load(&ds, k, method, &dir);
            // Per node: the partition that owns it samples it like the
            // whole graph does, and the others do not hold it.
            for v in 0..g.num_rows() as u64 {
                let owner = parts[0].node_book.partition_of(v).unwrap() as usize;
                assert_eq!(
                    parts[owner].graph.neighbors(v).unwrap().targets,
                    g.neighbors(v).unwrap().targets
                );
                for (p, part) in parts.iter().enumerate() {
                    assert_eq!(part.graph.neighbors(v).is_some(), p == owner);
                }
            }
            for replace in [false, true] {
                let mut cfg = SamplerConfig::new(vec![6, 4, 3], 17);
                cfg.options = SampleOptions {
                    replace,
                    with_edge_ids: true,
                };
                let mut local = NeighborSampler::new(cfg.clone()).unwrap();
                for batch in 0..3 {
                    let c = &seeds[batch as usize * 40..][..40];
                    let whole = local.sample_from_nodes(g, c, batch).unwrap();
                    let dist = sample_through_partitions(&parts, &cfg, c, batch);
                    assert_eq!(dist, whole, "{method:?} k={k} replace={replace}");
                }
            }
        }
    }
}

#[test]
fn partition_features_labels_and_books_match_the_whole_graph() {
    let ds = dataset();
    let dir = TempDir::new("feat");
    let parts = write_and_load(&ds, 3, Partitioner::Hash { seed: 2 }, &dir);
    let nf = ds.node_features.as_ref().unwrap();
    let ef = ds.edge_features.as_ref().unwrap();
    let labels = ds.labels.as_ref().unwrap();
    let mut buf = Vec::new();
    let mut expect = Vec::new();
    for part in &parts {
        let owned = part.graph.nodes().global_ids();
        part.node_features
            .as_ref()
            .unwrap()
            .gather_into(owned, &mut buf)
            .unwrap();
        nf.gather_into(owned, &mut expect).unwrap();
        assert_eq!(buf, expect);
        for &v in owned {
            assert_eq!(part.label(v), Some(labels[v as usize]));
        }
        let eids = part.graph.csr().edge_ids().unwrap();
        part.edge_features
            .as_ref()
            .unwrap()
            .gather_into(eids, &mut buf)
            .unwrap();
        ef.gather_into(eids, &mut expect).unwrap();
        assert_eq!(buf, expect);
        for &e in eids {
            assert_eq!(
                part.edge_book.partition_of(e, &part.node_book),
                Some(part.index)
            );
        }
        // A node another partition owns is not found here.
        let other = (0..ds.num_nodes())
            .find(|&v| part.graph.nodes().local(v).is_none())
            .unwrap();
        assert!(
            part.node_features
                .as_ref()
                .unwrap()
                .gather_into(&[other], &mut buf)
                .is_err()
        );
    }
}

#[test]
fn gather_equals_global_rows_in_both_buffer_forms() {
    let data: Vec<f32> = (0..30).map(|i| i as f32).collect();
    let f = Features::new(3, data).unwrap();
    let mut out = vec![9.0; 100];
    f.gather_into(&[9, 0, 9], &mut out).unwrap();
    assert_eq!(out, vec![27.0, 28.0, 29.0, 0.0, 1.0, 2.0, 27.0, 28.0, 29.0]);
    let mut slice = [0f32; 6];
    f.gather_into_slice(&[1, 2], &mut slice).unwrap();
    assert_eq!(slice, [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    assert!(f.gather_into_slice(&[1], &mut slice).is_err());
    assert!(f.gather_into(&[10], &mut out).is_err());
    assert!(Features::new(4, vec![0.0; 6]).is_err());
}

#[test]
fn loading_a_missing_or_inconsistent_partition_fails_cleanly() {
    let ds = Dataset::new(Csr::from_edges(4, &[(0, 1), (2, 3)]).unwrap());
    let dir = TempDir::new("bad");
    assert!(Partition::load(dir.path(), 0, Progress::hidden()).is_err());
    let parts = write_and_load(&ds, 2, Partitioner::Hash { seed: 0 }, &dir);
    assert_eq!(parts.len(), 2);
    assert!(Partition::load(dir.path(), 2, Progress::hidden()).is_err());
    std::fs::write(dir.path().join("meta.json"), b"{not json").unwrap();
    let err = Partition::load(dir.path(), 0, Progress::hidden()).unwrap_err();
    assert!(matches!(err, rpc_graph::GraphError::Meta { .. }), "{err}");
}
