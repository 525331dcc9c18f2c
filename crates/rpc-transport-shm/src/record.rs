//! Records: how a frame travels through a ring.
//!
//! ```text
//! offset  size
//!      0     4  tag "SHMr"
//!      4     4  descriptor count n (at most wire::MAX_ATTACHMENTS)
//!      8     8  frame length f: the bytes of the FrameCodec encoding below
//!     16  16·n  descriptors: attachment index u32 (u32::MAX for the
//!               body), first arena block u32, length u64
//! 16+16n     f  the frame in rpc-core's wire layout (FrameCodec)
//! ```
//!
//! An attachment (or a large body) placed in the arena is encoded in the
//! frame as an empty placeholder, and its descriptor says where its bytes
//! are; the receiver puts the arena bytes back in its place. Everything else (header, body,
//! small attachments) is in the frame bytes, so the frame layout is the one
//! of `rpc_core::wire`, method interning included.
//!
//! The ring is a byte pipe and a record may be larger than the ring: the
//! receiver gathers a record's bytes privately and decodes it only once all
//! of it is there, so it never hands out part of a frame. Its size is known
//! from the prefix, which is checked against the frame limit before any
//! room is made for the rest.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rpc_core::TransportError;
use rpc_core::wire::{Frame, FrameCodec, MAX_ATTACHMENTS};
use tokio_util::codec::Decoder as _;

use crate::error::ShmError;

/// The fixed part of a record.
pub(crate) const PREFIX_LEN: usize = 16;
/// One arena descriptor.
pub(crate) const DESC_LEN: usize = 16;
const TAG: u32 = u32::from_le_bytes(*b"SHMr");

/// The descriptor index that stands for the body.
pub(crate) const BODY: u32 = u32::MAX;

/// Where an attachment's (or the body's) bytes are in the sender's arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Desc {
    /// The attachment it fills, or [`BODY`].
    pub index: u32,
    /// The first block of the run.
    pub first_block: u32,
    /// The attachment's length.
    pub len: u64,
}

/// A parsed prefix.
#[derive(Clone, Copy, Debug)]
struct Prefix {
    descs: usize,
    frame_len: u64,
}

impl Prefix {
    /// The whole record's length.
    fn total(&self) -> u64 {
        (PREFIX_LEN + DESC_LEN * self.descs) as u64 + self.frame_len
    }
}

/// Turns frames into records: the prefix, descriptors and frame header go
/// into one scratch buffer; the body and inline attachments are written
/// after it from their own buffers.
#[derive(Debug)]
pub(crate) struct Encoder {
    codec: FrameCodec,
    scratch: BytesMut,
}

impl Encoder {
    /// An encoder for frames up to `max_frame_len` bytes.
    pub(crate) fn new(max_frame_len: u64) -> Self {
        Self {
            codec: FrameCodec::new(max_frame_len),
            scratch: BytesMut::with_capacity(4096),
        }
    }

    /// The frame limit.
    pub(crate) fn max_frame_len(&self) -> u64 {
        self.codec.max_frame_len()
    }

    /// Encodes the record's head for `frame`, whose arena attachments are
    /// already empty placeholders described by `descs`. On error nothing is
    /// interned and the encoder stays usable.
    pub(crate) fn head(&mut self, frame: &Frame, descs: &[Desc]) -> Result<&[u8], TransportError> {
        let fixed = PREFIX_LEN + DESC_LEN * descs.len();
        self.scratch.clear();
        self.scratch.put_bytes(0, fixed);
        self.codec.encode_head(frame, &mut self.scratch)?;
        let frame_len = (self.scratch.len() - fixed) as u64 + frame.payload_len();
        let mut at = &mut self.scratch[..fixed];
        at.put_u32_le(TAG);
        // At most MAX_ATTACHMENTS descriptors: encode_head checked the count.
        at.put_u32_le(descs.len() as u32);
        at.put_u64_le(frame_len);
        for d in descs {
            at.put_u32_le(d.index);
            at.put_u32_le(d.first_block);
            at.put_u64_le(d.len);
        }
        Ok(&self.scratch)
    }

    /// Appends the body and the attachments of `frame`, whose head
    /// [`head`](Self::head) encoded last (`head_len` bytes), to that head:
    /// the whole record.
    pub(crate) fn whole_record(&mut self, head_len: usize, frame: &Frame) -> &[u8] {
        self.scratch.truncate(head_len);
        self.scratch.extend_from_slice(&frame.body);
        for a in &frame.attachments {
            self.scratch.extend_from_slice(a);
        }
        &self.scratch
    }

    /// The head [`head`](Self::head) encoded last, `len` bytes long.
    pub(crate) fn last_head(&self, len: usize) -> &[u8] {
        &self.scratch[..len.min(self.scratch.len())]
    }
}

/// Turns the bytes of a ring back into frames.
#[derive(Debug)]
pub(crate) struct Decoder {
    codec: FrameCodec,
    max_frame_len: u64,
    /// The prefix of the record at the front of the buffer, once checked.
    pending: Option<Prefix>,
}

impl Decoder {
    /// A decoder that rejects frames over `max_frame_len` bytes, arena
    /// attachments included.
    pub(crate) fn new(max_frame_len: u64) -> Self {
        Self {
            codec: FrameCodec::new(max_frame_len),
            max_frame_len,
            pending: None,
        }
    }

    /// Changes the limit for the records decoded from now on.
    pub(crate) fn set_max_frame_len(&mut self, max: u64) {
        self.codec.set_max_frame_len(max);
        self.max_frame_len = max;
    }

    /// How many more bytes the record at the front of `buf` needs, if its
    /// prefix is known.
    pub(crate) fn missing(&self, buf: &BytesMut) -> Option<u64> {
        self.pending
            .map(|p| p.total().saturating_sub(buf.len() as u64))
    }

    /// Decodes the record at the front of `buf`, if it is complete.
    /// `arena(first_block, len)` hands out a descriptor's bytes. Any error
    /// means the connection must end.
    pub(crate) fn decode(
        &mut self,
        buf: &mut BytesMut,
        mut arena: impl FnMut(u64, u64) -> Result<Bytes, ShmError>,
    ) -> Result<Option<Frame>, TransportError> {
        let prefix = match self.pending {
            Some(p) => p,
            None => {
                let Some(mut b) = buf.get(..PREFIX_LEN) else {
                    return Ok(None);
                };
                if b.get_u32_le() != TAG {
                    return Err(ShmError::Record("bad record tag").into());
                }
                let descs = b.get_u32_le() as usize;
                let frame_len = b.get_u64_le();
                if descs > MAX_ATTACHMENTS {
                    return Err(ShmError::Record("too many arena descriptors").into());
                }
                if frame_len > self.max_frame_len {
                    return Err(TransportError::FrameTooLarge {
                        len: frame_len,
                        max: self.max_frame_len,
                    });
                }
                let p = Prefix { descs, frame_len };
                self.pending = Some(p);
                p
            }
        };
        // Within the limit plus at most 64 KiB of descriptors: fits usize.
        let total = prefix.total() as usize;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        self.pending = None;
        if prefix.descs == 0 {
            // Everything is inline: the frame is the rest of the record.
            buf.advance(PREFIX_LEN);
            return self.decode_frame(buf, prefix.frame_len).map(Some);
        }
        let mut descs = &buf[PREFIX_LEN..PREFIX_LEN + DESC_LEN * prefix.descs];
        let mut placed = Vec::with_capacity(prefix.descs);
        let mut arena_len = 0u64;
        for _ in 0..prefix.descs {
            let index = descs.get_u32_le() as usize;
            let first_block = u64::from(descs.get_u32_le());
            let len = descs.get_u64_le();
            // Each is within the arena (checked by `arena`), so the sum of
            // at most 4096 of them cannot overflow.
            placed.push((index, arena(first_block, len)?));
            arena_len += len;
        }
        let len = prefix.frame_len + arena_len;
        if len > self.max_frame_len {
            return Err(TransportError::FrameTooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        buf.advance(PREFIX_LEN + DESC_LEN * prefix.descs);
        let mut frame = self.decode_frame(buf, prefix.frame_len)?;
        for (index, data) in placed {
            let slot = if index == BODY as usize {
                Some(&mut frame.body)
            } else {
                frame.attachments.get_mut(index)
            };
            match slot {
                Some(slot) if slot.is_empty() => *slot = data,
                _ => {
                    return Err(
                        ShmError::Record("an arena descriptor names no empty attachment").into(),
                    );
                }
            }
        }
        Ok(Some(frame))
    }

    /// Decodes the frame at the front of `buf`, which holds all of its
    /// `frame_len` bytes; the codec must take exactly those.
    #[inline(always)]
    fn decode_frame(
        &mut self,
        buf: &mut BytesMut,
        frame_len: u64,
    ) -> Result<Frame, TransportError> {
        let before = buf.len();
        let frame = self
            .codec
            .decode(buf)?
            .ok_or(ShmError::Record("the frame is longer than its record says"))?;
        let taken = (before - buf.len()) as u64;
        if taken != frame_len {
            return Err(ShmError::Record("the frame's length does not match its record").into());
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests;
