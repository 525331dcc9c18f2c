//! Call accounting for chaos tests: many calls through injected faults,
//! each checked to end once and in time, and a tally of how they ended
//! that a test holds against the handler's own count.
//!
//! The calls go to a function `inc` that answers `x + 1` for `x: u64`, so
//! that an answer that belongs to another call is caught. It works on
//! paused time (the in-memory network) and on real time (sockets) alike.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use crate::{CallOptions, Error, Rpc};

/// How the calls of a chaos run ended.
#[derive(Debug, Default)]
pub struct Tally {
    /// Calls that returned their own answer.
    pub ok: u64,
    /// Timeouts and lost connections: the handler may or may not have run.
    pub ambiguous: u64,
    /// Of those, the timeouts.
    pub timeouts: u64,
    /// Errors the engine says were never delivered
    /// ([`Error::never_delivered`]): the handler did not run.
    pub undelivered: u64,
    /// Any other error, with its text.
    pub other: Vec<String>,
    /// The longest any call took.
    pub longest: Duration,
}

impl Tally {
    /// How many calls ended, whatever the outcome.
    pub fn total(&self) -> u64 {
        self.ok + self.ambiguous + self.undelivered + self.other.len() as u64
    }

    /// Panics unless the run is consistent: `calls` calls ended exactly
    /// once, none with an unexpected error, none later than `deadline` plus
    /// `slack`, and the handler ran (`handled` times) at least once per
    /// success and at most once more per ambiguous failure, never for a
    /// call reported as not delivered.
    #[track_caller]
    pub fn check(&self, calls: u64, handled: u64, deadline: Duration, slack: Duration) {
        assert_eq!(
            self.total(),
            calls,
            "every call ended exactly once: {self:?}"
        );
        assert!(self.other.is_empty(), "unexpected errors: {:?}", self.other);
        assert!(
            (self.ok..=self.ok + self.ambiguous).contains(&handled),
            "handler ran {handled} times for {self:?}"
        );
        assert!(self.longest <= deadline + slack, "{:?}", self.longest);
    }
}

/// Makes `n` calls of `inc` on `peer`, `window` at a time, each with
/// `deadline`; `before(i)` runs before call `i` is made (to switch faults).
/// A call still pending at `deadline + slack` fails the test: every call
/// must end by itself.
pub async fn run_calls(
    client: &Rpc,
    peer: &str,
    n: u64,
    window: usize,
    deadline: Duration,
    slack: Duration,
    mut before: impl FnMut(u64),
) -> Tally {
    let mut tally = Tally::default();
    let mut in_flight = FuturesUnordered::new();
    let mut next = 0u64;
    loop {
        while in_flight.len() < window && next < n {
            let i = next;
            next += 1;
            before(i);
            let (client, peer) = (client.clone(), peer.to_owned());
            in_flight.push(async move {
                let started = Instant::now();
                let call = client.call_with::<u64>(
                    &peer,
                    "inc",
                    &i,
                    CallOptions::default().timeout(deadline),
                );
                let r = tokio::time::timeout(deadline + slack, call).await;
                (i, r, started.elapsed())
            });
        }
        let Some((i, r, took)) = in_flight.next().await else {
            break;
        };
        tally.longest = tally.longest.max(took);
        match r {
            Err(_) => panic!("call {i} did not end within its deadline plus {slack:?}"),
            Ok(Ok(v)) => {
                assert_eq!(v, i + 1, "call {i} got another call's answer");
                tally.ok += 1;
            }
            Ok(Err(e @ (Error::Timeout { .. } | Error::Disconnected { .. }))) => {
                assert!(!e.never_delivered(), "{e:?}");
                tally.ambiguous += 1;
                tally.timeouts += u64::from(matches!(e, Error::Timeout { .. }));
            }
            Ok(Err(e)) if e.never_delivered() => tally.undelivered += 1,
            Ok(Err(e)) => tally.other.push(e.to_string()),
        }
    }
    tally
}
