//! `rpc`: the project's command line.
//!
//! - `rpc node --config node.toml`: runs a cluster node (see [`config`]):
//!   it listens, joins through its seeds, advertises its resources and
//!   built-in functions, and serves plans until interrupted.
//! - `rpc plan --node tcp://HOST:PORT PLAN.json`: sends an mpreg-style plan
//!   to any node and prints the result as JSON.
//! - `rpc members --node tcp://HOST:PORT`: prints what a node knows of the
//!   cluster.
//! - `rpc graph generate|partition|serve|sample`: R-MAT datasets,
//!   partitioning, partition servers and loader throughput (see [`graph`]).
//!
//! Logs go to stderr (`RUST_LOG` filters them); results go to stdout.

#![forbid(unsafe_code)]

mod config;
mod graph;
mod node;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Command line of `rpc`.
#[derive(Debug, Parser)]
#[command(
    name = "rpc",
    version,
    about = "Cluster nodes, plans and tools of the RPC framework"
)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a cluster node described by a TOML file.
    Node {
        /// The node's configuration.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Send a plan (JSON) to a node and print its result.
    Plan {
        /// Address of any node of the cluster.
        #[arg(long)]
        node: String,
        /// The plan file (`-` for stdin). mpreg's form:
        /// `[["name", "function", [args...], [resources...]], ...]`.
        plan: PathBuf,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
    /// Print a node's view of the cluster.
    Members {
        /// Address of the node.
        #[arg(long)]
        node: String,
    },
    /// Generate, partition, serve and sample graphs.
    Graph {
        /// What to do.
        #[command(subcommand)]
        cmd: graph::GraphCommand,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Node { config } => node::run(&config).await,
            Command::Plan {
                node,
                plan,
                timeout,
            } => node::plan(&node, &plan, Duration::from_secs_f64(timeout)).await,
            Command::Members { node } => node::members(&node).await,
            Command::Graph { cmd } => graph::run(cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, leaving out a cause whose text the
/// message already includes (many errors print their source themselves).
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = anyhow::Error::new(io)
            .context("connect failed: refused")
            .context("cannot join");
        assert_eq!(error_chain(&e), "cannot join: connect failed: refused");
        let e = anyhow::anyhow!("low").context("high");
        assert_eq!(error_chain(&e), "high: low");
    }
}
