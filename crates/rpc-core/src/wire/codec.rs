//! `FrameCodec`: frames to bytes and back, as a tokio-util codec.
//!
//! The layout is described in the [module docs](super). The codec is pure: it
//! never does I/O, and the only state it keeps is the two method tables of
//! one connection (one per direction) and the length of a frame it is
//! waiting for.
//!
//! The decoder checks a frame's size before it allocates anything for it: the
//! fixed header alone bounds the size from below, and the attachment length
//! table gives the exact size. Only a frame within the limit makes it reserve
//! room in the read buffer. A decoded frame's body and attachments are slices
//! of the read buffer, never copies.

use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{
    Frame, FrameHead, FrameKind, HEADER_LEN, MAGIC, MAX_ATTACHMENTS, MAX_METHODS_PER_CONNECTION,
    MAX_NAME_LEN, Route, VERSION,
};
use crate::error::{CodecError, TransportError};

/// Flag bit 0: the method name follows the fixed header.
const FLAG_METHOD_NAME: u8 = 1 << 0;
/// Flag bit 1: the deadline field is meaningful.
const FLAG_DEADLINE: u8 = 1 << 1;
/// Flag bit 2: the frame carries a route.
const FLAG_ROUTE: u8 = 1 << 2;
/// Every flag bit version 1 knows.
const KNOWN_FLAGS: u8 = FLAG_METHOD_NAME | FLAG_DEADLINE | FLAG_ROUTE;

/// Encodes and decodes [`Frame`]s for byte-stream transports. Stateful: it
/// interns method names per connection and direction. Use one codec per
/// connection.
///
/// # Errors
///
/// Decoding returns `Ok(None)` while a frame is incomplete. A frame over the
/// limit is [`TransportError::FrameTooLarge`], found from the header alone;
/// anything malformed is a [`TransportError::Codec`]: a bad magic, version
/// or kind; unknown flag bits, non-zero reserved bytes, or a field its flag
/// says is absent ([`CodecError::UnknownFlags`], also for a method on a kind
/// that has none); a method id announced out of order or never announced;
/// a name that is not UTF-8; too many attachments. Both directions are then
/// unusable: the stream must end. At EOF, bytes left over are
/// [`CodecError::Truncated`].
///
/// Encoding refuses, without writing or interning anything, a frame over
/// the limit, a request or one-way frame without a method, a name over
/// [`MAX_NAME_LEN`] bytes, too many attachments, or a new method once
/// [`MAX_METHODS_PER_CONNECTION`] are interned.
///
/// # Example
///
/// ```
/// use bytes::BytesMut;
/// use rpc_core::wire::{Frame, FrameCodec, FrameKind};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut sender = FrameCodec::new(1 << 20);
/// let mut receiver = FrameCodec::new(1 << 20);
/// let mut frame = Frame::new(FrameKind::Request, 1);
/// frame.method = Some("echo".into());
///
/// let mut bytes = BytesMut::new();
/// sender.encode(frame.clone(), &mut bytes)?;
/// assert_eq!(receiver.decode(&mut bytes)?, Some(frame));
/// # Ok::<_, rpc_core::TransportError>(())
/// ```
#[derive(Debug)]
pub struct FrameCodec {
    max_frame_len: u64,
    /// The methods this side announced, with the ids it assigned.
    sent_methods: FxHashMap<Arc<str>, u32>,
    /// The methods the peer announced; id `n` is at index `n - 1`.
    received_methods: Vec<Arc<str>>,
    /// The frame at the front of the read buffer, once its size is known, so
    /// that a large frame arriving in many reads is sized only once.
    pending: Option<Pending>,
}

/// A frame whose header was checked and whose size is known.
#[derive(Clone, Copy, Debug)]
struct Pending {
    head: Head,
    total: usize,
}

/// The fixed header of a frame, checked for consistency.
#[derive(Clone, Copy, Debug)]
struct Head {
    kind: FrameKind,
    flags: u8,
    hops_left: u8,
    provider: u16,
    request_id: u64,
    method_id: u32,
    body_len: u32,
    deadline_us: u64,
    count: usize,
    method_len: usize,
    src_len: usize,
    dst_len: usize,
}

/// How a frame being encoded names its method.
enum MethodRef<'a> {
    /// The frame kind has no method.
    None,
    /// The method was announced before; only the id travels.
    Known(u32),
    /// First use: the id and the name travel, and the id is interned.
    New(u32, &'a Arc<str>),
}

impl FrameCodec {
    /// A codec that rejects frames larger than `max_frame_len` bytes.
    pub fn new(max_frame_len: u64) -> Self {
        Self {
            max_frame_len,
            sent_methods: FxHashMap::default(),
            received_methods: Vec::new(),
            pending: None,
        }
    }

    /// The frame size limit.
    pub fn max_frame_len(&self) -> u64 {
        self.max_frame_len
    }

    /// Changes the frame size limit for the frames decoded (and encoded)
    /// from now on.
    pub fn set_max_frame_len(&mut self, max_frame_len: u64) {
        self.max_frame_len = max_frame_len;
    }

    /// Writes the fixed header and the variable header part (names and the
    /// attachment length table) of `frame` into `dst`, but not the body nor
    /// the attachments, which a vectored writer sends from their own buffers.
    ///
    /// On error nothing is written and no method is interned, so the caller
    /// may go on encoding other frames.
    pub fn encode_head(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), TransportError> {
        let count = frame.attachments.len();
        if count > MAX_ATTACHMENTS {
            return Err(CodecError::TooManyAttachments {
                count,
                max: MAX_ATTACHMENTS,
            }
            .into());
        }
        let Ok(body_len) = u32::try_from(frame.body.len()) else {
            return Err(TransportError::FrameTooLarge {
                len: frame.wire_len(),
                max: self.max_frame_len.min(u64::from(u32::MAX)),
            });
        };

        let method = self.method_ref(frame)?;
        let method_name: &[u8] = match method {
            MethodRef::New(_, name) => name.as_bytes(),
            MethodRef::None | MethodRef::Known(_) => &[],
        };
        let (route_src, route_dst, hops_left): (&[u8], &[u8], u8) = match &frame.route {
            Some(r) => {
                check_name_len(&r.src)?;
                check_name_len(&r.dst)?;
                (r.src.as_bytes(), r.dst.as_bytes(), r.hops_left)
            }
            None => (&[], &[], 0),
        };

        let head_len =
            HEADER_LEN + method_name.len() + route_src.len() + route_dst.len() + 8 * count;
        let len = head_len as u64 + frame.payload_len();
        if len > self.max_frame_len {
            return Err(TransportError::FrameTooLarge {
                len,
                max: self.max_frame_len,
            });
        }

        // Everything is checked; from here on the frame is written.
        let method_id = match method {
            MethodRef::None => 0,
            MethodRef::Known(id) => id,
            MethodRef::New(id, name) => {
                self.sent_methods.insert(Arc::clone(name), id);
                id
            }
        };
        let mut flags = 0;
        if matches!(method, MethodRef::New(..)) {
            flags |= FLAG_METHOD_NAME;
        }
        if frame.deadline.is_some() {
            flags |= FLAG_DEADLINE;
        }
        if frame.route.is_some() {
            flags |= FLAG_ROUTE;
        }
        // Budgets beyond u64::MAX microseconds (half a million years) saturate.
        let deadline_us = frame
            .deadline
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));

        // The fixed part is built on the stack and copied once: one bounds
        // check and one copy instead of a dozen small `put_*` calls.
        let mut fixed = [0u8; HEADER_LEN];
        fixed[0..2].copy_from_slice(&MAGIC.to_le_bytes());
        fixed[2] = VERSION;
        fixed[3] = frame.kind as u8;
        fixed[4] = flags;
        fixed[5] = hops_left;
        fixed[6..8].copy_from_slice(&frame.provider.to_le_bytes());
        fixed[8..16].copy_from_slice(&frame.request_id.to_le_bytes());
        fixed[16..20].copy_from_slice(&method_id.to_le_bytes());
        fixed[20..24].copy_from_slice(&body_len.to_le_bytes());
        fixed[24..32].copy_from_slice(&deadline_us.to_le_bytes());
        // `count <= MAX_ATTACHMENTS` and the names' lengths were checked above,
        // so these narrowing casts are lossless.
        fixed[32..34].copy_from_slice(&(count as u16).to_le_bytes());
        fixed[34] = method_name.len() as u8;
        fixed[35] = route_src.len() as u8;
        fixed[36] = route_dst.len() as u8;
        // Bytes 37..40 are reserved and stay zero.
        dst.reserve(head_len);
        dst.put_slice(&fixed);
        // Most frames carry no name: each copy skipped is a call saved.
        for part in [method_name, route_src, route_dst] {
            if !part.is_empty() {
                dst.put_slice(part);
            }
        }
        for a in &frame.attachments {
            dst.put_u64_le(a.len() as u64);
        }
        Ok(())
    }

    /// Decides how `frame` names its method, without interning anything yet.
    fn method_ref<'f>(&self, frame: &'f Frame) -> Result<MethodRef<'f>, CodecError> {
        if !frame.kind.has_method() {
            // Other kinds carry no method on the wire; one set anyway is not
            // written.
            return Ok(MethodRef::None);
        }
        let name = frame
            .method
            .as_ref()
            .ok_or_else(|| CodecError::MissingMethod(frame.kind.name()))?;
        check_name_len(name)?;
        if let Some(&id) = self.sent_methods.get(&**name) {
            return Ok(MethodRef::Known(id));
        }
        // The table never holds more than MAX_METHODS_PER_CONNECTION entries,
        // so its length fits in a u32.
        let id = self.sent_methods.len() as u32 + 1;
        if id > MAX_METHODS_PER_CONNECTION {
            return Err(CodecError::MethodTableFull(MAX_METHODS_PER_CONNECTION));
        }
        Ok(MethodRef::New(id, name))
    }

    /// Checks the frame at the front of `src` as far as it has arrived, and
    /// returns its header and total size once the attachment table is there.
    #[inline(always)]
    fn size_frame(&self, src: &mut BytesMut) -> Result<Option<Pending>, TransportError> {
        let Some(fixed) = src.first_chunk::<HEADER_LEN>() else {
            // What has arrived of the fixed header is checked at once, so
            // that garbage is refused before a whole header is waited for.
            check_prefix(&src[..])?;
            return Ok(None);
        };
        let head = Head::parse(fixed)?;
        let table_start = head.names_end();
        let table_end = table_start + 8 * head.count;
        // A lower bound of the size, known before the attachment table is.
        let lower = table_end as u64 + u64::from(head.body_len);
        self.check_len(lower)?;
        let Some(table) = src.get(table_start..table_end) else {
            // The variable header is at most a few tens of KiB.
            src.reserve(table_end - src.len());
            return Ok(None);
        };
        let mut total = lower;
        for mut entry in table.chunks_exact(8) {
            let len = entry.get_u64_le();
            // An overflowing sum is larger than any limit.
            total = total
                .checked_add(len)
                .ok_or(TransportError::FrameTooLarge {
                    len: u64::MAX,
                    max: self.max_frame_len,
                })?;
        }
        self.check_len(total)?;
        let total = usize::try_from(total).map_err(|_| TransportError::FrameTooLarge {
            len: total,
            max: self.max_frame_len,
        })?;
        Ok(Some(Pending { head, total }))
    }

    /// Decodes the head of the frame at the front of `src`: the fixed
    /// header, the names and the attachment length table, which it consumes.
    /// The body and the attachments are left in `src` (or still on their
    /// way): the caller reads them where it wants, for example each large
    /// attachment straight into a buffer of its own, and then builds the
    /// frame with [`FrameHead::into_frame`].
    ///
    /// `Ok(None)` while the head is incomplete; nothing is consumed then.
    /// The whole frame's size is checked against the limit before the head
    /// is returned, so the caller may allocate the announced lengths. The
    /// errors are those of [`decode`](Decoder::decode); after one, the
    /// stream is unusable.
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use rpc_core::wire::{Frame, FrameCodec, FrameKind};
    /// use tokio_util::codec::Encoder;
    ///
    /// let mut frame = Frame::new(FrameKind::Response, 3);
    /// frame.body = Bytes::from_static(b"body");
    /// frame.attachments = vec![Bytes::from(vec![7; 100])];
    /// let mut buf = BytesMut::new();
    /// FrameCodec::new(1 << 20).encode(frame.clone(), &mut buf)?;
    ///
    /// let mut codec = FrameCodec::new(1 << 20);
    /// let head = codec.decode_head(&mut buf)?.expect("the head is there");
    /// assert_eq!((head.body_len(), head.attachment_lens()), (4, &[100][..]));
    /// let body = buf.split_to(4).freeze();
    /// let attachment = buf.split_to(100).freeze();
    /// assert_eq!(head.into_frame(body, vec![attachment]), frame);
    /// # Ok::<_, rpc_core::TransportError>(())
    /// ```
    pub fn decode_head(&mut self, src: &mut BytesMut) -> Result<Option<FrameHead>, TransportError> {
        let Pending { head, .. } = match self.pending.take() {
            Some(p) => p,
            None => match self.size_frame(src)? {
                Some(p) => p,
                None => return Ok(None),
            },
        };
        self.take_head(head, src).map(Some)
    }

    /// Consumes the head of a frame that [`size_frame`](Self::size_frame)
    /// sized: checks the names, interns an announced method and reads the
    /// attachment length table.
    #[inline(always)]
    fn take_head(&mut self, head: Head, src: &mut BytesMut) -> Result<FrameHead, TransportError> {
        // `size_frame` found the names and the table in `src`. Check the
        // names before consuming anything.
        let method_end = HEADER_LEN + head.method_len;
        let src_end = method_end + head.src_len;
        let names_end = src_end + head.dst_len;
        let method = self.resolve_method(&head, &src[HEADER_LEN..method_end])?;
        let route = if head.flags & FLAG_ROUTE != 0 {
            Some(Box::new(Route {
                src: utf8(&src[method_end..src_end])?.into(),
                dst: utf8(&src[src_end..names_end])?.into(),
                hops_left: head.hops_left,
            }))
        } else {
            None
        };
        let table_end = names_end + 8 * head.count;
        let attachment_lens = if head.count == 0 {
            Vec::new()
        } else {
            // The sum of these lengths was checked to fit in `total`, a
            // usize, so the casts are lossless.
            src[names_end..table_end]
                .chunks_exact(8)
                .map(|mut e| e.get_u64_le() as usize)
                .collect()
        };
        src.advance(table_end);
        Ok(FrameHead {
            kind: head.kind,
            request_id: head.request_id,
            provider: head.provider,
            method,
            deadline: (head.flags & FLAG_DEADLINE != 0)
                .then(|| Duration::from_micros(head.deadline_us)),
            route,
            head_len: table_end,
            body_len: head.body_len as usize,
            attachment_lens,
        })
    }

    fn check_len(&self, len: u64) -> Result<(), TransportError> {
        if len > self.max_frame_len {
            Err(TransportError::FrameTooLarge {
                len,
                max: self.max_frame_len,
            })
        } else {
            Ok(())
        }
    }

    /// Resolves the method of a complete frame, interning an announced name.
    fn resolve_method(&mut self, head: &Head, name: &[u8]) -> Result<Option<Arc<str>>, CodecError> {
        if !head.kind.has_method() {
            return Ok(None);
        }
        if head.flags & FLAG_METHOD_NAME == 0 {
            let index = head.method_id.checked_sub(1).map(|i| i as usize);
            return index
                .and_then(|i| self.received_methods.get(i))
                .cloned()
                .map(Some)
                .ok_or(CodecError::UnknownMethodId(head.method_id));
        }
        let known = self.received_methods.len() as u32;
        if known >= MAX_METHODS_PER_CONNECTION {
            return Err(CodecError::MethodTableFull(MAX_METHODS_PER_CONNECTION));
        }
        if head.method_id != known + 1 {
            return Err(CodecError::MethodIdOutOfOrder {
                got: head.method_id,
                expected: known + 1,
            });
        }
        let name: Arc<str> = utf8(name)?.into();
        self.received_methods.push(Arc::clone(&name));
        Ok(Some(name))
    }
}

impl Head {
    /// Parses and checks the fixed header; `b` holds at least
    /// [`HEADER_LEN`] bytes.
    #[inline(always)]
    fn parse(b: &[u8; HEADER_LEN]) -> Result<Self, CodecError> {
        // Fixed offsets into a fixed-size array: no bounds checks at run time.
        fn le<const N: usize>(b: &[u8; HEADER_LEN], at: usize) -> [u8; N] {
            let mut a = [0; N];
            a.copy_from_slice(&b[at..at + N]);
            a
        }
        let magic = u16::from_le_bytes(le(b, 0));
        if magic != MAGIC {
            return Err(CodecError::BadMagic(magic));
        }
        let version = b[2];
        if version != VERSION {
            return Err(CodecError::UnsupportedVersion(version));
        }
        let kind_byte = b[3];
        let kind = FrameKind::from_u8(kind_byte).ok_or(CodecError::UnknownKind(kind_byte))?;
        let flags = b[4];
        let head = Self {
            kind,
            flags,
            hops_left: b[5],
            provider: u16::from_le_bytes(le(b, 6)),
            request_id: u64::from_le_bytes(le(b, 8)),
            method_id: u32::from_le_bytes(le(b, 16)),
            body_len: u32::from_le_bytes(le(b, 20)),
            deadline_us: u64::from_le_bytes(le(b, 24)),
            count: usize::from(u16::from_le_bytes(le(b, 32))),
            method_len: usize::from(b[34]),
            src_len: usize::from(b[35]),
            dst_len: usize::from(b[36]),
        };
        let reserved = [b[37], b[38], b[39]];

        // Unknown bits, reserved bytes, and fields that their flag says are
        // absent must all be zero.
        let unknown = CodecError::UnknownFlags(flags);
        let has = |flag: u8| flags & flag != 0;
        if flags & !KNOWN_FLAGS != 0 || reserved != [0; 3] {
            return Err(unknown);
        }
        if !has(FLAG_METHOD_NAME) && head.method_len != 0
            || !has(FLAG_DEADLINE) && head.deadline_us != 0
            || !has(FLAG_ROUTE) && (head.hops_left, head.src_len, head.dst_len) != (0, 0, 0)
        {
            return Err(unknown);
        }
        if kind.has_method() {
            if head.method_id == 0 && !has(FLAG_METHOD_NAME) {
                return Err(CodecError::MissingMethod(kind.name()));
            }
        } else if head.method_id != 0 || has(FLAG_METHOD_NAME) {
            return Err(unknown);
        }
        if head.count > MAX_ATTACHMENTS {
            return Err(CodecError::TooManyAttachments {
                count: head.count,
                max: MAX_ATTACHMENTS,
            });
        }
        Ok(head)
    }

    /// Where the names end and the attachment length table starts.
    fn names_end(&self) -> usize {
        HEADER_LEN + self.method_len + self.src_len + self.dst_len
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = TransportError;

    #[inline]
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, TransportError> {
        let pending = match self.pending.take() {
            Some(p) => p,
            None => match self.size_frame(src)? {
                Some(p) => p,
                None => return Ok(None),
            },
        };
        if src.len() < pending.total {
            // The frame is within the limit, so room for it may be made now.
            src.reserve(pending.total - src.len());
            self.pending = Some(pending);
            return Ok(None);
        }
        let head = self.take_head(pending.head, src)?;
        let mut bytes = src.split_to(head.payload_len()).freeze();
        if head.attachment_lens.is_empty() {
            // The whole payload is the body: no slice to count references.
            return Ok(Some(head.into_frame(bytes, Vec::new())));
        }
        let body = bytes.split_to(head.body_len);
        let mut attachments = Vec::with_capacity(head.attachment_lens.len());
        let mut at = 0;
        for &len in &head.attachment_lens {
            // The lengths add up to the payload's, checked against the limit.
            attachments.push(bytes.slice(at..at + len));
            at += len;
        }
        Ok(Some(head.into_frame(body, attachments)))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, TransportError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(CodecError::Truncated(src.len()).into()),
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = TransportError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), TransportError> {
        self.encode_head(&frame, dst)?;
        // encode_head checked the size against the limit.
        dst.reserve(frame.payload_len() as usize);
        dst.put_slice(&frame.body);
        for a in &frame.attachments {
            dst.put_slice(a);
        }
        Ok(())
    }
}

/// Rejects garbage as soon as its first bytes arrive, before a whole fixed
/// header is there.
fn check_prefix(src: &[u8]) -> Result<(), CodecError> {
    if let [a, b, ..] = *src {
        let magic = u16::from_le_bytes([a, b]);
        if magic != MAGIC {
            return Err(CodecError::BadMagic(magic));
        }
    }
    if let Some(&version) = src.get(2)
        && version != VERSION
    {
        return Err(CodecError::UnsupportedVersion(version));
    }
    if let Some(&kind) = src.get(3)
        && FrameKind::from_u8(kind).is_none()
    {
        return Err(CodecError::UnknownKind(kind));
    }
    Ok(())
}

fn check_name_len(name: &str) -> Result<(), CodecError> {
    if name.len() > MAX_NAME_LEN {
        Err(CodecError::NameTooLong {
            len: name.len(),
            max: MAX_NAME_LEN,
        })
    } else {
        Ok(())
    }
}

fn utf8(b: &[u8]) -> Result<&str, CodecError> {
    std::str::from_utf8(b).map_err(|_| CodecError::InvalidUtf8)
}

#[cfg(test)]
mod tests;
