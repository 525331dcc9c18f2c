//! The `node`, `plan` and `members` subcommands.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rpc_core::Rpc;
use rpc_discovery::{Node, plan::Plan};
use rpc_transport_shm::ShmTransport;
use rpc_transport_tcp::TcpTransport;

use crate::config::NodeConfig;

/// What `rpc node` prints on stdout once it serves, before its name.
pub(crate) const READY: &str = "node ready: ";

/// The function `rpc members` calls.
const MEMBERS_FN: &str = "__cli.members";

/// An engine with every concrete transport.
fn engine() -> Rpc {
    let rpc = Rpc::new();
    rpc.add_transport(TcpTransport::new());
    rpc.add_transport(ShmTransport::new());
    rpc
}

/// Runs a node until interrupted (Ctrl-C or SIGTERM).
pub(crate) async fn run(path: &Path) -> Result<()> {
    let config = NodeConfig::load(path)?;
    let rpc = engine();
    rpc.set_name(&config.name)?;
    let mut bound = Vec::new();
    for addr in &config.listen {
        bound.push(
            rpc.listen(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?,
        );
    }
    let node = Node::start(&rpc, config.discovery())?;
    let functions: Vec<&str> = config.functions.iter().map(String::as_str).collect();
    if !functions.is_empty() && config.resources.is_empty() {
        // A node without resources is a balancer by design (plans through
        // it run elsewhere); say so rather than let a user wonder why its
        // functions never run.
        tracing::warn!(
            "{}: functions {functions:?} are registered but no resources are advertised, so this \
             node is a balancer: cluster calls never run here. Add `resources = [...]` to serve them.",
            config.name
        );
    }
    rpc_discovery::register_builtins(&node, &functions)?;
    let weak = node.clone();
    rpc.define(MEMBERS_FN, move |(): ()| {
        let text = weak.debug_info().to_string();
        async move { Ok::<_, rpc_core::HandlerError>(text) }
    })?;
    if !config.seeds.is_empty() {
        let seed = join(&node, &config.seeds).await?;
        tracing::info!(%seed, "joined");
    }
    let addrs: Vec<String> = bound.iter().map(ToString::to_string).collect();
    println!("{READY}{} on {}", config.name, addrs.join(", "));
    shutdown_signal().await;
    eprintln!("{}: leaving the cluster", config.name);
    tokio::time::timeout(Duration::from_secs(2), node.leave())
        .await
        .ok();
    rpc.shutdown();
    Ok(())
}

/// How long `rpc node` keeps trying its seeds before it gives up.
const JOIN_FOR: Duration = Duration::from_secs(30);

/// Joins through the first seed that answers, trying them again for
/// [`JOIN_FOR`] while none does (nodes started together wait for their
/// seed); a refused name ends it at once.
async fn join(node: &Node, seeds: &[String]) -> Result<String> {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        match node.join_any(seeds).await {
            Ok(seed) => return Ok(seed),
            Err(e @ rpc_discovery::DiscoveryError::DuplicateName { .. }) => return Err(e.into()),
            Err(e) if started.elapsed() + pause > JOIN_FOR => {
                return Err(
                    anyhow::Error::new(e).context(format!("no seed answered within {JOIN_FOR:?}"))
                );
            }
            Err(e) => {
                tracing::info!("no seed answered yet ({e}); trying again in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Sends a plan to the node at `addr` and prints the result.
pub(crate) async fn plan(addr: &str, path: &Path, timeout: Duration) -> Result<()> {
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    let plan =
        Plan::from_json_str(&text).with_context(|| format!("invalid plan {}", path.display()))?;
    let rpc = engine();
    let name = reach(&rpc, addr, timeout).await?;
    let result = rpc_discovery::request(&rpc, &name, &plan, timeout).await?;
    println!("{result}");
    rpc.shutdown();
    Ok(())
}

/// Connects to the node at `addr` for one command: a bad address or a
/// refused connection is an error at once, not after `timeout`.
async fn reach(rpc: &Rpc, addr: &str, timeout: Duration) -> Result<String> {
    let attempt = async { rpc.connect(addr)?.first_attempt(timeout).await };
    attempt
        .await
        .with_context(|| format!("cannot reach a node at {addr}"))
}

/// Prints a node's view of the cluster.
pub(crate) async fn members(addr: &str, timeout: Duration) -> Result<()> {
    let rpc = engine();
    let name = reach(&rpc, addr, timeout).await?;
    let text: String = rpc
        .call_with(
            &name,
            MEMBERS_FN,
            &(),
            rpc_core::CallOptions::default().timeout(timeout),
        )
        .await?;
    print!("{text}");
    rpc.shutdown();
    Ok(())
}
