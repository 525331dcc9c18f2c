//! Our whole stack: an echo server in a child process, listening on shm and
//! on TCP, and a client engine per transport in the bench process.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use rpc_core::transport::{Address, ConnOptions, FrameSink, FrameStream, Transport};
use rpc_core::wire::{Frame, FrameKind};
use rpc_core::{Blob, Rpc};
use rpc_transport_shm::{ShmStats, ShmTransport};
use rpc_transport_tcp::TcpTransport;
use tokio::runtime::Runtime;

/// The child role's environment variable value.
pub(crate) const ROLE: &str = "server";
/// The name the server registers under.
const SERVER: &str = "server";
/// The echo function's name.
const ECHO: &str = "echo";

pub(crate) fn current_thread_runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a current_thread runtime")
}

/// The child: serves `echo` on `shm://0` and `tcp://127.0.0.1:0`, prints
/// both addresses, and stops when its stdin closes.
pub(crate) fn child_main() -> Result<()> {
    // SAFETY: plain call; the child dies with the bench.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    bench_support::pin_to(1);
    let rt = current_thread_runtime()?;
    rt.block_on(async {
        let rpc = Rpc::new();
        rpc.set_name(SERVER)?;
        rpc.add_transport(ShmTransport::default());
        rpc.add_transport(TcpTransport::default());
        rpc.define(ECHO, |b: Blob| async move { Ok(b) })?;
        let shm = rpc.listen("shm://0").await?;
        let tcp = rpc.listen("tcp://127.0.0.1:0").await?;
        // Frames echoed by the transport alone, without the engine.
        let raw = ShmTransport::default()
            .listen(&Address::parse("shm://0")?, &ConnOptions::default())
            .await?;
        let raw_addr = raw.local_addr().to_string();
        tokio::spawn(rpc_core::testing::echo_frames(raw));
        let mut out = std::io::stdout();
        writeln!(out, "READY {shm} {tcp} {raw_addr}")?;
        out.flush()?;
        tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await??;
        rpc.shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(5), rpc.wait_for_shutdown()).await;
        Ok(())
    })
}

/// The server child, with the addresses it serves.
pub(crate) struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    pub(crate) shm_addr: String,
    pub(crate) tcp_addr: String,
    /// Where the child echoes frames with the transport alone.
    pub(crate) raw_addr: String,
}

impl Server {
    pub(crate) fn start() -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(super::CHILD_ROLE, ROLE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("spawning the server child")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut line)?;
        let mut words = line.split_whitespace();
        let (Some("READY"), Some(shm), Some(tcp), Some(raw)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            bail!("the server child said {line:?}");
        };
        Ok(Self {
            stdin: child.stdin.take(),
            shm_addr: shm.to_owned(),
            tcp_addr: tcp.to_owned(),
            raw_addr: raw.to_owned(),
            child,
        })
    }

    pub(crate) fn stop(mut self) -> Result<()> {
        drop(self.stdin.take());
        self.child.wait()?;
        Ok(())
    }
}

/// Which of our transports a call goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    Shm,
    Tcp,
    /// Frames through `ShmTransport` alone, no engine.
    Frames,
}

/// The client engines, one per transport, on a runtime driven by this
/// thread.
pub(crate) struct Client {
    rt: Runtime,
    shm: Rpc,
    tcp: Rpc,
    shm_transport: ShmTransport,
    /// The transport-only connection; taken by the task that uses it.
    raw: Option<Raw>,
}

/// Both halves of a connection without an engine.
type Raw = (Box<dyn FrameSink>, Box<dyn FrameStream>);

impl Client {
    pub(crate) fn connect(server: &Server) -> Result<Self> {
        let rt = current_thread_runtime()?;
        let shm_transport = ShmTransport::default();
        let (shm, tcp, raw) = rt.block_on(async {
            let shm = Rpc::new();
            shm.set_name("client-shm")?;
            shm.add_transport(shm_transport.clone());
            let tcp = Rpc::new();
            tcp.set_name("client-tcp")?;
            tcp.add_transport(TcpTransport::default());
            for (rpc, addr) in [(&shm, &server.shm_addr), (&tcp, &server.tcp_addr)] {
                let peer = rpc
                    .connect(addr)?
                    .established(Duration::from_secs(30))
                    .await?;
                anyhow::ensure!(peer == SERVER, "connected to {peer:?}");
            }
            let raw = ShmTransport::default()
                .connect(&Address::parse(&server.raw_addr)?, &ConnOptions::default())
                .await?
                .split();
            Ok::<_, anyhow::Error>((shm, tcp, raw))
        })?;
        let mut client = Self {
            rt,
            shm,
            tcp,
            shm_transport,
            raw: Some(raw),
        };
        // One of each before anything is timed: the method name travels by
        // name only on a connection's first call.
        let small = Blob::from(vec![0; 8]);
        client.loop_for(Via::Shm, &small, 1);
        client.loop_for(Via::Tcp, &small, 1);
        client.loop_for(Via::Frames, &small, 1);
        Ok(client)
    }

    pub(crate) fn shm_stats(&self) -> ShmStats {
        self.shm_transport.stats()
    }

    pub(crate) fn close(self) {
        let Self {
            rt, shm, tcp, raw, ..
        } = self;
        drop(raw);
        rt.block_on(async {
            for rpc in [shm, tcp] {
                rpc.shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(5), rpc.wait_for_shutdown()).await;
            }
        });
    }

    /// `iters` echo calls, one at a time; the time they took.
    pub(crate) fn loop_for(&mut self, via: Via, blob: &Blob, iters: u64) -> Duration {
        if via == Via::Frames {
            return self.frames(blob, iters, false).0;
        }
        let Self { rt, shm, tcp, .. } = self;
        let rpc = if via == Via::Shm { shm } else { tcp };
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(must(echo(rpc, blob).await));
            }
            start.elapsed()
        })
    }

    /// `n` frame round trips through the transport alone, from a spawned
    /// task (where the engine's reader runs, too): the time they took, and
    /// each one's time if `each`.
    fn frames(&mut self, blob: &Blob, n: u64, each: bool) -> (Duration, Vec<u64>) {
        let mut raw = self.raw.take().expect("the raw connection is back");
        let blob = blob.clone();
        let task = self.rt.spawn(async move {
            let mut samples = Vec::new();
            let start = Instant::now();
            for _ in 0..n {
                let one = Instant::now();
                must(frame_rtt(&mut raw, &blob).await);
                if each {
                    samples.push(one.elapsed().as_nanos() as u64);
                }
            }
            (raw, start.elapsed(), samples)
        });
        let (raw, took, samples) = self
            .rt
            .block_on(task)
            .unwrap_or_else(|e| panic!("the frames task failed: {e}"));
        self.raw = Some(raw);
        (took, samples)
    }

    /// Times `n` single echo calls into `out`, in nanoseconds.
    pub(crate) fn samples(&mut self, via: Via, blob: &Blob, n: usize, out: &mut Vec<u64>) {
        if via == Via::Frames {
            out.extend(self.frames(blob, n as u64, true).1);
            return;
        }
        let Self { rt, shm, tcp, .. } = self;
        let rpc = if via == Via::Shm { shm } else { tcp };
        rt.block_on(async {
            for _ in 0..n {
                let start = Instant::now();
                black_box(must(echo(rpc, blob).await));
                out.push(start.elapsed().as_nanos() as u64);
            }
        });
    }
}

/// One echo call through the whole stack, checking the answer's length.
async fn echo(rpc: &Rpc, blob: &Blob) -> Result<Blob> {
    let back: Blob = rpc.call(SERVER, ECHO, blob).await?;
    anyhow::ensure!(
        back.len() == blob.len(),
        "echo returned {} bytes",
        back.len()
    );
    Ok(back)
}

/// One frame out and back through the transport alone: the frame carries
/// the blob as its body.
async fn frame_rtt(
    (tx, rx): &mut (Box<dyn FrameSink>, Box<dyn FrameStream>),
    blob: &Blob,
) -> Result<()> {
    let mut frame = Frame::new(FrameKind::Response, 1);
    frame.body = blob.0.clone();
    tx.send(frame).await?;
    let back = rx.recv().await?.context("the echo stream ended")?;
    black_box(back);
    Ok(())
}

/// Criterion's routines cannot return errors; a failed round trip ends the
/// bench with its cause.
fn must<T>(result: Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("round trip failed: {e:#}"))
}
