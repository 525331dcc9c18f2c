//! Loom models of the ring (`cargo xtask ci --loom`, or
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p
//! rpc-transport-shm --release --lib loom`).
//!
//! Loom cannot map memory or call the kernel, so the data bytes live in
//! loom cells on the heap ([`HeapRing`]) and the eventfd is modelled by a
//! flag under a mutex with a condition variable, which is what an eventfd
//! counter is. A lost wake-up shows up as a deadlock, which loom reports.

use loom::sync::{Condvar, Mutex};
use loom::thread;

use super::heap::HeapRing;
use super::*;

/// An eventfd: `notify` adds to a counter, `wait` sleeps until it is not
/// zero and resets it.
#[derive(Default)]
struct Event {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Event {
    fn notify(&self) {
        *self.set.lock().unwrap() = true;
        self.cv.notify_one();
    }

    fn wait(&self) {
        let mut set = self.set.lock().unwrap();
        while !*set {
            set = self.cv.wait(set).unwrap();
        }
        *set = false;
    }
}

/// Two threads, a 4-byte ring, three 2-byte records: the third wraps
/// around. The consumer spins (yielding) and must see every byte once, in
/// order, and loom's cells catch any read of a byte not yet published.
#[test]
fn loom_ring_spsc() {
    loom::model(|| {
        let mem = HeapRing::new(4);
        let mut tx = Producer::new(mem.clone());
        let mut rx = Consumer::new(mem);
        let producer = thread::spawn(move || {
            for i in 0..3u8 {
                let record = [i, i + 10];
                let mut at = 0;
                while at < record.len() {
                    at += tx.write(&record[at..]).unwrap();
                    tx.publish();
                    if at < record.len() {
                        thread::yield_now();
                    }
                }
            }
        });
        let mut got = Vec::new();
        while got.len() < 6 {
            if rx.refresh().unwrap() == 0 {
                thread::yield_now();
                continue;
            }
            let mut buf = [0; 4];
            let n = rx.read(&mut buf);
            got.extend_from_slice(&buf[..n]);
            rx.release();
        }
        producer.join().unwrap();
        assert_eq!(got, [0, 10, 1, 11, 2, 12]);
    });
}

/// The sleep/wake protocol in both directions: a 2-byte ring, three
/// one-byte messages and a close, each side sleeping on its event whenever
/// it has nothing to do. Loom explores every interleaving; a lost wake-up
/// would leave both threads asleep, which loom reports as a deadlock.
#[test]
fn loom_ring_wait_wake() {
    loom::model(|| {
        let mem = HeapRing::new(2);
        let data = std::sync::Arc::new(Event::default());
        let space = std::sync::Arc::new(Event::default());
        let mut tx = Producer::new(mem.clone());
        let mut rx = Consumer::new(mem);
        let (data2, space2) = (data.clone(), space.clone());
        let producer = thread::spawn(move || {
            for i in 0..3u8 {
                loop {
                    if tx.write(&[i]).unwrap() == 1 {
                        break;
                    }
                    tx.announce_space_wait();
                    if tx.refresh().unwrap() > 0 {
                        tx.cancel_space_wait();
                        continue;
                    }
                    space2.wait();
                }
                if tx.publish() {
                    data2.notify();
                }
            }
            if tx.close() {
                data2.notify();
            }
        });
        let mut got = Vec::new();
        loop {
            rx.refresh().unwrap();
            if rx.available() > 0 {
                let mut buf = [0; 2];
                let n = rx.read(&mut buf);
                got.extend_from_slice(&buf[..n]);
                if rx.release() {
                    space.notify();
                }
                continue;
            }
            if rx.is_closed() {
                break;
            }
            rx.announce_data_wait();
            if rx.refresh().unwrap() > 0 || rx.is_closed() {
                rx.cancel_data_wait();
                continue;
            }
            data.wait();
        }
        producer.join().unwrap();
        assert_eq!(got, [0, 1, 2]);
    });
}
