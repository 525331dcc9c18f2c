//! `kill -9` of a server process, [`ROUNDS`] times, over a real transport
//! (feature `test-util`).
//!
//! Every transport that reaches another process runs the same scenario, as
//! with the conformance suite. A transport crate adds one file,
//! `tests/kill9.rs`, with a [`ProcessHarness`] saying how to start a server
//! child and where it listens, and the leak counters and slack of its own:
//!
//! ```no_run
//! use std::process::{Child, Command, Stdio};
//! use std::sync::Arc;
//!
//! use rpc_core::testing::kill9::ProcessHarness;
//! use rpc_core::transport::{MemNetwork, Transport};
//!
//! struct MyHarness;
//!
//! impl ProcessHarness for MyHarness {
//!     fn transport(&self) -> Arc<dyn Transport> {
//!         // Yours: the in-memory transport cannot reach another process.
//!         Arc::new(MemNetwork::default().transport())
//!     }
//!     fn listen_addr(&self) -> String {
//!         "mem://0".to_owned()
//!     }
//!     fn spawn_server(&self, entry: &str, listen: &str) -> Child {
//!         Command::new(std::env::current_exe().expect("the test binary"))
//!             .args([entry, "--exact", "--nocapture", "--test-threads=1"])
//!             .env("MY_KILL9_LISTEN", listen)
//!             .stdin(Stdio::null())
//!             .stdout(Stdio::piped())
//!             .spawn()
//!             .expect("spawning the test binary as a server")
//!     }
//!     fn server_listen_addr(&self) -> Option<String> {
//!         std::env::var("MY_KILL9_LISTEN").ok()
//!     }
//!     fn fd_slack(&self) -> usize {
//!         4
//!     }
//! }
//!
//! rpc_core::kill9_tests!(kill_9_of_a_server_over_mine_100_times, MyHarness);
//! # fn main() {}
//! ```
//!
//! which expands to two `#[test]`s: the test itself ([`run`]), and
//! [`SERVER_ENTRY`] ([`serve`]), which does nothing unless this test binary
//! was started again by [`ProcessHarness::spawn_server`], and then is the
//! server, until killed.
//!
//! The server is that child process, so that it dies by a real `SIGKILL`: no
//! goodbye, no destructor; the kernel closes its sockets (and drops its
//! mappings). One client engine, made once, lives through every round:
//!
//! 1. a few quick calls succeed, then several slow calls start, and the
//!    server confirms that their handlers run;
//! 2. the server is killed: every slow call fails with
//!    [`Error::Disconnected`] within [`BOUND`] of the kill, and a call made
//!    afterwards fails fast with [`Error::Unreachable`]: the engine redials
//!    (at once if the connection outlived `Config::reconnect_min`, else
//!    after that long), the connection is refused, and that is evidence the
//!    peer is gone. Rounds alternate between the two;
//! 3. the killed process is reaped, and a new server process with the same
//!    name listens **on the same address** (the address the first server
//!    bound): the client keeps redialing the address it was given to
//!    [`Rpc::connect`], so this is how a user's restarted server comes back,
//!    and a call succeeds within [`BOUND`];
//! 4. the client's file descriptors, threads and the harness's own counters
//!    ([`ProcessHarness::counters`]) are back to what they were after the
//!    first round, within each counter's slack, and no child process is left
//!    (running or zombie).
//!
//! Times are printed at the end (run with `--nocapture` to see them).
//!
//! # Layout
//! - `mod.rs`: the harness, the scenario and the server.
//! - `process.rs`: the server child process, and what this process holds
//!   (read from `/proc`) that a leak would grow.

mod process;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use process::{Bound, Counter, children, open_fds, threads};
use process::{ServerProcess, Stats, Usage};

use crate::transport::Transport;
use crate::{CallOptions, Config, Error, Rpc};

/// How many times a server is killed.
pub const ROUNDS: usize = 100;
/// Calls in flight when the server dies.
pub const SLOW_CALLS: usize = 4;
/// Calls answered before the slow ones start.
pub const QUICK_CALLS: usize = 3;
/// The server's name, the same in every process.
pub const SERVER: &str = "kill9-server";
/// Far above what each step takes (a few milliseconds), so that a loaded
/// machine does not fail the test by luck: pending calls must fail within
/// this of the kill, a call to the dead peer within this of its start, and
/// the first call to a restarted server within this of its listening. The
/// measured times are printed.
pub const BOUND: Duration = Duration::from_secs(5);
/// How long a new server process may take to start and listen (a debug test
/// binary on a busy machine); starting processes is not what is tested.
pub const STARTUP: Duration = Duration::from_secs(30);
/// The timeout of the calls themselves: longer than [`BOUND`], so that a
/// call that fails within the bound failed for its own reason, not by
/// timing out.
pub const LONG: Duration = Duration::from_secs(60);
/// What the child prints, followed by its bound address, once it listens.
pub const READY: &str = "kill9 server listening on ";
/// The name of the test that [`kill9_tests!`](crate::kill9_tests) makes the
/// server's entry: the test a child runs alone.
pub const SERVER_ENTRY: &str = "server_process";
/// Threads that may come and go without leaking: tokio keeps a blocking-pool
/// thread alive for 10 s after its last job, should anything on the path
/// ever use one. A thread leaked per round exceeds this within a few rounds.
pub const THREAD_SLACK: usize = 2;

/// What the scenario needs to know about a transport.
pub trait ProcessHarness: Send + Sync + 'static {
    /// A transport instance: the client's, and in the child the server's.
    fn transport(&self) -> Arc<dyn Transport>;

    /// The address the first server listens on, such as
    /// `tcp://127.0.0.1:0`; every later server listens on the address the
    /// first one bound.
    fn listen_addr(&self) -> String;

    /// Starts this test binary again, running only the test `entry` (which
    /// is [`SERVER_ENTRY`]), such that [`server_listen_addr`] is `listen`
    /// in the child, with its standard output piped.
    ///
    /// [`server_listen_addr`]: ProcessHarness::server_listen_addr
    fn spawn_server(&self, entry: &str, listen: &str) -> Child;

    /// In a child started by [`spawn_server`], the address to listen on;
    /// `None` in the test process itself.
    ///
    /// [`spawn_server`]: ProcessHarness::spawn_server
    fn server_listen_addr(&self) -> Option<String>;

    /// File descriptors that may be open at one sample and not at another
    /// without leaking: what the transport's connections hold, which a task
    /// of the engine may close just after the sample. A leak of one fd per
    /// round should exceed it within a few rounds.
    fn fd_slack(&self) -> usize;

    /// What else this process holds that a leak would grow (mappings, files
    /// in `/dev/shm`), checked and printed after the file descriptors and
    /// threads. None by default.
    fn counters(&self) -> Vec<Counter> {
        Vec::new()
    }
}

/// Expands to the kill -9 test, named `$test`, and its server's entry
/// ([`SERVER_ENTRY`]), each on a harness made by the given expression.
#[macro_export]
macro_rules! kill9_tests {
    ($test:ident, $harness:expr) => {
        /// The child's side: a server with a long-running function, until
        /// killed. Does nothing unless started by the test.
        #[test]
        fn server_process() {
            $crate::testing::kill9::serve(&$harness);
        }

        #[test]
        fn $test() {
            $crate::testing::kill9::run(&$harness);
        }
    };
}

/// The child's side: if this process was started by
/// [`ProcessHarness::spawn_server`], a server with a long-running function
/// until killed; else nothing.
pub fn serve(harness: &dyn ProcessHarness) {
    let Some(listen) = harness.server_listen_addr() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let server = Rpc::new();
        server.set_name(SERVER).expect("a valid name");
        server.add_transport_arc(harness.transport());
        server
            .define("echo", |s: String| async move { Ok(s) })
            .expect("define echo");
        // How many slow calls reached their handler: the client waits until
        // all of its slow calls did, so that they are in flight for sure
        // when the process dies.
        let started = Arc::new(AtomicUsize::new(0));
        let counter = started.clone();
        server
            .define("slow", move |(): ()| {
                counter.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                }
            })
            .expect("define slow");
        server
            .define("slow_started", move |(): ()| {
                let n = started.load(Ordering::SeqCst);
                async move { Ok(n) }
            })
            .expect("define slow_started");
        let bound = server.listen(&listen).await.expect("listening");
        let mut out = std::io::stdout().lock();
        writeln!(out, "{READY}{bound}").expect("stdout");
        out.flush().expect("stdout");
        drop(out);
        std::future::pending::<()>().await;
    });
}

/// The test's side: [`ROUNDS`] rounds of a server killed and restarted,
/// then the measured times; does nothing in a child started by
/// [`ProcessHarness::spawn_server`].
pub fn run(harness: &dyn ProcessHarness) {
    if harness.server_listen_addr().is_some() {
        return;
    }
    let counters = [
        Counter {
            name: "fds",
            what: "fds open",
            read: open_fds,
            bound: Bound::Slack(harness.fd_slack()),
        },
        Counter {
            name: "threads",
            what: "threads",
            read: threads,
            bound: Bound::Slack(THREAD_SLACK),
        },
    ]
    .into_iter()
    .chain(harness.counters())
    .collect::<Vec<_>>();
    let at_start = Usage::now(&counters);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let in_runtime = Usage::now(&counters);
    let test_started = Instant::now();
    let (mut stats, after_shutdown, transport) = rt.block_on(async {
        let (mut server, addr) = ServerProcess::start(harness, &harness.listen_addr()).await;
        let client = Rpc::new();
        let transport = harness.transport();
        let scheme = transport.scheme();
        client.add_transport_arc(transport);
        let peer = client
            .connect(&addr)
            .expect("a valid address")
            .established(STARTUP)
            .await
            .expect("the first server accepts");
        assert_eq!(peer, SERVER);

        let mut stats = Stats::default();
        let mut baseline = None;
        for round in 1..=ROUNDS {
            server = one_round(harness, &client, server, &addr, round, &mut stats).await;
            let now = Usage::now(&counters);
            let base = baseline.get_or_insert_with(|| now.clone());
            now.assert_within(base, &format!("after round {round}"));
            stats.last = Some(now);
        }

        // The last server goes the same way; then the client shuts down.
        server.kill();
        let status = server.reap().await;
        assert_eq!(status.signal(), Some(process::SIGKILL), "{status:?}");
        assert_eq!(children(), vec![], "no child process is left");
        stats.baseline = baseline;
        client.shutdown();
        client.wait_for_shutdown().await;
        drop(client);
        (stats, Usage::now(&counters), scheme)
    });
    let took = test_started.elapsed();
    drop(rt);
    stats.report(transport, took, &at_start, &in_runtime, &after_shutdown);
    // With the engine shut down, its connections and tasks are gone: only
    // what the runtime itself holds remains.
    after_shutdown.assert_within(&in_runtime, "after the client shut down");
}

/// One round: quick calls, slow calls, the kill, a call to the dead peer,
/// a new server on the same address and a call to it. Returns the new
/// server.
async fn one_round(
    harness: &dyn ProcessHarness,
    client: &Rpc,
    mut server: ServerProcess,
    addr: &str,
    round: usize,
    stats: &mut Stats,
) -> ServerProcess {
    let long = || CallOptions::default().timeout(LONG);
    // The engine redials a lost peer at once if the connection lasted at
    // least `Config::reconnect_min`, else after that long (a connection
    // that ends at once must not make it spin): even rounds let the
    // connection, up since the previous round's last call, outlive it; odd
    // rounds kill the server within milliseconds of reconnecting.
    let outlived = round.is_multiple_of(2);
    if outlived {
        tokio::time::sleep(Config::default().reconnect_min).await;
    }
    for k in 0..QUICK_CALLS {
        let msg = format!("round {round}, call {k}");
        let back: String = client
            .call_with(SERVER, "echo", &msg, long())
            .await
            .unwrap_or_else(|e| panic!("round {round}: a quick call failed: {e:?}"));
        assert_eq!(back, msg);
    }

    let slow: Vec<_> = (0..SLOW_CALLS)
        .map(|_| {
            let client = client.clone();
            let opts = long();
            tokio::spawn(async move {
                let r = client.call_with::<()>(SERVER, "slow", &(), opts).await;
                (r, Instant::now())
            })
        })
        .collect();
    let waiting = Instant::now();
    loop {
        let started: usize = client
            .call_with(SERVER, "slow_started", &(), long())
            .await
            .unwrap_or_else(|e| panic!("round {round}: slow_started failed: {e:?}"));
        if started == SLOW_CALLS {
            break;
        }
        assert!(
            waiting.elapsed() < BOUND,
            "round {round}: only {started} of {SLOW_CALLS} slow calls reached the server"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let killed = server.kill();
    let mut worst = Duration::ZERO;
    for call in slow {
        let joined = tokio::time::timeout_at((killed + BOUND).into(), call)
            .await
            .unwrap_or_else(|_| {
                panic!("round {round}: a call in flight still pending {BOUND:?} after the kill")
            });
        let (result, done) = joined.expect("the call's task");
        let after = done.saturating_duration_since(killed);
        match result {
            Err(Error::Disconnected { ref peer, .. }) if peer == SERVER => {}
            other => panic!("round {round}: a call in flight ended with {other:?}"),
        }
        assert!(
            after < BOUND,
            "round {round}: failed {after:?} after the kill"
        );
        let e = result.unwrap_err();
        assert!(!e.never_delivered(), "it was delivered: {e:?}");
        stats.pending_failed.push(after);
        worst = worst.max(after);
    }
    stats.round_worst.push(worst);

    // A new call to the dead peer waits for the engine's redial of the
    // address, which is refused: evidence that the peer is gone, and the
    // call fails. The redial goes at once after a connection that outlived
    // `Config::reconnect_min`, else that long later; so it does too when it
    // reached the dying server's listener before the kernel closed it (over
    // TCP: the connect succeeds, the handshake is reset: no evidence, tried
    // again).
    let asked = Instant::now();
    let result = tokio::time::timeout(
        BOUND,
        client.call_with::<String>(SERVER, "echo", &"after the kill", long()),
    )
    .await
    .unwrap_or_else(|_| {
        panic!("round {round}: a call to the dead peer still pending after {BOUND:?}")
    });
    let took = asked.elapsed();
    match &result {
        Err(e @ Error::Unreachable { peer, .. }) if peer == SERVER => {
            assert!(e.never_delivered(), "{e:?}");
        }
        other => panic!("round {round}: a call to the dead peer ended with {other:?}"),
    }
    let dead_call = if outlived {
        &mut stats.dead_call_outlived
    } else {
        &mut stats.dead_call_short
    };
    dead_call.push(took);
    assert!(
        client.link_lost(SERVER).is_some(),
        "round {round}: the engine says why the link is down"
    );

    let status = server.reap().await;
    assert_eq!(
        status.signal(),
        Some(process::SIGKILL),
        "round {round}: {status:?}"
    );
    assert_eq!(
        children(),
        vec![],
        "round {round}: the killed server is reaped"
    );

    let (server, bound) = ServerProcess::start(harness, addr).await;
    assert_eq!(
        bound, addr,
        "round {round}: the new server has the same address"
    );
    let listening = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let msg = format!("round {round}, reconnected");
        let result = tokio::time::timeout(
            BOUND,
            client.call_with::<String>(SERVER, "echo", &msg, long()),
        )
        .await
        .unwrap_or_else(|_| {
            panic!("round {round}: a call to the restarted server still pending after {BOUND:?}")
        });
        match result {
            Ok(back) => {
                assert_eq!(back, msg);
                break;
            }
            // A redial refused less than `Config::reconnect_min` before the
            // call is fresh evidence that the peer is gone, and the call
            // fails at once by design; once that evidence is older, a call
            // asks for a new attempt and waits for it, which reaches the new
            // server. So one retry, after that long, must do.
            Err(Error::Unreachable { .. }) if attempts == 1 => {
                tokio::time::sleep(Config::default().reconnect_min).await;
            }
            Err(e) => panic!("round {round}: call {attempts} to the restarted server: {e:?}"),
        }
    }
    let took = listening.elapsed();
    assert!(took < BOUND, "round {round}: reconnected after {took:?}");
    stats.reconnect.push(took);
    stats.retried += usize::from(attempts > 1);
    assert_eq!(client.link_lost(SERVER), None, "round {round}");
    assert_eq!(client.connected_peers(), vec![SERVER.to_owned()]);
    server
}
