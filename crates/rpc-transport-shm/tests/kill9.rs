//! `kill -9` of a server process, 100 times, over shared memory: the
//! scenario of [`rpc_core::testing::kill9`], whose docs say what each round
//! does and checks.
//!
//! The server is this test binary run again as a child process in server
//! mode (through `common::spawn_child`), so that it dies by a real
//! `SIGKILL`; the kernel closes its socket and drops its mappings. Every
//! server listens on the same address, an abstract Unix socket name, free
//! again as soon as its holder dies. Besides the client's file descriptors
//! and threads, its shared-memory mappings must be back to what they were
//! after the first round, and nothing of ours may be in `/dev/shm` (the
//! transport's segments are memfds, never files there).
//!
//! Times are printed at the end (run with `--nocapture` to see them).

mod common;

use std::process::{Child, Stdio};
use std::sync::Arc;

use rpc_core::testing::kill9::{Bound, Counter, ProcessHarness};
use rpc_core::transport::Transport;
use rpc_transport_shm::ShmTransport;

/// The child's role (`common::ROLE`).
const ROLE: &str = "kill9-server";

/// Shared memory, through abstract Unix socket names.
struct Shm;

impl ProcessHarness for Shm {
    fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(ShmTransport::new())
    }

    /// A fixed name, which every server in turn listens on.
    fn listen_addr(&self) -> String {
        format!(
            "shm://kill9-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        )
    }

    fn spawn_server(&self, entry: &str, listen: &str) -> Child {
        common::spawn_child(entry, ROLE, listen, Stdio::piped())
    }

    fn server_listen_addr(&self) -> Option<String> {
        let role = common::role()?;
        assert_eq!(role, ROLE);
        Some(std::env::var(common::ADDR).expect("an address to listen on"))
    }

    /// A connection holds five (its socket and four eventfds; the memfd is
    /// closed once mapped), and the old connection's are closed by a task
    /// of the engine after its calls have failed, which may run just after
    /// the sample; one more covers a redial attempt being torn down. A leak
    /// of one fd per round exceeds this within a few rounds and fails the
    /// test there.
    fn fd_slack(&self) -> usize {
        6
    }

    fn counters(&self) -> Vec<Counter> {
        vec![
            Counter {
                name: "mapped",
                what: "segment mappings",
                read: common::mapped_segments,
                // A connection maps one segment, which may show as a few
                // lines of `/proc/self/maps`; the old connection's mapping
                // goes when its task closes it, as with the fds.
                bound: Bound::Slack(4),
            },
            Counter {
                name: "ours_in_dev_shm",
                what: "entries of ours in /dev/shm",
                read: || common::dev_shm_entries().len(),
                bound: Bound::Exact {
                    list: common::dev_shm_entries,
                },
            },
            Counter {
                name: "dev_shm",
                what: "/dev/shm entries (anyone's)",
                read: || std::fs::read_dir("/dev/shm").map_or(0, Iterator::count),
                bound: Bound::Reported,
            },
        ]
    }
}

rpc_core::kill9_tests!(kill_9_of_a_server_over_shm_100_times, Shm);
