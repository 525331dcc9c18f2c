//! Strategies for valid [`Frame`]s, and their encodings: the inputs of
//! round-trip properties and the seeds of structured mutations.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tokio_util::codec::Encoder;

use crate::wire::{Frame, FrameCodec, FrameKind, MAX_NAME_LEN, Route};

/// Any frame kind.
pub fn kind() -> impl Strategy<Value = FrameKind> {
    prop::sample::select(vec![
        FrameKind::Request,
        FrameKind::Response,
        FrameKind::Error,
        FrameKind::Cancel,
        FrameKind::OneWay,
        FrameKind::Control,
    ])
}

/// A name: usually one of a few, so that a sequence of frames reuses
/// interned methods, sometimes any string that fits on the wire.
pub fn name() -> impl Strategy<Value = Arc<str>> {
    prop_oneof![
        3 => prop::sample::select(vec!["", "add", "echo", "tensor.get", "ü€"]).prop_map(Arc::<str>::from),
        1 => "\\PC{0,40}".prop_map(Arc::<str>::from),
        1 => "[a-z]{255}".prop_map(Arc::<str>::from),
    ]
    .prop_filter("fits on the wire", |n: &Arc<str>| n.len() <= MAX_NAME_LEN)
}

/// Up to `max` arbitrary bytes.
pub fn payload(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

/// Any frame the encoder accepts: a method exactly on the kinds that carry
/// one, names that fit, up to four attachments, small payloads.
pub fn frame() -> impl Strategy<Value = Frame> {
    (
        kind(),
        any::<u64>(),
        any::<u16>(),
        name(),
        prop::option::of(any::<u64>()),
        prop::option::of((name(), name(), any::<u8>())),
        payload(64),
        prop::collection::vec(payload(64), 0..5),
    )
        .prop_map(
            |(kind, request_id, provider, method, deadline, route, body, attachments)| Frame {
                kind,
                request_id,
                provider,
                // Only these kinds carry a method on the wire.
                method: kind.has_method().then_some(method),
                deadline: deadline.map(Duration::from_micros),
                route: route.map(|(src, dst, hops_left)| {
                    Box::new(Route {
                        src,
                        dst,
                        hops_left,
                    })
                }),
                body,
                attachments,
            },
        )
}

/// `frames` encoded back to back by one codec (so later frames name their
/// methods by id), with the given frame size limit.
///
/// # Panics
///
/// If the codec refuses a frame: strategies here only make frames it takes.
pub fn encode_all(frames: &[Frame], max_frame_len: u64) -> BytesMut {
    let mut codec = FrameCodec::new(max_frame_len);
    let mut buf = BytesMut::new();
    for f in frames {
        codec
            .encode(f.clone(), &mut buf)
            .unwrap_or_else(|e| panic!("the encoder refused {f:?}: {e}"));
    }
    buf
}
