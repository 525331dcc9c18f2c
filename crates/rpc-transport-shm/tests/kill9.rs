//! `kill -9` of a server process, 100 times, over shared memory.
//!
//! The server is this test binary run again as a child process in server
//! mode (through `common::spawn_child`, see [`server_process`]), so that it
//! dies by a real `SIGKILL`: no goodbye, no destructor; the kernel closes
//! its socket and drops its mappings. One client engine, made once, lives
//! through every round:
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
//!    name listens **on the same address** (an abstract Unix socket name,
//!    free again as soon as its holder dies): the client keeps redialing the
//!    address it was given to [`Rpc::connect`], so this is how a user's
//!    restarted server comes back, and a call succeeds within [`BOUND`];
//! 4. the client's file descriptors, threads and shared-memory mappings are
//!    back to what they were after the first round, nothing of ours is in
//!    `/dev/shm` (the transport's segments are memfds, never files there),
//!    and no child process is left (running or zombie).
//!
//! Times are printed at the end (run with `--nocapture` to see them).

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rpc_core::{CallOptions, Config, Error, Rpc};
use rpc_transport_shm::ShmTransport;
use tokio::io::{AsyncBufReadExt, BufReader};

const ROUNDS: usize = 100;
/// Calls in flight when the server dies.
const SLOW_CALLS: usize = 4;
/// Calls answered before the slow ones start.
const QUICK_CALLS: usize = 3;
/// The server's name, the same in every process.
const SERVER: &str = "kill9-server";
/// Far above what each step takes (a few milliseconds), so that
/// a loaded machine does not fail the test by luck: pending calls must fail
/// within this of the kill, a call to the dead peer within this of its
/// start, and the first call to a restarted server within this of its
/// listening. The measured times are printed.
const BOUND: Duration = Duration::from_secs(5);
/// How long a new server process may take to start and listen (a debug test
/// binary on a busy machine); starting processes is not what is tested.
const STARTUP: Duration = Duration::from_secs(30);
/// The timeout of the calls themselves: longer than [`BOUND`], so that a
/// call that fails within the bound failed for its own reason, not by
/// timing out.
const LONG: Duration = Duration::from_secs(60);
/// The child's role (`common::ROLE`).
const ROLE: &str = "kill9-server";
/// What the child prints, followed by its bound address, once it listens.
const READY: &str = "kill9 server listening on ";
/// File descriptors that may be open at one sample and not at another
/// without leaking: a connection holds five (its socket and four eventfds;
/// the memfd is closed once mapped), and the old connection's are closed by
/// a task of the engine after its calls have failed, which may run just
/// after the sample; one more covers a redial attempt being torn down. A
/// leak of one fd per round exceeds this within a few rounds and fails the
/// test there.
const FD_SLACK: usize = 6;
/// Mappings of our segments (lines `memfd:rpc-shm` in `/proc/self/maps`)
/// that may be there at one sample and not at another, for the same reason:
/// a connection maps one segment, which may show as a few lines.
const MAP_SLACK: usize = 4;
/// Threads that may come and go without leaking: tokio keeps a blocking-pool
/// thread alive for 10 s after its last job, should anything on the path
/// ever use one. A thread leaked per round exceeds this within a few rounds.
const THREAD_SLACK: usize = 2;

/// The child's side: a server with a long-running function, until killed.
/// Does nothing unless started by [`ServerProcess::start`].
#[test]
fn server_process() {
    let Some(role) = common::role() else {
        return;
    };
    assert_eq!(role, ROLE);
    let listen = std::env::var(common::ADDR).expect("an address to listen on");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let server = Rpc::new();
        server.set_name(SERVER).expect("a valid name");
        server.add_transport(ShmTransport::new());
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

#[test]
fn kill_9_of_a_server_over_shm_100_times() {
    if common::role().is_some() {
        return;
    }
    let at_start = Usage::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let in_runtime = Usage::now();
    let test_started = Instant::now();
    let (mut stats, after_shutdown) = rt.block_on(async {
        // A fixed name, which every server in turn listens on.
        let name = format!(
            "shm://kill9-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        );
        let (mut server, addr) = ServerProcess::start(&name).await;
        let client = Rpc::new();
        client.add_transport(ShmTransport::new());
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
            server = one_round(&client, server, &addr, round, &mut stats).await;
            let now = Usage::now();
            let base = *baseline.get_or_insert(now);
            now.assert_within(base, &format!("after round {round}"));
            stats.last = Some(now);
        }

        // The last server goes the same way; then the client shuts down.
        server.kill();
        let status = server.reap().await;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        assert_eq!(children(), vec![], "no child process is left");
        stats.baseline = baseline;
        client.shutdown();
        client.wait_for_shutdown().await;
        drop(client);
        (stats, Usage::now())
    });
    let took = test_started.elapsed();
    drop(rt);
    stats.report("shm", took, at_start, in_runtime, after_shutdown);
    // With the engine shut down, its connections and tasks are gone: only
    // what the runtime itself holds remains.
    after_shutdown.assert_within(in_runtime, "after the client shut down");
}

/// One round: quick calls, slow calls, the kill, a call to the dead peer,
/// a new server on the same address and a call to it. Returns the new
/// server.
async fn one_round(
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
    // `Config::reconnect_min`, else that long later.
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
        Some(libc::SIGKILL),
        "round {round}: {status:?}"
    );
    assert_eq!(
        children(),
        vec![],
        "round {round}: the killed server is reaped"
    );

    let (server, bound) = ServerProcess::start(addr).await;
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

/// A server child process; killed and reaped if dropped unreaped (when a
/// test fails), so that no server outlives the test.
struct ServerProcess {
    child: Child,
    reaped: bool,
}

impl ServerProcess {
    /// Starts this test binary as a server listening on `listen`, and
    /// returns once it listens, with the address it bound.
    async fn start(listen: &str) -> (Self, String) {
        let mut child = common::spawn_child("server_process", ROLE, listen, Stdio::piped());
        let stdout = child.stdout.take().expect("a piped stdout");
        let mut server = Self {
            child,
            reaped: false,
        };
        let stdout = tokio::process::ChildStdout::from_std(stdout).expect("an async pipe");
        let mut lines = BufReader::new(stdout).lines();
        let ready = async {
            while let Some(line) = lines.next_line().await? {
                // The harness may have begun the line ("test ... ").
                if let Some((_, addr)) = line.split_once(READY) {
                    return Ok(Some(addr.to_owned()));
                }
            }
            Ok::<_, std::io::Error>(None)
        };
        match tokio::time::timeout(STARTUP, ready).await {
            Ok(Ok(Some(addr))) => (server, addr),
            Ok(Ok(None)) => {
                let status = server.reap().await;
                panic!("the server on {listen} exited before listening: {status:?}")
            }
            Ok(Err(e)) => panic!("reading the server's output: {e}"),
            Err(_) => panic!("the server on {listen} did not listen within {STARTUP:?}"),
        }
        // Dropping `lines` closes our end of the pipe: the child writes
        // nothing more.
    }

    /// Sends `SIGKILL` and returns when it was sent.
    fn kill(&mut self) -> Instant {
        self.child.kill().expect("kill");
        Instant::now()
    }

    /// Waits (at most [`BOUND`]) until the process has exited, and reaps it.
    async fn reap(&mut self) -> ExitStatus {
        let since = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waitpid") {
                self.reaped = true;
                return status;
            }
            assert!(
                since.elapsed() < BOUND,
                "the server has not exited {BOUND:?} after being killed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What this process holds that a leak would grow.
#[derive(Clone, Copy, Debug)]
struct Usage {
    /// Entries of `/proc/self/fd` (the directory's own fd included, the
    /// same in every sample).
    fds: usize,
    /// `Threads:` in `/proc/self/status`.
    threads: usize,
    /// Mappings of our segments (`memfd:rpc-shm` in `/proc/self/maps`).
    mapped: usize,
    /// Entries of `/dev/shm` whose name is one of ours (`rpc-shm`).
    ours_in_dev_shm: usize,
    /// All entries of `/dev/shm`: reported, not checked, since other
    /// processes on the machine may add and remove theirs meanwhile.
    dev_shm: usize,
}

impl Usage {
    fn now() -> Self {
        let fds = std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .count();
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let threads = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("a Threads: line");
        let dev_shm = std::fs::read_dir("/dev/shm").map_or(0, Iterator::count);
        Self {
            fds,
            threads,
            mapped: common::mapped_segments(),
            ours_in_dev_shm: common::dev_shm_entries().len(),
            dev_shm,
        }
    }

    #[track_caller]
    fn assert_within(self, base: Self, when: &str) {
        assert!(
            self.fds <= base.fds + FD_SLACK,
            "{when}: {} fds open, {} at the baseline",
            self.fds,
            base.fds
        );
        assert!(
            self.threads <= base.threads + THREAD_SLACK,
            "{when}: {} threads, {} at the baseline",
            self.threads,
            base.threads
        );
        assert!(
            self.mapped <= base.mapped + MAP_SLACK,
            "{when}: {} segment mappings, {} at the baseline",
            self.mapped,
            base.mapped
        );
        assert_eq!(
            self.ours_in_dev_shm,
            base.ours_in_dev_shm,
            "{when}: entries of ours in /dev/shm: {:?}",
            common::dev_shm_entries()
        );
    }
}

/// This process's child processes, with their state (`Z`: a zombie).
fn children() -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // Processes come and go while we look.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name may hold spaces or parentheses: the fields
        // (state, parent) follow its last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("?").to_owned();
        let parent: Option<u32> = fields.next().and_then(|p| p.parse().ok());
        if parent == Some(me) {
            found.push((pid, state));
        }
    }
    found
}

/// What the rounds measured.
#[derive(Default)]
struct Stats {
    /// From the kill to each call in flight failing.
    pending_failed: Vec<Duration>,
    /// Per round, the last call in flight to fail.
    round_worst: Vec<Duration>,
    /// From its start to the failure of the call made to the dead peer, in
    /// rounds whose connection outlived `Config::reconnect_min`.
    dead_call_outlived: Vec<Duration>,
    /// The same in rounds whose connection did not.
    dead_call_short: Vec<Duration>,
    /// From the new server listening to the first call's answer.
    reconnect: Vec<Duration>,
    /// Rounds whose first call to the new server needed the retry.
    retried: usize,
    baseline: Option<Usage>,
    last: Option<Usage>,
}

impl Stats {
    fn report(
        &mut self,
        transport: &str,
        took: Duration,
        at_start: Usage,
        in_runtime: Usage,
        after_shutdown: Usage,
    ) {
        let line = |what: &str, v: &mut Vec<Duration>| {
            v.sort();
            eprintln!(
                "  {what}: median {:?}, worst {:?} ({} samples)",
                v[v.len() / 2],
                v[v.len() - 1],
                v.len()
            );
        };
        eprintln!("kill -9 over {transport}, {ROUNDS} rounds in {took:?}:");
        line("kill -> call in flight fails", &mut self.pending_failed);
        line(
            "kill -> last call in flight of a round fails",
            &mut self.round_worst,
        );
        line(
            "call to the dead peer fails after (connection outlived reconnect_min)",
            &mut self.dead_call_outlived,
        );
        line(
            "call to the dead peer fails after (connection killed at once)",
            &mut self.dead_call_short,
        );
        line("new server listening -> first answer", &mut self.reconnect);
        eprintln!(
            "  first call to the new server retried in {} rounds",
            self.retried
        );
        eprintln!(
            "  usage: at start {at_start:?}, runtime up {in_runtime:?}, after round 1 {:?}, \
             after round {ROUNDS} {:?}, client shut down {after_shutdown:?}",
            self.baseline, self.last
        );
        eprintln!(
            "  /dev/shm entries (anyone's): {} at start, {} once the client shut down",
            at_start.dev_shm, after_shutdown.dev_shm
        );
    }
}
