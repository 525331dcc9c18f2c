//! Properties of the frame codec: what is encoded decodes to the same frames,
//! however the byte stream is split, and no input makes the decoder panic.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rpc_core::wire::{Frame, FrameCodec, FrameKind, MAX_NAME_LEN, Route};
use tokio_util::codec::{Decoder, Encoder};

const MAX: u64 = 1 << 20;

fn kind() -> impl Strategy<Value = FrameKind> {
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
/// interned methods, sometimes any string that fits.
fn name() -> impl Strategy<Value = Arc<str>> {
    prop_oneof![
        3 => prop::sample::select(vec!["", "add", "echo", "tensor.get", "ü€"]).prop_map(Arc::<str>::from),
        1 => "\\PC{0,40}".prop_map(Arc::<str>::from),
        1 => "[a-z]{255}".prop_map(Arc::<str>::from),
    ]
    .prop_filter("fits on the wire", |n: &Arc<str>| n.len() <= MAX_NAME_LEN)
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        kind(),
        any::<u64>(),
        any::<u16>(),
        name(),
        prop::option::of(any::<u64>()),
        prop::option::of((name(), name(), any::<u8>())),
        bytes(64),
        prop::collection::vec(bytes(64), 0..5),
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

fn encode_all(frames: &[Frame]) -> BytesMut {
    let mut codec = FrameCodec::new(MAX);
    let mut buf = BytesMut::new();
    for f in frames {
        codec.encode(f.clone(), &mut buf).unwrap();
    }
    buf
}

/// Feeds `bytes` to a decoder in chunks of the given sizes (cycled), and
/// collects every frame until the first error.
fn decode_chunked(bytes: &[u8], chunks: &[usize]) -> (Vec<Frame>, Option<String>) {
    let mut codec = FrameCodec::new(MAX);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = bytes;
    let mut sizes = chunks.iter().copied().cycle();
    loop {
        let take = sizes.next().unwrap_or(usize::MAX).min(rest.len());
        buf.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        let eof = rest.is_empty();
        loop {
            let got = if eof {
                codec.decode_eof(&mut buf)
            } else {
                codec.decode(&mut buf)
            };
            match got {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e.to_string())),
            }
        }
        if eof {
            return (frames, None);
        }
    }
}

proptest! {
    #[test]
    fn one_frame_round_trips(f in frame()) {
        let mut buf = encode_all(std::slice::from_ref(&f));
        prop_assert_eq!(buf.len() as u64, f.wire_len());
        let mut codec = FrameCodec::new(MAX);
        prop_assert_eq!(codec.decode(&mut buf).unwrap(), Some(f));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn sequences_round_trip_however_split(
        frames in prop::collection::vec(frame(), 0..12),
        chunks in prop::collection::vec(1usize..200, 1..20),
    ) {
        let bytes = encode_all(&frames);
        let (got, err) = decode_chunked(&bytes, &chunks);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn random_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        chunks in prop::collection::vec(1usize..300, 1..8),
    ) {
        let _ = decode_chunked(&bytes, &chunks);
    }

    #[test]
    fn random_bytes_after_a_header_prefix_never_panic(
        tail in prop::collection::vec(any::<u8>(), 36..512),
        kind in 0u8..8,
    ) {
        // Random headers with a valid magic and version reach the deeper checks.
        let mut bytes = vec![b'R', b'P', 1, kind];
        bytes.extend_from_slice(&tail);
        let _ = decode_chunked(&bytes, &[bytes.len()]);
    }

    #[test]
    fn mutated_frames_never_panic(
        frames in prop::collection::vec(frame(), 1..6),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        truncate in any::<prop::sample::Index>(),
        chunks in prop::collection::vec(1usize..100, 1..8),
    ) {
        let mut bytes = encode_all(&frames).to_vec();
        for (at, value) in edits {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        let keep = truncate.index(bytes.len() + 1).max(bytes.len() / 2);
        bytes.truncate(keep);
        let (got, _) = decode_chunked(&bytes, &chunks);
        // Whatever decoded is a frame within the limit.
        for f in got {
            prop_assert!(f.wire_len() <= MAX);
        }
    }
}
