//! Unit tests of the frame codec.
use bytes::Bytes;

use super::*;

const MAX: u64 = 1 << 20;

fn frame(kind: FrameKind, id: u64) -> Frame {
    let mut f = Frame::new(kind, id);
    if kind.has_method() {
        f.method = Some("math.add".into());
    }
    f
}

fn with(mut f: Frame, edit: impl FnOnce(&mut Frame)) -> Frame {
    edit(&mut f);
    f
}

fn route(src: &str, dst: &str, hops_left: u8) -> Option<Box<Route>> {
    Some(Box::new(Route {
        src: src.into(),
        dst: dst.into(),
        hops_left,
    }))
}

fn encode_all(codec: &mut FrameCodec, frames: &[Frame]) -> BytesMut {
    let mut buf = BytesMut::new();
    for f in frames {
        codec.encode(f.clone(), &mut buf).unwrap();
    }
    buf
}

/// Encodes `frames` on one codec and decodes them with another.
#[track_caller]
fn check(frames: &[Frame]) {
    let mut buf = encode_all(&mut FrameCodec::new(MAX), frames);
    let mut decoder = FrameCodec::new(MAX);
    for f in frames {
        assert_eq!(decoder.decode(&mut buf).unwrap().as_ref(), Some(f));
    }
    assert_eq!(decoder.decode_eof(&mut buf).unwrap(), None);
}

/// Maps an error to a comparable value.
fn codec_error(e: TransportError) -> CodecError {
    match e {
        TransportError::Codec(e) => e,
        TransportError::FrameTooLarge { len, max } => CodecError::FrameTooLarge { len, max },
        other => panic!("unexpected error {other:?}"),
    }
}

/// Decodes `bytes` (after a patch at `at`) and expects `expect`.
#[track_caller]
fn check_decode_err(f: &Frame, at: usize, patch: &[u8], expect: CodecError) {
    let mut buf = encode_all(&mut FrameCodec::new(MAX), std::slice::from_ref(f));
    buf[at..at + patch.len()].copy_from_slice(patch);
    let got = FrameCodec::new(MAX).decode(&mut buf).map_err(codec_error);
    assert_eq!(got, Err(expect));
}

#[track_caller]
fn check_encode_err(codec: &mut FrameCodec, f: Frame, expect: CodecError) {
    let mut buf = BytesMut::new();
    let got = codec.encode(f, &mut buf).map_err(codec_error);
    assert_eq!(got, Err(expect));
    assert!(buf.is_empty(), "nothing is written on error");
}

#[test]
#[rustfmt::skip]
fn round_trips() {
    use FrameKind::*;
    for kind in [Request, Response, Error, Cancel, OneWay, Control] {
        check(&[frame(kind, 1)]);
        check(&[with(frame(kind, u64::MAX), |f| f.deadline = Some(Duration::from_micros(1500)))]);
        check(&[with(frame(kind, 2), |f| f.deadline = Some(Duration::ZERO))]);
        check(&[with(frame(kind, 3), |f| f.route = route("alice", "bob", 7))]);
        check(&[with(frame(kind, 4), |f| f.route = route("", "", 0))]);
        check(&[with(frame(kind, 5), |f| f.provider = u16::MAX)]);
        check(&[with(frame(kind, 6), |f| f.body = Bytes::from_static(b"body"))]);
        check(&[with(frame(kind, 7), |f| f.attachments = vec![b"a"[..].into(), Bytes::new(), vec![9; 1000].into()])]);
    }
    check(&[with(frame(Request, 8), |f| f.method = Some("".into()))]);
    check(&[with(frame(Request, 9), |f| f.method = Some("ü".repeat(127).into()))]);
    check(&[with(frame(Request, 10), |f| f.deadline = Some(Duration::from_micros(u64::MAX)))]);
    check(&[]);
}

#[test]
fn deadline_saturates_and_truncates() {
    let mut buf = BytesMut::new();
    let mut enc = FrameCodec::new(MAX);
    let mut dec = FrameCodec::new(MAX);
    for (given, expect) in [
        (Duration::MAX, Duration::from_micros(u64::MAX)),
        (Duration::from_nanos(1999), Duration::from_micros(1)),
    ] {
        let f = with(frame(FrameKind::Cancel, 1), |f| f.deadline = Some(given));
        enc.encode(f, &mut buf).unwrap();
        assert_eq!(
            dec.decode(&mut buf).unwrap().and_then(|f| f.deadline),
            Some(expect)
        );
    }
}

#[test]
fn a_method_on_other_kinds_is_not_written() {
    let mut buf = encode_all(
        &mut FrameCodec::new(MAX),
        &[with(frame(FrameKind::Response, 1), |f| {
            f.method = Some("m".into())
        })],
    );
    assert_eq!(buf.len(), HEADER_LEN);
    let got = FrameCodec::new(MAX).decode(&mut buf).unwrap();
    assert_eq!(got, Some(frame(FrameKind::Response, 1)));
}

#[test]
fn methods_are_interned() {
    let a = frame(FrameKind::Request, 1);
    let b = with(frame(FrameKind::OneWay, 2), |f| {
        f.method = Some("other".into())
    });
    let frames = [a.clone(), a.clone(), b.clone(), b, a];
    let mut enc = FrameCodec::new(MAX);
    let mut dec = FrameCodec::new(MAX);
    let mut lens = Vec::new();
    for f in &frames {
        let mut buf = BytesMut::new();
        enc.encode(f.clone(), &mut buf).unwrap();
        lens.push(buf.len());
        assert_eq!(
            buf[4] & FLAG_METHOD_NAME != 0,
            lens.len() == 1 || lens.len() == 3
        );
        assert_eq!(dec.decode(&mut buf).unwrap().as_ref(), Some(f));
    }
    assert_eq!(
        lens,
        [
            HEADER_LEN + 8,
            HEADER_LEN,
            HEADER_LEN + 5,
            HEADER_LEN,
            HEADER_LEN
        ]
    );
    check(&frames);
}

#[test]
fn partial_input_needs_more_bytes() {
    let frames = [
        with(frame(FrameKind::Request, 1), |f| {
            f.deadline = Some(Duration::from_secs(1));
            f.route = route("a", "bc", 2);
            f.body = Bytes::from_static(b"body");
            f.attachments = vec![
                Bytes::from_static(b"xy"),
                Bytes::new(),
                Bytes::from_static(b"z"),
            ];
        }),
        frame(FrameKind::Request, 2),
    ];
    let all = encode_all(&mut FrameCodec::new(MAX), &frames);
    let first_len = frames[0].wire_len() as usize;
    for split in 0..first_len {
        let mut buf = BytesMut::from(&all[..split]);
        assert_eq!(
            FrameCodec::new(MAX).decode(&mut buf).unwrap(),
            None,
            "split at {split}"
        );
        assert_eq!(buf.len(), split, "nothing consumed at {split}");
        let got = FrameCodec::new(MAX)
            .decode_eof(&mut buf)
            .map_err(codec_error);
        let expect = if split == 0 {
            Ok(None)
        } else {
            Err(CodecError::Truncated(split))
        };
        assert_eq!(got, expect, "eof at {split}");
    }
    // One byte at a time through one decoder, keeping the pending state.
    let mut dec = FrameCodec::new(MAX);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for &b in all.iter() {
        buf.put_u8(b);
        got.extend(dec.decode(&mut buf).unwrap());
    }
    assert_eq!(got, frames);
}

#[test]
#[rustfmt::skip]
fn decode_errors() {
    use CodecError::*;
    let req = frame(FrameKind::Request, 1);
    let resp = frame(FrameKind::Response, 1);
    let one = with(resp.clone(), |f| f.attachments = vec![Bytes::new()]);
    let two = with(resp.clone(), |f| f.attachments = vec![Bytes::new(), Bytes::new()]);
    let routed = with(frame(FrameKind::Cancel, 1), |f| f.route = route("a", "b", 1));
    let half = (u64::MAX / 2 + 1).to_le_bytes();
    const H: u64 = HEADER_LEN as u64;

    check_decode_err(&req, 0, b"GE", BadMagic(u16::from_le_bytes(*b"GE")));
    check_decode_err(&req, 2, &[2], UnsupportedVersion(2));
    check_decode_err(&req, 3, &[0], UnknownKind(0));
    check_decode_err(&req, 3, &[7], UnknownKind(7));
    check_decode_err(&req, 4, &[FLAG_METHOD_NAME | 8], UnknownFlags(FLAG_METHOD_NAME | 8));
    check_decode_err(&req, 37, &[1], UnknownFlags(FLAG_METHOD_NAME));
    check_decode_err(&req, 39, &[1], UnknownFlags(FLAG_METHOD_NAME));
    check_decode_err(&req, 4, &[0], UnknownFlags(0));
    check_decode_err(&resp, 4, &[FLAG_METHOD_NAME], UnknownFlags(FLAG_METHOD_NAME));
    check_decode_err(&resp, 5, &[1], UnknownFlags(0));
    check_decode_err(&resp, 16, &[1], UnknownFlags(0));
    check_decode_err(&resp, 24, &[1], UnknownFlags(0));
    check_decode_err(&resp, 35, &[1], UnknownFlags(0));
    check_decode_err(&resp, 3, &[1], MissingMethod("request"));
    check_decode_err(&resp, 3, &[5], MissingMethod("one-way"));
    check_decode_err(&req, 16, &[2], MethodIdOutOfOrder { got: 2, expected: 1 });
    check_decode_err(&req, 40, &[0xff], InvalidUtf8);
    check_decode_err(&routed, 41, &[0xc0], InvalidUtf8);
    check_decode_err(&req, 32, &[0x01, 0x10], TooManyAttachments { count: 4097, max: 4096 });
    check_decode_err(&resp, 20, &[1, 0, 0x10, 0], FrameTooLarge { len: H + MAX + 1, max: MAX });
    check_decode_err(&one, 40, &MAX.to_le_bytes(), FrameTooLarge { len: H + 8 + MAX, max: MAX });
    check_decode_err(&one, 40, &u64::MAX.to_le_bytes(), FrameTooLarge { len: u64::MAX, max: MAX });
    check_decode_err(&two, 40, &half, FrameTooLarge { len: H + 16 + u64::MAX / 2 + 1, max: MAX });
    check_decode_err(&two, 40, &[half, half].concat(), FrameTooLarge { len: u64::MAX, max: MAX });
}

#[test]
fn unknown_method_ids_are_rejected() {
    let mut enc = FrameCodec::new(MAX);
    let mut buf = encode_all(&mut enc, &[frame(FrameKind::Request, 1)]);
    enc.encode(frame(FrameKind::Request, 2), &mut buf).unwrap();
    let second = buf.split_off(HEADER_LEN + 8);
    let mut dec = FrameCodec::new(MAX);
    let got = dec
        .decode(&mut BytesMut::from(&second[..]))
        .map_err(codec_error);
    assert_eq!(got, Err(CodecError::UnknownMethodId(1)));
    // The same bytes after the announcement decode.
    assert!(dec.decode(&mut buf).unwrap().is_some());
    assert!(
        dec.decode(&mut BytesMut::from(&second[..]))
            .unwrap()
            .is_some()
    );
}

#[test]
fn method_tables_fill_up() {
    let mut enc = FrameCodec::new(MAX);
    let mut dec = FrameCodec::new(MAX);
    let mut buf = BytesMut::new();
    for i in 0..MAX_METHODS_PER_CONNECTION {
        let f = with(frame(FrameKind::OneWay, 0), |f| {
            f.method = Some(i.to_string().into())
        });
        enc.encode(f, &mut buf).unwrap();
        dec.decode(&mut buf).unwrap();
    }
    // A known name still encodes; a new one does not.
    enc.encode(
        with(frame(FrameKind::OneWay, 0), |f| f.method = Some("7".into())),
        &mut buf,
    )
    .unwrap();
    assert!(dec.decode(&mut buf).unwrap().is_some());
    let new = with(frame(FrameKind::OneWay, 0), |f| {
        f.method = Some("new".into())
    });
    check_encode_err(
        &mut enc,
        new.clone(),
        CodecError::MethodTableFull(MAX_METHODS_PER_CONNECTION),
    );
    // A peer that announces one more is rejected too.
    let mut buf = encode_all(&mut FrameCodec::new(MAX), &[new]);
    buf[16..20].copy_from_slice(&(MAX_METHODS_PER_CONNECTION + 1).to_le_bytes());
    let got = dec.decode(&mut buf).map_err(codec_error);
    assert_eq!(
        got,
        Err(CodecError::MethodTableFull(MAX_METHODS_PER_CONNECTION))
    );
}

#[test]
#[rustfmt::skip]
fn encode_errors() {
    use CodecError::*;
    let c = &mut FrameCodec::new(MAX);
    let long: Arc<str> = "x".repeat(MAX_NAME_LEN + 1).into();
    let big = |n: u64| Bytes::from(vec![0; n as usize]);
    check_encode_err(c, Frame::new(FrameKind::Request, 1), MissingMethod("request"));
    check_encode_err(c, Frame::new(FrameKind::OneWay, 1), MissingMethod("one-way"));
    check_encode_err(c, with(frame(FrameKind::Request, 1), |f| f.method = Some(long.clone())), NameTooLong { len: 256, max: 255 });
    check_encode_err(c, with(frame(FrameKind::Error, 1), |f| f.route = route(&long, "b", 1)), NameTooLong { len: 256, max: 255 });
    check_encode_err(c, with(frame(FrameKind::Error, 1), |f| f.route = route("a", &long, 1)), NameTooLong { len: 256, max: 255 });
    check_encode_err(c, with(frame(FrameKind::Error, 1), |f| f.attachments = vec![Bytes::new(); 4097]), TooManyAttachments { count: 4097, max: 4096 });
    check_encode_err(c, with(frame(FrameKind::Error, 1), |f| f.body = big(MAX)), FrameTooLarge { len: MAX + 40, max: MAX });
    check_encode_err(c, with(frame(FrameKind::Error, 1), |f| f.attachments = vec![big(MAX - 47)]), FrameTooLarge { len: MAX + 1, max: MAX });
    // A frame refused for its size interns nothing: the name travels with
    // the next frame.
    check_encode_err(c, with(frame(FrameKind::Request, 1), |f| f.body = big(MAX)), FrameTooLarge { len: MAX + 48, max: MAX });
    let mut buf = BytesMut::new();
    c.encode(frame(FrameKind::Request, 2), &mut buf).unwrap();
    assert_eq!(buf.len(), HEADER_LEN + 8);
    // Exactly at the limit is fine.
    check(&[with(frame(FrameKind::Error, 1), |f| f.body = big(MAX - 40))]);
}

#[test]
fn decodes_zero_copy() {
    let f = with(frame(FrameKind::Response, 1), |f| {
        f.body = Bytes::from_static(b"body");
        f.attachments = vec![Bytes::from_static(b"attachment")];
    });
    let mut buf = encode_all(&mut FrameCodec::new(MAX), &[f]);
    let range = buf.as_ptr_range();
    let got = FrameCodec::new(MAX).decode(&mut buf).unwrap().unwrap();
    assert!(range.contains(&got.body.as_ptr()));
    assert!(range.contains(&got.attachments[0].as_ptr()));
}

#[test]
fn golden_bytes() {
    let f = Frame {
        kind: FrameKind::Request,
        request_id: 0x0102_0304_0506_0708,
        provider: 0x0a0b,
        method: Some("add".into()),
        deadline: Some(Duration::from_micros(0x1122_3344)),
        route: route("a", "bc", 9),
        body: Bytes::from_static(b"hi"),
        attachments: vec![Bytes::from_static(b"xyz")],
    };
    let buf = encode_all(&mut FrameCodec::new(MAX), &[f]);
    #[rustfmt::skip]
    let expect: &[u8] = &[
        b'R', b'P',                 // magic
        1,                          // version
        1,                          // kind: request
        0b111,                      // flags: method name, deadline, route
        9,                          // hop limit
        0x0b, 0x0a,                 // provider
        8, 7, 6, 5, 4, 3, 2, 1,     // request id
        1, 0, 0, 0,                 // method id
        2, 0, 0, 0,                 // body length
        0x44, 0x33, 0x22, 0x11, 0, 0, 0, 0, // deadline in microseconds
        1, 0,                       // attachment count
        3, 1, 2,                    // name lengths: method, source, destination
        0, 0, 0,                    // reserved
        b'a', b'd', b'd', b'a', b'b', b'c', // names
        3, 0, 0, 0, 0, 0, 0, 0,     // attachment lengths
        b'h', b'i',                 // body
        b'x', b'y', b'z',           // attachment
    ];
    assert_eq!(&buf[..], expect);
}

#[test]
fn decode_head_consumes_the_head_only() {
    let frames = [
        with(frame(FrameKind::Request, 1), |f| {
            f.route = route("a", "bc", 2);
            f.body = Bytes::from_static(b"body");
            f.attachments = vec![Bytes::from_static(b"xy"), Bytes::new()];
        }),
        // The method is interned now: the second head carries only its id.
        with(frame(FrameKind::Request, 2), |f| {
            f.body = Bytes::from_static(b"b")
        }),
    ];
    let mut all = encode_all(&mut FrameCodec::new(MAX), &frames);
    let mut dec = FrameCodec::new(MAX);
    for f in &frames {
        let head_len = f.wire_len() as usize - f.payload_len() as usize;
        // Fed one byte at a time, the head appears once all of it is there.
        let mut buf = BytesMut::new();
        let head = loop {
            buf.put_u8(all.split_to(1)[0]);
            if let Some(head) = dec.decode_head(&mut buf).unwrap() {
                break head;
            }
        };
        assert!(buf.is_empty(), "the head is consumed, nothing more");
        assert_eq!(head.kind(), FrameKind::Request);
        assert_eq!(head.request_id(), f.request_id);
        assert!(head.head_len() <= head_len);
        assert_eq!(head.body_len(), f.body.len());
        let lens: Vec<usize> = f.attachments.iter().map(Bytes::len).collect();
        assert_eq!(head.attachment_lens(), &lens[..]);
        assert_eq!(head.payload_len(), f.payload_len() as usize);
        let body = all.split_to(head.body_len()).freeze();
        let atts = lens.iter().map(|&n| all.split_to(n).freeze()).collect();
        assert_eq!(&head.into_frame(body, atts), f);
    }
    assert!(all.is_empty());
}
