//! `cargo xtask ci`: the ordered CI steps and their runner.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, deps, project_root};

/// One CI step.
struct Step {
    /// Short name, used in progress lines, the summary and errors.
    name: &'static str,
    /// What the step does.
    action: Action,
}

/// How a step is carried out.
enum Action {
    /// Run `cargo` with these arguments and extra environment variables.
    Cargo {
        /// Arguments after `cargo`.
        args: &'static [&'static str],
        /// Environment variables set for this command only.
        env: &'static [(&'static str, &'static str)],
    },
    /// Run the dependency-rule check in-process.
    Deps,
}

/// Every CI step, in the order CI runs them.
///
/// Cheap checks come first so that a formatting slip fails in a second, not
/// after a full build.
const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        action: Action::Cargo {
            args: &["fmt", "--all", "--", "--check"],
            env: &[],
        },
    },
    Step {
        name: "clippy",
        action: Action::Cargo {
            args: &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
            env: &[],
        },
    },
    // rpc-bench is left out of the tests: building tarpc and tonic for them
    // would add a minute for a handful of unit tests of the harness. The
    // clippy step above still compiles it, tests included, with warnings
    // denied, and the doc step documents it.
    Step {
        name: "test",
        action: Action::Cargo {
            args: &["test", "--workspace", "--exclude", "rpc-bench", "--locked"],
            env: &[("RUST_BACKTRACE", "1")],
        },
    },
    Step {
        name: "doc",
        action: Action::Cargo {
            args: &["doc", "--workspace", "--no-deps", "--locked"],
            env: &[("RUSTDOCFLAGS", "-D warnings")],
        },
    },
    Step {
        name: "deps",
        action: Action::Deps,
    },
    Step {
        name: "bench",
        action: Action::Cargo {
            args: &["bench", "--workspace", "--locked", "--no-run"],
            env: NO_LTO,
        },
    },
];

/// The bench profile without the release profile's fat LTO and single
/// codegen unit, for the step that only compiles the benchmarks and would
/// otherwise spend minutes linking.
const NO_LTO: &[(&str, &str)] = &[
    ("CARGO_PROFILE_BENCH_LTO", "false"),
    ("CARGO_PROFILE_BENCH_CODEGEN_UNITS", "16"),
];

/// The environment of the loom steps: loom's cfg, a target directory of
/// their own (so that the different `RUSTFLAGS` do not rebuild the normal
/// one), and the preemption bound that keeps the models to seconds.
const LOOM_ENV: &[(&str, &str)] = &[
    ("RUSTFLAGS", "--cfg loom"),
    ("CARGO_TARGET_DIR", "target/loom"),
    ("LOOM_MAX_PREEMPTIONS", "3"),
    // `cargo test --release` builds with the release profile itself.
    ("CARGO_PROFILE_RELEASE_LTO", "false"),
    ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"),
];

/// Compiles the loom models without running them: part of every CI run, so
/// that they cannot rot.
const LOOM_BUILD: Step = Step {
    name: "loom-build",
    action: Action::Cargo {
        args: &[
            "test",
            "-p",
            "rpc-transport-shm",
            "--release",
            "--lib",
            "--locked",
            "--no-run",
        ],
        env: LOOM_ENV,
    },
};

/// Runs the loom models of the shared-memory ring (`--loom`).
const LOOM: Step = Step {
    name: "loom",
    action: Action::Cargo {
        args: &[
            "test",
            "-p",
            "rpc-transport-shm",
            "--release",
            "--lib",
            "--locked",
            "loom",
        ],
        env: LOOM_ENV,
    },
};

/// The steps of one run: [`STEPS`], then the loom build, then the loom
/// models if `loom` is set.
fn steps(loom: bool) -> Vec<&'static Step> {
    let mut steps: Vec<&Step> = STEPS.iter().collect();
    steps.push(&LOOM_BUILD);
    if loom {
        steps.push(&LOOM);
    }
    steps
}

/// Runs every step in order (see [`steps`]), stopping at the first failure,
/// and prints a summary with the time each step took.
pub(crate) fn run(loom: bool) -> Result<()> {
    let started = Instant::now();
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    let steps = steps(loom);
    for (i, step) in steps.iter().enumerate() {
        println!("\n==> [{}/{}] {}", i + 1, steps.len(), step.name);
        let step_started = Instant::now();
        let result = run_step(step);
        timings.push((step.name, step_started.elapsed()));
        if let Err(err) = result {
            println!("\n{}", summary("FAILED", &timings, started.elapsed()));
            return Err(err.context(format!("ci step `{}` failed", step.name)));
        }
    }
    println!("\n{}", summary("ok", &timings, started.elapsed()));
    Ok(())
}

/// Runs one step.
fn run_step(step: &Step) -> Result<()> {
    match step.action {
        Action::Cargo { args, env } => run_cargo(args, env),
        Action::Deps => deps::run(),
    }
}

/// Runs `cargo` with `args` and `env` in the workspace root, printing the
/// command first, and fails unless it exits successfully.
fn run_cargo(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let shown = show_command(args, env);
    println!("$ {shown}");
    let status = Command::new(cargo())
        .args(args)
        .envs(env.iter().copied())
        .current_dir(project_root())
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// The command as a person would type it: `VAR="a b" cargo arg ...`.
fn show_command(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut shown = String::new();
    for (key, value) in env {
        if value.contains(' ') {
            let _ = write!(shown, "{key}=\"{value}\" ");
        } else {
            let _ = write!(shown, "{key}={value} ");
        }
    }
    shown.push_str("cargo");
    for arg in args {
        shown.push(' ');
        shown.push_str(arg);
    }
    shown
}

/// One line naming the outcome and the time taken by each step so far; the
/// last step listed is the failed one when `outcome` is not `ok`.
fn summary(outcome: &str, timings: &[(&str, Duration)], total: Duration) -> String {
    let steps: Vec<String> = timings
        .iter()
        .map(|(name, took)| format!("{name} {:.1}s", took.as_secs_f64()))
        .collect();
    format!(
        "ci {outcome} in {:.1}s: {}",
        total.as_secs_f64(),
        steps.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_shown(args: &[&str], env: &[(&str, &str)], expect: &str) {
        assert_eq!(show_command(args, env), expect);
    }

    #[test]
    fn shows_commands_as_typed() {
        check_shown(&["fmt", "--all"], &[], "cargo fmt --all");
        check_shown(
            &["test"],
            &[("RUST_BACKTRACE", "1")],
            "RUST_BACKTRACE=1 cargo test",
        );
        check_shown(
            &["doc"],
            &[("RUSTDOCFLAGS", "-D warnings")],
            "RUSTDOCFLAGS=\"-D warnings\" cargo doc",
        );
    }

    #[test]
    fn summary_lists_every_step_with_its_time() {
        let timings = [
            ("fmt", Duration::from_millis(400)),
            ("clippy", Duration::from_secs(3)),
        ];
        assert_eq!(
            summary("FAILED", &timings, Duration::from_millis(3260)),
            "ci FAILED in 3.3s: fmt 0.4s, clippy 3.0s"
        );
    }

    #[test]
    fn rpc_bench_is_linted_but_not_tested() {
        let args = |name: &str| match STEPS.iter().find(|s| s.name == name).map(|s| &s.action) {
            Some(Action::Cargo { args, .. }) => args.to_vec(),
            _ => Vec::new(),
        };
        assert!(args("clippy").contains(&"--workspace"));
        assert!(!args("clippy").contains(&"--exclude"));
        assert!(
            args("test")
                .windows(2)
                .any(|w| w == ["--exclude", "rpc-bench"])
        );
    }

    #[test]
    fn optimized_ci_steps_skip_lto() {
        for step in steps(true) {
            let Action::Cargo { args, env } = &step.action else {
                continue;
            };
            // `cargo bench` builds with the bench profile, `--release` with
            // the release profile.
            let profile = if args.contains(&"bench") {
                Some("CARGO_PROFILE_BENCH_LTO")
            } else if args.contains(&"--release") {
                Some("CARGO_PROFILE_RELEASE_LTO")
            } else {
                None
            };
            let lto_off: Vec<&str> = env
                .iter()
                .filter(|(k, v)| k.ends_with("_LTO") && *v == "false")
                .map(|(k, _)| *k)
                .collect();
            assert_eq!(lto_off, Vec::from_iter(profile), "step {}", step.name);
        }
    }

    #[test]
    fn steps_run_in_the_documented_order() {
        let names: Vec<&str> = STEPS.iter().map(|step| step.name).collect();
        assert_eq!(names, ["fmt", "clippy", "test", "doc", "deps", "bench"]);
    }

    #[test]
    fn loom_models_are_built_always_and_run_on_request() {
        let names = |loom| -> Vec<&str> { steps(loom).iter().map(|s| s.name).collect() };
        assert_eq!(names(false)[6..], ["loom-build"]);
        assert_eq!(names(true)[6..], ["loom-build", "loom"]);
    }
}
