//! The harness: case traits, sample counts, and groups of cases measured in
//! alternating chunks on a quiet machine.
//!
//! A group runs its cases round by round; each round times one chunk of
//! each case, in forward order on even rounds and backward on odd ones
//! (ABBA), so that noise and drift hit every case of the group alike and
//! their ratios hold. Before a group the harness waits for other processes
//! to go quiet. A disturbed group (other processes took more than
//! [`QUIET`](machine::QUIET) of the machine, or the hypervisor did in the
//! poll half, or another process held `/dev/cpu_dma_latency` in the halt
//! half) is measured again in full runs, and the less disturbed attempt is
//! kept. [`Settings::group_cap`] and [`Settings::budget`] bound how long
//! that may take.

use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::runtime::Runtime;

use crate::machine::{self, CpuMeter, IdleMode, Usage};
use crate::report::Record;

/// One round trip at a time: a latency case.
pub(crate) trait RoundTrip {
    /// Runs `n` round trips, pushing each one's time in nanoseconds to
    /// `out`.
    fn run(&mut self, rt: &Runtime, n: usize, out: &mut Vec<u64>) -> Result<()>;
}

/// Many calls in flight: a throughput case.
pub(crate) trait Pipelined {
    /// Runs `calls` calls, keeping `window` in flight; the time they took.
    fn run(&mut self, rt: &Runtime, calls: usize, window: usize) -> Result<Duration>;
}

/// How many operations of a case to run before timing, and per round.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chunk {
    /// Operations before any are timed.
    pub(crate) warm_up: usize,
    /// Operations timed per round.
    pub(crate) per_round: usize,
}

/// Sample counts and waits of one run.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Rounds per group.
    pub(crate) rounds: usize,
    /// 8 B round trips over TCP.
    pub(crate) tcp_small: Chunk,
    /// 8 B round trips over shared memory.
    pub(crate) shm_small: Chunk,
    /// 64 KiB round trips.
    pub(crate) medium: Chunk,
    /// 1 MiB round trips.
    pub(crate) big: Chunk,
    /// 64 MiB round trips and copies.
    pub(crate) huge: Chunk,
    /// Calls in the warm-up batch and in each timed batch of a throughput
    /// case.
    pub(crate) batch: Chunk,
    /// Calls in flight in throughput cases.
    pub(crate) window: usize,
    /// The longest to wait for other processes to go quiet before a group.
    pub(crate) quiet_wait: Duration,
    /// Attempts per group when other processes were busy.
    pub(crate) attempts: usize,
    /// The longest one attempt at a group may take: after a round that
    /// ends later, no more rounds are started (fewer samples, reported as
    /// such), so that a busy machine cannot stretch a run without bound.
    pub(crate) group_cap: Duration,
    /// The time the whole run may take (all idle modes), within which
    /// disturbed groups are repeated and quiet is waited for; past its
    /// share of it, an idle mode measures each group once, at once.
    pub(crate) budget: Duration,
}

impl Settings {
    /// The full run (about 10 rounds of 2,000 8 B round trips per case) or
    /// the `--quick` one.
    pub(crate) fn new(quick: bool) -> Self {
        let chunk = |warm_up, per_round| Chunk { warm_up, per_round };
        if quick {
            Self {
                rounds: 4,
                tcp_small: chunk(500, 500),
                shm_small: chunk(2_000, 2_000),
                medium: chunk(50, 100),
                big: chunk(10, 10),
                huge: chunk(1, 1),
                batch: chunk(1_000, 2_000),
                window: 64,
                quiet_wait: Duration::from_secs(3),
                attempts: 1,
                group_cap: Duration::from_secs(8),
                budget: Duration::from_secs(80),
            }
        } else {
            Self {
                rounds: 10,
                tcp_small: chunk(2_000, 2_000),
                shm_small: chunk(10_000, 10_000),
                medium: chunk(200, 500),
                big: chunk(30, 30),
                huge: chunk(2, 3),
                batch: chunk(5_000, 5_000),
                window: 64,
                quiet_wait: Duration::from_secs(20),
                attempts: 2,
                group_cap: Duration::from_secs(40),
                budget: Duration::from_secs(420),
            }
        }
    }
}

/// What every case of a run shares.
pub(crate) struct Ctx<'a> {
    /// The client's runtime.
    pub(crate) rt: &'a Runtime,
    /// Sample counts.
    pub(crate) settings: &'a Settings,
    /// The idle mode being measured.
    pub(crate) mode: IdleMode,
    /// This idle mode's share of [`Settings::budget`] ends here.
    pub(crate) deadline: Instant,
}

/// A latency case of a group.
pub(crate) struct Latency {
    /// The case's name in the summary.
    pub(crate) name: String,
    /// The case.
    pub(crate) case: Box<dyn RoundTrip>,
    /// Bytes moved per operation, for GiB/s (`None` for small messages).
    pub(crate) bytes: Option<u64>,
    /// Sample counts.
    pub(crate) chunk: Chunk,
}

/// A throughput case of a group.
pub(crate) struct Rate {
    /// The case's name in the summary.
    pub(crate) name: String,
    /// The case.
    pub(crate) case: Box<dyn Pipelined>,
}

/// A case that could not be set up, and why.
pub(crate) struct Skipped {
    /// The case's name in the summary.
    pub(crate) name: String,
    /// Why it was skipped.
    pub(crate) why: String,
}

/// Measures latency cases in alternating chunks; one record per case,
/// skipped cases included.
pub(crate) fn latency_group(
    ctx: &Ctx<'_>,
    title: &str,
    mut cases: Vec<Latency>,
    skipped: Vec<Skipped>,
) -> Vec<Record> {
    let n = cases.len();
    let (disturbance, samples) = quietest(ctx, title, |watch| {
        let mut samples: Vec<Result<Vec<u64>>> = cases
            .iter_mut()
            .map(|c| {
                c.case.run(ctx.rt, c.chunk.warm_up, &mut Vec::new())?;
                Ok(Vec::with_capacity(ctx.settings.rounds * c.chunk.per_round))
            })
            .collect();
        let started = Instant::now();
        for round in 0..ctx.settings.rounds {
            if round > 0 && started.elapsed() > ctx.settings.group_cap {
                break;
            }
            for i in abba(round, n) {
                let Ok(out) = &mut samples[i] else { continue };
                let case = &mut cases[i];
                if let Err(e) = case.case.run(ctx.rt, case.chunk.per_round, out) {
                    samples[i] = Err(e);
                }
            }
            watch.look();
        }
        samples
    });
    let mut records: Vec<Record> = cases
        .iter()
        .zip(samples)
        .map(|(case, samples)| match samples {
            Ok(mut samples) => {
                let (p50, p99) = percentiles(&mut samples);
                let mut record = Record::new(&case.name, ctx.mode);
                record.p50_us = p50;
                record.p99_us = p99;
                record.gib_per_s = case
                    .bytes
                    .zip(p50)
                    .map(|(bytes, p50)| bytes as f64 / (p50 * 1e-6) / GIB);
                record.samples = samples.len() as u64;
                disturbance.note(&mut record);
                record
            }
            Err(e) => Record::skipped(&case.name, ctx.mode, format!("failed: {e:#}")),
        })
        .collect();
    records.extend(
        skipped
            .into_iter()
            .map(|s| Record::skipped(&s.name, ctx.mode, s.why)),
    );
    records
}

/// Measures throughput cases in alternating batches; one record per case.
/// The rate is the median over batches.
pub(crate) fn rate_group(
    ctx: &Ctx<'_>,
    title: &str,
    mut cases: Vec<Rate>,
    skipped: Vec<Skipped>,
) -> Vec<Record> {
    let n = cases.len();
    let s = ctx.settings;
    let (disturbance, rates) = quietest(ctx, title, |watch| {
        let mut rates: Vec<Result<Vec<f64>>> = cases
            .iter_mut()
            .map(|c| {
                c.case.run(ctx.rt, s.batch.warm_up, s.window)?;
                Ok(Vec::with_capacity(s.rounds))
            })
            .collect();
        let started = Instant::now();
        for round in 0..s.rounds {
            if round > 0 && started.elapsed() > s.group_cap {
                break;
            }
            for i in abba(round, n) {
                let Ok(out) = &mut rates[i] else { continue };
                match cases[i].case.run(ctx.rt, s.batch.per_round, s.window) {
                    Ok(took) => out.push(s.batch.per_round as f64 / took.as_secs_f64()),
                    Err(e) => rates[i] = Err(e),
                }
            }
            watch.look();
        }
        rates
    });
    let mut records: Vec<Record> = cases
        .iter()
        .zip(rates)
        .map(|(case, rates)| match rates {
            Ok(mut rates) => {
                let mut record = Record::new(&case.name, ctx.mode);
                record.ops_per_s = median(&mut rates);
                record.samples = (rates.len() * s.batch.per_round) as u64;
                disturbance.note(&mut record);
                record
            }
            Err(e) => Record::skipped(&case.name, ctx.mode, format!("failed: {e:#}")),
        })
        .collect();
    records.extend(
        skipped
            .into_iter()
            .map(|s| Record::skipped(&s.name, ctx.mode, s.why)),
    );
    records
}

/// What disturbed one attempt at a group.
#[derive(Clone, Copy, Debug)]
struct Disturbance {
    /// What other processes and the hypervisor took.
    usage: Usage,
    /// Whether it was a halt attempt: then our own wake-ups of halted
    /// vCPUs show as steal (the hypervisor runs the woken vCPU late), so
    /// steal says nothing about others.
    halt: bool,
    /// Whether another process held `/dev/cpu_dma_latency` during a halt
    /// attempt, so that idle CPUs may have polled.
    latency_held_elsewhere: bool,
}

impl Disturbance {
    /// Whether the attempt can stand.
    fn acceptable(self) -> bool {
        self.taken() <= machine::QUIET && !self.latency_held_elsewhere
    }

    /// The share of the machine others took, as far as it can be told.
    fn taken(self) -> f64 {
        if self.halt {
            self.usage.others
        } else {
            self.usage.others.max(self.usage.steal)
        }
    }

    /// Whether this attempt is to be kept rather than `other`: one in the
    /// right idle mode first, then the quieter one.
    fn better_than(self, other: Self) -> bool {
        if self.latency_held_elsewhere != other.latency_held_elsewhere {
            return !self.latency_held_elsewhere;
        }
        self.taken() < other.taken()
    }

    fn note(self, record: &mut Record) {
        record.usage = Some(self.usage);
        record.latency_held_elsewhere = self.latency_held_elsewhere;
    }
}

/// Looks, in the halt half, for other processes that hold
/// `/dev/cpu_dma_latency` (other benchmarks do): while one does, idle CPUs
/// poll and a "halt" measurement is not one.
pub(crate) struct Watch {
    halt: bool,
    held: bool,
}

impl Watch {
    /// Looks now; called before, between rounds and after, never while a
    /// chunk is timed.
    fn look(&mut self) {
        if self.halt && !self.held {
            self.held = machine::latency_held_elsewhere();
        }
    }
}

/// Runs `measure` once the machine is quiet, again (up to
/// [`Settings::attempts`] in all) while the attempt was disturbed, and keeps
/// the least disturbed attempt and what `measure` returned.
fn quietest<T>(
    ctx: &Ctx<'_>,
    title: &str,
    mut measure: impl FnMut(&mut Watch) -> T,
) -> (Disturbance, T) {
    let mut best = attempt_quietly(ctx, title, 1, &mut measure);
    for attempt in 2..=ctx.settings.attempts {
        if best.0.acceptable() || Instant::now() > ctx.deadline {
            break;
        }
        let next = attempt_quietly(ctx, title, attempt, &mut measure);
        if next.0.better_than(best.0) {
            best = next;
        }
    }
    best
}

/// Waits for quiet, runs `measure` under a CPU meter and a [`Watch`], and
/// returns what disturbed it, with what `measure` returned.
fn attempt_quietly<T>(
    ctx: &Ctx<'_>,
    title: &str,
    attempt: usize,
    measure: impl FnOnce(&mut Watch) -> T,
) -> (Disturbance, T) {
    let wait = ctx
        .settings
        .quiet_wait
        .min(ctx.deadline.saturating_duration_since(Instant::now()));
    let before = machine::wait_for_quiet(wait);
    if !before.quiet() {
        eprintln!(
            "[{}] {title}: others still take {:.0} % of the CPUs (steal {:.0} %) after waiting {:.0} s; measuring anyway",
            ctx.mode.name(),
            before.others * 100.0,
            before.steal * 100.0,
            wait.as_secs_f64(),
        );
    }
    let mut watch = Watch {
        halt: ctx.mode == IdleMode::Halt,
        held: false,
    };
    watch.look();
    let meter = CpuMeter::start();
    let started = Instant::now();
    let result = measure(&mut watch);
    let disturbance = Disturbance {
        usage: meter.usage(),
        halt: ctx.mode == IdleMode::Halt,
        latency_held_elsewhere: {
            watch.look();
            watch.held
        },
    };
    eprintln!(
        "[{}] {title}: attempt {attempt}, {:.1} s, other processes' CPU {:.0} %, steal {:.0} %{}",
        ctx.mode.name(),
        started.elapsed().as_secs_f64(),
        disturbance.usage.others * 100.0,
        disturbance.usage.steal * 100.0,
        if disturbance.latency_held_elsewhere {
            ", /dev/cpu_dma_latency held by another process"
        } else {
            ""
        }
    );
    (disturbance, result)
}

/// The order of `n` cases in `round`: forward on even rounds, backward on
/// odd ones.
fn abba(round: usize, n: usize) -> Vec<usize> {
    if round.is_multiple_of(2) {
        (0..n).collect()
    } else {
        (0..n).rev().collect()
    }
}

/// Bytes in a GiB.
const GIB: f64 = (1u64 << 30) as f64;

/// p50 and p99 (nearest rank) of samples in nanoseconds, sorted in place,
/// in microseconds; `None` without samples.
pub(crate) fn percentiles(samples: &mut [u64]) -> (Option<f64>, Option<f64>) {
    bench_support::percentiles(samples).unzip()
}

/// The median (the lower one of an even count); `None` if empty.
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_unstable_by(f64::total_cmp);
    let i = values.len().checked_sub(1)? / 2;
    values.get(i).copied()
}

/// Nanoseconds of `d`, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Times `n` round trips of `op` on `rt`, one at a time.
pub(crate) fn time_each<F, Fut>(rt: &Runtime, n: usize, out: &mut Vec<u64>, mut op: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    rt.block_on(async {
        for _ in 0..n {
            let start = Instant::now();
            op().await?;
            out.push(nanos(start.elapsed()));
        }
        Ok(())
    })
}

/// Runs `calls` calls of `op` on `rt`, keeping `window` in flight; the time
/// they took.
pub(crate) fn windowed<F, Fut>(
    rt: &Runtime,
    calls: usize,
    window: usize,
    mut op: F,
) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    use futures_util::StreamExt as _;
    use futures_util::stream::FuturesUnordered;

    rt.block_on(async {
        let start = Instant::now();
        let mut in_flight = FuturesUnordered::new();
        let mut started = 0;
        while started < calls.min(window) {
            in_flight.push(op());
            started += 1;
        }
        while let Some(done) = in_flight.next().await {
            done?;
            if started < calls {
                in_flight.push(op());
                started += 1;
            }
        }
        Ok(start.elapsed())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0]), Some(3.0));
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.0));
    }

    #[test]
    fn rounds_alternate_direction() {
        assert_eq!(abba(0, 3), [0, 1, 2]);
        assert_eq!(abba(1, 3), [2, 1, 0]);
        assert_eq!(abba(2, 0), Vec::<usize>::new());
    }
}
