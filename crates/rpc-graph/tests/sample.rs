//! Sampling invariants on the hand-made graph, small R-MAT graphs and
//! random graphs.

mod common;

use common::{check_output, hand_made, rmat};
use proptest::prelude::*;
use rpc_graph::{
    Csr, HopKey, NeighborSampler, SampleOptions, SamplerConfig, induced_subgraph, sample_neighbors,
};

fn config(fanouts: &[i32], replace: bool, seed: u64) -> SamplerConfig {
    SamplerConfig {
        fanouts: fanouts.to_vec(),
        options: SampleOptions {
            replace,
            with_edge_ids: true,
        },
        seed,
    }
}

#[test]
fn hand_made_full_expansion_is_exact() {
    let g = hand_made();
    let mut s = NeighborSampler::new(config(&[-1, -1], false, 1)).unwrap();
    let out = s.sample_from_nodes(&g, &[4, 0], 0).unwrap();
    assert_eq!(out.nodes, vec![4, 0, 5, 1, 2, 3]);
    assert_eq!(out.seed_positions, vec![0, 1]);
    assert_eq!(out.num_sampled_nodes, vec![2, 4, 0]);
    // Hop 0: 4->5, 0->1, 0->2, 0->3; hop 1 expands 5, 1, 2, 3.
    assert_eq!(out.rows[..4], [0, 1, 1, 1]);
    assert_eq!(out.cols[..4], [2, 3, 4, 5]);
    assert_eq!(out.num_sampled_edges, vec![4, 6]);
    assert_eq!(out.edge_ids[..4], [8, 0, 1, 2]);
    check_output(&g, &out, &[4, 0], &[-1, -1], false);
}

#[test]
fn hand_made_fanout_rules() {
    let g = hand_made();
    for replace in [false, true] {
        for f in [0, 1, 2, 3, 5] {
            for seed in 0..20 {
                let mut s = NeighborSampler::new(config(&[f, f], replace, seed)).unwrap();
                let seeds = [2, 0, 3];
                let out = s.sample_from_nodes(&g, &seeds, seed).unwrap();
                check_output(&g, &out, &seeds, &[f, f], replace);
            }
        }
    }
}

#[test]
fn rmat_batches_respect_every_invariant() {
    let g = rmat(10, 8, 3);
    let seeds: Vec<u64> = (0..1024u64).step_by(7).collect();
    for replace in [false, true] {
        for fanouts in [vec![15, 10, 5], vec![10, 10], vec![-1, 3]] {
            let mut s = NeighborSampler::new(config(&fanouts, replace, 9)).unwrap();
            let out = s.sample_from_nodes(&g, &seeds, 4).unwrap();
            check_output(&g, &out, &seeds, &fanouts, replace);
        }
    }
}

#[test]
fn same_seed_same_batch_is_reproducible_and_keys_matter() {
    let g = rmat(9, 8, 1);
    let seeds: Vec<u64> = (0..512u64).step_by(5).collect();
    let run = |seed, batch| {
        let mut s = NeighborSampler::new(config(&[5, 5], false, seed)).unwrap();
        s.sample_from_nodes(&g, &seeds, batch).unwrap()
    };
    assert_eq!(run(1, 2), run(1, 2));
    assert_ne!(run(1, 2), run(2, 2));
    assert_ne!(run(1, 2), run(1, 3));
    // A reused sampler gives the same as a fresh one.
    let mut s = NeighborSampler::new(config(&[5, 5], false, 1)).unwrap();
    s.sample_from_nodes(&g, &seeds[..3], 0).unwrap();
    assert_eq!(s.sample_from_nodes(&g, &seeds, 2).unwrap(), run(1, 2));
}

#[test]
fn a_nodes_sample_does_not_depend_on_its_companions() {
    let g = rmat(9, 8, 2);
    let key = HopKey::new(5, 0, 0);
    let opts = SampleOptions::default();
    let all: Vec<u64> = (0..512).collect();
    let whole = sample_neighbors(&g, &all, 4, key, opts).unwrap();
    let mut offset = 0;
    for (i, &v) in all.iter().enumerate() {
        let c = whole.counts[i] as usize;
        let alone = sample_neighbors(&g, &[v], 4, key, opts).unwrap();
        assert_eq!(alone.neighbors, whole.neighbors[offset..offset + c]);
        offset += c;
    }
}

#[test]
fn unknown_seed_is_a_typed_error() {
    let g = hand_made();
    let mut s = NeighborSampler::new(config(&[2], false, 1)).unwrap();
    let err = s.sample_from_nodes(&g, &[6], 0).unwrap_err();
    assert!(matches!(
        err,
        rpc_graph::GraphError::NodeNotFound { node: 6 }
    ));
    assert!(NeighborSampler::new(config(&[-3], false, 1)).is_err());
}

#[test]
fn sampler_types_round_trip_through_bincode() {
    let g = hand_made();
    let mut s = NeighborSampler::new(config(&[2, 2], false, 1)).unwrap();
    let out = s.sample_from_nodes(&g, &[0, 2], 0).unwrap();
    let bytes = bincode::serialize(&out).unwrap();
    assert_eq!(
        bincode::deserialize::<rpc_graph::SamplerOutput>(&bytes).unwrap(),
        out
    );
    let cfg = s.config().clone();
    let bytes = bincode::serialize(&cfg).unwrap();
    assert_eq!(bincode::deserialize::<SamplerConfig>(&bytes).unwrap(), cfg);
    let b = sample_neighbors(&g, &[0, 2], 2, HopKey(1), cfg.options).unwrap();
    let bytes = bincode::serialize(&b).unwrap();
    assert_eq!(
        bincode::deserialize::<rpc_graph::NeighborBatch>(&bytes).unwrap(),
        b
    );
}

#[test]
fn induced_subgraph_keeps_exactly_the_inner_edges() {
    let g = hand_made();
    let sub = induced_subgraph(&g, &[2, 0, 5, 0]).unwrap();
    assert_eq!(sub.nodes, vec![2, 0, 5]);
    let edges: Vec<(u64, u64, u64)> = (0..sub.rows.len())
        .map(|i| {
            (
                sub.nodes[sub.rows[i] as usize],
                sub.nodes[sub.cols[i] as usize],
                sub.edge_ids[i],
            )
        })
        .collect();
    assert_eq!(edges, vec![(2, 0, 4), (2, 5, 7), (0, 2, 1), (5, 0, 9)]);
}

fn arb_graph() -> impl Strategy<Value = Csr> {
    (1u64..30).prop_flat_map(|n| {
        proptest::collection::vec((0..n, 0..n), 0..150)
            .prop_map(move |edges| Csr::from_edges(n, &edges).unwrap())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_graphs_keep_the_invariants(
        g in arb_graph(),
        fanouts in proptest::collection::vec(-1i32..6, 1..4),
        replace in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let n = g.num_rows() as u64;
        let seeds: Vec<u64> = (0..n).step_by(3).collect();
        let mut s = NeighborSampler::new(config(&fanouts, replace, seed)).unwrap();
        let out = s.sample_from_nodes(&g, &seeds, seed).unwrap();
        check_output(&g, &out, &seeds, &fanouts, replace);
    }
}
