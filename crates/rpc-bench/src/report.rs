//! Results: one [`Record`] per case and idle mode, the Markdown report
//! with its ratios against the targets, and the JSON summary.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::machine::{IdleMode, Usage};

/// The result of one case in one idle mode: an element of
/// `target/bench/summary.json`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Record {
    /// The case's name, such as `ours/tcp/echo/8B`.
    pub(crate) case: String,
    /// `"halt"` or `"poll"`.
    pub(crate) idle_mode: &'static str,
    /// Median round trip (or copy), in microseconds.
    pub(crate) p50_us: Option<f64>,
    /// 99th percentile round trip (or copy), in microseconds.
    pub(crate) p99_us: Option<f64>,
    /// Calls per second, for throughput cases.
    pub(crate) ops_per_s: Option<f64>,
    /// GiB per second moved, for large payloads: both directions of an
    /// echo, one copy of memcpy; from the median.
    pub(crate) gib_per_s: Option<f64>,
    /// Round trips, copies or calls timed.
    pub(crate) samples: u64,
    /// What other processes and the hypervisor took while the case's
    /// group ran (report only).
    #[serde(skip)]
    pub(crate) usage: Option<Usage>,
    /// Whether another process held `/dev/cpu_dma_latency` while a halt
    /// group ran (report only).
    #[serde(skip)]
    pub(crate) latency_held_elsewhere: bool,
    /// Why the case has no numbers (report only).
    #[serde(skip)]
    pub(crate) note: Option<String>,
}

impl Record {
    /// A record without numbers yet.
    pub(crate) fn new(case: &str, mode: IdleMode) -> Self {
        Self {
            case: case.to_owned(),
            idle_mode: mode.name(),
            p50_us: None,
            p99_us: None,
            ops_per_s: None,
            gib_per_s: None,
            samples: 0,
            usage: None,
            latency_held_elsewhere: false,
            note: None,
        }
    }

    /// A case that was not measured, and why.
    pub(crate) fn skipped(case: &str, mode: IdleMode, why: String) -> Self {
        eprintln!("[{}] {case}: {why}", mode.name());
        Self {
            note: Some(why),
            ..Self::new(case, mode)
        }
    }

    fn metric(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::P50 => self.p50_us,
            Metric::P99 => self.p99_us,
            Metric::Ops => self.ops_per_s,
            Metric::Gib => self.gib_per_s,
        }
    }
}

/// Writes the records as a JSON array to `path`, creating its directory.
pub(crate) fn write_json(records: &[Record], path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut json = serde_json::to_string_pretty(records)?;
    json.push('\n');
    std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
}

/// The whole Markdown report: the machine, then per idle mode the table
/// and the ratios.
pub(crate) fn markdown(machine: &[String], records: &[Record], modes: &[IdleMode]) -> String {
    let mut out = String::new();
    for line in machine {
        let _ = writeln!(out, "- {line}");
    }
    for &mode in modes {
        let rows: Vec<&Record> = records
            .iter()
            .filter(|r| r.idle_mode == mode.name())
            .collect();
        let _ = writeln!(out, "\n### Idle mode: {}\n", mode_title(mode));
        table(&mut out, &rows);
        let _ = writeln!(out, "\nRatios ({}):\n", mode.name());
        ratios(&mut out, &rows);
    }
    out
}

fn mode_title(mode: IdleMode) -> &'static str {
    match mode {
        IdleMode::Halt => "halt (idle CPUs halt, the VM default)",
        IdleMode::Poll => "poll (`/dev/cpu_dma_latency` held at 0)",
    }
}

fn table(out: &mut String, rows: &[&Record]) {
    out.push_str("| case | p50 µs | p99 µs | calls/s | GiB/s | samples | others' CPU | steal |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        if let Some(note) = &r.note {
            let _ = writeln!(out, "| {} | {note} | | | | {} | | |", r.case, r.samples);
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.case,
            opt(r.p50_us, micros),
            opt(r.p99_us, micros),
            opt(r.ops_per_s, rate),
            opt(r.gib_per_s, |g| format!("{g:.2}")),
            r.samples,
            opt(r.usage.map(|u| u.others), |others| {
                let held = if r.latency_held_elsewhere {
                    " (idle polling held by another process)"
                } else {
                    ""
                };
                format!("{:.0} %{held}", others * 100.0)
            }),
            opt(r.usage.map(|u| u.steal), |steal| format!(
                "{:.0} %",
                steal * 100.0
            )),
        );
    }
}

fn opt(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map(format).unwrap_or_default()
}

/// Microseconds with three significant digits or so.
fn micros(us: f64) -> String {
    if us < 10.0 {
        format!("{us:.2}")
    } else if us < 1_000.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

/// Calls per second, in thousands or millions.
fn rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M", per_s / 1e6)
    } else {
        format!("{:.1} k", per_s / 1e3)
    }
}

/// Which number of a record a ratio uses.
#[derive(Clone, Copy, Debug)]
enum Metric {
    P50,
    P99,
    Ops,
    Gib,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Self::P50 => "p50",
            Self::P99 => "p99",
            Self::Ops => "calls/s",
            Self::Gib => "GiB/s",
        }
    }
}

/// A target a ratio (or an absolute number) must meet.
#[derive(Clone, Copy, Debug)]
enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Self::AtMost(limit) => value <= limit,
            Self::AtLeast(limit) => value >= limit,
        }
    }

    fn show(self) -> String {
        match self {
            Self::AtMost(limit) => format!("≤ {limit}"),
            Self::AtLeast(limit) => format!("≥ {limit}"),
        }
    }
}

/// One line of the ratio report: `ours ÷ base` of one metric, or `ours`
/// alone when `base` is `None`.
struct Ratio {
    ours: &'static str,
    base: Option<&'static str>,
    metric: Metric,
    target: Option<Target>,
}

const fn ratio(
    ours: &'static str,
    base: &'static str,
    metric: Metric,
    target: Option<Target>,
) -> Ratio {
    Ratio {
        ours,
        base: Some(base),
        metric,
        target,
    }
}

/// The ratios below each table: the issue's targets first, then the
/// informative ones.
const RATIOS: &[Ratio] = &[
    ratio(
        "ours/tcp/echo/8B",
        "floor/tcp-tokio/8B",
        Metric::P50,
        Some(Target::AtMost(1.15)),
    ),
    ratio(
        "ours/tcp/echo/8B",
        "tarpc/tcp/echo/8B",
        Metric::P50,
        Some(Target::AtMost(0.8)),
    ),
    ratio(
        "ours/tcp/echo/8B",
        "tonic/tcp/echo/8B",
        Metric::P50,
        Some(Target::AtMost(0.4)),
    ),
    ratio(
        "ours/tcp/inflight64/8B",
        "tarpc/tcp/inflight64/8B",
        Metric::Ops,
        Some(Target::AtLeast(3.0)),
    ),
    ratio(
        "ours/tcp/echo/1MiB",
        "floor/tcp-std/1MiB",
        Metric::P50,
        Some(Target::AtMost(1.3)),
    ),
    Ratio {
        ours: "ours/shm/echo/8B",
        base: None,
        metric: Metric::P50,
        target: Some(Target::AtMost(2.0)),
    },
    ratio("ours/tcp/echo/8B", "floor/tcp-tokio/8B", Metric::P99, None),
    ratio("ours/tcp/echo/8B", "floor/tcp-std/8B", Metric::P50, None),
    ratio(
        "ours/tcp-nospin/echo/8B",
        "floor/tcp-tokio/8B",
        Metric::P50,
        None,
    ),
    ratio("ours/tcp/echo/8B", "tarpc/tcp/echo/8B", Metric::P99, None),
    ratio("ours/tcp/echo/8B", "tonic/tcp/echo/8B", Metric::P99, None),
    ratio(
        "ours/tcp/inflight64/8B",
        "tonic/tcp/inflight64/8B",
        Metric::Ops,
        None,
    ),
    ratio(
        "ours/tcp/echo/64KiB",
        "floor/tcp-std/64KiB",
        Metric::P50,
        None,
    ),
    ratio("ours/shm/echo/8B", "floor/shm-spin/8B", Metric::P50, None),
    ratio("ours/shm/echo/8B", "floor/shm-futex/8B", Metric::P50, None),
    ratio("ours/shm/echo/8B", "ours/tcp/echo/8B", Metric::P50, None),
    ratio(
        "ours/shm/echo/1MiB",
        "ours/tcp/echo/1MiB",
        Metric::P50,
        None,
    ),
    ratio(
        "ours/shm/echo/64MiB",
        "floor/memcpy/64MiB",
        Metric::Gib,
        None,
    ),
    ratio(
        "ours/shm/inflight64/8B",
        "ours/tcp/inflight64/8B",
        Metric::Ops,
        None,
    ),
];

fn ratios(out: &mut String, rows: &[&Record]) {
    let find = |name: &str, metric: Metric| {
        rows.iter()
            .find(|r| r.case == name)
            .and_then(|r| r.metric(metric))
    };
    out.push_str("| ratio | value | target | |\n");
    out.push_str("|---|---:|---:|---|\n");
    for r in RATIOS {
        let metric = r.metric.name();
        let (label, value) = match r.base {
            Some(base) => (
                format!("{} ÷ {base} ({metric})", r.ours),
                find(r.ours, r.metric)
                    .zip(find(base, r.metric))
                    .map(|(ours, base)| ours / base),
            ),
            None => (format!("{} ({metric}, µs)", r.ours), find(r.ours, r.metric)),
        };
        let shown = value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"));
        let (target, verdict) = match (r.target, value) {
            (Some(t), Some(v)) => (t.show(), if t.met(v) { "met" } else { "MISSED" }),
            (Some(t), None) => (t.show(), "not measured"),
            (None, _) => (String::new(), ""),
        };
        let _ = writeln!(out, "| {label} | {shown} | {target} | {verdict} |");
    }
}

/// The peers' versions as locked in the workspace's `Cargo.lock`.
pub(crate) fn peer_versions() -> Vec<String> {
    const LOCK: &str = include_str!("../../../Cargo.lock");
    ["tarpc", "tonic", "prost", "tokio"]
        .iter()
        .filter_map(|name| Some(format!("{name} {}", locked_version(LOCK, name)?)))
        .collect()
}

/// The version of package `name` in the text of a `Cargo.lock` (the first
/// one, if several are locked).
fn locked_version<'a>(lock: &'a str, name: &str) -> Option<&'a str> {
    let entry = format!("name = \"{name}\"\n");
    let at = lock.find(&entry)? + entry.len();
    let rest = lock[at..].strip_prefix("version = \"")?;
    Some(&rest[..rest.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_version(lock: &str, name: &str, expect: Option<&str>) {
        assert_eq!(locked_version(lock, name), expect);
    }

    #[test]
    fn finds_locked_versions() {
        let lock = "[[package]]\nname = \"tonic-prost\"\nversion = \"9.9.9\"\n\n\
                    [[package]]\nname = \"tonic\"\nversion = \"0.14.9\"\n";
        check_version(lock, "tonic", Some("0.14.9"));
        check_version(lock, "tonic-prost", Some("9.9.9"));
        check_version(lock, "tarpc", None);
    }

    #[test]
    fn summary_json_has_the_contract_fields_only() {
        let mut record = Record::new("ours/tcp/echo/8B", IdleMode::Poll);
        record.p50_us = Some(12.5);
        record.samples = 3;
        record.usage = Some(Usage::default());
        let json = serde_json::to_string(&[record]).unwrap();
        assert_eq!(
            json,
            r#"[{"case":"ours/tcp/echo/8B","idle_mode":"poll","p50_us":12.5,"p99_us":null,"ops_per_s":null,"gib_per_s":null,"samples":3}]"#
        );
    }

    #[test]
    fn ratios_say_whether_targets_are_met() {
        let mut ours = Record::new("ours/tcp/echo/8B", IdleMode::Halt);
        ours.p50_us = Some(11.0);
        let mut floor = Record::new("floor/tcp-tokio/8B", IdleMode::Halt);
        floor.p50_us = Some(10.0);
        let mut out = String::new();
        ratios(&mut out, &[&ours, &floor]);
        assert!(
            out.contains("| ours/tcp/echo/8B ÷ floor/tcp-tokio/8B (p50) | 1.10 | ≤ 1.15 | met |")
        );
        assert!(out.contains(
            "| ours/tcp/echo/8B ÷ tarpc/tcp/echo/8B (p50) | n/a | ≤ 0.8 | not measured |"
        ));
    }
}
