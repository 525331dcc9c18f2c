//! The server child process, and what this process holds that a leak would
//! grow: file descriptors, threads and child processes (from `/proc`), and
//! the harness's own counters.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, ExitStatus};
use std::time::{Duration, Instant};

use super::{BOUND, ProcessHarness, READY, ROUNDS, SERVER_ENTRY, STARTUP};

/// The signal a process killed by `Child::kill` died of.
pub(super) const SIGKILL: i32 = 9;

/// A server child process; killed and reaped if dropped unreaped (when a
/// test fails), so that no server outlives the test.
pub(super) struct ServerProcess {
    child: Child,
    reaped: bool,
}

impl ServerProcess {
    /// Starts this test binary as a server listening on `listen`, and
    /// returns once it listens, with the address it bound.
    pub(super) async fn start(harness: &dyn ProcessHarness, listen: &str) -> (Self, String) {
        let mut child = harness.spawn_server(SERVER_ENTRY, listen);
        let stdout = child.stdout.take().expect("a piped stdout");
        let mut server = Self {
            child,
            reaped: false,
        };
        // This crate's tokio has no pipes (no `process` feature), so a
        // thread of its own reads the child's output. It closes our end of
        // the pipe once it has the ready line (the child writes nothing
        // more) and is joined then, so that it is gone before the next
        // sample of this process's threads and fds. Should the child not
        // listen in time, it ends when the child is killed.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reader = std::thread::spawn(move || {
            let _ = tx.send(ready_line(stdout));
        });
        match tokio::time::timeout(STARTUP, rx).await {
            Ok(Ok(ready)) => {
                reader
                    .join()
                    .expect("the thread reading the server's output");
                match ready {
                    Ok(Some(addr)) => (server, addr),
                    Ok(None) => {
                        let status = server.reap().await;
                        panic!("the server on {listen} exited before listening: {status:?}")
                    }
                    Err(e) => panic!("reading the server's output: {e}"),
                }
            }
            Ok(Err(_)) => panic!("the thread reading the server's output died"),
            Err(_) => panic!("the server on {listen} did not listen within {STARTUP:?}"),
        }
    }

    /// Sends `SIGKILL` and returns when it was sent.
    pub(super) fn kill(&mut self) -> Instant {
        self.child.kill().expect("kill");
        Instant::now()
    }

    /// Waits (at most [`BOUND`]) until the process has exited, and reaps it.
    pub(super) async fn reap(&mut self) -> ExitStatus {
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

/// Reads `stdout` until the server's ready line, returning the address in
/// it, or `None` if the output ends first.
fn ready_line(stdout: ChildStdout) -> std::io::Result<Option<String>> {
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        // The harness may have begun the line ("test ... ").
        if let Some((_, addr)) = line.split_once(READY) {
            return Ok(Some(addr.to_owned()));
        }
    }
    Ok(None)
}

/// Something this process holds that a leak would grow, sampled after every
/// round and compared with the first round's sample.
#[derive(Clone, Copy, Debug)]
pub struct Counter {
    /// Its name in the printed samples, such as `mapped`.
    pub name: &'static str,
    /// What it counts, in messages: `segment mappings`.
    pub what: &'static str,
    /// Reads it now.
    pub read: fn() -> usize,
    /// How far a sample may be from the baseline.
    pub bound: Bound,
}

/// How far a [`Counter`]'s sample may be from the baseline.
#[derive(Clone, Copy, Debug)]
pub enum Bound {
    /// At most this many above it: what may be there at one sample and not
    /// at another without leaking, such as what a connection that a task of
    /// the engine closes just after the sample holds.
    Slack(usize),
    /// Exactly the baseline; a failure lists what `list` returns (the
    /// entries counted).
    Exact {
        /// The entries the counter counts.
        list: fn() -> Vec<String>,
    },
    /// Not checked, since other processes on the machine change it too:
    /// printed once at the start and once after the client shut down.
    Reported,
}

/// A sample of every counter.
#[derive(Clone)]
pub(super) struct Usage {
    samples: Vec<(Counter, usize)>,
}

impl Usage {
    pub(super) fn now(counters: &[Counter]) -> Self {
        Self {
            samples: counters.iter().map(|&c| (c, (c.read)())).collect(),
        }
    }

    /// The sample of the counter named `name`.
    fn get(&self, name: &str) -> usize {
        self.samples
            .iter()
            .find(|(c, _)| c.name == name)
            .map_or(0, |&(_, n)| n)
    }

    #[track_caller]
    pub(super) fn assert_within(&self, base: &Self, when: &str) {
        for &(counter, n) in &self.samples {
            let at_base = base.get(counter.name);
            let what = counter.what;
            match counter.bound {
                Bound::Slack(slack) => assert!(
                    n <= at_base + slack,
                    "{when}: {n} {what}, {at_base} at the baseline"
                ),
                Bound::Exact { list } => {
                    assert_eq!(n, at_base, "{when}: {what}: {:?}", list());
                }
                Bound::Reported => {}
            }
        }
    }
}

impl fmt::Debug for Usage {
    /// As `#[derive(Debug)]` would print a struct with a field per counter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Usage");
        for (counter, n) in &self.samples {
            s.field(counter.name, n);
        }
        s.finish()
    }
}

/// Entries of `/proc/self/fd` (the directory's own fd included, the same in
/// every sample).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// `Threads:` in `/proc/self/status`.
pub fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads: line")
}

/// This process's child processes, with their state (`Z`: a zombie).
pub fn children() -> Vec<(u32, String)> {
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
pub(super) struct Stats {
    /// From the kill to each call in flight failing.
    pub(super) pending_failed: Vec<Duration>,
    /// Per round, the last call in flight to fail.
    pub(super) round_worst: Vec<Duration>,
    /// From its start to the failure of the call made to the dead peer, in
    /// rounds whose connection outlived `Config::reconnect_min`.
    pub(super) dead_call_outlived: Vec<Duration>,
    /// The same in rounds whose connection did not.
    pub(super) dead_call_short: Vec<Duration>,
    /// From the new server listening to the first call's answer.
    pub(super) reconnect: Vec<Duration>,
    /// Rounds whose first call to the new server needed the retry.
    pub(super) retried: usize,
    pub(super) baseline: Option<Usage>,
    pub(super) last: Option<Usage>,
}

impl Stats {
    pub(super) fn report(
        &mut self,
        transport: &str,
        took: Duration,
        at_start: &Usage,
        in_runtime: &Usage,
        after_shutdown: &Usage,
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
        for &(counter, _) in &at_start.samples {
            if let Bound::Reported = counter.bound {
                eprintln!(
                    "  {}: {} at start, {} once the client shut down",
                    counter.what,
                    at_start.get(counter.name),
                    after_shutdown.get(counter.name)
                );
            }
        }
    }
}
