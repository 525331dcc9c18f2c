//! Chaos on the in-memory network, on paused time: 10,000 calls while 1 %
//! of frames are lost and the link is reset every few milliseconds. Every
//! call ends exactly once, with a value or a typed error, within its
//! deadline plus a small slack; the handler ran at least once for every
//! success and at most once more for every ambiguous failure (a timeout or
//! a lost connection), and never for a call the engine says was never
//! delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rpc_core::{CallOptions, Error, HandlerError, MemNetwork, Rpc};
use tokio::time::Instant;

const CALLS: u64 = 10_000;
const WINDOW: usize = 64;
const DEADLINE: Duration = Duration::from_millis(250);
/// What a call may take past its deadline: the deadline task's wake-up.
const SLACK: Duration = Duration::from_millis(50);

/// How the calls ended.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    /// Timeouts and lost connections: the handler may or may not have run.
    ambiguous: u64,
    /// Of those, the timeouts.
    timeouts: u64,
    /// Errors the engine says were never delivered.
    undelivered: u64,
    /// Anything else, with its text.
    other: Vec<String>,
    /// The longest a call took.
    longest: Duration,
}

async fn engine(net: &MemNetwork, name: &str) -> Rpc {
    let rpc = Rpc::new();
    rpc.set_name(name).unwrap();
    rpc.add_transport(
        net.transport_on(name)
            .with_latency(Duration::from_micros(500)),
    );
    rpc.listen(&format!("mem://{name}")).await.unwrap();
    rpc
}

/// Runs `CALLS` calls of `inc`, `WINDOW` at a time, each checked to end
/// within its deadline plus the slack.
async fn run(client: &Rpc) -> Tally {
    let mut tally = Tally::default();
    let mut in_flight = FuturesUnordered::new();
    let mut next = 0u64;
    loop {
        while in_flight.len() < WINDOW && next < CALLS {
            let i = next;
            next += 1;
            let client = client.clone();
            in_flight.push(async move {
                let started = Instant::now();
                let call = client.call_with::<u64>(
                    "server",
                    "inc",
                    &i,
                    CallOptions::default().timeout(DEADLINE),
                );
                let r = tokio::time::timeout(DEADLINE + SLACK, call).await;
                (i, r, started.elapsed())
            });
        }
        let Some((i, r, took)) = in_flight.next().await else {
            break;
        };
        tally.longest = tally.longest.max(took);
        match r {
            Err(_) => panic!("call {i} did not end within its deadline plus {SLACK:?}"),
            Ok(Ok(v)) => {
                assert_eq!(v, i + 1, "call {i} got another call's answer");
                tally.ok += 1;
            }
            Ok(Err(e @ (Error::Timeout { .. } | Error::Disconnected { .. }))) => {
                assert!(!e.never_delivered());
                tally.ambiguous += 1;
                tally.timeouts += u64::from(matches!(e, Error::Timeout { .. }));
            }
            Ok(Err(e)) if e.never_delivered() => tally.undelivered += 1,
            Ok(Err(e)) => tally.other.push(e.to_string()),
        }
    }
    tally
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_calls_through_loss_and_resets_each_end_once_in_time() {
    let net = MemNetwork::new();
    let server = engine(&net, "server").await;
    let handled = Arc::new(AtomicU64::new(0));
    let count = handled.clone();
    server
        .define("inc", move |x: u64| {
            count.fetch_add(1, Ordering::Relaxed);
            async move { Ok::<_, HandlerError>(x + 1) }
        })
        .unwrap();
    let client = engine(&net, "client").await;
    client
        .connect("mem://server")
        .unwrap()
        .established(Duration::from_secs(5))
        .await
        .unwrap();

    net.set_frame_loss(0.01, 14);
    // The link resets every second of simulated time, and is back at once.
    let chaos = tokio::spawn({
        let net = net.clone();
        async move {
            let mut resets = 0u64;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                net.cut("client", "server");
                net.heal("client", "server");
                resets += 1;
                if resets == 1000 {
                    return;
                }
            }
        }
    });
    let tally = run(&client).await;
    chaos.abort();
    let handled = handled.load(Ordering::Relaxed);
    eprintln!(
        "{tally:?}, handled {handled}, frames lost {}",
        net.frames_lost()
    );

    assert_eq!(
        tally.ok + tally.ambiguous + tally.undelivered + tally.other.len() as u64,
        CALLS,
        "every call ended exactly once"
    );
    assert!(
        tally.other.is_empty(),
        "unexpected errors: {:?}",
        tally.other
    );
    assert!(net.frames_lost() > 10, "the network lost frames");
    assert!(tally.timeouts > 0, "some calls lost a frame: {tally:?}");
    assert!(
        tally.ambiguous > tally.timeouts,
        "some calls met a reset: {tally:?}"
    );
    // Most calls succeed: a fault costs the calls in flight when it hits,
    // not the calls after it (seed 14 loses a hello, which once made the
    // engine fail thousands of calls at once).
    assert!(
        tally.ok >= CALLS * 8 / 10,
        "calls succeed between faults: {tally:?}"
    );
    assert!(
        (tally.ok..=tally.ok + tally.ambiguous).contains(&handled),
        "handler ran {handled} times for {tally:?}"
    );
    assert!(tally.longest <= DEADLINE + SLACK, "{:?}", tally.longest);

    // Once the faults stop, the client is back to normal: the next call
    // waits for (or asks for) the reconnect, and every call after succeeds.
    net.set_frame_loss(0.0, 0);
    tokio::time::sleep(Duration::from_secs(10)).await;
    for i in 0..100u64 {
        let r = client
            .call_with::<u64>(
                "server",
                "inc",
                &i,
                CallOptions::default().timeout(DEADLINE),
            )
            .await;
        assert_eq!(r.ok(), Some(i + 1), "call {i} after the faults stopped");
    }
}
