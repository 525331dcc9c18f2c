//! The ratio report: single round trips timed with `Instant`, the cases
//! alternated in chunks (rotating which goes first), p50/p99, and the
//! ratios against the targets.

use std::time::Instant;

use anyhow::Result;
use rpc_core::Blob;

use crate::floor::{self, Floor};
use crate::server::{Client, Via};
use crate::{Copy, FLOOR_SPIN_NS, Settings};
use bench_support::{CpuMeter, QUIET, wait_for_quiet};

/// One row of the report: a case and its samples in nanoseconds.
struct Row {
    name: &'static str,
    samples: Vec<u64>,
}

impl Row {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            samples: Vec::new(),
        }
    }

    /// p50 and p99 in microseconds (NaN without samples).
    fn p(&mut self) -> (f64, f64) {
        bench_support::percentiles(&mut self.samples).unwrap_or((f64::NAN, f64::NAN))
    }
}

fn floor_samples(floor: &mut Floor, spin: u64, len: usize, n: usize, out: &mut Vec<u64>) {
    floor.set_spin(spin);
    for _ in 0..n {
        let start = Instant::now();
        floor.rtt(len);
        out.push(start.elapsed().as_nanos() as u64);
    }
    // The child must not poll while other cases run.
    floor.set_spin(0);
}

/// Runs the report and prints it, repeating it (up to three times in all)
/// when other processes used more than [`QUIET`] of the machine.
pub(crate) fn run(
    client: &mut Client,
    floor: &mut Floor,
    copy: &mut Copy,
    s: &Settings,
    idle_mode: &str,
) -> Result<()> {
    let small = Blob::from(vec![0x5a; 8]);
    let big = Blob::from(vec![0x5a; 1 << 20]);
    let huge = Blob::from(vec![0x5a; 64 << 20]);
    let fallbacks_before = client.shm_stats().arena_fallbacks;
    for attempt in 1..=3 {
        wait_for_quiet(s.quiet_wait);
        let meter = CpuMeter::start();
        let mut rows = [
            "floor/shm/spin/8B",
            "floor/shm/spin-futex/8B",
            "ours/shm/frames/8B",
            "ours/shm/echo/8B",
            "ours/tcp/echo/8B",
            "floor/shm/4copy/1MiB",
            "ours/shm/echo/1MiB",
            "floor/memcpy/64MiB",
            "ours/shm/echo/64MiB",
        ]
        .map(Row::new);
        // Warm-up, untimed.
        floor_samples(floor, FLOOR_SPIN_NS, 8, s.chunk, &mut Vec::new());
        client.samples(Via::Shm, &small, s.chunk, &mut Vec::new());
        client.samples(Via::Frames, &small, s.chunk, &mut Vec::new());
        client.samples(Via::Tcp, &small, s.chunk / 4, &mut Vec::new());
        client.samples(Via::Shm, &big, s.big_chunk, &mut Vec::new());
        client.samples(Via::Shm, &huge, 1, &mut Vec::new());
        for round in 0..s.rounds {
            for k in 0..5 {
                let [spin, spin_futex, frames, shm, tcp, ..] = &mut rows;
                match (round + k) % 5 {
                    0 => floor_samples(floor, floor::SPIN_FOREVER, 8, s.chunk, &mut spin.samples),
                    1 => floor_samples(floor, FLOOR_SPIN_NS, 8, s.chunk, &mut spin_futex.samples),
                    2 => client.samples(Via::Frames, &small, s.chunk, &mut frames.samples),
                    3 => client.samples(Via::Shm, &small, s.chunk, &mut shm.samples),
                    _ => client.samples(Via::Tcp, &small, s.chunk, &mut tcp.samples),
                }
            }
            let [.., four_copy, shm_big, _, _] = &mut rows;
            if round % 2 == 0 {
                floor_samples(
                    floor,
                    FLOOR_SPIN_NS,
                    floor::BIG,
                    s.big_chunk,
                    &mut four_copy.samples,
                );
                client.samples(Via::Shm, &big, s.big_chunk, &mut shm_big.samples);
            } else {
                client.samples(Via::Shm, &big, s.big_chunk, &mut shm_big.samples);
                floor_samples(
                    floor,
                    FLOOR_SPIN_NS,
                    floor::BIG,
                    s.big_chunk,
                    &mut four_copy.samples,
                );
            }
        }
        let [.., memcpy, shm_huge] = &mut rows;
        for _ in 0..s.huge {
            memcpy.samples.push(copy.once().as_nanos() as u64);
            client.samples(Via::Shm, &huge, 1, &mut shm_huge.samples);
        }
        let background = meter.background();
        if background <= QUIET || attempt == 3 {
            print(&mut rows, idle_mode, background);
            break;
        }
        eprintln!(
            "ratio report attempt {attempt}: other processes used {:.0} % of the CPUs",
            background * 100.0
        );
    }
    let fallbacks = client.shm_stats().arena_fallbacks - fallbacks_before;
    println!("arena fallbacks to the ring during the report: {fallbacks}");
    Ok(())
}

fn print(rows: &mut [Row; 9], idle_mode: &str, background: f64) {
    println!();
    println!("## Round trips, ours vs floors (idle mode: {idle_mode})");
    println!();
    println!("| case | p50 µs | p99 µs | samples |");
    println!("|---|---:|---:|---:|");
    let mut p50 = [0.0; 9];
    for (i, row) in rows.iter_mut().enumerate() {
        let (a, b) = row.p();
        p50[i] = a;
        println!("| {} | {a:.2} | {b:.2} | {} |", row.name, row.samples.len());
    }
    let [
        _spin,
        spin_futex,
        frames8,
        shm8,
        tcp8,
        four_copy,
        shm1m,
        memcpy,
        shm64,
    ] = p50;
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!();
    println!(
        "ours/shm 8 B p50 = {shm8:.2} µs (target <= 2 µs): {}",
        verdict(shm8 <= 2.0)
    );
    println!(
        "ours/tcp 8 B / ours/shm 8 B p50 = {:.1}x (target >= 10x): {}",
        tcp8 / shm8,
        verdict(tcp8 / shm8 >= 10.0)
    );
    println!(
        "ours/shm 8 B / floor spin-futex 8 B p50 = {:.1}x; frames alone (no engine) / floor = {:.1}x; \
         the engine adds {:.2} µs",
        shm8 / spin_futex,
        frames8 / spin_futex,
        shm8 - frames8
    );
    println!(
        "ours/shm 1 MiB / floor 4-copy 1 MiB p50 = {:.2} ({shm1m:.1} vs {four_copy:.1} µs; target <= 1): {}",
        shm1m / four_copy,
        verdict(shm1m <= four_copy)
    );
    let gbps = |bytes: f64, us: f64| bytes / (us * 1e3);
    let ours = gbps(2.0 * (64u64 << 20) as f64, shm64);
    let copy = gbps((64u64 << 20) as f64, memcpy);
    println!(
        "64 MiB: ours {ours:.2} GB/s (2 x 64 MiB per round trip) vs memcpy {copy:.2} GB/s = {:.2} (target >= 0.5): {}",
        ours / copy,
        verdict(ours / copy >= 0.5)
    );
    println!(
        "other processes' CPU during the report: {:.0} %",
        background * 100.0
    );
}
