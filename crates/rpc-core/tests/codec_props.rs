//! Properties of the frame codec: what is encoded decodes to the same frames,
//! however the byte stream is split, and no input makes the decoder panic.
//! The frame strategies are the fuzz harness's (`fuzz.rs` runs the decoder
//! target with structured mutations and allocation bounds).

use bytes::BytesMut;
use proptest::prelude::*;
use rpc_core::testing::fuzz::frames::{self, frame};
use rpc_core::wire::{Frame, FrameCodec};
use tokio_util::codec::Decoder;

const MAX: u64 = 1 << 20;

fn encode_all(frames: &[Frame]) -> BytesMut {
    frames::encode_all(frames, MAX)
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
