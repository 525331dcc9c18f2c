//! Record encoding and decoding, without a ring: records are written into a
//! buffer, with arena attachments kept in a map.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use rpc_core::wire::FrameKind;

/// Encodes `frame` as a record, moving attachments at `arena_indices` to a
/// fake arena (keyed by block number).
fn encode(
    enc: &mut Encoder,
    mut frame: Frame,
    arena_indices: &[u32],
    arena: &mut HashMap<u64, Bytes>,
) -> BytesMut {
    let mut descs = Vec::new();
    for &i in arena_indices {
        let data = match i {
            BODY => std::mem::take(&mut frame.body),
            i => std::mem::take(&mut frame.attachments[i as usize]),
        };
        let block = arena.len() as u32 + 1;
        descs.push(Desc {
            index: i,
            first_block: block,
            len: data.len() as u64,
        });
        arena.insert(u64::from(block), data);
    }
    let mut out = BytesMut::from(enc.head(&frame, &descs).unwrap());
    out.extend_from_slice(&frame.body);
    for a in &frame.attachments {
        out.extend_from_slice(a);
    }
    out
}

fn fake_arena(arena: &HashMap<u64, Bytes>) -> impl FnMut(u64, u64) -> Result<Bytes, ShmError> {
    move |block, len| match arena.get(&block) {
        Some(b) if b.len() as u64 == len => Ok(b.clone()),
        _ => Err(ShmError::Record("no such block")),
    }
}

fn sample() -> Frame {
    let mut f = Frame::new(FrameKind::Request, 42);
    f.method = Some(Arc::from("echo"));
    f.body = Bytes::from_static(b"body");
    f.attachments = vec![
        Bytes::from(vec![1; 100]),
        Bytes::new(),
        Bytes::from(vec![3; 5000]),
    ];
    f
}

#[test]
fn round_trips_inline_and_arena_attachments_byte_by_byte() {
    for arena_indices in [&[][..], &[0], &[0, 2], &[BODY, 2]] {
        let mut enc = Encoder::new(1 << 20);
        let mut dec = Decoder::new(1 << 20);
        let mut arena = HashMap::new();
        let record = encode(&mut enc, sample(), arena_indices, &mut arena);
        let mut second = sample();
        second.request_id = 43;
        let record2 = encode(&mut enc, second.clone(), &[], &mut arena);
        // Feed one byte at a time: nothing comes out before a record is whole.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in record.iter().chain(record2.iter()) {
            buf.put_u8(*b);
            while let Some(f) = dec.decode(&mut buf, fake_arena(&arena)).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, [sample(), second], "arena {arena_indices:?}");
        assert!(buf.is_empty());
    }
}

/// Decodes `record` (after applying `patch` to it) and returns the error.
#[track_caller]
fn check_err(max: u64, patch: impl FnOnce(&mut BytesMut), expect: &str) {
    let mut enc = Encoder::new(1 << 20);
    let mut arena = HashMap::new();
    let mut record = encode(&mut enc, sample(), &[2], &mut arena);
    patch(&mut record);
    let mut dec = Decoder::new(max);
    let got = loop {
        match dec.decode(&mut record, fake_arena(&arena)) {
            Ok(Some(f)) => panic!("decoded {f:?}"),
            Ok(None) => record.put_u8(0),
            Err(e) => break e.to_string(),
        }
    };
    assert!(got.contains(expect), "{got:?} does not contain {expect:?}");
}

#[test]
fn refuses_bad_records() {
    check_err(1 << 20, |r| r[0] = b'X', "bad record tag");
    check_err(
        1 << 20,
        |r| r[4..8].copy_from_slice(&5000u32.to_le_bytes()),
        "too many",
    );
    // The prefix alone is over the limit: refused before the rest arrives.
    check_err(100, |_| {}, "exceeds the limit of 100");
    // The arena part pushes the frame over the limit.
    check_err(1000, |_| {}, "exceeds the limit of 1000");
    check_err(
        1 << 20,
        |r| r[20..24].copy_from_slice(&9u32.to_le_bytes()),
        "no such block",
    );
    // A descriptor for an attachment that is not a placeholder.
    check_err(
        1 << 20,
        |r| r[16..20].copy_from_slice(&0u32.to_le_bytes()),
        "names no empty",
    );
    check_err(
        1 << 20,
        |r| r[16..20].copy_from_slice(&7u32.to_le_bytes()),
        "names no empty",
    );
    // Frame length one short or one long.
    check_err(
        1 << 20,
        |r| {
            let f = u64::from_le_bytes(r[8..16].try_into().unwrap());
            r[8..16].copy_from_slice(&(f - 1).to_le_bytes());
        },
        "does not match",
    );
    check_err(
        1 << 20,
        |r| {
            let f = u64::from_le_bytes(r[8..16].try_into().unwrap());
            r[8..16].copy_from_slice(&(f + 1).to_le_bytes());
        },
        "does not match",
    );
}

#[test]
fn a_whole_record_is_its_head_then_its_payload() {
    let mut frame = Frame::new(FrameKind::Response, 9);
    frame.body = Bytes::from_static(b"small");
    frame.attachments = vec![
        Bytes::from_static(b"a1"),
        Bytes::new(),
        Bytes::from_static(b"a3"),
    ];
    let mut enc = Encoder::new(1 << 20);
    let mut parts = BytesMut::from(enc.head(&frame, &[]).unwrap());
    let head_len = parts.len();
    parts.extend_from_slice(b"smalla1a3");
    let whole = BytesMut::from(enc.whole_record(head_len, &frame));
    assert_eq!(whole, parts);
    let mut dec = Decoder::new(1 << 20);
    let mut buf = whole;
    let got = dec
        .decode(&mut buf, |_, _| Err(ShmError::Record("no arena")))
        .unwrap();
    assert_eq!(got, Some(frame));
    assert!(buf.is_empty());
}
