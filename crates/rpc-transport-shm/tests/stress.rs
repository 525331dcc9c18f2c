//! 10⁶ frames between two processes through a ring that holds two of them,
//! so that the writer waits for room and the reader for data all the time.
//! Both sides pause now and then for longer than the other's spin budget, so
//! that each kind of wait also ends in a sleep and an eventfd wake-up. A
//! watchdog fails the test if no frame moves for 5 s.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_core::transport::{Address, ConnOptions, Transport};
use rpc_core::wire::{Frame, FrameKind};
use rpc_transport_shm::{ShmConfig, ShmStats, ShmTransport};

const MESSAGES: u64 = 1_000_000;
/// No progress for this long is a hang.
const WATCHDOG: Duration = Duration::from_secs(5);
/// Every this many frames, one side pauses (the writer at 0, the reader
/// half-way), for longer than the spin budget.
const PAUSE_EVERY: u64 = 8192;
const PAUSE: Duration = Duration::from_micros(200);
/// A record of an 8-byte control frame is 16 + 40 + 8 = 64 bytes: this ring
/// holds two.
const RING_BYTES: usize = 128;

fn config() -> ShmConfig {
    ShmConfig::default()
        .with_ring_bytes(RING_BYTES)
        .with_arena_bytes(0)
        .with_spin(Duration::from_micros(10))
}

fn frame(i: u64) -> Frame {
    let mut f = Frame::new(FrameKind::Control, i);
    f.body = Bytes::copy_from_slice(&i.to_le_bytes());
    f
}

/// The writer process: sends every frame, then prints its counters.
#[test]
fn child_entry() {
    let Some(role) = common::role() else {
        return;
    };
    assert_eq!(role, "stress-writer");
    let addr = Address::parse(&std::env::var(common::ADDR).unwrap()).unwrap();
    let shm = ShmTransport::with_config(config());
    common::runtime().block_on(async {
        let conn = shm.connect(&addr, &ConnOptions::default()).await.unwrap();
        let (mut tx, _rx) = conn.split();
        for i in 0..MESSAGES {
            if i % PAUSE_EVERY == 0 {
                common::busy_wait(PAUSE);
            }
            tokio::time::timeout(WATCHDOG, tx.send(frame(i)))
                .await
                .expect("watchdog: the writer made no progress for 5 s")
                .unwrap();
        }
        tx.close().await.unwrap();
    });
    let s = shm.stats();
    println!(
        "STATS {} {} {}",
        s.space_sleeps, s.wakes, s.backstop_rescues
    );
}

#[test]
fn a_million_frames_through_a_two_frame_ring() {
    let shm = ShmTransport::with_config(config());
    let started = Instant::now();
    let rt = common::runtime();
    let (mut child, reader_stats) = rt.block_on(async {
        let mut listener = shm
            .listen(&Address::parse("shm://0").unwrap(), &ConnOptions::default())
            .await
            .unwrap();
        let addr = listener.local_addr().to_string();
        let child = common::spawn_child("child_entry", "stress-writer", &addr, Stdio::piped());
        let conn = tokio::time::timeout(Duration::from_secs(30), listener.accept())
            .await
            .expect("the writer connects")
            .unwrap();
        let (_tx, mut rx) = conn.split();
        for i in 0..MESSAGES {
            if i % PAUSE_EVERY == PAUSE_EVERY / 2 {
                common::busy_wait(PAUSE);
            }
            let f = tokio::time::timeout(WATCHDOG, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("watchdog: no frame for 5 s after {i}"))
                .unwrap()
                .expect("a frame, not the end");
            assert_eq!(f.request_id, i);
            assert_eq!(f.body.as_ref(), i.to_le_bytes());
        }
        let end = tokio::time::timeout(WATCHDOG, rx.recv()).await.unwrap();
        assert_eq!(end.unwrap(), None, "a clean end after the last frame");
        (child, shm.stats())
    });
    let took = started.elapsed();
    // The child's stdout also carries libtest's own lines.
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
        .into_iter()
        .find(|l| l.starts_with("STATS "))
        .unwrap_or_default();
    assert!(child.wait().unwrap().success(), "the writer succeeded");
    let writer: Vec<u64> = line
        .trim()
        .strip_prefix("STATS ")
        .unwrap_or_else(|| panic!("writer stats line: {line:?}"))
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    let [space_sleeps, writer_wakes, writer_rescues] = writer[..] else {
        panic!("writer stats line: {line:?}");
    };
    let ShmStats {
        data_sleeps,
        wakes: reader_wakes,
        backstop_rescues,
        ..
    } = reader_stats;
    eprintln!(
        "{MESSAGES} frames in {took:?}: reader slept {data_sleeps} times, writer \
         {space_sleeps}; wakes sent {reader_wakes} by the reader, {writer_wakes} by the writer"
    );
    assert!(data_sleeps > 0, "the reader slept on its eventfd");
    assert!(space_sleeps > 0, "the writer slept on its eventfd");
    assert!(reader_wakes > 0 && writer_wakes > 0, "both woke the other");
    assert_eq!(
        (backstop_rescues, writer_rescues),
        (0, 0),
        "no lost wake-up"
    );
}
