//! `cargo xtask`: the project's automation, and CI's one entry point.
//!
//! `cargo xtask ci` runs every check CI runs, in the order CI runs them, and
//! stops at the first failure. `cargo xtask deps` runs only the
//! dependency-rule check. The tidy checks are plain `#[test]`s in
//! `tidy`, so `cargo test` runs them too.
//!
//! This crate deliberately does **not** reimplement cargo: each step shells
//! out to `cargo` and prints the command first, so a failing step can be
//! rerun by hand with a copy and paste.
//!
//! # Layout
//!
//! - [`ci`]: the ordered list of CI steps and the runner with its timings.
//! - [`deps`]: the dependency rules as a table, checked against
//!   `cargo metadata` and each member's `cargo tree`.
//! - `tidy` (tests only): source hygiene checks written as `#[test]`s.

mod ci;
mod deps;
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
    /// Run every CI step in order (fmt, clippy, test, doc, deps, bench),
    /// stopping at the first failure.
    // Flags that add slower suites (`--loom`, `--ib`, `--netns`) belong on
    // this variant once those suites exist.
    Ci,
    /// Check only the dependency rules (who may depend on whom).
    Deps,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ci => ci::run(),
        Command::Deps => deps::run(),
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
