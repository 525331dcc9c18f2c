//! The decoder rejects frames over its limit from their headers alone,
//! without allocating room for them.
//!
//! A counting global allocator measures what the current thread allocates
//! while a decode runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use rpc_core::TransportError;
use rpc_core::wire::{DEFAULT_MAX_FRAME_LEN, Frame, FrameCodec, FrameKind, HEADER_LEN};
use tokio_util::codec::{Decoder, Encoder};

struct Counting;

thread_local! {
    // Const-initialised cells without destructors: using them never
    // allocates, so the allocator may touch them.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    if COUNTING.with(Cell::get) {
        ALLOCATED.with(|a| a.set(a.get().saturating_add(bytes)));
    }
}

// SAFETY: every method forwards to the system allocator unchanged; counting
// only reads and writes thread-local cells.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result with the bytes this thread allocated.
fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCATED.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, ALLOCATED.with(Cell::get))
}

/// Encodes `frame`, lets `patch` change the bytes, and decodes them with the
/// default limit. Returns the error and the bytes the decode allocated.
fn decode_patched(frame: Frame, patch: impl FnOnce(&mut [u8])) -> (Option<TransportError>, usize) {
    let mut buf = BytesMut::new();
    FrameCodec::new(u64::MAX).encode(frame, &mut buf).unwrap();
    patch(&mut buf);
    // Leave generous spare capacity, as a reader's buffer would have, so
    // that only the decoder's own allocations count.
    buf.reserve(64 << 10);
    let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME_LEN);
    let (got, allocated) = allocated_by(|| codec.decode(&mut buf));
    (got.err(), allocated)
}

#[track_caller]
fn check(frame: Frame, patch: impl FnOnce(&mut [u8]), expect_len: u64) {
    let (err, allocated) = decode_patched(frame, patch);
    match err {
        Some(TransportError::FrameTooLarge { len, max }) => {
            assert_eq!((len, max), (expect_len, DEFAULT_MAX_FRAME_LEN));
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert!(allocated < 64 << 10, "decode allocated {allocated} bytes");
}

fn with_attachments(n: usize) -> Frame {
    let mut f = Frame::new(FrameKind::Response, 1);
    f.attachments = vec![Bytes::new(); n];
    f
}

const H: u64 = HEADER_LEN as u64;

#[test]
fn a_huge_body_is_rejected_from_the_header() {
    let body_len = |len: u32| move |b: &mut [u8]| b[20..24].copy_from_slice(&len.to_le_bytes());
    check(
        Frame::new(FrameKind::Response, 1),
        body_len(u32::MAX),
        H + u64::from(u32::MAX),
    );
    check(
        Frame::new(FrameKind::Response, 1),
        body_len(1 << 31),
        H + (1 << 31),
    );
    // Only the header arrived: the rest is not waited for.
    let mut buf = BytesMut::new();
    FrameCodec::new(u64::MAX)
        .encode(Frame::new(FrameKind::Response, 1), &mut buf)
        .unwrap();
    body_len(u32::MAX)(&mut buf);
    let (got, allocated) = allocated_by(|| FrameCodec::new(DEFAULT_MAX_FRAME_LEN).decode(&mut buf));
    assert!(
        matches!(got, Err(TransportError::FrameTooLarge { .. })),
        "{got:?}"
    );
    assert!(allocated < 64 << 10, "decode allocated {allocated} bytes");
}

#[test]
fn huge_attachment_lengths_are_rejected_from_the_table() {
    let lens = |lens: Vec<u64>| {
        move |b: &mut [u8]| {
            for (i, len) in lens.iter().enumerate() {
                let at = HEADER_LEN + 8 * i;
                b[at..at + 8].copy_from_slice(&len.to_le_bytes());
            }
        }
    };
    check(with_attachments(1), lens(vec![u64::MAX]), u64::MAX);
    check(with_attachments(1), lens(vec![4 << 30]), H + 8 + (4 << 30));
    check(
        with_attachments(2),
        lens(vec![u64::MAX / 2 + 1, u64::MAX / 2 + 1]),
        u64::MAX,
    );
    // Each under the limit, together over it.
    let each = DEFAULT_MAX_FRAME_LEN / 2;
    check(
        with_attachments(3),
        lens(vec![each, each, 1]),
        H + 24 + 2 * each + 1,
    );
    // The most attachments a frame may have, all of them huge.
    check(
        with_attachments(4096),
        lens(vec![1 << 40; 4096]),
        H + 8 * 4096 + 4096 * (1 << 40),
    );
}

#[test]
fn a_frame_within_the_limit_is_sized_exactly() {
    // The decoder reserves room for a whole legitimate frame once its size is
    // known, and not before.
    let mut f = with_attachments(1);
    f.attachments[0] = Bytes::from(vec![7; 1 << 20]);
    let mut full = BytesMut::new();
    FrameCodec::new(u64::MAX)
        .encode(f.clone(), &mut full)
        .unwrap();
    let mut buf = BytesMut::from(&full[..HEADER_LEN + 8]);
    let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME_LEN);
    let (got, allocated) = allocated_by(|| codec.decode(&mut buf));
    assert!(matches!(got, Ok(None)), "{got:?}");
    assert!(allocated >= 1 << 20, "reserved {allocated} bytes");
    assert!(buf.capacity() >= full.len());
    buf.extend_from_slice(&full[HEADER_LEN + 8..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(f));
}

#[test]
fn a_body_length_of_u64_max_is_rejected_without_allocating() {
    // A varint length prefix of u64::MAX (marker 253, then 8 bytes), as a
    // `Vec<u8>`, a `String` and a `Vec<u64>` would read it. (This test once
    // used the reserved marker 0xff, which fails before any length is read;
    // with the real marker, a `Vec<u64>` preallocated 1 MiB.)
    let mut body = vec![253u8];
    body.extend_from_slice(&u64::MAX.to_le_bytes());
    body.extend_from_slice(&[7; 32]);
    let (bytes, allocated) = allocated_by(|| rpc_core::body::decode::<Vec<u8>>(&body, &[]));
    assert!(
        matches!(bytes, Err(rpc_core::CodecError::Body(_))),
        "{bytes:?}"
    );
    assert!(allocated < 64 << 10, "decoding allocated {allocated} bytes");
    let (string, allocated) = allocated_by(|| rpc_core::body::decode::<String>(&body, &[]));
    assert!(string.is_err());
    assert!(allocated < 64 << 10, "decoding allocated {allocated} bytes");
    let (seq, allocated) = allocated_by(|| rpc_core::body::decode::<Vec<u64>>(&body, &[]));
    assert!(seq.is_err());
    assert!(allocated < 64 << 10, "decoding allocated {allocated} bytes");
}
