//! `kill -9` of a server process, 100 times, over TCP on loopback: the
//! scenario of [`rpc_core::testing::kill9`], whose docs say what each round
//! does and checks.
//!
//! The server is this test binary run again as a child process in server
//! mode (`RPC_TCP_KILL9_LISTEN` set), so that it dies by a real `SIGKILL`;
//! the kernel closes its sockets. The first server binds port 0; the later
//! ones bind **the port it got**, which the transport's `SO_REUSEADDR` lets
//! them take although the killed server's side of the old connection may
//! still hold it in `TIME_WAIT`; should another process take the port in
//! the moment between two servers, the new server fails to listen and the
//! test says so. The client's file descriptors and threads must be back to
//! what they were after the first round, and no child process left.
//!
//! Times are printed at the end (run with `--nocapture` to see them).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use rpc_core::testing::kill9::ProcessHarness;
use rpc_core::transport::Transport;
use rpc_transport_tcp::TcpTransport;

/// Set in the child: the address its server listens on.
const LISTEN_ENV: &str = "RPC_TCP_KILL9_LISTEN";

/// TCP on loopback.
struct Tcp;

impl ProcessHarness for Tcp {
    fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(TcpTransport::default())
    }

    fn listen_addr(&self) -> String {
        "tcp://127.0.0.1:0".to_owned()
    }

    fn spawn_server(&self, entry: &str, listen: &str) -> Child {
        Command::new(std::env::current_exe().expect("the test binary's path"))
            .args([entry, "--exact", "--nocapture", "--test-threads=1"])
            .env(LISTEN_ENV, listen)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning the test binary as a server")
    }

    fn server_listen_addr(&self) -> Option<String> {
        std::env::var(LISTEN_ENV).ok()
    }

    /// The old connection's socket is closed by a task of the engine after
    /// its calls have failed, which may run just after the sample (one fd),
    /// and the same holds for a redial attempt that is being torn down (one
    /// more). Twice that covers both with room; a leak of one fd per round
    /// exceeds it within a few rounds and fails the test there.
    fn fd_slack(&self) -> usize {
        4
    }
}

rpc_core::kill9_tests!(kill_9_of_a_server_over_tcp_100_times, Tcp);
