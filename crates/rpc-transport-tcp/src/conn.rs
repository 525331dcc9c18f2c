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

impl Connection for TcpConnection {
    fn info(&self) -> &ConnInfo {
        &self.info
    }

    fn split(self: Box<Self>) -> (Box<dyn FrameSink>, Box<dyn FrameStream>) {
        let (read, write) = self.stream.into_split();
        (
            Box::new(TcpFrameSink::new(write, self.max_frame_len)),
            Box::new(TcpFrameStream::new(read, self.max_frame_len, self.spin)),
        )
    }
}
