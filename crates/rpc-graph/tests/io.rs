//! npy and edge-list IO, dataset directories and the R-MAT generator.

mod common;

use std::path::Path;

use common::{TempDir, hand_made};
use rpc_graph::io::{files, npy};
use rpc_graph::{
    Dataset, EdgeListOptions, Features, GraphError, Progress, RmatConfig, load_edge_list,
};

#[test]
fn npy_round_trips() {
    let dir = TempDir::new("npy");
    let p = dir.path().join("a.npy");
    npy::write_u64(&p, &[0, 5, 1 << 40], &[3]).unwrap();
    assert_eq!(npy::read_u64(&p).unwrap(), (vec![0, 5, 1 << 40], vec![3]));
    assert_eq!(npy::read_i64(&p).unwrap(), (vec![0, 5, 1 << 40], vec![3]));
    let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
    npy::write_f32(&p, &data, &[4, 3]).unwrap();
    assert_eq!(npy::read_f32(&p).unwrap(), (data, vec![4, 3]));
    // Header plus data is 64-byte aligned, like numpy writes it.
    assert_eq!((std::fs::metadata(&p).unwrap().len() - 48) % 64, 0);
    npy::write_i64(&p, &[-1, 2], &[2]).unwrap();
    assert!(matches!(npy::read_u64(&p), Err(GraphError::Npy { .. })));
    assert_eq!(npy::read_i64(&p).unwrap().0, vec![-1, 2]);
}

/// A raw npy file with `header` (the dict) and `data` bytes.
fn raw(path: &Path, header: &str, data: &[u8]) {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
    bytes.extend_from_slice(h.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

#[track_caller]
fn check_bad(dir: &TempDir, header: &str, data: &[u8], expect: &str) {
    let p = dir.path().join("bad.npy");
    raw(&p, header, data);
    match npy::read_u64(&p) {
        Err(GraphError::Npy { detail, .. }) => assert!(detail.contains(expect), "{detail}"),
        other => panic!("expected an npy error containing {expect:?}, got {other:?}"),
    }
}

#[test]
fn malformed_npy_files_are_typed_errors() {
    let dir = TempDir::new("badnpy");
    let ok = "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }";
    check_bad(&dir, ok, &[0; 15], "needs 2 elements");
    check_bad(&dir, ok, &[0; 17], "needs 2 elements");
    check_bad(
        &dir,
        "{'descr': '<i8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }",
        &[0; 16],
        "overflows",
    );
    check_bad(
        &dir,
        "{'descr': '<i8', 'fortran_order': False, 'shape': (1000000000,), }",
        &[0; 16],
        "needs",
    );
    check_bad(
        &dir,
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
        &[0; 16],
        "dtype",
    );
    check_bad(
        &dir,
        "{'descr': '<i8', 'fortran_order': True, 'shape': (2,), }",
        &[0; 16],
        "Fortran",
    );
    check_bad(
        &dir,
        "{'descr': '<i8', 'shape': (2,), }",
        &[0; 16],
        "fortran_order",
    );
    let p = dir.path().join("junk.npy");
    for bytes in [
        &b""[..],
        b"\x93NUMPY",
        b"PK\x03\x04 not numpy at all",
        b"\x93NUMPY\x09\x00\x10\x00",
    ] {
        std::fs::write(&p, bytes).unwrap();
        assert!(
            matches!(npy::read_u64(&p), Err(GraphError::Npy { .. })),
            "{bytes:?}"
        );
    }
    std::fs::write(&p, b"\x93NUMPY\x01\x00\xff\xff{").unwrap();
    assert!(matches!(npy::read_f32(&p), Err(GraphError::Npy { .. })));
    assert!(matches!(
        npy::read_u64(&dir.path().join("missing.npy")),
        Err(GraphError::Io { .. })
    ));
}

#[test]
fn dataset_directory_round_trips_and_is_checked() {
    let dir = TempDir::new("ds");
    let mut ds = Dataset::new(hand_made());
    ds.node_features = Some(Features::new(2, (0..12).map(|i| i as f32).collect()).unwrap());
    ds.labels = Some(vec![0, 1, 0, 1, 2, 2]);
    ds.write_dir(dir.path(), Progress::hidden()).unwrap();
    let back = Dataset::load_dir(dir.path(), Progress::hidden()).unwrap();
    assert_eq!(back.graph, ds.graph);
    assert_eq!(back.node_features, ds.node_features);
    assert_eq!(back.labels, ds.labels);
    assert!(back.edge_features.is_none());
    // Labels of the wrong length, neighbours out of range, 2-D indices.
    npy::write_i64(&dir.path().join(files::LABELS), &[1, 2], &[2]).unwrap();
    assert!(matches!(
        Dataset::load_dir(dir.path(), Progress::hidden()),
        Err(GraphError::Invalid(_))
    ));
    std::fs::remove_file(dir.path().join(files::LABELS)).unwrap();
    npy::write_u64(&dir.path().join(files::INDICES), &[9; 10], &[10]).unwrap();
    assert!(matches!(
        Dataset::load_dir(dir.path(), Progress::hidden()),
        Err(GraphError::Invalid(_))
    ));
    npy::write_u64(&dir.path().join(files::INDICES), &[0; 10], &[5, 2]).unwrap();
    assert!(matches!(
        Dataset::load_dir(dir.path(), Progress::hidden()),
        Err(GraphError::Npy { .. })
    ));
}

#[track_caller]
fn check_edge_list(text: &str, opts: EdgeListOptions, expect: Result<(&[u64], &[u64]), usize>) {
    let dir = TempDir::new("el");
    let p = dir.path().join("g.tsv");
    std::fs::write(&p, text).unwrap();
    match (load_edge_list(&p, opts), expect) {
        (Ok(g), Ok((indptr, indices))) => {
            assert_eq!(g.indptr(), indptr);
            assert_eq!(g.indices(), indices);
        }
        (Err(GraphError::EdgeList { line, .. }), Err(l)) => assert_eq!(line, l),
        (got, _) => panic!("{text:?}: got {got:?}"),
    }
}

#[test]
fn edge_lists() {
    let d = EdgeListOptions::default();
    check_edge_list("0\t1\n1\t2\n0\t2\n", d, Ok((&[0, 2, 3, 3], &[1, 2, 2])));
    check_edge_list(
        "# c\n% c\n\n0,1\n1 , 0, 0.5\n",
        d,
        Ok((&[0, 1, 2], &[1, 0])),
    );
    check_edge_list(
        "0 1",
        EdgeListOptions {
            num_nodes: Some(4),
            undirected: true,
        },
        Ok((&[0, 1, 2, 2, 2], &[1, 0])),
    );
    check_edge_list("0\t1\n1\n", d, Err(2));
    check_edge_list("# x\n0\tx\n", d, Err(2));
    check_edge_list("-1\t0\n", d, Err(1));
    check_edge_list("0\t99999999999999999999\n", d, Err(1));
    check_edge_list(
        "0\t5\n",
        EdgeListOptions {
            num_nodes: Some(5),
            undirected: false,
        },
        Err(1),
    );
    let dir = TempDir::new("el-bin");
    let p = dir.path().join("bin");
    std::fs::write(&p, b"0\t1\n\xff\xfe\n").unwrap();
    assert!(matches!(
        load_edge_list(&p, d),
        Err(GraphError::EdgeList { line: 2, .. })
    ));
}

#[test]
fn rmat_is_deterministic_and_clean() {
    let mut cfg = RmatConfig::new(10, 8, 99);
    cfg.threads = 1;
    let a = cfg.generate_graph(Progress::hidden()).unwrap();
    cfg.threads = 3;
    let b = cfg.generate_graph(Progress::hidden()).unwrap();
    assert_eq!(a, b, "same seed, any thread count: identical arrays");
    cfg.seed = 100;
    assert_ne!(a, cfg.generate_graph(Progress::hidden()).unwrap());
    assert_eq!(a.num_rows(), 1024);
    // 8192 drawn; self loops and duplicates removed (about a fifth at this
    // small scale, 4 % at scale 20).
    assert!(
        a.num_edges() <= 8192 && a.num_edges() > 6000,
        "{}",
        a.num_edges()
    );
    for r in 0..a.num_rows() {
        let row = &a.indices()[a.indptr()[r] as usize..a.indptr()[r + 1] as usize];
        assert!(row.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
        assert!(!row.contains(&(r as u64)), "no self loops");
    }
    // Skewed degrees: the top 1 % of nodes hold far more than 1 % of edges.
    let mut deg: Vec<usize> = (0..a.num_rows()).map(|r| a.degree(r)).collect();
    deg.sort_unstable_by(|x, y| y.cmp(x));
    assert!(deg[..10].iter().sum::<usize>() * 10 > a.num_edges());
    assert!(
        RmatConfig::new(0, 1, 0)
            .generate_graph(Progress::hidden())
            .is_err()
    );
    assert!(
        RmatConfig::new(33, 1, 0)
            .generate_graph(Progress::hidden())
            .is_err()
    );
}

#[test]
fn rmat_directory_equals_in_memory_generation() {
    let dir = TempDir::new("rmat");
    let mut cfg = RmatConfig::new(8, 4, 5);
    cfg.feature_dim = 3;
    cfg.num_classes = 5;
    let g = cfg.write_dir(dir.path(), Progress::hidden()).unwrap();
    let mem = cfg.generate(Progress::hidden()).unwrap();
    let disk = Dataset::load_dir(dir.path(), Progress::hidden()).unwrap();
    assert_eq!(g, mem.graph);
    assert_eq!(disk.graph, mem.graph);
    assert_eq!(disk.node_features, mem.node_features);
    assert_eq!(disk.labels, mem.labels);
    assert!(mem.labels.unwrap().iter().all(|&l| (0..5).contains(&l)));
    let f = mem.node_features.unwrap();
    assert_eq!((f.num_rows(), f.dim()), (256, 3));
    assert!(f.data().iter().all(|x| (-1.0..1.0).contains(x)));
}
