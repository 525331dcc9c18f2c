//! Heterogeneous sampling and link-prediction sampling.

mod common;

use std::collections::BTreeMap;

use common::{check_output, hand_made};
use rpc_graph::{
    Csr, EdgeType, HeteroGraph, HeteroSampler, NegativeSampling, NeighborSampler, NeighborSource,
    SampleOptions, SamplerConfig, sample_from_edges,
};

/// Users write papers, papers cite papers; user ids and paper ids overlap.
fn graph() -> (HeteroGraph, EdgeType, EdgeType) {
    let mut g = HeteroGraph::new([("user".to_string(), 3), ("paper".to_string(), 4)]);
    let writes = EdgeType::new("user", "writes", "paper");
    let cites = EdgeType::new("paper", "cites", "paper");
    g.add_relation(
        writes.clone(),
        Csr::from_edges(3, &[(0, 0), (0, 1), (1, 2), (2, 3)]).unwrap(),
    )
    .unwrap();
    g.add_relation(
        cites.clone(),
        Csr::from_edges(4, &[(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)]).unwrap(),
    )
    .unwrap();
    (g, writes, cites)
}

#[test]
fn hetero_sampling_follows_edge_types() {
    let (g, writes, cites) = graph();
    let fanouts = BTreeMap::from([(writes.clone(), vec![-1, 0]), (cites.clone(), vec![-1, 1])]);
    let opts = SampleOptions {
        replace: false,
        with_edge_ids: true,
    };
    let mut s = HeteroSampler::new(fanouts, opts, 3).unwrap();
    let out = s.sample_from_nodes(&g, "user", &[0, 2], 0).unwrap();
    assert_eq!(out.nodes["user"], vec![0, 2]);
    assert_eq!(out.seed_positions, vec![0, 1]);
    // Hop 0: users write papers 0, 1, 3; cites has no paper frontier yet.
    assert_eq!(out.nodes["paper"][..3], [0, 1, 3]);
    let w = &out.edges[&writes];
    assert_eq!(w.num_sampled_edges, vec![3, 0]);
    let c = &out.edges[&cites];
    assert_eq!(c.num_sampled_edges[0], 0);
    // Hop 1: each of papers 0, 1, 3 cites one paper.
    assert_eq!(c.num_sampled_edges[1], 3);
    for (et, edges) in &out.edges {
        let csr = g.csr(et).unwrap();
        for i in 0..edges.rows.len() {
            let s = out.nodes[&et.src][edges.rows[i] as usize];
            let d = out.nodes[&et.dst][edges.cols[i] as usize];
            let n = csr.neighbors(s).unwrap();
            assert!(n.targets.contains(&d), "{et}: {s}->{d}");
            let e = edges.edge_ids[i];
            assert_eq!(csr.indices()[e as usize], d);
        }
    }
    // Reproducible.
    assert_eq!(s.sample_from_nodes(&g, "user", &[0, 2], 0).unwrap(), out);
}

#[test]
fn hetero_configuration_and_graph_are_checked() {
    let (mut g, writes, cites) = graph();
    assert!(
        HeteroSampler::new(
            BTreeMap::from([(writes.clone(), vec![1]), (cites, vec![1, 1])]),
            SampleOptions::default(),
            0
        )
        .is_err()
    );
    assert!(
        g.add_relation(writes.clone(), Csr::from_edges(2, &[]).unwrap())
            .is_err()
    );
    assert!(
        g.add_relation(writes, Csr::from_edges(3, &[(0, 9)]).unwrap())
            .is_err()
    );
    assert!(
        g.add_relation(EdgeType::new("user", "x", "venue"), Csr::default())
            .is_err()
    );
    assert!(g.set_labels("user", vec![1]).is_err());
    let missing = EdgeType::new("paper", "by", "user");
    let mut s = HeteroSampler::new(
        BTreeMap::from([(missing, vec![1])]),
        SampleOptions::default(),
        0,
    )
    .unwrap();
    assert!(s.sample_from_nodes(&g, "paper", &[0], 0).is_err());
}

#[test]
fn link_sampling_labels_positive_and_negative_pairs() {
    let g = hand_made();
    let mut s = NeighborSampler::new(SamplerConfig::new(vec![2], 4)).unwrap();
    let edges = [(0, 1), (2, 4)];
    let out = sample_from_edges(
        &mut s,
        &g,
        6,
        &edges,
        Some(NegativeSampling::Binary { amount: 2 }),
        7,
    )
    .unwrap();
    assert_eq!(out.edge_label, vec![1, 1, 0, 0, 0, 0]);
    assert_eq!(out.src_index.len(), 6);
    let nodes = &out.sample.nodes;
    for (i, &(a, b)) in edges.iter().enumerate() {
        assert_eq!(nodes[out.src_index[i] as usize], a);
        assert_eq!(nodes[out.dst_index[i] as usize], b);
    }
    let seeds: Vec<u64> = out
        .sample
        .seed_positions
        .iter()
        .map(|&p| nodes[p as usize])
        .collect();
    check_output(&g, &out.sample, &seeds, &[2], false);
    let again = sample_from_edges(
        &mut s,
        &g,
        6,
        &edges,
        Some(NegativeSampling::Binary { amount: 2 }),
        7,
    )
    .unwrap();
    assert_eq!(again, out);

    let t = sample_from_edges(
        &mut s,
        &g,
        6,
        &edges,
        Some(NegativeSampling::Triplet { amount: 3 }),
        7,
    )
    .unwrap();
    assert_eq!(t.edge_label, vec![1, 1]);
    assert_eq!(t.neg_dst_index.len(), 6);
    // On this graph node 0's non-neighbours exist, so negatives avoid edges.
    for (k, &l) in t.neg_dst_index.iter().enumerate() {
        let src = edges[k / 3].0;
        let dst = t.sample.nodes[l as usize];
        assert!(!g.neighbors(src).unwrap().targets.contains(&dst) || src == 2);
    }
    assert!(
        sample_from_edges(
            &mut s,
            &g,
            0,
            &edges,
            Some(NegativeSampling::Binary { amount: 1 }),
            0
        )
        .is_err()
    );
}
