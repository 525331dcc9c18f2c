//! `cargo xtask soak`: real `rpc node` processes under clients that come
//! and go, with the node's memory, file descriptors and CPU printed as it
//! runs. Outside CI: it takes minutes.
//!
//! - `cargo xtask soak --minutes N`: two nodes; for N minutes, short-lived
//!   clients (`rpc plan`, `rpc members`, each a new process with a random
//!   name) several at a time, and a burst of half-open connections (opened,
//!   never a byte sent) every minute. Prints a line per minute: clients so
//!   far, failures, and the first node's RSS, open fds, threads and CPU.
//! - `cargo xtask soak --measure`: the fixed figures of the failure-handling
//!   work: the node's RSS and idle CPU at rest, after 10,000 short-lived
//!   clients (once the engine has forgotten them), and after each of four
//!   bursts of 2,000 half-open connections once they are closed, each
//!   against the baseline.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, project_root};

/// What `cargo xtask soak` does.
#[derive(Debug)]
pub(crate) struct Options {
    /// How long the churn runs, in minutes (soak mode).
    pub minutes: u64,
    /// Run the fixed measurement instead of the soak.
    pub measure: bool,
    /// Short-lived clients in the measurement.
    pub clients: u64,
    /// Clients running at once.
    pub parallel: usize,
}

/// One node process and what it is.
struct NodeProc {
    child: Child,
    pid: u32,
    port: u16,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reading of a process from /proc.
#[derive(Clone, Copy, Debug)]
struct Reading {
    rss_kib: u64,
    fds: u64,
    threads: u64,
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
}

fn read_proc(pid: u32) -> Result<Reading> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let cpu_ticks = num(11) + num(12);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    Ok(Reading {
        rss_kib: field("VmRSS:"),
        fds,
        threads: field("Threads:"),
        cpu_ticks,
    })
}

/// CPU ticks the process used over `window` of rest.
fn idle_ticks(pid: u32, window: Duration) -> Result<u64> {
    let before = read_proc(pid)?.cpu_ticks;
    std::thread::sleep(window);
    Ok(read_proc(pid)?.cpu_ticks - before)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_node(rpc: &Path, dir: &Path, name: &str, seed: Option<u16>) -> Result<NodeProc> {
    let port = free_port()?;
    let seeds = seed
        .map(|p| format!("\"tcp://127.0.0.1:{p}\""))
        .unwrap_or_default();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "name = \"{name}\"\nlisten = [\"tcp://127.0.0.1:{port}\"]\nseeds = [{seeds}]\n\
             resources = [\"model-a\"]\nfunctions = [\"echo\", \"echos\", \"sum\"]\n"
        ),
    )?;
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let mut child = Command::new(rpc)
        .args(["node", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", rpc.display()))?;
    let mut out = std::io::BufReader::new(child.stdout.take().context("no stdout")?);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line)?;
    if !line.starts_with("node ready") {
        bail!(
            "{name} did not start: {line:?} (see {}/{name}.log)",
            dir.display()
        );
    }
    let pid = child.id();
    Ok(NodeProc { child, pid, port })
}

/// Builds the `rpc` binary optimized (without LTO, which only slows the
/// build) and returns its path.
fn build_rpc() -> Result<PathBuf> {
    eprintln!("--- building rpc (release, no LTO)");
    let status = Command::new(cargo())
        .current_dir(project_root())
        .args(["build", "--release", "-p", "rpc-cli", "--bin", "rpc"])
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
        .status()?;
    if !status.success() {
        bail!("building rpc failed");
    }
    Ok(project_root().join("target/release/rpc"))
}

/// Runs `count` short-lived clients against the node at `port`,
/// `parallel` at a time, alternating `rpc plan` and `rpc members`;
/// returns how many failed.
fn churn(rpc: &Path, plan: &Path, port: u16, count: u64, parallel: usize) -> Result<u64> {
    let addr = format!("tcp://127.0.0.1:{port}");
    let mut running: Vec<Child> = Vec::new();
    let mut failed = 0;
    let mut started = 0;
    while started < count || !running.is_empty() {
        while running.len() < parallel && started < count {
            let mut cmd = Command::new(rpc);
            if started % 4 == 3 {
                cmd.args(["members", "--node", &addr]);
            } else {
                cmd.args(["plan", "--node", &addr]).arg(plan);
            }
            running.push(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?);
            started += 1;
        }
        let mut still = Vec::new();
        for mut c in running {
            match c.try_wait()? {
                Some(status) => failed += u64::from(!status.success()),
                None => still.push(c),
            }
        }
        running = still;
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(failed)
}

/// Opens `n` connections to `port` and sends nothing; closes them after
/// `hold`.
fn half_open(port: u16, n: usize, hold: Duration) -> Result<usize> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => conns.push(c),
            Err(e) => {
                eprintln!(
                    "    half-open connection refused after {}: {e}",
                    conns.len()
                );
                break;
            }
        }
    }
    let opened = conns.len();
    std::thread::sleep(hold);
    drop(conns);
    Ok(opened)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub(crate) fn run(o: &Options) -> Result<()> {
    let rpc = build_rpc()?;
    let dir = std::env::temp_dir().join(format!("rpc-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let plan = dir.join("plan.json");
    std::fs::write(
        &plan,
        r#"[["a", "echo", ["hi"], ["model-a"]], ["b", "sum", [1, 2], []]]"#,
    )?;
    let a = start_node(&rpc, &dir, "soak-a", None)?;
    let _b = start_node(&rpc, &dir, "soak-b", Some(a.port))?;
    eprintln!("--- nodes up; logs in {}", dir.display());
    std::thread::sleep(Duration::from_secs(5));
    if o.measure {
        measure(o, &rpc, &plan, &a)
    } else {
        soak(o, &rpc, &plan, &a)
    }
}

fn soak(o: &Options, rpc: &Path, plan: &Path, a: &NodeProc) -> Result<()> {
    let start = Instant::now();
    let mut last = read_proc(a.pid)?;
    let mut clients = 0u64;
    let mut failed = 0u64;
    println!("minute | clients | failed | RSS | fds | threads | CPU %");
    println!(
        "0 | 0 | 0 | {} | {} | {} | -",
        mib(last.rss_kib),
        last.fds,
        last.threads
    );
    for minute in 1..=o.minutes {
        let until = start + Duration::from_secs(60 * minute);
        half_open(a.port, 500, Duration::from_secs(1))?;
        while Instant::now() < until {
            failed += churn(rpc, plan, a.port, 20, o.parallel)?;
            clients += 20;
        }
        let now = read_proc(a.pid)?;
        // Clock ticks are 1/100 s here (USER_HZ).
        let cpu = (now.cpu_ticks - last.cpu_ticks) as f64 / 60.0;
        println!(
            "{minute} | {clients} | {failed} | {} | {} | {} | {cpu:.1}",
            mib(now.rss_kib),
            now.fds,
            now.threads
        );
        std::io::stdout().flush()?;
        last = now;
    }
    Ok(())
}

fn measure(o: &Options, rpc: &Path, plan: &Path, a: &NodeProc) -> Result<()> {
    let base = read_proc(a.pid)?;
    let base_idle = idle_ticks(a.pid, Duration::from_secs(10))?;
    println!(
        "baseline: RSS {}, {} fds, {} threads, {base_idle} CPU ticks in 10 s idle",
        mib(base.rss_kib),
        base.fds,
        base.threads
    );
    let t = Instant::now();
    let failed = churn(rpc, plan, a.port, o.clients, o.parallel)?;
    let busy = read_proc(a.pid)?;
    println!(
        "{} short-lived clients in {:.0?} ({failed} failed): RSS {}, {} fds, {} CPU ticks used",
        o.clients,
        t.elapsed(),
        mib(busy.rss_kib),
        busy.fds,
        busy.cpu_ticks - base.cpu_ticks
    );
    // The engine forgets lost peers after Config::forget_after (60 s).
    std::thread::sleep(Duration::from_secs(65));
    let after = read_proc(a.pid)?;
    let idle = idle_ticks(a.pid, Duration::from_secs(10))?;
    println!(
        "after they are forgotten: RSS {} = {:.2}x baseline, {} fds, {idle} CPU ticks in 10 s idle",
        mib(after.rss_kib),
        after.rss_kib as f64 / base.rss_kib as f64,
        after.fds
    );
    let before_bursts = read_proc(a.pid)?;
    for burst in 1..=4 {
        let opened = half_open(a.port, 2000, Duration::from_secs(2))?;
        let open = read_proc(a.pid)?;
        std::thread::sleep(Duration::from_secs(3));
        let closed = read_proc(a.pid)?;
        println!(
            "half-open burst {burst}: {opened} opened; RSS while open {}, once closed {} = {:.2}x baseline ({:.2}x before the bursts), {} fds",
            mib(open.rss_kib),
            mib(closed.rss_kib),
            closed.rss_kib as f64 / base.rss_kib as f64,
            closed.rss_kib as f64 / before_bursts.rss_kib as f64,
            closed.fds
        );
    }
    Ok(())
}
