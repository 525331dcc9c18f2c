//! Unit tests of the ring's index logic, on the heap (so miri can run them).

use super::heap::HeapRing;
use super::*;

fn pair(capacity: usize) -> (Producer<HeapRing>, Consumer<HeapRing>) {
    let mem = HeapRing::new(capacity);
    (Producer::new(mem.clone()), Consumer::new(mem))
}

/// Sends `records` (each filled with its index) through a ring of
/// `capacity` bytes, moving at most `step` bytes at a time, and checks that
/// the bytes come out in order.
#[track_caller]
fn check_stream(capacity: usize, records: &[usize], step: usize) {
    let (mut tx, mut rx) = pair(capacity);
    let sent: Vec<u8> = records
        .iter()
        .enumerate()
        .flat_map(|(i, &len)| std::iter::repeat_n(i as u8, len))
        .collect();
    let mut got = Vec::new();
    let mut at = 0;
    while got.len() < sent.len() {
        let end = (at + step).min(sent.len());
        let n = tx.write(&sent[at..end]).unwrap();
        at += n;
        tx.publish();
        rx.refresh().unwrap();
        let mut chunk = vec![0; step];
        let m = rx.read(&mut chunk);
        got.extend_from_slice(&chunk[..m]);
        rx.release();
        tx.refresh().unwrap();
        assert!(n > 0 || m > 0, "no progress");
    }
    assert_eq!(got, sent);
}

#[test]
fn streams_bytes_in_order_across_wrap_around() {
    check_stream(8, &[3, 3, 3, 3], 3);
    check_stream(8, &[5, 7, 1], 4);
    check_stream(64, &[40, 40, 40], 64);
    // Records larger than half the ring, and larger than the ring.
    check_stream(16, &[9, 9, 9, 9], 16);
    check_stream(16, &[100, 3, 50], 7);
    check_stream(64, &[1000], 64);
}

#[test]
fn full_and_empty() {
    let (mut tx, mut rx) = pair(8);
    assert_eq!(rx.refresh(), Ok(0));
    assert_eq!(tx.write(&[1; 10]), Ok(8));
    assert_eq!(tx.free(), 0);
    assert_eq!(tx.write(&[2]), Ok(0));
    // Unpublished bytes are invisible.
    assert_eq!(rx.refresh(), Ok(0));
    assert_eq!(tx.unpublished(), 8);
    tx.publish();
    assert_eq!(rx.refresh(), Ok(8));
    let mut buf = [0; 3];
    assert_eq!(rx.read(&mut buf), 3);
    // Read but not released: still no room.
    assert_eq!(tx.refresh(), Ok(0));
    rx.release();
    assert_eq!(tx.refresh(), Ok(3));
    assert_eq!(tx.write(&[3, 4, 5, 6]), Ok(3));
}

#[test]
fn close_is_seen_after_the_data() {
    let (mut tx, mut rx) = pair(8);
    tx.write(b"ab").unwrap();
    assert!(!tx.close());
    assert_eq!(rx.refresh(), Ok(2));
    assert!(rx.is_closed());
    let mut buf = [0; 8];
    assert_eq!(rx.read(&mut buf), 2);
    assert_eq!(&buf[..2], b"ab");
    rx.close();
    tx.refresh().unwrap();
    assert!(tx.consumer_gone());
}

#[test]
fn waiters_are_taken_once() {
    let (mut tx, mut rx) = pair(8);
    rx.announce_data_wait();
    assert!(!rx.has_news());
    tx.write(b"x").unwrap();
    assert!(tx.publish(), "the sleeping consumer is woken");
    assert!(rx.has_news());
    tx.write(b"y").unwrap();
    assert!(!tx.publish(), "one wake per sleep");
    rx.refresh().unwrap();
    tx.announce_space_wait();
    tx.cancel_space_wait();
    let mut buf = [0; 2];
    rx.read(&mut buf);
    assert!(!rx.release(), "a withdrawn wait is not woken");
    tx.announce_space_wait();
    tx.write(&[0; 8]).unwrap();
    tx.publish();
    rx.refresh().unwrap();
    rx.read(&mut [0; 1]);
    assert!(rx.release(), "the sleeping producer is woken");
}

/// A position the peer wrote is checked before use.
#[track_caller]
fn check_hostile_tail(word: u64, expect: Result<u64, RingError>) {
    let (_tx, mut rx) = pair(8);
    rx.mem().ctl().tail.0.store(word, Ordering::Relaxed);
    assert_eq!(rx.refresh(), expect);
}

#[track_caller]
fn check_hostile_head(word: u64, expect: Result<u64, RingError>) {
    let (mut tx, _rx) = pair(8);
    tx.write(&[0; 4]).unwrap();
    tx.publish();
    tx.mem().ctl().head.0.store(word, Ordering::Relaxed);
    assert_eq!(tx.refresh(), expect);
}

#[test]
fn hostile_positions_are_refused() {
    let far = Err(RingError("the write position moved backwards or too far"));
    check_hostile_tail(8, Ok(8));
    check_hostile_tail(9, far);
    check_hostile_tail(u64::MAX, far);
    check_hostile_tail(CLOSED | 3, Ok(3));
    let bad = Err(RingError("the read position moved backwards or ahead"));
    check_hostile_head(4, Ok(8));
    check_hostile_head(5, bad);
    check_hostile_head(CLOSED | 2, Ok(6));
    check_hostile_head(u64::MAX, bad);
}
