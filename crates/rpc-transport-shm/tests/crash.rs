//! A writer process killed with `SIGKILL` at random points, 100 times: the
//! reader never yields a partial or corrupt frame, sees the death quickly,
//! and the next connection to the same listener works. Nothing of ours is
//! left in `/dev/shm` or mapped afterwards.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_core::transport::{Address, ConnOptions, Transport};
use rpc_core::wire::{Frame, FrameKind};
use rpc_transport_shm::{ShmConfig, ShmTransport};

const ITERATIONS: usize = 100;
/// Far above the detection time (a few ms), so that a loaded machine does
/// not fail the test by luck; the observed times are printed.
const DETECT_WITHIN: Duration = Duration::from_secs(5);

/// A small ring and arena, so that records larger than the ring stream
/// through it and the arena fills up: kills land mid-record, mid-copy and
/// between records.
fn config() -> ShmConfig {
    ShmConfig::default()
        .with_ring_bytes(4096)
        .with_arena_bytes(16 * 4096)
        .with_arena_threshold(2048)
        .with_spin(Duration::from_micros(20))
}

/// Frame number `i`, the same in the writer and the reader: sizes and
/// contents follow from `i` alone.
fn frame(i: u64) -> Frame {
    let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let fill = |len: usize, salt: u64| -> Bytes {
        (0..len)
            .map(|j| (h ^ salt).wrapping_add(j as u64 * 7) as u8)
            .collect::<Vec<u8>>()
            .into()
    };
    let mut f = Frame::new(FrameKind::Response, i);
    f.body = fill((h % 9000) as usize, 1);
    let attachments = (h >> 20) % 3;
    f.attachments = (0..attachments)
        .map(|k| fill(((h >> (24 + 8 * k)) % 30_000) as usize, 2 + k))
        .collect();
    f
}

/// The child's side: connects and sends frames until it is killed.
#[test]
fn child_entry() {
    let Some(role) = common::role() else {
        return;
    };
    let addr = Address::parse(&std::env::var(common::ADDR).unwrap()).unwrap();
    common::runtime().block_on(async {
        let shm = ShmTransport::with_config(config());
        let conn = shm.connect(&addr, &ConnOptions::default()).await.unwrap();
        let (mut tx, _rx) = conn.split();
        match role.as_str() {
            "crash-writer" => {
                for i in 0.. {
                    if tx.send(frame(i)).await.is_err() {
                        return;
                    }
                }
            }
            // Connects, reads nothing, and waits to be killed.
            "crash-idle" => std::future::pending().await,
            other => panic!("unknown role {other}"),
        }
    });
}

#[test]
fn killed_writer_never_tears_a_frame_and_is_detected() {
    let before = common::dev_shm_entries();
    let rt = common::runtime();
    let mut detect_times = Vec::new();
    let mut frames_seen = 0;
    let mut mid_record = 0;
    rt.block_on(async {
        let shm = ShmTransport::new();
        let mut listener = shm
            .listen(&Address::parse("shm://0").unwrap(), &ConnOptions::default())
            .await
            .unwrap();
        let addr = listener.local_addr().to_string();
        for iteration in 0..ITERATIONS {
            let mut child =
                common::spawn_child("child_entry", "crash-writer", &addr, Stdio::null());
            let conn = tokio::time::timeout(Duration::from_secs(30), listener.accept())
                .await
                .expect("the writer connects")
                .expect("accept");
            let (_tx, mut rx) = conn.split();
            let first = rx
                .recv()
                .await
                .expect("a first frame")
                .expect("not the end");
            assert_eq!(first, frame(0));
            // Kill at a random point from now on, from another thread, so
            // that the kill lands anywhere in the writer's work.
            let delay = Duration::from_micros(rand::random::<u64>() % 3000);
            let pid = child.id() as libc::pid_t;
            let killer = std::thread::spawn(move || {
                std::thread::sleep(delay);
                // SAFETY: plain call; the child is ours and not yet reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                Instant::now()
            });
            let mut next = 1;
            let error = loop {
                let got = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                    .await
                    .expect("recv ends or fails after the kill");
                match got {
                    Ok(Some(f)) => {
                        assert_eq!(f, frame(next), "iteration {iteration}: frame {next}");
                        next += 1;
                    }
                    Ok(None) => panic!("iteration {iteration}: a killed writer ended cleanly"),
                    Err(e) => break e,
                }
            };
            let killed_at = killer.join().unwrap();
            let took = killed_at.elapsed();
            assert!(
                took < DETECT_WITHIN,
                "iteration {iteration}: death seen after {took:?} ({error})"
            );
            detect_times.push(took);
            if error.to_string().contains("in the middle of a record") {
                mid_record += 1;
            }
            frames_seen += next;
            child.wait().unwrap();
        }
    });
    detect_times.sort();
    eprintln!(
        "{ITERATIONS} kills ({mid_record} in the middle of a record), {frames_seen} frames \
         checked; death seen after p50 {:?}, max {:?}",
        detect_times[detect_times.len() / 2],
        detect_times.last().unwrap()
    );
    // Most kills land while the writer streams a record larger than the
    // ring: the reader must have dropped those partial records.
    assert!(
        mid_record > 0,
        "some kills landed in the middle of a record"
    );
    drop(rt);
    assert_eq!(common::dev_shm_entries(), before, "nothing new in /dev/shm");
    assert_eq!(common::mapped_segments(), 0, "no segment left mapped");
}

/// The other way round: a writer whose reader dies while the writer waits
/// for room in the ring learns of it, instead of waiting forever.
#[test]
fn a_writer_waiting_for_room_sees_its_reader_die() {
    common::runtime().block_on(async {
        let shm = ShmTransport::new();
        let mut listener = shm
            .listen(&Address::parse("shm://0").unwrap(), &ConnOptions::default())
            .await
            .unwrap();
        let addr = listener.local_addr().to_string();
        let mut child = common::spawn_child("child_entry", "crash-idle", &addr, Stdio::null());
        let conn = tokio::time::timeout(Duration::from_secs(30), listener.accept())
            .await
            .expect("the child connects")
            .unwrap();
        let (mut tx, _rx) = conn.split();
        let pid = child.id() as libc::pid_t;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            // SAFETY: plain call; the child is ours and not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            Instant::now()
        });
        // The ring (4 KiB, the child's choice) fills at once; then the
        // writer waits for room until it sees the death.
        let mut i = 0;
        let error = loop {
            match tokio::time::timeout(Duration::from_secs(30), tx.send(frame(i))).await {
                Ok(Ok(())) => i += 1,
                Ok(Err(e)) => break e,
                Err(_) => panic!("the writer still waits 30 s after the kill"),
            }
        };
        let took = killer.join().unwrap().elapsed();
        assert!(took < DETECT_WITHIN, "death seen after {took:?} ({error})");
        eprintln!("writer saw its reader die after {took:?}: {error}");
        child.wait().unwrap();
    });
}

/// Frames built in the writer decode to the same frames in the reader.
#[test]
fn frame_pattern_is_deterministic() {
    assert_eq!(frame(12345), frame(12345));
    assert_ne!(frame(1), frame(2));
    let sizes: Vec<u64> = (0..50).map(|i| frame(i).wire_len()).collect();
    assert!(
        sizes.iter().any(|&s| s > 4096),
        "some frames exceed the ring"
    );
}
