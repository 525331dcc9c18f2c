//! The TCP floors and memcpy: what any RPC over loopback TCP, or any copy
//! of a large payload, stands on.
//!
//! - `floor/tcp-std/*`: blocking std `TcpStream`s with `TCP_NODELAY`, one
//!   server thread per connection; the client writes the whole message,
//!   the server reads all of it and writes it back.
//! - `floor/tcp-tokio/8B`: the same on tokio `current_thread` runtimes.
//! - `floor/memcpy/64MiB`: one copy between two private, pre-touched
//!   buffers.
//!
//! A connection starts with the message size as a little-endian `u64`;
//! then every message is exactly that long.

use std::hint::black_box;
use std::io::{Read as _, Write as _};
use std::time::Instant;

use anyhow::{Context as _, Result, ensure};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::runtime::Runtime;

use crate::child::announce;
use crate::harness::{RoundTrip, nanos};

/// The largest message a floor server accepts: the size comes from the
/// peer, so it is checked before allocating.
const MAX_MESSAGE: u64 = 1 << 30;

/// The byte every floor payload is filled with.
const FILL: u8 = 0x5a;

/// `rpc-bench serve tcp-std`: a blocking echo server, one thread per
/// connection.
pub(crate) fn serve_std() -> Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    announce(&[&listener.local_addr()?.to_string()])?;
    loop {
        let (stream, _) = listener.accept()?;
        std::thread::Builder::new()
            .name("echo".into())
            .spawn(move || {
                if let Err(e) = std_echo(stream) {
                    eprintln!("tcp-std server: {e:#}");
                }
            })?;
    }
}

fn std_echo(mut stream: std::net::TcpStream) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut size = [0u8; 8];
    stream.read_exact(&mut size)?;
    let mut buf = vec![0u8; message_len(size)?];
    loop {
        if let Err(e) = stream.read_exact(&mut buf) {
            // The client closing its end is the normal way to stop.
            return match e.kind() {
                std::io::ErrorKind::UnexpectedEof => Ok(()),
                _ => Err(e.into()),
            };
        }
        stream.write_all(&buf)?;
    }
}

/// The message size a client asked for, checked.
fn message_len(size: [u8; 8]) -> Result<usize> {
    let size = u64::from_le_bytes(size);
    ensure!(
        (1..=MAX_MESSAGE).contains(&size),
        "message size {size} out of range"
    );
    Ok(usize::try_from(size)?)
}

/// `rpc-bench serve tcp-tokio`: the same echo on tokio.
pub(crate) async fn serve_tokio() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    announce(&[&listener.local_addr()?.to_string()])?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = tokio_echo(stream).await {
                eprintln!("tcp-tokio server: {e:#}");
            }
        });
    }
}

async fn tokio_echo(mut stream: tokio::net::TcpStream) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut size = [0u8; 8];
    stream.read_exact(&mut size).await?;
    let mut buf = vec![0u8; message_len(size)?];
    loop {
        if let Err(e) = stream.read_exact(&mut buf).await {
            return match e.kind() {
                std::io::ErrorKind::UnexpectedEof => Ok(()),
                _ => Err(e.into()),
            };
        }
        stream.write_all(&buf).await?;
    }
}

/// A client of the blocking echo server.
pub(crate) struct StdEcho {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
}

impl StdEcho {
    /// Connects to `addr` for messages of `size` bytes.
    pub(crate) fn connect(addr: &str, size: usize) -> Result<Self> {
        let mut stream =
            std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.write_all(&(size as u64).to_le_bytes())?;
        Ok(Self {
            stream,
            buf: vec![FILL; size],
        })
    }
}

impl RoundTrip for StdEcho {
    fn run(&mut self, _rt: &Runtime, n: usize, out: &mut Vec<u64>) -> Result<()> {
        for _ in 0..n {
            let start = Instant::now();
            self.stream.write_all(&self.buf)?;
            self.stream.read_exact(&mut self.buf)?;
            out.push(nanos(start.elapsed()));
        }
        Ok(())
    }
}

/// A client of the tokio echo server.
pub(crate) struct TokioEcho {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl TokioEcho {
    /// Connects to `addr` for messages of `size` bytes, on `rt`.
    pub(crate) fn connect(rt: &Runtime, addr: &str, size: usize) -> Result<Self> {
        rt.block_on(async {
            let mut stream = tokio::net::TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            stream.set_nodelay(true)?;
            stream.write_all(&(size as u64).to_le_bytes()).await?;
            Ok(Self {
                stream,
                buf: vec![FILL; size],
            })
        })
    }
}

impl RoundTrip for TokioEcho {
    fn run(&mut self, rt: &Runtime, n: usize, out: &mut Vec<u64>) -> Result<()> {
        let Self { stream, buf } = self;
        rt.block_on(async {
            for _ in 0..n {
                let start = Instant::now();
                stream.write_all(buf).await?;
                stream.read_exact(buf).await?;
                out.push(nanos(start.elapsed()));
            }
            Ok(())
        })
    }
}

/// One copy of `len` bytes between two private buffers.
pub(crate) struct Memcpy {
    src: Vec<u8>,
    dst: Vec<u8>,
}

impl Memcpy {
    /// Two buffers of `len` bytes, both touched (so no copy pays for page
    /// faults).
    pub(crate) fn new(len: usize) -> Self {
        Self {
            src: vec![FILL; len],
            dst: vec![1; len],
        }
    }
}

impl RoundTrip for Memcpy {
    fn run(&mut self, _rt: &Runtime, n: usize, out: &mut Vec<u64>) -> Result<()> {
        for _ in 0..n {
            let start = Instant::now();
            self.dst.copy_from_slice(black_box(&self.src));
            black_box(&mut self.dst);
            out.push(nanos(start.elapsed()));
        }
        Ok(())
    }
}
