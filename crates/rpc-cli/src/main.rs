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

// One call into mimalloc's C API sets an option (`purge_freed_memory_at_once`).
#![deny(unsafe_code)]

mod config;
mod graph;
mod node;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// mimalloc returns freed memory to the OS shortly after it is freed;
/// glibc's malloc kept what thousands of short-lived connections had used.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (mimalloc.h; the bindings name the
/// options around it, not this one): how long freed memory waits before it
/// is handed back to the OS.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t =
    libmimalloc_sys::mi_option_use_numa_nodes - 1;

/// Hands freed memory back to the OS at once. With the default delay an
/// idle node kept what a burst had used (`cargo xtask soak --measure`: RSS
/// after 10,000 clients 1.25-1.35x the baseline, after 2,000 half-open
/// connections 1.7-1.9x; purging at once gave 1.02x and 1.35-1.41x).
#[allow(unsafe_code)]
fn purge_freed_memory_at_once() {
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table;
    // it takes no pointer, is thread-safe and may be called at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

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
        #[arg(long, default_value = "30", value_parser = parse_seconds)]
        timeout: Duration,
    },
    /// Print a node's view of the cluster.
    Members {
        /// Address of the node.
        #[arg(long)]
        node: String,
        /// Give up after this many seconds.
        #[arg(long, default_value = "10", value_parser = parse_seconds)]
        timeout: Duration,
    },
    /// Generate, partition, serve and sample graphs.
    Graph {
        /// What to do.
        #[command(subcommand)]
        cmd: graph::GraphCommand,
    },
}

/// The longest duration a flag in seconds takes: about eleven days.
const MAX_SECONDS: f64 = 1e6;

/// Parses a flag in seconds: a finite number above zero and at most
/// [`MAX_SECONDS`] (fractions allowed).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > MAX_SECONDS {
        return Err(format!(
            "{text} is not a duration: give a number of seconds above 0 and at most {MAX_SECONDS}"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
    purge_freed_memory_at_once();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, never in a log file.
        .with_ansi(std::io::stderr().is_terminal())
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
            } => node::plan(&node, &plan, timeout).await,
            Command::Members { node, timeout } => node::members(&node, timeout).await,
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
    use super::{Duration, error_chain, parse_seconds};

    /// The option set is the purge delay: mimalloc's default for it is
    /// 1000 ms (v3) or 10 ms (v2), and it reads 0 once set.
    #[test]
    #[allow(unsafe_code)]
    fn the_purge_option_is_mimallocs_purge_delay() {
        use super::{MI_OPTION_PURGE_DELAY, purge_freed_memory_at_once};
        // SAFETY: `mi_option_get` reads an integer from the option table.
        let before = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert!(before == 0 || before == 10 || before == 1000, "{before}");
        purge_freed_memory_at_once();
        // SAFETY: as above.
        let after = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(after, 0);
    }

    #[test]
    fn seconds_flags_take_finite_positive_numbers_only() {
        assert_eq!(parse_seconds("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["-1", "0", "nan", "NaN", "inf", "-inf", "1e30", "abc", ""] {
            let e = parse_seconds(bad).unwrap_err();
            assert!(e.contains("seconds"), "{bad}: {e}");
        }
    }

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
