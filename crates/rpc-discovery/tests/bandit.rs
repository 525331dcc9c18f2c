//! Transport bandit: convergence, bounded exploration, adaptation,
//! size normalisation, and edge cases, on a simulated latency model with a
//! seeded RNG.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rpc_discovery::bandit::{BanditConfig, BanditError, TransportBandit};

const SMALL: u64 = 8;
const LARGE: u64 = 1 << 20;

/// A simulated link: round-trip time plus bytes over bandwidth, with ±20%
/// jitter.
#[derive(Clone, Copy)]
struct Link {
    rtt_us: f64,
    bytes_per_us: f64,
}

impl Link {
    fn latency(self, bytes: u64, rng: &mut StdRng) -> Duration {
        let ideal = self.rtt_us + bytes as f64 / self.bytes_per_us;
        Duration::from_secs_f64(ideal * rng.random_range(0.8..1.2) / 1e6)
    }
}

const TCP: Link = Link {
    rtt_us: 50.0,
    bytes_per_us: 1_000.0,
};
const IB: Link = Link {
    rtt_us: 5.0,
    bytes_per_us: 10_000.0,
};

/// Runs `rounds` calls of random small or large size, choosing an arm for
/// each with `links` as the truth; returns how often each arm was chosen.
fn simulate(
    bandit: &mut TransportBandit,
    links: &[Link],
    rounds: usize,
    rng: &mut StdRng,
) -> Vec<usize> {
    let mut counts = vec![0; links.len()];
    for _ in 0..rounds {
        let arm = bandit.choose(rng.random());
        counts[arm] += 1;
        let bytes = if rng.random_bool(0.5) { SMALL } else { LARGE };
        bandit
            .observe(arm, bytes, links[arm].latency(bytes, rng))
            .expect("arm from choose");
    }
    counts
}

fn bandit(arms: &[&str]) -> TransportBandit {
    TransportBandit::new(arms, BanditConfig::default()).expect("valid bandit")
}

#[test]
fn converges_to_the_faster_arm() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut b = bandit(&["tcp", "ib"]);
    // Each arm is tried once before the softmax.
    assert_eq!(simulate(&mut b, &[TCP, IB], 2, &mut rng), [1, 1]);
    simulate(&mut b, &[TCP, IB], 200, &mut rng);
    assert_eq!(b.best(), Some(1), "{b}");
    let counts = simulate(&mut b, &[TCP, IB], 2000, &mut rng);
    // Far apart: exploration sits at its floor of 1%.
    assert!(counts[1] >= 1940, "{counts:?} {b}");
    assert!(
        counts[0] >= 5,
        "the slower arm is still sampled: {counts:?}"
    );
    let stats = b.snapshot();
    assert_eq!(stats[1].name, "ib");
    assert!(stats[1].best && !stats[0].best);
    assert!(stats[0].cost > stats[1].cost);
    assert_eq!(stats.iter().map(|s| s.samples).sum::<u64>(), 2202);
}

#[test]
fn exploration_stays_within_bounds() {
    let config = BanditConfig {
        min_explore: 0.02,
        max_explore: 0.15,
        ..BanditConfig::default()
    };
    // Close arms make the softmax want to explore a lot (capped at
    // max_explore); far arms want almost nothing (floored at min_explore).
    let close = [
        TCP,
        Link {
            rtt_us: 52.0,
            ..TCP
        },
        Link {
            rtt_us: 55.0,
            ..TCP
        },
    ];
    let far = [
        TCP,
        IB,
        Link {
            rtt_us: 500.0,
            ..TCP
        },
    ];
    for (links, low, high) in [(close, 0.13, 0.17), (far, 0.015, 0.025)] {
        let mut rng = StdRng::seed_from_u64(42);
        let mut b = TransportBandit::new(&["a", "b", "c"], config).expect("valid bandit");
        simulate(&mut b, &links, 100, &mut rng);
        let mut explored = 0;
        for _ in 0..10_000 {
            let best = b.best().expect("all arms tried");
            let non_best: f64 = (0..3)
                .filter(|&i| i != best)
                .map(|i| b.probability(i))
                .sum();
            assert!(
                (config.min_explore - 1e-9..=config.max_explore + 1e-9).contains(&non_best),
                "{non_best} {b}"
            );
            let arm = b.choose(rng.random());
            if arm != best {
                explored += 1;
            }
            let bytes = if rng.random_bool(0.5) { SMALL } else { LARGE };
            b.observe(arm, bytes, links[arm].latency(bytes, &mut rng))
                .expect("arm from choose");
        }
        let share = f64::from(explored) / 10_000.0;
        assert!(
            (low..=high).contains(&share),
            "share {share} not in {low}..{high}: {b}"
        );
    }
}

#[test]
fn adapts_when_the_faster_arm_slows_down_and_recovers() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut b = bandit(&["tcp", "ib"]);
    simulate(&mut b, &[TCP, IB], 1000, &mut rng);
    assert_eq!(b.best(), Some(1));

    // IB degrades to ten times slower than TCP; it is chosen often, so the
    // change is picked up within a few calls.
    let slow_ib = Link {
        rtt_us: 500.0,
        bytes_per_us: 100.0,
    };
    simulate(&mut b, &[TCP, slow_ib], 50, &mut rng);
    assert_eq!(b.best(), Some(0), "{b}");
    let counts = simulate(&mut b, &[TCP, slow_ib], 1000, &mut rng);
    assert!(counts[0] >= 970, "{counts:?} {b}");

    // IB recovers: the exploration floor keeps sampling it, so it wins back.
    let counts = simulate(&mut b, &[TCP, IB], 5000, &mut rng);
    assert_eq!(b.best(), Some(1), "{b}");
    assert!(counts[1] > counts[0], "{counts:?}");
}

#[test]
fn normalisation_makes_large_messages_comparable() {
    // The same link gives about the same cost for 8 B and 1 MiB calls.
    let mut b = bandit(&["small", "large"]);
    let link = Link {
        rtt_us: 100.0,
        bytes_per_us: 1024.0 * 1024.0 / (1600.0),
    };
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..50 {
        b.observe(0, SMALL, link.latency(SMALL, &mut rng))
            .expect("arm 0");
        b.observe(1, LARGE, link.latency(LARGE, &mut rng))
            .expect("arm 1");
    }
    let stats = b.snapshot();
    let (small, large) = (
        stats[0].cost.expect("sampled").as_secs_f64(),
        stats[1].cost.expect("sampled").as_secs_f64(),
    );
    assert!((small / large - 1.0).abs() < 0.2, "{small} vs {large}");

    // An arm that only carried 1 MiB messages in 1 ms beats one that only
    // carried 8 B messages in 100 µs, although its raw latency is 10x.
    let mut b = bandit(&["tcp-small", "ib-bulk"]);
    b.observe(0, SMALL, Duration::from_micros(100))
        .expect("arm 0");
    b.observe(1, LARGE, Duration::from_millis(1))
        .expect("arm 1");
    assert_eq!(b.best(), Some(1), "{b}");
    assert!(b.probability(1) >= 0.9);
}

#[test]
fn single_arm_is_always_chosen() {
    let mut b = bandit(&["tcp"]);
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..1000 {
        assert_eq!(b.choose(rng.random()), 0);
        b.observe(0, 100, Duration::from_micros(rng.random_range(1..1000)))
            .expect("arm 0");
        assert_eq!(b.probability(0), 1.0);
    }
    assert_eq!(b.best(), Some(0));
    let text = b.to_string();
    assert!(text.starts_with("tcp* p=1.000 cost="), "{text}");
    assert!(text.ends_with(" n=1000"), "{text}");
}

#[test]
fn every_arm_is_tried_first() {
    let mut b = bandit(&["a", "b", "c"]);
    assert_eq!(b.best(), None);
    for expect in 0..3 {
        // Whatever the draw, the first untried arm comes next.
        assert_eq!(b.choose(0.999), expect);
        assert_eq!(b.choose(0.0), expect);
        assert_eq!(b.probability(expect), 1.0);
        b.observe(expect, 0, Duration::from_micros(10 * (expect as u64 + 1)))
            .expect("valid arm");
    }
    assert_eq!(b.best(), Some(0));
}

#[test]
fn bad_input_is_a_typed_error() {
    let no_arms: [&str; 0] = [];
    assert_eq!(
        TransportBandit::new(&no_arms, BanditConfig::default()).err(),
        Some(BanditError::NoArms)
    );
    assert_eq!(
        TransportBandit::new(&["tcp", "tcp"], BanditConfig::default()).err(),
        Some(BanditError::DuplicateArm("tcp".into()))
    );
    let hot = BanditConfig {
        temperature: -1.0,
        ..BanditConfig::default()
    };
    assert!(matches!(
        TransportBandit::new(&["tcp"], hot),
        Err(BanditError::InvalidConfig {
            field: "temperature",
            ..
        })
    ));
    let mut b = bandit(&["tcp"]);
    assert_eq!(
        b.observe(1, 0, Duration::ZERO),
        Err(BanditError::UnknownArm { arm: 1, arms: 1 })
    );
    assert_eq!(b.arm("tcp"), Some(0));
    assert_eq!(b.name(0), Some("tcp"));
    assert_eq!(b.arm("ib"), None);
}
