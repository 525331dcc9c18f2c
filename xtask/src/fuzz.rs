//! `cargo xtask fuzz --secs N`: every fuzz target of the workspace, each
//! for `N` seconds, then a table of executions per target.
//!
//! The targets are ordinary tests (`rpc_core::testing::fuzz`), which
//! `cargo test` runs briefly by case count; here `RPC_FUZZ_SECS=N` makes
//! each run for `N` seconds. They are built optimized, with LTO off (as CI
//! builds its optimized code) but with debug assertions and overflow checks
//! on, in a target directory of their own, so that an overflow still fails
//! and the release build of the benchmarks is left alone. CI does not run
//! this; its tests run the targets' short mode.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::{cargo, project_root};

/// One test binary holding fuzz targets.
struct Suite {
    /// The package.
    package: &'static str,
    /// The cargo arguments selecting its test binaries.
    binaries: &'static [&'static str],
}

/// Every test binary with fuzz targets. A target is a test whose name
/// contains [`FILTER`].
const SUITES: &[Suite] = &[
    Suite {
        package: "rpc-core",
        binaries: &["--test", "fuzz"],
    },
    Suite {
        package: "rpc-tensor",
        binaries: &["--test", "fuzz"],
    },
    Suite {
        package: "rpc-discovery",
        binaries: &["--test", "fuzz", "--test", "fuzz_plan"],
    },
    Suite {
        package: "rpc-graph",
        binaries: &["--test", "fuzz"],
    },
    // A binary crate: its target is a unit test module (`config::fuzz`).
    Suite {
        package: "rpc-cli",
        binaries: &["--bin", "rpc"],
    },
];

/// The test name filter that selects fuzz targets (`fuzz_frame_decoder`,
/// `config::fuzz::fuzz_node_config`), not their regression tests.
const FILTER: &str = "fuzz_";

/// The environment of every run but `RPC_FUZZ_SECS`.
const ENV: &[(&str, &str)] = &[
    ("CARGO_TARGET_DIR", "target/fuzz"),
    ("CARGO_PROFILE_RELEASE_LTO", "false"),
    ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"),
    ("CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS", "true"),
    ("CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS", "true"),
    ("RUST_BACKTRACE", "1"),
];

/// What one target reported.
#[derive(Debug, PartialEq)]
struct Line {
    target: String,
    executions: u64,
    secs: f64,
}

/// Parses `fuzz <target>: <executions> executions in <secs> s`.
fn parse_line(line: &str) -> Option<Line> {
    let rest = line.trim().strip_prefix("fuzz ")?;
    let (target, rest) = rest.split_once(": ")?;
    let (executions, rest) = rest.split_once(" executions in ")?;
    let secs = rest.strip_suffix(" s")?;
    Some(Line {
        target: target.to_owned(),
        executions: executions.parse().ok()?,
        secs: secs.parse().ok()?,
    })
}

/// The cargo arguments of one suite's run.
fn args(suite: &Suite) -> Vec<&'static str> {
    let mut args = vec!["test", "--release", "--locked", "-p", suite.package];
    args.extend_from_slice(suite.binaries);
    args.extend_from_slice(&["--", FILTER, "--nocapture"]);
    args
}

/// Runs every suite with `secs` seconds per target and prints the table;
/// fails if any suite failed, after running the others.
pub(crate) fn run(secs: u64) -> Result<()> {
    let started = Instant::now();
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for suite in SUITES {
        let args = args(suite);
        let secs_value = secs.to_string();
        let mut shown = format!("RPC_FUZZ_SECS={secs} ");
        for (k, v) in ENV {
            shown.push_str(&format!("{k}={v} "));
        }
        shown.push_str("cargo ");
        shown.push_str(&args.join(" "));
        println!("$ {shown}");
        let mut child = Command::new(cargo())
            .args(&args)
            .envs(ENV.iter().copied())
            .env("RPC_FUZZ_SECS", &secs_value)
            .current_dir(project_root())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start `{shown}`"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading the tests' output")?;
            println!("{line}");
            lines.extend(parse_line(&line));
        }
        let status = child.wait().context("waiting for cargo test")?;
        if !status.success() {
            failed.push(suite.package);
        }
    }
    println!("\n{}", table(&lines));
    println!("fuzzing took {:.0} s", started.elapsed().as_secs_f64());
    if !failed.is_empty() {
        bail!("fuzz targets failed in {}", failed.join(", "));
    }
    Ok(())
}

/// The summary: one row per target, with executions per second.
fn table(lines: &[Line]) -> String {
    let width = lines
        .iter()
        .map(|l| l.target.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!(
        "{:<width$}  {:>12}  {:>7}  {:>10}\n",
        "target", "executions", "secs", "per second"
    );
    for l in lines {
        let rate = if l.secs > 0.0 {
            l.executions as f64 / l.secs
        } else {
            0.0
        };
        out.push_str(&format!(
            "{:<width$}  {:>12}  {:>7.1}  {:>10.0}\n",
            l.target, l.executions, l.secs, rate
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(line: &str, expect: Option<(&str, u64, f64)>) {
        let want = expect.map(|(target, executions, secs)| Line {
            target: target.to_owned(),
            executions,
            secs,
        });
        assert_eq!(parse_line(line), want);
    }

    #[test]
    fn reads_the_targets_summary_lines() {
        check(
            "fuzz frame_decoder: 2000 executions in 3.0 s",
            Some(("frame_decoder", 2000, 3.0)),
        );
        check(
            "  fuzz npy: 16299 executions in 30.0 s\n",
            Some(("npy", 16299, 30.0)),
        );
        check("test fuzz_npy ... ok", None);
        check("fuzz npy: failed after 3 executions (seed 1)", None);
        check("fuzz npy: many executions in 3.0 s", None);
    }

    #[test]
    fn the_table_lists_each_target_with_its_rate() {
        let lines = [
            Line {
                target: "npy".into(),
                executions: 600,
                secs: 60.0,
            },
            Line {
                target: "frame_decoder".into(),
                executions: 120_000,
                secs: 60.0,
            },
        ];
        let t = table(&lines);
        let rows: Vec<&str> = t.lines().collect();
        assert_eq!(rows.len(), 3);
        assert!(
            rows[1].starts_with("npy ") && rows[1].ends_with(" 10"),
            "{t}"
        );
        assert!(
            rows[2].contains("120000") && rows[2].ends_with(" 2000"),
            "{t}"
        );
    }

    #[test]
    fn every_run_selects_targets_and_shows_their_lines() {
        for suite in SUITES {
            let a = args(suite);
            assert!(a.windows(2).any(|w| w == ["--", FILTER]), "{a:?}");
            assert!(a.contains(&"--nocapture") && a.contains(&"--release"));
        }
        // An optimized build that still catches overflows.
        for k in [
            "CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS",
            "CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS",
        ] {
            assert!(ENV.contains(&(k, "true")), "{k}");
        }
    }

    /// Every `tests/fuzz*.rs` of the workspace is run by some suite.
    #[test]
    fn every_fuzz_test_file_is_in_a_suite() {
        let crates = project_root().join("crates");
        for entry in std::fs::read_dir(&crates).unwrap() {
            let dir = entry.unwrap().path();
            let package = dir.file_name().unwrap().to_string_lossy().into_owned();
            let Ok(tests) = std::fs::read_dir(dir.join("tests")) else {
                continue;
            };
            for file in tests {
                let name = file.unwrap().file_name().to_string_lossy().into_owned();
                let Some(stem) = name.strip_suffix(".rs").filter(|s| s.starts_with("fuzz")) else {
                    continue;
                };
                let covered = SUITES.iter().any(|s| {
                    s.package == package && s.binaries.windows(2).any(|w| w == ["--test", stem])
                });
                assert!(
                    covered,
                    "{package}/tests/{name} is in no suite of xtask fuzz"
                );
            }
        }
    }
}
