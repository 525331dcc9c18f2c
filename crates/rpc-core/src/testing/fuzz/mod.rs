//! Fuzz targets on stable Rust, run by `cargo test` (feature `test-util`).
//!
//! A target is a proptest strategy (arbitrary bytes, structured mutations
//! of valid encodings from [`mutate`], valid values from [`frames`]) and a
//! test that checks what a decoder of untrusted input promises: no panic,
//! no allocation beyond its limit ([`allocated_by`], with
//! [`counting_allocator!`](crate::counting_allocator)), a typed error for
//! bad input, and `decode(encode(x)) == x`.
//!
//! [`run`] drives one target. By default it runs a bounded number of cases,
//! so that a whole suite adds seconds to `cargo test`; with
//! `RPC_FUZZ_SECS=N` ([`SECS_VAR`]) every target runs until `N` seconds have
//! passed instead (`cargo xtask fuzz --secs N`). Either way it prints one
//! line, `fuzz <target>: <executions> executions in <secs> s`.
//!
//! A failure is shrunk by proptest to a minimal input and reported with the
//! seed of the run; `RPC_FUZZ_SEED=S` ([`SEED_VAR`]) replays it. A crash
//! found this way belongs in a plain `#[test]` next to the target, with the
//! failing input written out as bytes, so that it stays fixed.
//!
//! This module deliberately does not persist failures in files, fork, or
//! instrument coverage: it is a property-test loop with a time budget, not
//! a coverage-guided fuzzer.
//!
//! # Example
//!
//! ```
//! use proptest::prelude::*;
//! use rpc_core::testing::fuzz;
//!
//! let report = fuzz::run(
//!     "utf8",
//!     64,
//!     fuzz::mutate::mutations_of(Just(b"hello".to_vec())),
//!     |bytes| {
//!         // A typed error or a value, never a panic.
//!         let _ = std::str::from_utf8(&bytes);
//!         Ok(())
//!     },
//! );
//! assert!(report.executions > 0);
//! ```

pub mod frames;
pub mod mutate;

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseResult, TestError, TestRunner};

/// The environment variable that switches every target to a time budget:
/// its value is the number of seconds each target runs.
pub const SECS_VAR: &str = "RPC_FUZZ_SECS";
/// The environment variable that fixes the seed of every target, to replay
/// a reported failure.
pub const SEED_VAR: &str = "RPC_FUZZ_SEED";

/// How long a target runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// This many cases (the default under `cargo test`).
    Cases(u64),
    /// Until this much time has passed (`RPC_FUZZ_SECS`).
    Time(Duration),
}

impl Budget {
    /// The budget [`SECS_VAR`] asks for, or `default_cases` cases when it is
    /// not set.
    ///
    /// # Panics
    ///
    /// If the variable is set to something other than a whole number of
    /// seconds: a typo must not silently fall back to the short mode.
    pub fn from_env(default_cases: u64) -> Self {
        let value = std::env::var(SECS_VAR).ok();
        Self::parse(value.as_deref(), default_cases).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The budget for a value of [`SECS_VAR`] (`None` when unset).
    pub fn parse(secs: Option<&str>, default_cases: u64) -> Result<Self, String> {
        match secs.map(str::trim) {
            None | Some("") => Ok(Self::Cases(default_cases)),
            Some(s) => s
                .parse::<u64>()
                .map(|n| Self::Time(Duration::from_secs(n)))
                .map_err(|_| format!("{SECS_VAR}={s:?} is not a whole number of seconds")),
        }
    }

    /// Whether a target that ran `executions` cases in `elapsed` is done.
    pub fn is_done(&self, executions: u64, elapsed: Duration) -> bool {
        match *self {
            Self::Cases(n) => executions >= n,
            Self::Time(d) => elapsed >= d,
        }
    }
}

/// What one target did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// The cases run (each one execution of the test).
    pub executions: u64,
    /// How long they took.
    pub elapsed: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} executions in {:.1} s",
            self.executions,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Runs the target `name`: cases from `strategy` through `test`, for
/// `default_cases` cases or the time [`SECS_VAR`] sets, and prints
/// `fuzz <name>: <executions> executions in <secs> s`.
///
/// `test` fails a case by returning an error (`prop_assert!`) or by
/// panicking.
///
/// # Panics
///
/// When a case fails: the message has the shrunk input, the reason and the
/// seed to replay it with ([`SEED_VAR`]).
pub fn run<S: Strategy>(
    name: &str,
    default_cases: u64,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) -> Report {
    let budget = Budget::from_env(default_cases);
    let seed = seed_from_env();
    let config = Config {
        // Failures are reported with their seed and kept as regression
        // tests by hand, not in files proptest would write into the tree.
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        // Bounded, so that a failure in a slow target is reported in
        // reasonable time.
        max_shrink_iters: 10_000,
        max_shrink_time: 60_000,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let beat = watchdog(name, seed);
    let test = |value| {
        // A case that never returns (a livelock under paused time, which
        // then never advances) ends the process instead of hanging it.
        let _ = beat.send(());
        test(value)
    };
    let started = Instant::now();
    let mut executions = 0u64;
    while !budget.is_done(executions, started.elapsed()) {
        let case = strategy
            .new_tree(&mut runner)
            .unwrap_or_else(|why| panic!("fuzz {name}: no input could be generated: {why}"));
        match runner.run_one(case, test) {
            Ok(_) => executions += 1,
            Err(TestError::Fail(why, minimal)) => panic!(
                "fuzz {name}: failed after {executions} executions (seed {seed}; \
                 replay with {SEED_VAR}={seed}): {why}\n\
                 minimal failing input: {minimal:?}"
            ),
            Err(TestError::Abort(why)) => {
                panic!("fuzz {name}: aborted after {executions} executions: {why}")
            }
        }
    }
    let report = Report {
        executions,
        elapsed: started.elapsed(),
    };
    println!("fuzz {name}: {report}");
    report
}

/// How long one case may run before the watchdog calls it hung.
pub const CASE_WATCHDOG: Duration = Duration::from_secs(120);

/// Starts a thread that aborts the process, naming the target and the seed,
/// when no case starts for [`CASE_WATCHDOG`]; it ends when the returned
/// sender is dropped. Each send is a case starting.
fn watchdog(name: &str, seed: u64) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let name = name.to_owned();
    std::thread::spawn(move || {
        loop {
            match rx.recv_timeout(CASE_WATCHDOG) {
                Ok(()) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    eprintln!(
                        "fuzz {name}: a case hung for {CASE_WATCHDOG:?} (seed {seed}; \
                         replay with {SEED_VAR}={seed})"
                    );
                    std::process::abort();
                }
            }
        }
    });
    tx
}

/// The seed [`SEED_VAR`] sets, or a fresh random one.
fn seed_from_env() -> u64 {
    match std::env::var(SEED_VAR) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VAR}={s:?} is not a u64")),
        Err(_) => rand::random(),
    }
}

thread_local! {
    // Const-initialised cells without destructors: using them never
    // allocates, so the global allocator may touch them.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` and returns its result with the number of bytes the current
/// thread allocated meanwhile (every allocation and reallocation counted at
/// its full size, frees not subtracted).
///
/// Counts only where [`counting_allocator!`](crate::counting_allocator) is
/// the global allocator; elsewhere the count is always zero, which a test
/// can check with [`counting`].
pub fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let was = COUNTING.with(|c| c.replace(true));
    let before = ALLOCATED.with(|a| a.replace(0));
    let out = f();
    let allocated = ALLOCATED.with(|a| a.replace(before.saturating_add(a.get())));
    COUNTING.with(|c| c.set(was));
    (out, allocated)
}

/// Whether allocations are counted: [`allocated_by`] sees a small
/// allocation.
pub fn counting() -> bool {
    let (_, n) = allocated_by(|| std::hint::black_box(Box::new(0u64)));
    n > 0
}

/// Counts an allocation of `bytes`; called by the allocator that
/// [`counting_allocator!`](crate::counting_allocator) installs.
#[doc(hidden)]
#[inline]
pub fn note_allocation(bytes: usize) {
    // `try_with`: during thread teardown the cells may be gone already.
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(bytes)));
        }
    });
}

/// Installs a global allocator that forwards to the system allocator and
/// counts, for [`allocated_by`](crate::testing::fuzz::allocated_by), what
/// the current thread allocates. Use it once, at the top of a test crate
/// (an integration test file) that checks allocation limits:
///
/// ```
/// rpc_core::counting_allocator!();
///
/// fn main() {
///     let (v, bytes) = rpc_core::testing::fuzz::allocated_by(|| vec![0u8; 1000]);
///     assert_eq!((v.len(), bytes), (1000, 1000));
/// }
/// ```
///
/// The unsafe `GlobalAlloc` impl expands in the calling crate; `rpc-core`
/// itself forbids unsafe code.
#[macro_export]
macro_rules! counting_allocator {
    () => {
        /// The system allocator, counting for `allocated_by`.
        struct CountingAllocator;

        // SAFETY: every method forwards to the system allocator unchanged;
        // counting only reads and writes const-initialised thread-locals,
        // which never allocate.
        unsafe impl ::std::alloc::GlobalAlloc for CountingAllocator {
            unsafe fn alloc(&self, layout: ::std::alloc::Layout) -> *mut u8 {
                $crate::testing::fuzz::note_allocation(layout.size());
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { ::std::alloc::GlobalAlloc::alloc(&::std::alloc::System, layout) }
            }

            unsafe fn alloc_zeroed(&self, layout: ::std::alloc::Layout) -> *mut u8 {
                $crate::testing::fuzz::note_allocation(layout.size());
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { ::std::alloc::GlobalAlloc::alloc_zeroed(&::std::alloc::System, layout) }
            }

            unsafe fn realloc(
                &self,
                ptr: *mut u8,
                layout: ::std::alloc::Layout,
                new_size: usize,
            ) -> *mut u8 {
                $crate::testing::fuzz::note_allocation(new_size);
                // SAFETY: forwarded with the caller's guarantees.
                unsafe {
                    ::std::alloc::GlobalAlloc::realloc(&::std::alloc::System, ptr, layout, new_size)
                }
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: ::std::alloc::Layout) {
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { ::std::alloc::GlobalAlloc::dealloc(&::std::alloc::System, ptr, layout) }
            }
        }

        #[global_allocator]
        static COUNTING_ALLOCATOR: CountingAllocator = CountingAllocator;
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_budget(secs: Option<&str>, expect: Result<Budget, &str>) {
        match (Budget::parse(secs, 100), expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(e), Err(want)) => assert!(e.contains(want), "{e}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn budgets_from_the_environment() {
        check_budget(None, Ok(Budget::Cases(100)));
        check_budget(Some(""), Ok(Budget::Cases(100)));
        check_budget(Some("60"), Ok(Budget::Time(Duration::from_secs(60))));
        check_budget(Some(" 5 "), Ok(Budget::Time(Duration::from_secs(5))));
        check_budget(Some("1.5"), Err("not a whole number"));
        check_budget(Some("-1"), Err("not a whole number"));
    }

    #[test]
    fn budgets_end_runs() {
        let s = Duration::from_secs;
        assert!(!Budget::Cases(3).is_done(2, s(100)));
        assert!(Budget::Cases(3).is_done(3, s(0)));
        assert!(!Budget::Time(s(2)).is_done(1_000_000, s(1)));
        assert!(Budget::Time(s(2)).is_done(0, s(2)));
    }

    #[test]
    fn reports_read_as_the_summary_line() {
        let r = Report {
            executions: 1234,
            elapsed: Duration::from_millis(2050),
        };
        assert_eq!(r.to_string(), "1234 executions in 2.0 s");
    }
}
