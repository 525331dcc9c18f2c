//! The receiving half: frames out of one reused read buffer, large
//! attachments straight into buffers of their own.
//!
//! The head of each frame (and its body, and its small attachments) is
//! decoded from a reused read buffer, and handed out as slices of it. An
//! attachment of at least [`DIRECT_MIN`] bytes is read from the socket
//! directly into a freshly allocated buffer aligned to [`ALIGN`] bytes, so
//! that a tensor is viewable in place and never copied after the kernel's
//! copy. Only the bytes of it that arrived with an earlier read (at most
//! one read's worth) are copied over from the read buffer.

use std::io;
use std::net::Shutdown;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use rpc_core::transport::{FrameStream, Spinner};
use rpc_core::wire::{Frame, FrameCodec, FrameHead};
use rpc_core::{CodecError, TransportError};
use socket2::SockRef;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;

/// How much room a read is given at least once the connection carries
/// frames. Room for a large body is made as its bytes arrive, at most
/// [`MAX_RESERVE`] at a time.
const READ_BUF_LEN: usize = 64 << 10;
/// The most room made at once for a frame whose head claims more: the
/// buffer grows with the bytes that actually arrive, never from a claim.
const MAX_RESERVE: usize = 1 << 20;
/// Below this much spare room, the buffer is grown before reading.
const MIN_READ_ROOM: usize = 4 << 10;
/// The read buffer's size until the first frame (the peer's hello) has
/// arrived: a connection that never says hello holds no more.
const HELLO_ROOM: usize = 1 << 10;
/// Attachments of at least this many bytes are read into their own buffer.
pub(crate) const DIRECT_MIN: usize = 64 << 10;
/// The alignment of those buffers: a cache line, and enough for any
/// element type (and for SIMD loads).
pub(crate) const ALIGN: usize = 64;
/// The most a spinning receive reads from the socket directly at once.
const SCRATCH_LEN: usize = 16 << 10;

/// The receiving half of a TCP connection.
pub(crate) struct TcpFrameStream {
    /// `None` after the end of the stream or an error.
    reader: Option<OwnedReadHalf>,
    codec: FrameCodec,
    /// Decoded frames are slices of this buffer; its allocation is reused
    /// once they are all dropped.
    buf: BytesMut,
    /// Polls the socket before sleeping while that pays off; see
    /// `TcpConfig::spin`.
    spinner: Spinner,
    /// The frame being received, once its head is decoded. Kept here, not
    /// in the `recv` future, so that a dropped `recv` loses nothing.
    partial: Option<Partial>,
    /// Where a spinning receive reads the socket directly (see
    /// [`read_now_buf`]); empty when the stream never spins, and until the
    /// first frame has arrived (a connection that never says hello holds
    /// no more than a small read buffer).
    scratch: Vec<u8>,
    /// Whether receives spin (and so want `scratch`).
    spins: bool,
    /// Whether a whole frame has arrived yet; until then the read buffer
    /// stays as small as the frames claim.
    got_frame: bool,
}

/// A frame whose head is decoded and whose payload is arriving.
struct Partial {
    head: FrameHead,
    /// The payload's parts received so far: the body, then attachments.
    parts: Vec<Bytes>,
    /// The large attachment being read into its own buffer.
    direct: Option<AlignedBuf>,
}

/// What a partial frame waits for.
enum Need {
    /// This many more bytes in the read buffer.
    Buffered(usize),
    /// Bytes read into the direct buffer.
    Direct,
}

/// A buffer whose data starts at an address that is a multiple of
/// [`ALIGN`], filled by reads, built without `unsafe`: a `Vec` with
/// `ALIGN - 1` spare bytes, of which the data uses the aligned part.
struct AlignedBuf {
    vec: Vec<u8>,
    start: usize,
    len: usize,
    filled: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes. (Large zeroed allocations come from
    /// fresh pages of the OS and cost no writes.)
    fn new(len: usize) -> Self {
        let vec = vec![0u8; len + ALIGN - 1];
        let start = vec.as_ptr().align_offset(ALIGN).min(ALIGN - 1);
        Self {
            vec,
            start,
            len,
            filled: 0,
        }
    }

    /// The part not yet filled.
    fn unfilled(&mut self) -> &mut [u8] {
        &mut self.vec[self.start + self.filled..self.start + self.len]
    }

    fn is_full(&self) -> bool {
        self.filled == self.len
    }

    fn into_bytes(self) -> Bytes {
        let (start, len) = (self.start, self.len);
        Bytes::from_owner(self.vec).slice(start..start + len)
    }
}

impl Partial {
    /// The length of part `i`: the body, then each attachment.
    fn part_len(&self, i: usize) -> usize {
        match i {
            0 => self.head.body_len(),
            i => self.head.attachment_lens()[i - 1],
        }
    }

    fn part_count(&self) -> usize {
        1 + self.head.attachment_lens().len()
    }

    /// Whether part `i` is read into its own buffer.
    fn is_direct(&self, i: usize) -> bool {
        i > 0 && self.part_len(i) >= DIRECT_MIN
    }

    /// Takes what `buf` holds of the payload; returns the body and the
    /// attachments once they are complete, or what it waits for.
    fn advance(&mut self, buf: &mut BytesMut) -> Result<(Bytes, Vec<Bytes>), Need> {
        // The common case: a frame without large attachments, all of it
        // in the buffer. One split, and slices of it.
        if self.parts.is_empty() && !(1..self.part_count()).any(|i| self.is_direct(i)) {
            let total = self.head.payload_len();
            if buf.len() < total {
                return Err(Need::Buffered(total - buf.len()));
            }
            let bytes = buf.split_to(total).freeze();
            let body_len = self.part_len(0);
            let mut at = body_len;
            // No vector at all for the attachments of a frame without any.
            let attachments = (1..self.part_count())
                .map(|i| {
                    let len = self.part_len(i);
                    at += len;
                    bytes.slice(at - len..at)
                })
                .collect();
            return Ok((bytes.slice(..body_len), attachments));
        }
        while self.parts.len() < self.part_count() {
            let i = self.parts.len();
            let len = self.part_len(i);
            if self.is_direct(i) {
                let direct = self.direct.get_or_insert_with(|| AlignedBuf::new(len));
                // Bytes that arrived with an earlier read are copied over;
                // the rest is read straight into the buffer.
                let take = buf.len().min(len - direct.filled);
                if take > 0 {
                    direct.unfilled()[..take].copy_from_slice(&buf.split_to(take));
                    direct.filled += take;
                }
                if !direct.is_full() {
                    return Err(Need::Direct);
                }
                if let Some(done) = self.direct.take() {
                    self.parts.push(done.into_bytes());
                }
            } else if buf.len() >= len {
                self.parts.push(buf.split_to(len).freeze());
            } else {
                return Err(Need::Buffered(len - buf.len()));
            }
        }
        let mut parts = std::mem::take(&mut self.parts).into_iter();
        let body = parts.next().unwrap_or_default();
        Ok((body, parts.collect()))
    }

    /// How many bytes of the frame arrived, for the error at a torn end.
    fn received(&self) -> usize {
        self.head.head_len()
            + self.parts.iter().map(Bytes::len).sum::<usize>()
            + self.direct.as_ref().map_or(0, |d| d.filled)
    }
}

impl TcpFrameStream {
    /// A stream that rejects frames over `max_frame_len` bytes.
    pub(crate) fn new(reader: OwnedReadHalf, max_frame_len: u64, spin: Duration) -> Self {
        Self {
            reader: Some(reader),
            codec: FrameCodec::new(max_frame_len),
            // Small until frames come: room for a hello.
            buf: BytesMut::with_capacity(HELLO_ROOM),
            spinner: Spinner::new(spin),
            partial: None,
            scratch: Vec::new(),
            spins: !spin.is_zero(),
            got_frame: false,
        }
    }

    /// Takes what the read buffer holds into the frame being received: the
    /// frame once it is whole, else what it waits for. Never reads the
    /// socket.
    fn advance_buffered(&mut self) -> Result<Result<Frame, Need>, TransportError> {
        if self.partial.is_none() {
            match self.codec.decode_head(&mut self.buf) {
                Ok(Some(head)) => {
                    self.partial = Some(Partial {
                        head,
                        parts: Vec::new(),
                        direct: None,
                    });
                }
                Ok(None) => return Ok(Err(Need::Buffered(0))),
                Err(e) => return Err(self.fail(e)),
            }
        }
        match self.partial.as_mut().map(|p| p.advance(&mut self.buf)) {
            Some(Ok((body, attachments))) => match self.partial.take() {
                Some(p) => {
                    self.got_frame = true;
                    if self.spins && self.scratch.is_empty() {
                        self.scratch = vec![0; SCRATCH_LEN];
                    }
                    Ok(Ok(p.head.into_frame(body, attachments)))
                }
                None => Ok(Err(Need::Buffered(0))),
            },
            Some(Err(need)) => Ok(Err(need)),
            None => Ok(Err(Need::Buffered(0))),
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
        self.partial = None;
        error
    }
}

/// Reads what the socket holds now into `dst`, without waiting.
///
/// Through tokio first, which reads only if its driver saw the socket
/// become readable; then directly, with a non-blocking read. The driver
/// looks at the sockets only when its thread has nothing else to run, which
/// a spinning task puts off: without the direct read, a spin would see new
/// bytes only every few microseconds. Reading past tokio is safe with its
/// edge-triggered readiness: bytes that arrive later raise a new edge, and
/// tokio clears its readiness only after a read of its own found nothing.
fn read_now(reader: &OwnedReadHalf, dst: &mut [u8]) -> io::Result<usize> {
    // An empty `dst` skips tokio, whose read into nothing would look like
    // the end of the stream.
    if !dst.is_empty() {
        match reader.try_read(dst) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            read => return read,
        }
    }
    read_direct(reader, dst)
}

/// The direct half of [`read_now`]: a non-blocking read of the socket
/// itself, past tokio's readiness. `WouldBlock` for an empty `dst`.
fn read_direct(reader: &OwnedReadHalf, dst: &mut [u8]) -> io::Result<usize> {
    if dst.is_empty() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let mut socket: &socket2::Socket = &SockRef::from(reader.as_ref());
    io::Read::read(&mut socket, dst)
}

/// [`read_now`] into the read buffer: through tokio's `try_read_buf`, then
/// directly through `scratch` (bytes are appended to a `BytesMut` only once
/// they are initialized), at most as many as the buffer has room for.
fn read_now_buf(
    reader: &OwnedReadHalf,
    buf: &mut BytesMut,
    scratch: &mut [u8],
) -> io::Result<usize> {
    match reader.try_read_buf(buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        read => return read,
    }
    let room = (buf.capacity() - buf.len()).min(scratch.len());
    let n = read_direct(reader, &mut scratch[..room])?;
    buf.extend_from_slice(&scratch[..n]);
    Ok(n)
}

/// Polls the socket with `try_read` (see [`read_now`]) as `spinner` allows
/// (see [`rpc_core::transport::Spinner`]), so that a frame arriving soon is read
/// without the thread going to sleep. `None` if nothing arrived, or the
/// spinner chose not to spin: the caller then sleeps.
async fn poll_for(
    spinner: &mut Spinner,
    mut try_read: impl FnMut() -> io::Result<usize>,
) -> Option<io::Result<usize>> {
    spinner
        .spin(1, || match try_read() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            read => Some(read),
        })
        .await
}

#[async_trait]
impl FrameStream for TcpFrameStream {
    fn set_max_frame_len(&mut self, max: u64) {
        self.codec.set_max_frame_len(max);
    }

    /// Decodes a frame already in the read buffer; never reads the socket.
    fn try_recv(&mut self) -> Option<Result<Option<Frame>, TransportError>> {
        if self.reader.is_none() {
            return Some(Err(TransportError::Closed));
        }
        match self.advance_buffered() {
            Ok(Ok(frame)) => Some(Ok(Some(frame))),
            Ok(Err(_)) => None,
            Err(e) => Some(Err(e)),
        }
    }

    // Cancel safe: bytes enter `buf` or the direct buffer only when a read
    // completes, everything received is kept in `self`, and decoding never
    // awaits, so a dropped future loses nothing.
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            if self.reader.is_none() {
                return Err(TransportError::Closed);
            }
            let need = match self.advance_buffered()? {
                Ok(frame) => return Ok(Some(frame)),
                Err(need) => need,
            };
            let Some(reader) = self.reader.as_mut() else {
                return Err(TransportError::Closed);
            };
            let read = match need {
                Need::Buffered(more) => {
                    // Room for what the head claims is made as it arrives,
                    // at most `MAX_RESERVE` at a time: a peer that claims a
                    // large frame and sends little makes us hold little.
                    let spare = self.buf.capacity() - self.buf.len();
                    if self.got_frame {
                        let room = more.clamp(MIN_READ_ROOM, MAX_RESERVE);
                        if spare < room {
                            self.buf.reserve(room.max(READ_BUF_LEN));
                        }
                    } else if spare < more.min(MAX_RESERVE) || spare == 0 {
                        // Before the hello: exactly what the frame claims
                        // (within the handshake's small frame limit), or a
                        // little room to read its head.
                        self.buf
                            .reserve(more.clamp(HELLO_ROOM, MAX_RESERVE).max(spare));
                    }
                    let (buf, scratch) = (&mut self.buf, &mut self.scratch[..]);
                    match poll_for(&mut self.spinner, || read_now_buf(reader, buf, scratch)).await {
                        Some(read) => read,
                        None => {
                            let read = reader.read_buf(&mut self.buf).await;
                            self.spinner.woke();
                            read
                        }
                    }
                }
                Need::Direct => {
                    let Some(direct) = self.partial.as_mut().and_then(|p| p.direct.as_mut()) else {
                        continue;
                    };
                    let spinner = &mut self.spinner;
                    let read = match poll_for(spinner, || read_now(reader, direct.unfilled())).await
                    {
                        Some(read) => read,
                        None => {
                            let read = reader.read(direct.unfilled()).await;
                            spinner.woke();
                            read
                        }
                    };
                    if let Ok(n) = read {
                        direct.filled += n;
                    }
                    read
                }
            };
            match read {
                Ok(0) => {
                    let left = self.buf.len() + self.partial.as_ref().map_or(0, Partial::received);
                    if self.partial.is_none() && left == 0 {
                        self.reader = None;
                        return Ok(None);
                    }
                    return Err(self.fail(CodecError::Truncated(left).into()));
                }
                Ok(_) => {}
                Err(e) => return Err(self.fail(TransportError::io("read", e))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback connection: the client's stream and the accepted side's
    /// read half.
    async fn connected() -> (tokio::net::TcpStream, OwnedReadHalf) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        (client.unwrap(), accepted.unwrap().0.into_split().0)
    }

    /// Bytes that arrive while the task never yields (so tokio's driver
    /// never looks at the socket) are still read: by the direct read, once
    /// tokio's own readiness has been cleared.
    #[tokio::test(flavor = "current_thread")]
    async fn read_now_sees_bytes_the_driver_has_not_seen() {
        let (client, reader) = connected().await;
        let mut scratch = vec![0; SCRATCH_LEN];
        let mut buf = BytesMut::with_capacity(MIN_READ_ROOM);
        // Nothing sent yet: both reads find nothing, and tokio forgets the
        // socket's readiness until its driver looks again.
        let first = read_now_buf(&reader, &mut buf, &mut scratch);
        assert_eq!(first.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        // From here on, no await: the driver cannot run.
        let sent = client.try_write(b"8 bytes!").unwrap();
        assert_eq!(sent, 8);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let n = loop {
            match read_now_buf(&reader, &mut buf, &mut scratch) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "never read");
                    std::hint::spin_loop();
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!((n, &buf[..]), (8, &b"8 bytes!"[..]));
    }

    /// An empty destination is no end of stream, also while tokio knows the
    /// socket is readable.
    #[tokio::test(flavor = "current_thread")]
    async fn an_empty_destination_is_no_end_of_stream() {
        let (client, reader) = connected().await;
        client.try_write(b"x").unwrap();
        reader.readable().await.unwrap();
        let got = read_now(&reader, &mut []);
        assert_eq!(
            got.unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "a false end"
        );
        let mut one = [0u8; 1];
        assert_eq!(read_now(&reader, &mut one).unwrap(), 1);
    }
}
