//! The sending half: frames into a write queue, the queue out with vectored
//! writes.
//!
//! `feed` encodes a frame's header into a write buffer. Payloads (the body
//! and each attachment) smaller than [`COPY_BELOW`] are copied after it, so
//! that many small frames coalesce into one write; larger ones are queued as
//! the `Bytes` they are, without a copy. `flush` hands the whole queue to
//! `writev`, at most [`MAX_IOVECS`] buffers per call.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use rpc_core::TransportError;
use rpc_core::transport::FrameSink;
use rpc_core::wire::{Frame, FrameCodec};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

/// Payloads shorter than this are copied into the write buffer; longer ones
/// are written from their own buffers.
const COPY_BELOW: usize = 4 << 10;
/// Once this much is fed but not flushed, `feed` flushes by itself.
const AUTO_FLUSH_AT: usize = 256 << 10;
/// The most buffers one `writev` call is given (Linux allows 1024; more per
/// call gains nothing).
const MAX_IOVECS: usize = 64;
/// The capacity of the write buffer once the connection carries frames.
const WRITE_BUF_LEN: usize = 64 << 10;
/// Its capacity until then: room for a hello. A connection that never gets
/// past the handshake holds no more.
const FIRST_BUF_LEN: usize = 1 << 10;

/// The sending half of a TCP connection.
pub(crate) struct TcpFrameSink {
    /// `None` once closed or after a failed write.
    writer: Option<OwnedWriteHalf>,
    codec: FrameCodec,
    queue: WriteQueue,
    /// See `FrameSink::first_write`.
    first_write: usize,
}

impl TcpFrameSink {
    /// Checks and encodes a frame into the write queue.
    fn enqueue(&mut self, frame: Frame) -> Result<(), TransportError> {
        if self.writer.is_none() {
            return Err(TransportError::Closed);
        }
        // Checked before anything is queued, so a refused frame leaves the
        // connection usable.
        let max = self.codec.max_frame_len();
        if frame.wire_len() > max {
            return Err(TransportError::FrameTooLarge {
                len: frame.wire_len(),
                max,
            });
        }
        self.codec.encode_head(&frame, self.queue.buf_mut())?;
        self.queue.push(frame.body);
        for attachment in frame.attachments {
            self.queue.push(attachment);
        }
        Ok(())
    }

    /// Ends the sink after a failed write.
    fn write_failed(&mut self, e: io::Error) -> TransportError {
        self.writer = None;
        self.queue = WriteQueue::new();
        TransportError::io("write", e)
    }

    /// A sink that refuses frames over `max_frame_len` bytes, and asks for
    /// bursts to be written `first_write` frames first.
    pub(crate) fn new(writer: OwnedWriteHalf, max_frame_len: u64, first_write: usize) -> Self {
        Self {
            writer: Some(writer),
            codec: FrameCodec::new(max_frame_len),
            queue: WriteQueue::new(),
            first_write,
        }
    }
}

#[async_trait]
impl FrameSink for TcpFrameSink {
    async fn feed(&mut self, frame: Frame) -> Result<(), TransportError> {
        self.enqueue(frame)?;
        if self.queue.len() >= AUTO_FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    fn try_feed(&mut self, frame: Frame) -> Result<Option<Frame>, TransportError> {
        if self.queue.len() + 1 + frame.attachments.len() >= AUTO_FLUSH_AT {
            // `feed` flushes first; leave that to it.
            return Ok(Some(frame));
        }
        self.enqueue(frame)?;
        Ok(None)
    }

    fn first_write(&self) -> usize {
        self.first_write
    }

    fn try_flush(&mut self) -> Result<bool, TransportError> {
        let Some(writer) = self.writer.as_ref() else {
            return Err(TransportError::Closed);
        };
        self.queue.seal();
        while !self.queue.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
            let count = self.queue.io_slices(&mut iov);
            match writer.try_write_vectored(&iov[..count]) {
                Ok(0) => return Err(self.write_failed(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.queue.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(self.write_failed(e)),
            }
        }
        Ok(true)
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(TransportError::Closed);
        };
        self.queue.seal();
        while !self.queue.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
            let count = self.queue.io_slices(&mut iov);
            // Cancel safe as far as the queue goes: it only advances by what
            // a completed write took.
            let written = match writer.write_vectored(&iov[..count]).await {
                Ok(0) => Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => Ok(n),
                Err(e) => Err(e),
            };
            match written {
                Ok(n) => self.queue.advance(n),
                Err(e) => return Err(self.write_failed(e)),
            }
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        if self.writer.is_none() {
            return Ok(());
        }
        self.flush().await?;
        if let Some(mut writer) = self.writer.take() {
            writer
                .shutdown()
                .await
                .map_err(|e| TransportError::io("shutdown", e))?;
        }
        Ok(())
    }
}

/// Bytes waiting to be written, in order: sealed segments, then the open
/// write buffer.
#[derive(Debug)]
struct WriteQueue {
    /// Headers and small payloads not yet sealed into a segment.
    buf: BytesMut,
    /// Segments in write order, all ahead of `buf`. Each is non-empty.
    segments: VecDeque<Bytes>,
    /// The number of bytes in `segments`.
    sealed: usize,
    /// Whether a frame was sealed (the hello, first): the next frame then
    /// grows `buf` to its full size, once.
    sealed_once: bool,
    /// Whether it has.
    grown: bool,
}

impl WriteQueue {
    fn new() -> Self {
        Self {
            buf: BytesMut::with_capacity(FIRST_BUF_LEN),
            segments: VecDeque::new(),
            sealed: 0,
            sealed_once: false,
            grown: false,
        }
    }

    /// The number of bytes waiting.
    fn len(&self) -> usize {
        self.sealed + self.buf.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The open write buffer, for headers. The first frame after the hello
    /// gives it its full size: a connection that never gets past its
    /// handshake holds only the small one.
    fn buf_mut(&mut self) -> &mut BytesMut {
        if self.sealed_once && !self.grown && self.buf.is_empty() {
            self.buf = BytesMut::with_capacity(WRITE_BUF_LEN);
            self.grown = true;
        }
        &mut self.buf
    }

    /// Queues a payload: copied if small, by reference if large.
    fn push(&mut self, payload: Bytes) {
        if payload.len() < COPY_BELOW {
            self.buf.extend_from_slice(&payload);
        } else {
            self.seal();
            self.sealed += payload.len();
            self.segments.push_back(payload);
        }
    }

    /// Turns what the write buffer holds into a segment. The buffer's spare
    /// capacity stays with it, and its allocation is reused once every
    /// segment cut from it has been written and dropped.
    fn seal(&mut self) {
        if !self.buf.is_empty() {
            self.sealed += self.buf.len();
            self.segments.push_back(self.buf.split().freeze());
            self.sealed_once = true;
        }
    }

    /// Fills `iov` with the first segments; returns how many it filled.
    fn io_slices<'a>(&'a self, iov: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        for (slot, segment) in iov.iter_mut().zip(&self.segments) {
            *slot = IoSlice::new(segment);
            count += 1;
        }
        count
    }

    /// Drops the first `n` bytes of the segments, which were written.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.segments.front_mut() else {
                // A write never reports more than it was given.
                break;
            };
            let step = n.min(front.len());
            front.advance(step);
            self.sealed -= step;
            n -= step;
            if front.is_empty() {
                self.segments.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queues `payloads` (each sealed after `head` bytes), then writes in
    /// steps of `writes` bytes, and checks each step's first slice lengths.
    #[track_caller]
    fn check(payloads: &[usize], writes: &[usize], expect: &[&[usize]]) {
        let mut q = WriteQueue::new();
        let mut all = Vec::new();
        for (i, &len) in payloads.iter().enumerate() {
            let head = [i as u8; 3];
            q.buf_mut().extend_from_slice(&head);
            all.extend_from_slice(&head);
            let payload = vec![i as u8 + 100; len];
            all.extend_from_slice(&payload);
            q.push(payload.into());
        }
        q.seal();
        assert_eq!(q.len(), all.len());
        let mut out = Vec::new();
        for (&step, &expect) in writes.iter().zip(expect) {
            let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
            let count = q.io_slices(&mut iov);
            let lens: Vec<usize> = iov[..count].iter().map(|s| s.len()).collect();
            assert_eq!(lens, expect);
            let flat: Vec<u8> = iov[..count]
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect();
            out.extend_from_slice(&flat[..step]);
            q.advance(step);
        }
        assert!(q.is_empty());
        assert_eq!(out, all);
    }

    #[test]
    fn queues_small_payloads_by_copy_and_large_ones_by_reference() {
        check(&[1, 2, 0], &[12], &[&[12]]);
        check(&[5000], &[5003], &[&[3, 5000]]);
        check(
            &[5000, 10, 6000],
            &[2, 1, 4000, 1000, 16, 6000],
            &[
                &[3, 5000, 16, 6000],
                &[1, 5000, 16, 6000],
                &[5000, 16, 6000],
                &[1000, 16, 6000],
                &[16, 6000],
                &[6000],
            ],
        );
        check(
            &[COPY_BELOW - 1, COPY_BELOW],
            &[2 * COPY_BELOW + 5],
            &[&[COPY_BELOW + 5, COPY_BELOW]],
        );
    }

    #[test]
    fn caps_the_iovec_count() {
        let mut q = WriteQueue::new();
        for _ in 0..100 {
            q.push(vec![1; COPY_BELOW].into());
        }
        assert_eq!(
            q.io_slices(&mut [IoSlice::new(&[]); MAX_IOVECS]),
            MAX_IOVECS
        );
        q.advance(99 * COPY_BELOW + 1);
        assert_eq!(q.io_slices(&mut [IoSlice::new(&[]); MAX_IOVECS]), 1);
        assert_eq!(q.len(), COPY_BELOW - 1);
    }
}
