//! `cargo xtask bench`: builds `rpc-bench` in release mode and runs it.
//!
//! The benchmark itself decides the idle modes (both when
//! `/dev/cpu_dma_latency` is writable) and writes
//! `target/bench/summary.json`; this only builds it, forwards the flags and,
//! with `--record`, puts the report of a full run into `BENCHMARKS.md`
//! between its markers, so that the table there is always the command's
//! own output.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{cargo, project_root};

/// The line before the recorded report in `BENCHMARKS.md`.
const BEGIN: &str = "<!-- rpc-bench:begin (written by `cargo xtask bench --record`) -->";
/// The line after it.
const END: &str = "<!-- rpc-bench:end -->";

/// What `cargo xtask bench` was asked to do.
#[derive(Debug, Default)]
pub(crate) struct Options {
    /// Few samples and short waits.
    pub(crate) quick: bool,
    /// Leave placement to the scheduler.
    pub(crate) no_pin: bool,
    /// Write the report into `BENCHMARKS.md`.
    pub(crate) record: bool,
}

/// Builds and runs the benchmark.
pub(crate) fn run(options: &Options) -> Result<()> {
    if options.record && options.quick {
        bail!("--record keeps full runs only; drop --quick");
    }
    let root = project_root();
    let out = root.join("target").join("bench");
    let markdown = out.join("summary.md");
    let mut args: Vec<String> = [
        "run",
        "--release",
        "--package",
        "rpc-bench",
        "--quiet",
        "--",
    ]
    .map(String::from)
    .to_vec();
    if options.quick {
        args.push("--quick".into());
    }
    if options.no_pin {
        args.push("--no-pin".into());
    }
    args.push("--json".into());
    args.push(out.join("summary.json").display().to_string());
    args.push("--markdown".into());
    args.push(markdown.display().to_string());
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    println!("$ cargo {}", args.join(" "));
    let status = Command::new(cargo())
        .args(&args)
        .current_dir(&root)
        .status()
        .context("could not start cargo")?;
    if !status.success() {
        bail!("rpc-bench failed ({status})");
    }
    if options.record {
        record(&root.join("BENCHMARKS.md"), &markdown)?;
    }
    Ok(())
}

/// Replaces the report in `doc` with the one in `report`.
fn record(doc: &Path, report: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(doc).with_context(|| format!("reading {}", doc.display()))?;
    let table =
        std::fs::read_to_string(report).with_context(|| format!("reading {}", report.display()))?;
    let spliced = splice(&text, &table).with_context(|| format!("in {}", doc.display()))?;
    std::fs::write(doc, spliced).with_context(|| format!("writing {}", doc.display()))?;
    println!("recorded the report in {}", doc.display());
    Ok(())
}

/// `doc` with everything between the [`BEGIN`] and [`END`] lines replaced by
/// `report`.
fn splice(doc: &str, report: &str) -> Result<String> {
    let Some(begin) = doc.find(BEGIN) else {
        bail!("no `{BEGIN}` line");
    };
    let after_begin = begin + BEGIN.len();
    let Some(end) = doc[after_begin..].find(END).map(|i| i + after_begin) else {
        bail!("no `{END}` line after `{BEGIN}`");
    };
    Ok(format!(
        "{}\n\n{}\n\n{}",
        &doc[..after_begin],
        report.trim(),
        &doc[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_splice(doc: &str, report: &str, expect: Option<&str>) {
        assert_eq!(splice(doc, report).ok().as_deref(), expect);
    }

    #[test]
    fn splices_between_the_markers() {
        let doc = format!("# B\n\n{BEGIN}\nold\n{END}\ntail\n");
        let expect = format!("# B\n\n{BEGIN}\n\n| new |\n\n{END}\ntail\n");
        check_splice(&doc, "| new |\n", Some(&expect));
        // Idempotent: recording twice gives the same file.
        check_splice(&expect, "| new |\n", Some(&expect));
        check_splice("no markers", "x", None);
        check_splice(&format!("{END}\n{BEGIN}\n"), "x", None);
    }
}
