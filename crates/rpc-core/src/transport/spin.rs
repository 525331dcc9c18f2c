//! Waiting by looking: the bounded spin a receiver does before it sleeps.
//!
//! On machines whose idle CPUs halt, waking a sleeping thread costs tens of
//! microseconds, more than a whole round trip on shared memory. A receiver
//! that expects an answer soon therefore looks for it for a while before it
//! sleeps. [`spin_until`] is that loop, shared by the transports:
//!
//! - It never holds the thread. Between looks its task goes to the back of
//!   the run queue (a self-wake, no system call), so every other ready task
//!   on the thread runs in between.
//! - Every [`YIELD_EVERY`] it also lets the runtime poll its I/O driver and
//!   timers (`tokio::task::yield_now`) and the operating system run another
//!   thread on this CPU (`sched_yield`): two peers that share one CPU then
//!   take turns instead of each spinning out its whole budget.
//! - It stops after `budget`, and the caller sleeps.
//!
//! [`Spinner`] adds the policy a connection's receiver keeps: spin only
//! while spinning pays off. A spin that ends in vain makes the next waits
//! sleep at once, twice as many after each further miss (up to
//! [`MAX_SKIPPED`]); a sleep that ends within a few budgets, which a spin
//! would (nearly) have caught, brings spinning back at once. A ping-pong keeps
//! spinning; a connection whose frames come seldom costs almost no CPU.
//!
//! A `block_on` future on a current-thread runtime is polled only when the
//! run queue drains, which a spinning task delays until its next
//! [`YIELD_EVERY`]. The engine therefore yields once itself after it
//! answers a caller that waits outside any task, so that a caller in
//! `block_on` runs at once; a caller in a task is in the run queue already.

use std::task::Poll;
use std::time::{Duration, Instant};

/// How often a spin lets the runtime's drivers and the operating system's
/// other threads run.
pub const YIELD_EVERY: Duration = Duration::from_micros(4);

/// The most waits in a row a [`Spinner`] sleeps through without spinning,
/// once its spins keep ending in vain.
pub const MAX_SKIPPED: u32 = 63;

/// A sleep without a spin shorter than this many budgets brings spinning
/// back (see [`Spinner::slept_unspun`]).
pub const RESUME_AFTER_SLEEPS_UNDER: u32 = 4;

/// Rounds between two looks at the clock: reading it costs as much as a few
/// looks at a ring.
const ROUNDS_PER_CLOCK: u32 = 8;

/// Calls `ready` until it returns `Some`, for at most `budget`; `looks`
/// calls per round, with a CPU pause between them. `None` once the budget
/// is spent (or at once when it is zero): the caller then sleeps.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// let mut n = 0;
/// let got = rpc_core::transport::spin_until(Duration::from_secs(5), 1, || {
///     n += 1;
///     (n == 3).then_some("ready")
/// })
/// .await;
/// assert_eq!(got, Some("ready"));
/// # });
/// ```
pub async fn spin_until<T>(
    budget: Duration,
    looks: u32,
    mut ready: impl FnMut() -> Option<T>,
) -> Option<T> {
    if budget.is_zero() {
        return None;
    }
    let start = Instant::now();
    let mut last_yield = Duration::ZERO;
    let mut rounds = 0u32;
    loop {
        for _ in 0..looks.max(1) {
            if let Some(v) = ready() {
                return Some(v);
            }
            std::hint::spin_loop();
        }
        rounds = rounds.wrapping_add(1);
        if rounds.is_multiple_of(ROUNDS_PER_CLOCK) {
            let elapsed = start.elapsed();
            if elapsed >= budget {
                return ready();
            }
            if elapsed - last_yield >= YIELD_EVERY {
                last_yield = elapsed;
                std::thread::yield_now();
                tokio::task::yield_now().await;
                continue;
            }
        }
        requeue().await;
    }
}

/// Yields by waking itself: the task goes to the back of the run queue,
/// without the driver poll that `tokio::task::yield_now` waits for.
pub(crate) async fn requeue() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

/// A receiver's spin policy: before each sleep, spin up to a budget, while
/// spinning pays off (see the module docs).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use rpc_core::transport::Spinner;
/// let mut spinner = Spinner::new(Duration::from_micros(50));
/// // Nothing arrives: the spin ends in vain and the caller sleeps...
/// assert_eq!(spinner.spin(4, || None::<()>).await, None);
/// // ...and tells the spinner when it wakes.
/// spinner.woke();
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct Spinner {
    budget: Duration,
    /// Waits left to sleep through without spinning.
    skip: u32,
    /// Spins in a row that ended in vain (capped).
    misses: u32,
    /// When a sleep without a spin began, to tell whether a spin would have
    /// caught what woke it.
    unspun_since: Option<Instant>,
}

impl Spinner {
    /// Spins up to `budget` before each sleep; zero never spins.
    pub fn new(budget: Duration) -> Self {
        Self {
            budget,
            skip: 0,
            misses: 0,
            unspun_since: None,
        }
    }

    /// The spin budget.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// How many of the coming waits will sleep at once.
    pub fn skipping(&self) -> u32 {
        self.skip
    }

    /// Spins with [`spin_until`] unless the policy says to sleep at once.
    /// `None` means: sleep now, and call [`woke`](Self::woke) on waking.
    pub async fn spin<T>(&mut self, looks: u32, ready: impl FnMut() -> Option<T>) -> Option<T> {
        if self.budget.is_zero() {
            return None;
        }
        if self.skip > 0 {
            self.skip -= 1;
            self.unspun_since = Some(Instant::now());
            return None;
        }
        let got = spin_until(self.budget, looks, ready).await;
        self.spun(got.is_some());
        got
    }

    /// The policy's answer without the spin, for a caller that spins by
    /// itself: whether to spin now (then report with
    /// [`spun`](Self::spun)), or to wait without spinning. Each wait
    /// refused this way uses up one skip, as in [`spin`](Self::spin); only
    /// a spin's outcome changes the policy.
    pub fn begin(&mut self) -> bool {
        if self.budget.is_zero() {
            return false;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        true
    }

    /// Reports the end of a sleep that followed a `None` from
    /// [`spin`](Self::spin).
    pub fn woke(&mut self) {
        if let Some(since) = self.unspun_since.take() {
            self.slept_unspun(since.elapsed());
        }
    }

    /// Records a spin's outcome: a hit keeps spinning; a miss sleeps
    /// through the next 1, 3, 7, … waits, up to [`MAX_SKIPPED`].
    pub fn spun(&mut self, hit: bool) {
        self.unspun_since = None;
        if hit {
            self.misses = 0;
        } else {
            self.misses = (self.misses + 1).min(MAX_SKIPPED.ilog2() + 1);
            self.skip = ((1u64 << self.misses) - 1).min(u64::from(MAX_SKIPPED)) as u32;
        }
    }

    /// Records a sleep of `slept` taken without spinning. A sleep that
    /// ended within [`RESUME_AFTER_SLEEPS_UNDER`] budgets means a spin would
    /// (nearly) have caught what woke it, so spinning resumes. The margin is
    /// wide because a sleep also counts the wake-up itself, which on a
    /// machine whose idle CPUs halt can take longer than the budget.
    pub fn slept_unspun(&mut self, slept: Duration) {
        if slept < self.budget.saturating_mul(RESUME_AFTER_SLEEPS_UNDER) {
            self.skip = 0;
            self.misses = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_back_off_and_a_short_sleep_resumes_spinning() {
        let mut s = Spinner::new(Duration::from_micros(50));
        let mut skipped = Vec::new();
        for _ in 0..8 {
            s.spun(false);
            skipped.push(s.skipping());
        }
        assert_eq!(skipped, [1, 3, 7, 15, 31, 63, 63, 63]);
        // A long sleep says nothing: keep skipping.
        s.slept_unspun(Duration::from_millis(5));
        s.slept_unspun(Duration::from_micros(200));
        assert_eq!(s.skipping(), 63);
        // A sleep a spin would (nearly) have caught, its wake-up included:
        // spin again, and a hit keeps it.
        s.slept_unspun(Duration::from_micros(199));
        assert_eq!(s.skipping(), 0);
        s.spun(true);
        s.spun(false);
        assert_eq!(s.skipping(), 1, "the back-off starts over");
        // Any budget the configuration allows, however large.
        let mut huge = Spinner::new(Duration::MAX);
        huge.spun(false);
        huge.slept_unspun(Duration::from_secs(1));
        assert_eq!(huge.skipping(), 0);
    }

    #[tokio::test]
    async fn a_skipped_wait_does_not_look() {
        let mut s = Spinner::new(Duration::from_secs(3600));
        s.spun(false);
        let mut looked = 0;
        let got: Option<()> = s
            .spin(4, || {
                looked += 1;
                None
            })
            .await;
        assert_eq!((got, looked, s.skipping()), (None, 0, 0));
        // The next wait spins again (and finds the frame).
        assert_eq!(s.spin(4, || Some(1)).await, Some(1));
    }

    #[test]
    fn begin_follows_the_back_off() {
        let mut s = Spinner::new(Duration::from_micros(50));
        assert!(s.begin());
        s.spun(false);
        assert!(!s.begin(), "one wait without a spin after a miss");
        assert!(s.begin());
        s.spun(false);
        let refused = (0..8).take_while(|_| !s.begin()).count();
        assert_eq!(refused, 3, "three after the second miss");
        assert!(!Spinner::new(Duration::ZERO).begin());
    }

    #[tokio::test]
    async fn zero_budget_never_looks() {
        let mut looked = 0;
        let got: Option<()> = spin_until(Duration::ZERO, 4, || {
            looked += 1;
            None
        })
        .await;
        assert_eq!((got, looked), (None, 0));
    }

    #[tokio::test]
    async fn gives_up_after_the_budget_with_a_last_look() {
        let mut looked = 0u64;
        let got: Option<()> = spin_until(Duration::from_micros(200), 2, || {
            looked += 1;
            None
        })
        .await;
        assert_eq!(got, None);
        assert!(looked > 2, "looked {looked} times");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn other_tasks_run_while_it_spins() {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f2 = flag.clone();
        tokio::spawn(async move { f2.store(true, std::sync::atomic::Ordering::SeqCst) });
        // The spawned task can only run if the spin yields the thread.
        let got = spin_until(Duration::from_secs(3600), 4, || {
            flag.load(std::sync::atomic::Ordering::SeqCst).then_some(7)
        })
        .await;
        assert_eq!(got, Some(7));
    }
}
