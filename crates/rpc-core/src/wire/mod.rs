//! The wire: frames, and the codec that turns them into bytes.
//!
//! A [`Frame`] is one message between two peers: a header, a serde body and
//! zero or more out-of-band attachments. Transports move whole frames;
//! byte-stream transports (TCP) turn them into bytes with [`FrameCodec`].
//! A transport that wants to place payloads itself (say, each large
//! attachment in an aligned buffer of its own) decodes only the head with
//! [`FrameCodec::decode_head`], reads the payload, and builds the frame with
//! [`FrameHead::into_frame`].
//!
//! # Frame layout (version 1, all integers little-endian)
//!
//! ```text
//! offset size field
//!      0    2 magic, the bytes "RP" (0x5052 read as u16 LE)
//!      2    1 version (1)
//!      3    1 kind (FrameKind as u8)
//!      4    1 flags: bit0 method name follows, bit1 deadline present,
//!               bit2 route present; other bits must be zero
//!      5    1 hop limit (0 without a route)
//!      6    2 provider id
//!      8    8 request id
//!     16    4 method id (interned per connection and direction; 0 = none)
//!     20    4 body length
//!     24    8 remaining deadline budget in microseconds (0 without a deadline)
//!     32    2 attachment count
//!     34    1 method name length (0 unless bit0)
//!     35    1 route source name length
//!     36    1 route destination name length
//!     37    3 reserved, zero
//!     40      method name, source name, destination name (UTF-8)
//!             attachment lengths, attachment count × u64
//!             body
//!             attachments, back to back
//! ```
//!
//! The method travels by name the first time a connection uses it, together
//! with the id the sender assigned; later frames carry only the id. The
//! receiver learns the mapping from the frame itself, so no extra round trip
//! is needed.

mod codec;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use codec::FrameCodec;

/// The magic at the start of every frame: the bytes `"RP"`.
pub const MAGIC: u16 = u16::from_le_bytes(*b"RP");
/// The wire protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// The size of the fixed part of the header.
pub const HEADER_LEN: usize = 40;
/// The longest method or peer name the wire carries, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// The most attachments one frame may carry.
pub const MAX_ATTACHMENTS: usize = 4096;
/// The most distinct methods one direction of one connection may intern.
pub const MAX_METHODS_PER_CONNECTION: u32 = 1 << 16;
/// The default frame size limit: 256 MiB.
pub const DEFAULT_MAX_FRAME_LEN: u64 = 256 << 20;

/// What a frame is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A call that expects a response or an error.
    Request = 1,
    /// The successful result of a request.
    Response = 2,
    /// The failed result of a request.
    Error = 3,
    /// The caller no longer wants the result of a request.
    Cancel = 4,
    /// A call that expects no response.
    OneWay = 5,
    /// Engine-to-engine control traffic (handshake, keepalive, goodbye).
    Control = 6,
}

impl FrameKind {
    /// Parses the kind byte of a header.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Request,
            2 => Self::Response,
            3 => Self::Error,
            4 => Self::Cancel,
            5 => Self::OneWay,
            6 => Self::Control,
            _ => return None,
        })
    }

    /// Whether frames of this kind name a method.
    pub fn has_method(self) -> bool {
        matches!(self, Self::Request | Self::OneWay)
    }

    /// A short lowercase name, for errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
            Self::Error => "error",
            Self::Cancel => "cancel",
            Self::OneWay => "one-way",
            Self::Control => "control",
        }
    }
}

/// The routing envelope: who sent a frame, who it is for, and how many more
/// hops it may take. Discovery uses it to relay frames between peers that are
/// not directly connected.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// The name of the peer that sent the frame first.
    pub src: Arc<str>,
    /// The name of the peer the frame is for.
    pub dst: Arc<str>,
    /// How many more times the frame may be forwarded.
    pub hops_left: u8,
}

/// One message between two peers.
///
/// The body is serde data encoded by [`crate::body`]; large binary values
/// travel as `attachments`, which are never copied into the body and which
/// byte-stream transports write with vectored I/O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the frame is for.
    pub kind: FrameKind,
    /// Matches a response, error or cancel to its request.
    pub request_id: u64,
    /// Selects one of several registrations of the same method name.
    pub provider: u16,
    /// The method, for [`FrameKind::Request`] and [`FrameKind::OneWay`].
    pub method: Option<Arc<str>>,
    /// The remaining deadline budget, relative to the moment the frame is sent.
    pub deadline: Option<Duration>,
    /// The routing envelope, if the frame is routed by name. Boxed: few
    /// frames carry one, and a smaller frame is cheaper to move.
    pub route: Option<Box<Route>>,
    /// The serde body.
    pub body: Bytes,
    /// Out-of-band binary values referred to from the body.
    pub attachments: Vec<Bytes>,
}

impl Frame {
    /// A frame of the given kind and request id with an empty body.
    #[inline]
    pub fn new(kind: FrameKind, request_id: u64) -> Self {
        Self {
            kind,
            request_id,
            provider: 0,
            method: None,
            deadline: None,
            route: None,
            body: Bytes::new(),
            attachments: Vec::new(),
        }
    }

    /// The size of this frame on the wire when its method travels by name,
    /// which is the most it can take.
    #[inline]
    pub fn wire_len(&self) -> u64 {
        let names = self.method.as_ref().map_or(0, |m| m.len())
            + self.route.as_ref().map_or(0, |r| r.src.len() + r.dst.len());
        let atts: u64 = self.attachments.iter().map(|a| a.len() as u64).sum();
        (HEADER_LEN + names + 8 * self.attachments.len()) as u64 + self.body.len() as u64 + atts
    }

    /// The number of payload bytes: body plus attachments.
    #[inline]
    pub fn payload_len(&self) -> u64 {
        self.body.len() as u64 + self.attachments.iter().map(|a| a.len() as u64).sum::<u64>()
    }
}

/// The head of a frame whose payload (body and attachments) is yet to be
/// read, from [`FrameCodec::decode_head`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameHead {
    kind: FrameKind,
    request_id: u64,
    provider: u16,
    method: Option<Arc<str>>,
    deadline: Option<Duration>,
    route: Option<Box<Route>>,
    head_len: usize,
    body_len: usize,
    attachment_lens: Vec<usize>,
}

impl FrameHead {
    /// What the frame is for.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The frame's request id.
    pub fn request_id(&self) -> u64 {
        self.request_id
    }

    /// The number of bytes the head took on the wire.
    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// The length of the body, which follows the head on the wire.
    pub fn body_len(&self) -> usize {
        self.body_len
    }

    /// The length of each attachment, in order; they follow the body.
    pub fn attachment_lens(&self) -> &[usize] {
        &self.attachment_lens
    }

    /// The number of bytes after the head: body plus attachments.
    #[inline]
    pub fn payload_len(&self) -> usize {
        self.body_len + self.attachment_lens.iter().sum::<usize>()
    }

    /// The frame, with its body and attachments as read by the caller. The
    /// buffers should have the lengths the head announced; they are taken
    /// as given.
    #[inline]
    pub fn into_frame(self, body: Bytes, attachments: Vec<Bytes>) -> Frame {
        Frame {
            kind: self.kind,
            request_id: self.request_id,
            provider: self.provider,
            method: self.method,
            deadline: self.deadline,
            route: self.route,
            body,
            attachments,
        }
    }
}
