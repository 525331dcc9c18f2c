//! The receiving half: bytes into one reused read buffer, frames out of it.

use std::io;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use rpc_core::TransportError;
use rpc_core::transport::FrameStream;
use rpc_core::wire::{Frame, FrameCodec};
use socket2::SockRef;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio_util::codec::Decoder;

/// How much room a read is given at least. The decoder reserves the exact
/// size of a large frame itself once its header has arrived.
const READ_BUF_LEN: usize = 64 << 10;
/// Below this much spare room, the buffer is grown before reading.
const MIN_READ_ROOM: usize = 4 << 10;

/// The receiving half of a TCP connection.
pub(crate) struct TcpFrameStream {
    /// `None` after the end of the stream or an error.
    reader: Option<OwnedReadHalf>,
    codec: FrameCodec,
    /// Decoded frames are slices of this buffer; its allocation is reused
    /// once they are all dropped.
    buf: BytesMut,
    /// How long to poll before sleeping; see `TcpConfig::spin`.
    spin: Duration,
}

impl TcpFrameStream {
    /// A stream that rejects frames over `max_frame_len` bytes.
    pub(crate) fn new(reader: OwnedReadHalf, max_frame_len: u64, spin: Duration) -> Self {
        Self {
            reader: Some(reader),
            codec: FrameCodec::new(max_frame_len),
            buf: BytesMut::with_capacity(READ_BUF_LEN),
            spin,
        }
    }

    /// Ends the stream after a malformed frame or a failed read, and shuts
    /// the socket down both ways so that the peer learns of it. Only this
    /// connection is affected.
    fn fail(&mut self, error: TransportError) -> TransportError {
        if let Some(reader) = self.reader.take() {
            // The socket may already be dead; the error at hand is the one
            // worth reporting.
            let _ = SockRef::from(reader.as_ref()).shutdown(Shutdown::Both);
        }
        self.buf = BytesMut::new();
        error
    }
}

/// Polls the socket for up to `spin`, yielding to other tasks between
/// attempts, so that a frame arriving soon is read without the thread going
/// to sleep. `None` if nothing arrived (or `spin` is zero).
async fn poll_for(
    reader: &OwnedReadHalf,
    buf: &mut BytesMut,
    spin: Duration,
) -> Option<io::Result<usize>> {
    if spin.is_zero() {
        return None;
    }
    let start = Instant::now();
    loop {
        match reader.try_read_buf(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            read => return Some(read),
        }
        if start.elapsed() >= spin {
            return None;
        }
        tokio::task::yield_now().await;
    }
}

#[async_trait]
impl FrameStream for TcpFrameStream {
    // Cancel safe: bytes enter `buf` only when a read completes, and
    // decoding never awaits, so a dropped future loses nothing.
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            let Some(reader) = self.reader.as_mut() else {
                return Err(TransportError::Closed);
            };
            let read = match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {
                    if self.buf.capacity() - self.buf.len() < MIN_READ_ROOM {
                        self.buf.reserve(READ_BUF_LEN);
                    }
                    match poll_for(reader, &mut self.buf, self.spin).await {
                        Some(read) => read,
                        None => reader.read_buf(&mut self.buf).await,
                    }
                }
                Err(e) => return Err(self.fail(e)),
            };
            match read {
                Ok(0) => {
                    return match self.codec.decode_eof(&mut self.buf) {
                        Ok(None) => {
                            self.reader = None;
                            Ok(None)
                        }
                        Ok(Some(frame)) => Ok(Some(frame)),
                        Err(e) => Err(self.fail(e)),
                    };
                }
                Ok(_) => {}
                Err(e) => return Err(self.fail(TransportError::io("read", e))),
            }
        }
    }
}
