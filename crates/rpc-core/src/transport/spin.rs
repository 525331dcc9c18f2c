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
//! A `block_on` future on a current-thread runtime is polled only when the
//! run queue drains, which a spinning task delays until its next
//! [`YIELD_EVERY`]. The engine therefore yields once itself after it
//! delivers answers, so that a caller waiting in `block_on` runs at once.

use std::task::Poll;
use std::time::{Duration, Instant};

/// How often a spin lets the runtime's drivers and the operating system's
/// other threads run.
pub const YIELD_EVERY: Duration = Duration::from_micros(4);

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
async fn requeue() {
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

#[cfg(test)]
mod tests {
    use super::*;

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
