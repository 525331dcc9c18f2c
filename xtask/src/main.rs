//! `cargo xtask`: the project's automation, and CI's one entry point.
//!
//! `cargo xtask ci` runs every check CI runs, in the order CI runs them, and
//! stops at the first failure. `cargo xtask deps` runs only the
//! dependency-rule check. `cargo xtask bench` runs the benchmarks against
//! the floors and the peers (`crates/rpc-bench`). `cargo xtask fuzz --secs N`
//! runs every fuzz target for `N` seconds (CI runs them briefly, as part of
//! the tests). The tidy checks are plain
//! `#[test]`s in `tidy`, so `cargo test` runs them too.
//!
//! This crate deliberately does **not** reimplement cargo: each step shells
//! out to `cargo` and prints the command first, so a failing step can be
//! rerun by hand with a copy and paste.
//!
//! # Layout
//!
//! - [`bench`](mod@bench): building and running `rpc-bench`, recording its report.
//! - [`ci`]: the ordered list of CI steps and the runner with its timings.
//! - [`deps`]: the dependency rules as a table, checked against
//!   `cargo metadata` and each member's `cargo tree`.
//! - [`fuzz`]: the fuzz targets' long mode and its summary table.
//! - `tidy` (tests only): source hygiene checks written as `#[test]`s.

mod bench;
mod ci;
mod deps;
mod fuzz;
mod soak;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Command line of `cargo xtask`.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Project automation; `cargo xtask ci` is what CI runs",
    arg_required_else_help = true
)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands of `cargo xtask`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run every CI step in order (fmt, clippy, test, doc, deps, bench, a
    /// compile of the loom models), stopping at the first failure.
    // Flags that add slower suites (`--ib`, `--netns`) belong on this
    // variant once those suites exist.
    Ci {
        /// Also run the loom models of the shared-memory ring.
        #[arg(long)]
        loom: bool,
    },
    /// Check only the dependency rules (who may depend on whom).
    Deps,
    /// Build `rpc-bench` in release mode and run it: ours beside the raw
    /// floors, tarpc and tonic; writes target/bench/summary.json.
    Bench {
        /// Few samples and short waits (under two minutes).
        #[arg(long)]
        quick: bool,
        /// Leave placement to the scheduler instead of pinning client and
        /// servers to separate CPUs.
        #[arg(long)]
        no_pin: bool,
        /// Write the report into BENCHMARKS.md (full runs only).
        #[arg(long)]
        record: bool,
    },
    /// Run `rpc node` processes under short-lived clients and half-open
    /// connections, printing the node's memory, fds and CPU (not in CI).
    Soak {
        /// How long the churn runs.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
        /// Instead: the fixed measurement (RSS and idle CPU after 10,000
        /// clients, RSS after 4 bursts of 2,000 half-open connections).
        #[arg(long)]
        measure: bool,
        /// Short-lived clients in the measurement.
        #[arg(long, default_value_t = 10_000)]
        clients: u64,
        /// Clients running at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
    },
    /// Run every fuzz target for `--secs` seconds (optimized, overflow
    /// checks on) and print executions per target (not in CI).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        secs: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ci { loom } => ci::run(loom),
        Command::Deps => deps::run(),
        Command::Bench {
            quick,
            no_pin,
            record,
        } => bench::run(&bench::Options {
            quick,
            no_pin,
            record,
        }),
        Command::Soak {
            minutes,
            measure,
            clients,
            parallel,
        } => soak::run(&soak::Options {
            minutes,
            measure,
            clients,
            parallel,
        }),
        Command::Fuzz { secs } => fuzz::run(secs),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's directory.
fn project_root() -> PathBuf {
    // The xtask crate always lives one level below the workspace root, so
    // its manifest directory always has a parent.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// The `cargo` to shell out to: the one running us, if known.
fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}
