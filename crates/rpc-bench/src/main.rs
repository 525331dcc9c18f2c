//! `rpc-bench`: our RPC stack beside the floors it stands on and beside its
//! peers, tarpc and tonic, measured in one run on loopback so that their
//! ratios hold on a noisy machine.
//!
//! Run it with `cargo xtask bench [--quick]` (which builds it in release
//! mode). Every server is this binary re-run as a separate process
//! (`rpc-bench serve KIND`, on a tokio `current_thread` runtime except the
//! blocking std floor); the client side runs on this process's main thread,
//! on one `current_thread` runtime. See `BENCHMARKS.md` for the cases and
//! how to read them.
//!
//! Output: a Markdown report on stdout (the machine, then per idle mode a
//! table of p50/p99 in µs, calls/s or GiB/s and the sample count, and the
//! ratios against the targets), and `target/bench/summary.json`, one object
//! per case and idle mode. Progress goes to stderr.
//!
//! Placement: the client is pinned to one CPU and every server process to
//! another (`--no-pin` leaves it to the scheduler). Unpinned, the kernel
//! sometimes runs both ends of a ping-pong on one CPU, where a wake-up is
//! a context switch, and sometimes on two, where it may have to wake a
//! halted CPU; which one it picks sticks to a connection, so unpinned
//! numbers jump between runs.
//!
//! Idle modes: on a VM whose idle CPUs halt, every wake-up from sleep costs
//! tens of microseconds. When `/dev/cpu_dma_latency` is writable (root),
//! the whole suite runs twice: first as the machine is (`halt`), then
//! holding that file at 0 so that idle CPUs poll (`poll`).
//!
//! What it deliberately does **not** do: criterion statistics (it reports
//! percentiles of individually timed round trips instead), multi-threaded
//! runtimes, or anything but loopback.
//!
//! # Layout
//!
//! - `suite`: the groups of cases and the servers they talk to.
//! - `harness`: case traits, sample counts, alternating chunks, quiet waits.
//! - `machine`: background CPU, idle mode, the machine's description.
//! - `child`: server processes (`rpc-bench serve KIND`).
//! - `floors`: std and tokio TCP ping-pong, memcpy.
//! - `shm_floor`: the raw shared-memory ping-pong (spin and futex).
//! - `ours`: our `Rpc` over TCP and shared memory.
//! - `tarpc_case`, `tonic_case`: the peers.
//! - `report`: records, the Markdown report and ratios, the JSON summary.

mod child;
mod floors;
mod harness;
mod machine;
mod ours;
mod report;
mod shm_floor;
mod suite;
mod tarpc_case;
mod tonic_case;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::child::ServerKind;
use crate::harness::Settings;
use crate::machine::IdleMode;

/// Command line of `rpc-bench`.
#[derive(Debug, Parser)]
#[command(
    name = "rpc-bench",
    about = "Loopback benchmarks: ours beside raw floors, tarpc and tonic, in one run"
)]
struct Cli {
    /// A server role (used by the benchmark itself).
    #[command(subcommand)]
    command: Option<Role>,
    /// Few samples and short waits: under two minutes in all.
    #[arg(long)]
    quick: bool,
    /// Which idle modes to measure: `auto` runs both when
    /// /dev/cpu_dma_latency is writable, `halt` alone otherwise.
    #[arg(long, value_enum, default_value_t = Modes::Auto)]
    modes: Modes,
    /// Leave placement to the scheduler instead of pinning the client to
    /// one CPU and the servers to another.
    #[arg(long)]
    no_pin: bool,
    /// Where to write the JSON summary [default: target/bench/summary.json]
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Also write the Markdown report to this file.
    #[arg(long, value_name = "PATH")]
    markdown: Option<PathBuf>,
}

/// The hidden server role.
#[derive(Debug, Subcommand)]
enum Role {
    /// Serve one kind of echo until stdin closes, printing the address.
    #[command(hide = true)]
    Serve {
        /// What to serve.
        #[arg(value_enum)]
        kind: ServerKind,
    },
}

/// The `--modes` choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Modes {
    /// Both if /dev/cpu_dma_latency is writable, else halt.
    Auto,
    /// Halt only.
    Halt,
    /// Poll only (needs /dev/cpu_dma_latency).
    Poll,
    /// Halt, then poll (needs /dev/cpu_dma_latency).
    Both,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Role::Serve { kind }) = cli.command {
        return child::serve(kind);
    }
    let started = Instant::now();
    let settings = Settings::new(cli.quick);
    let modes = idle_modes(cli.modes);
    let placement = machine::Placement::choose(!cli.no_pin)?;
    if let Some(cpu) = placement.server_cpu() {
        child::pin_servers_to(cpu);
    }
    let mut records = Vec::new();
    for (i, &mode) in modes.iter().enumerate() {
        // Each idle mode gets an equal share of the budget.
        let share = settings.budget.mul_f64((i + 1) as f64 / modes.len() as f64);
        // Held for the whole poll half; closing it gives the latency
        // request back.
        let guard = match mode {
            IdleMode::Poll => Some(machine::hold_poll_idle()?),
            IdleMode::Halt => None,
        };
        eprintln!("== idle mode: {}", mode.name());
        records.extend(suite::run(&settings, mode, started + share)?);
        drop(guard);
    }
    let machine = machine::describe(&modes, placement);
    let markdown = report::markdown(&machine, &records, &modes);
    print!("{markdown}");
    if let Some(path) = &cli.markdown {
        std::fs::write(path, &markdown).with_context(|| format!("writing {}", path.display()))?;
    }
    let json = cli.json.unwrap_or_else(default_json_path);
    report::write_json(&records, &json)?;
    eprintln!(
        "wrote {} ({} records) in {:.0} s",
        json.display(),
        records.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The idle modes to measure, in order.
fn idle_modes(modes: Modes) -> Vec<IdleMode> {
    match modes {
        Modes::Halt => vec![IdleMode::Halt],
        Modes::Poll => vec![IdleMode::Poll],
        Modes::Both => vec![IdleMode::Halt, IdleMode::Poll],
        Modes::Auto => match machine::hold_poll_idle() {
            Ok(_probe) => vec![IdleMode::Halt, IdleMode::Poll],
            Err(e) => {
                eprintln!("poll mode unavailable ({e:#}); measuring halt only");
                vec![IdleMode::Halt]
            }
        },
    }
}

/// `target/bench/summary.json`, `target` being the directory this binary
/// was built into (`target/release/rpc-bench`), or the current
/// directory's `target` if that cannot be told.
fn default_json_path() -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("bench").join("summary.json")
}
