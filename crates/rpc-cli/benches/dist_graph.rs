//! 2 partitions in 2 processes over loopback, with features: batches per
//! second, against the single-process sampler in the same run.
//!
//! `cargo bench -p rpc-cli --bench dist_graph`. Generates (once, cached
//! under the temp directory) an R-MAT graph of scale `RPC_GRAPH_SCALE`
//! (default 20), edge factor 16, 128-dim features, partitions it in 2
//! (hash), starts `rpc graph serve` for partition 1, and runs
//! `rpc graph sample` holding partition 0 and reaching partition 1 over
//! TCP: batch 1024, fanouts [15,10,5], shuffled own-partition seeds with
//! out-edges, features collected. Then `rpc graph sample` on the whole
//! dataset in one process. `RPC_GRAPH_BATCHES` (default 50) timed
//! batches after 5 warm-up ones. Prints ms per batch, batches/s, the
//! ratios to the 200 ms target and to GraphLearn-for-PyTorch's 1.6 s,
//! and the peak RSS (VmHWM) of each process.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

const RPC: &str = env!("CARGO_BIN_EXE_rpc");
const TARGET_MS: f64 = 200.0;
const GLT_MS: f64 = 1600.0;

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; a plain `cargo test --benches` run
    // passes nothing and must stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("dist_graph: run with `cargo bench -p rpc-cli --bench dist_graph`");
        return Ok(());
    }
    let scale: u32 = env_or("RPC_GRAPH_SCALE", 20);
    let batches: usize = env_or("RPC_GRAPH_BATCHES", 50);
    let dir = std::env::temp_dir().join(format!("rpc-graph-dist-bench-s{scale}"));
    let data = dir.join("data");
    let parts = dir.join("parts");
    if !parts.join("meta.json").exists() {
        std::fs::create_dir_all(&dir)?;
        run(Command::new(RPC)
            .args(["graph", "generate", "--out"])
            .arg(&data)
            .args([
                "--scale",
                &scale.to_string(),
                "--edge-factor",
                "16",
                "--feature-dim",
                "128",
            ]))?;
        run(Command::new(RPC)
            .args(["graph", "partition", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&parts)
            .args(["-k", "2", "--method", "hash"]))?;
    } else {
        println!("reusing {}", dir.display());
    }
    let common = [
        "--fanouts",
        "15,10,5",
        "--batch-size",
        "1024",
        "--features",
        "--json",
        "--batches",
    ];
    let n = batches.to_string();

    let (mut server, addr) = serve(&parts, 1)?;
    let dist = run_json(
        Command::new(RPC)
            .args(["graph", "sample", "--root"])
            .arg(&parts)
            .args(["--part", "0", "--server", &addr])
            .args(common)
            .arg(&n),
    );
    let server_hwm = hwm(server.id());
    stop(&mut server);
    let dist = dist?;
    let single = run_json(
        Command::new(RPC)
            .args(["graph", "sample", "--data"])
            .arg(&data)
            .args(common)
            .arg(&n),
    )?;

    let ms = |v: &Value| v["ms_per_batch"].as_f64().unwrap_or(f64::NAN);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let kib = |v: Option<u64>| v.map_or_else(|| "?".into(), |k| format!("{} MiB", k / 1024));
    println!(
        "\n## 2 partitions, 2 processes, loopback TCP, features (scale {scale}, [15,10,5], batch 1024)\n"
    );
    println!(
        "| run | ms/batch | batches/s | M sampled edges/s | seeds/s | edges/batch | nodes/batch | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, v) in [
        ("distributed client (part 0 + remote part 1)", &dist),
        ("single process, whole graph", &single),
    ] {
        println!(
            "| {name} | {:.1} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {} |",
            ms(v),
            f(v, "batches_per_s"),
            f(v, "edges_per_s") / 1e6,
            f(v, "seeds_per_s"),
            f(v, "edges_per_batch"),
            f(v, "nodes_per_batch"),
            kib(v["vm_hwm_kib"].as_u64()),
        );
    }
    println!(
        "| partition server (part 1) | | | | | | | {} |",
        kib(server_hwm)
    );
    println!();
    println!(
        "distributed {:.1} ms/batch: {:.2}x the 200 ms target (lower is better), {:.1}x faster than GLT's 1.6 s, {:.2}x the single-process time",
        ms(&dist),
        ms(&dist) / TARGET_MS,
        GLT_MS / ms(&dist),
        ms(&dist) / ms(&single),
    );
    Ok(())
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn run_json(cmd: &mut Command) -> Result<Value> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().context("no output")?;
    serde_json::from_str(line).with_context(|| format!("parsing {line:?}"))
}

/// Starts `rpc graph serve` for partition `part`; returns it and its
/// address, from its ready line.
fn serve(root: &Path, part: u32) -> Result<(Child, String)> {
    let mut child = Command::new(RPC)
        .args(["graph", "serve", "--root"])
        .arg(root)
        .args(["--part", &part.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the server")?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .split_whitespace()
        .skip_while(|w| *w != "at")
        .nth(1)
        .map(str::to_owned);
    match addr {
        Some(a) if line.starts_with("ready") => Ok((child, a)),
        _ => {
            stop(&mut child);
            bail!("the server did not get ready: {line:?}")
        }
    }
}

/// Asks the server to stop (SIGTERM, so that it shuts down cleanly), and
/// kills it if that fails.
fn stop(child: &mut Child) {
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    if !term.is_ok_and(|s| s.success()) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

fn hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
