//! An established TCP connection.

use std::io;

use rpc_core::transport::{ConnInfo, Connection, FrameSink, FrameStream};

use crate::addr;
use crate::sink::TcpFrameSink;
use crate::stream::TcpFrameStream;

/// A connected, configured socket, before it is split.
#[derive(Debug)]
pub(crate) struct TcpConnection {
    info: ConnInfo,
    stream: tokio::net::TcpStream,
    max_frame_len: u64,
    spin: std::time::Duration,
}

impl TcpConnection {
    /// Wraps a connected socket; `max_frame_len` limits frames in both
    /// directions, and the receiver polls for `spin` before it sleeps.
    pub(crate) fn new(
        stream: tokio::net::TcpStream,
        max_frame_len: u64,
        spin: std::time::Duration,
    ) -> io::Result<Self> {
        let info = ConnInfo {
            transport: "tcp",
            local: addr::uri(stream.local_addr()?),
            remote: addr::uri(stream.peer_addr()?),
        };
        Ok(Self {
            info,
            stream,
            max_frame_len,
            spin,
        })
    }
}

/// Frames of a burst before its first write (see `FrameSink::first_write`)
/// when the transport polls before it sleeps: its peers, configured alike,
/// are awake to read, and each write is a system call.
const POLLING_FIRST_WRITE: usize = 32;

/// The first write of a burst for a transport that polls for `spin`.
fn first_write(spin: std::time::Duration) -> usize {
    if spin.is_zero() {
        rpc_core::transport::FIRST_WRITE
    } else {
        POLLING_FIRST_WRITE
    }
}

impl Connection for TcpConnection {
    fn info(&self) -> &ConnInfo {
        &self.info
    }

    fn split(self: Box<Self>) -> (Box<dyn FrameSink>, Box<dyn FrameStream>) {
        let (read, write) = self.stream.into_split();
        (
            Box::new(TcpFrameSink::new(
                write,
                self.max_frame_len,
                first_write(self.spin),
            )),
            Box::new(TcpFrameStream::new(read, self.max_frame_len, self.spin)),
        )
    }
}
