//! Server processes: this binary re-run as `rpc-bench serve KIND`.
//!
//! A server prints one line on stdout when it is ready (its addresses,
//! separated by spaces) and then serves until its stdin closes, which is
//! how the benchmark stops it, or until the benchmark dies
//! (`PR_SET_PDEATHSIG`), however it died.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context as _, Result, bail};
use clap::ValueEnum;
use tokio::runtime::Runtime;

use crate::machine;

/// The CPU every server process binds itself to, if any.
static SERVER_CPU: OnceLock<usize> = OnceLock::new();

/// Makes every server started from now on bind itself to `cpu`.
pub(crate) fn pin_servers_to(cpu: usize) {
    let _ = SERVER_CPU.set(cpu);
}

/// What a server process serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ServerKind {
    /// Blocking std TCP echo, one thread per connection.
    TcpStd,
    /// Tokio TCP echo.
    TcpTokio,
    /// Our `Rpc` on TCP: the default transport, and one that never polls.
    OursTcp,
    /// Our `Rpc` on shared memory.
    OursShm,
    /// tarpc with bincode on TCP.
    Tarpc,
    /// tonic unary gRPC.
    Tonic,
    /// The raw shared-memory ping-pong, on an inherited memfd.
    ShmFloor,
}

impl ServerKind {
    /// The name on the command line.
    fn arg(self) -> String {
        self.to_possible_value()
            .map_or_else(|| format!("{self:?}"), |v| v.get_name().to_owned())
    }
}

/// A running server process, killed when dropped.
pub(crate) struct ServerProcess {
    child: Child,
    /// Closed on drop: the server's signal to exit.
    stdin: Option<ChildStdin>,
    line: String,
}

impl ServerProcess {
    /// Starts `rpc-bench serve KIND` and waits for its ready line.
    pub(crate) fn spawn(kind: ServerKind) -> Result<Self> {
        Self::spawn_with(kind, |_| {})
    }

    /// Like [`spawn`](Self::spawn), letting `configure` add to the command
    /// (environment variables).
    pub(crate) fn spawn_with(
        kind: ServerKind,
        configure: impl FnOnce(&mut Command),
    ) -> Result<Self> {
        let exe = std::env::current_exe().context("finding our own executable")?;
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .arg(kind.arg())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(cpu) = SERVER_CPU.get() {
            command.env(machine::CPU_VAR, cpu.to_string());
        }
        configure(&mut command);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting the {} server", kind.arg()))?;
        machine::adopt(child.id());
        let stdin = child.stdin.take();
        let mut process = Self {
            child,
            stdin,
            line: String::new(),
        };
        let Some(stdout) = process.child.stdout.take() else {
            bail!("the {} server has no stdout", kind.arg());
        };
        let mut reader = BufReader::new(stdout);
        reader
            .read_line(&mut process.line)
            .with_context(|| format!("reading the {} server's address", kind.arg()))?;
        if process.line.trim().is_empty() {
            bail!("the {} server ended before it was ready", kind.arg());
        }
        process.line = process.line.trim().to_owned();
        Ok(process)
    }

    /// The words of the server's ready line (its addresses).
    pub(crate) fn words(&self) -> Vec<&str> {
        self.line.split_whitespace().collect()
    }

    /// The first word of the ready line.
    pub(crate) fn addr(&self) -> &str {
        self.line.split_whitespace().next().unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        machine::disown(self.child.id());
        drop(self.stdin.take());
        // The server exits when its stdin closes; killing makes sure of it
        // without waiting on a server that is stuck.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of `rpc-bench serve KIND`: serves until stdin closes.
pub(crate) fn serve(kind: ServerKind) -> Result<()> {
    // SAFETY: a plain prctl with integer arguments; it makes the kernel kill
    // this process when the benchmark (its parent) dies.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // Before any thread starts, so that all of them inherit the CPU.
    if let Ok(cpu) = std::env::var(machine::CPU_VAR) {
        machine::pin_to(cpu.parse().context("a CPU number")?)?;
    }
    std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(|| {
            let mut sink = [0u8; 64];
            // Anything read is ignored; end of file or an error ends us.
            while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
            std::process::exit(0);
        })
        .context("spawning the stdin watcher")?;
    match kind {
        ServerKind::TcpStd => crate::floors::serve_std(),
        ServerKind::TcpTokio => runtime()?.block_on(crate::floors::serve_tokio()),
        ServerKind::OursTcp => runtime()?.block_on(crate::ours::serve_tcp()),
        ServerKind::OursShm => runtime()?.block_on(crate::ours::serve_shm()),
        ServerKind::Tarpc => runtime()?.block_on(crate::tarpc_case::serve()),
        ServerKind::Tonic => runtime()?.block_on(crate::tonic_case::serve()),
        ServerKind::ShmFloor => crate::shm_floor::serve(),
    }
}

/// Prints the ready line: the server's addresses.
pub(crate) fn announce(words: &[&str]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", words.join(" "))?;
    out.flush()?;
    Ok(())
}

/// A tokio `current_thread` runtime with I/O and time, as every peer in
/// this benchmark uses on both sides.
pub(crate) fn runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a current_thread runtime")
}
