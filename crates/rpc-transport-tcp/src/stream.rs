//! The receiving half: bytes into one reused read buffer, frames out of it.

use std::net::Shutdown;

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
}

impl TcpFrameStream {
    /// A stream that rejects frames over `max_frame_len` bytes.
    pub(crate) fn new(reader: OwnedReadHalf, max_frame_len: u64) -> Self {
        Self {
            reader: Some(reader),
            codec: FrameCodec::new(max_frame_len),
            buf: BytesMut::with_capacity(READ_BUF_LEN),
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
                    reader.read_buf(&mut self.buf).await
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
