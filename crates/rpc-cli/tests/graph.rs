//! `rpc graph`: generate and partition a tiny graph, serve a partition over
//! loopback TCP, and sample through it.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const RPC: &str = env!("CARGO_BIN_EXE_rpc");

/// A fresh directory under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rpc-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[track_caller]
fn rpc(args: &[&str]) -> String {
    let out = Command::new(RPC).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "rpc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn generate_partition_serve_and_sample_a_tiny_graph() {
    let tmp = TempDir::new("graph");
    let data = tmp.0.join("data");
    let parts = tmp.0.join("parts");
    let (data_s, parts_s) = (data.to_str().unwrap(), parts.to_str().unwrap());
    let out = rpc(&[
        "graph",
        "generate",
        "--out",
        data_s,
        "--scale",
        "8",
        "--edge-factor",
        "4",
        "--feature-dim",
        "4",
        "--classes",
        "3",
    ]);
    assert!(out.starts_with("generated 256 nodes"), "{out}");
    for f in ["indptr.npy", "indices.npy", "node_feat.npy", "labels.npy"] {
        assert!(data.join(f).exists(), "{f}");
    }
    let out = rpc(&[
        "graph",
        "partition",
        "--data",
        data_s,
        "--out",
        parts_s,
        "-k",
        "2",
        "--method",
        "ldg",
    ]);
    assert!(out.starts_with("2 partitions: edge cut"), "{out}");
    assert!(parts.join("meta.json").exists() && parts.join("part_1").is_dir());

    // Partition 1 served over loopback; partition 0 held by the sampler.
    let mut server = Command::new(RPC)
        .args(["graph", "serve", "--root", parts_s, "--part", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("ready partition 1 of 2 at tcp://"),
        "{line}"
    );
    let addr = line.split_whitespace().nth(6).unwrap().to_owned();
    let out = Command::new(RPC)
        .args([
            "graph", "sample", "--root", parts_s, "--part", "0", "--server", &addr,
        ])
        .args([
            "--fanouts",
            "3,2",
            "--batch-size",
            "16",
            "--batches",
            "4",
            "--warmup",
            "1",
        ])
        .args(["--features", "--json", "--timeout", "30"])
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let report: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(report["batches"], 4);
    assert!(
        report["edges_per_batch"].as_f64().unwrap() > 0.0,
        "{report}"
    );

    // A bad dataset directory is an error, not a panic.
    let out = Command::new(RPC)
        .args(["graph", "partition", "--data", parts_s, "--out", parts_s])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error:"));
}
