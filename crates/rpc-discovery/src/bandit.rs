//! Transport choice per peer: a softmax bandit over decayed, size-normalised
//! latencies, with bounded exploration.
//!
//! moolib picks the transport to each peer by measured latency, with a
//! softmax over decayed rewards. [`TransportBandit`] does the same as pure
//! logic: the caller passes in the uniform random number for each choice and
//! the measured latency of each call, so it is deterministic under test.
//!
//! # Model
//!
//! - **Cost of one call.** `cost = latency / (1 + bytes / size_unit)`: the
//!   latency per "size unit" of message, so that an 8-byte call and a 1 MiB
//!   call on the same link are comparable. Small calls cost their latency;
//!   large calls are credited for the bytes they moved.
//! - **Estimate.** Each arm keeps an exponentially decayed average of its
//!   costs: `est += decay * (cost - est)`, the first sample taken as is. A
//!   change in conditions is reflected after about `1 / decay` samples.
//! - **Cold start.** While an arm has no sample, [`TransportBandit::choose`]
//!   returns the first such arm, so every arm is tried at least once.
//! - **Softmax.** The reward of an arm is `-ln(est)`, so the weight of arm
//!   `i` is `exp((ln est_best - ln est_i) / temperature)`
//!   `= (est_best / est_i)^(1 / temperature)`. That is scale-free: only
//!   cost ratios matter, whatever the link's absolute latency. With the
//!   default temperature of 0.1 an arm twice as slow weighs `2^-10`.
//! - **Bounded exploration.** The probability mass of the non-best arms is
//!   clamped to `[min_explore, max_explore]` and shared among them in
//!   proportion to their softmax weights (evenly if they all underflow).
//!   The upper bound caps what exploration costs; the lower bound keeps
//!   sampling the other arms, so a recovering transport is noticed.
//!
//! A call that fails should still be observed, with the time it took to
//! fail (or its deadline), so that a broken transport looks slow.
//!
//! # What this module does not do
//!
//! It does not read clocks, draw random numbers, or know transports: arms are
//! names, and restricting the candidates (`set_transports`, same-host shm)
//! is the caller's job when it builds the bandit.

use std::fmt;
use std::time::Duration;

/// Smallest cost used in the log-ratio, in seconds, so a zero latency does
/// not divide by zero.
const MIN_COST: f64 = 1e-12;

/// Tuning of a [`TransportBandit`]; [`BanditConfig::default`] suits RPC.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BanditConfig {
    /// Softmax temperature, finite and `> 0`. Lower is greedier: an arm
    /// `r` times as costly as the best weighs `r^(-1 / temperature)`.
    /// Default 0.1.
    pub temperature: f64,
    /// Weight of a new sample in the decayed average, in `(0, 1]`. Default
    /// 0.2.
    pub decay: f64,
    /// Message size, in bytes and `> 0`, worth one latency unit in the cost
    /// `latency / (1 + bytes / size_unit)`. Default 64 KiB.
    pub size_unit: u64,
    /// Least total probability of choosing a non-best arm, in `[0, 1]`.
    /// Default 0.01.
    pub min_explore: f64,
    /// Greatest total probability of choosing a non-best arm, in
    /// `[min_explore, 1]`. Default 0.1.
    pub max_explore: f64,
}

impl Default for BanditConfig {
    fn default() -> Self {
        Self {
            temperature: 0.1,
            decay: 0.2,
            size_unit: 64 * 1024,
            min_explore: 0.01,
            max_explore: 0.1,
        }
    }
}

impl BanditConfig {
    /// Checks every field against its documented range.
    pub fn validate(&self) -> Result<(), BanditError> {
        let bad = |field: &'static str, reason: &'static str| {
            Err(BanditError::InvalidConfig { field, reason })
        };
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad("temperature", "must be finite and > 0");
        }
        if !(self.decay > 0.0 && self.decay <= 1.0) {
            return bad("decay", "must be in (0, 1]");
        }
        if self.size_unit == 0 {
            return bad("size_unit", "must be > 0");
        }
        if !(0.0..=1.0).contains(&self.min_explore) {
            return bad("min_explore", "must be in [0, 1]");
        }
        if !(self.min_explore..=1.0).contains(&self.max_explore) {
            return bad("max_explore", "must be in [min_explore, 1]");
        }
        Ok(())
    }
}

/// Why a bandit could not be built or updated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BanditError {
    /// The bandit was given no arms.
    #[error("a transport bandit needs at least one arm")]
    NoArms,
    /// Two arms have the same name.
    #[error("duplicate arm {0:?}")]
    DuplicateArm(String),
    /// A configuration field is out of range.
    #[error("invalid bandit config: {field} {reason}")]
    InvalidConfig {
        /// The field's name.
        field: &'static str,
        /// Its valid range.
        reason: &'static str,
    },
    /// An arm index beyond the arms.
    #[error("no arm {arm}: the bandit has {arms}")]
    UnknownArm {
        /// The index given.
        arm: usize,
        /// The number of arms.
        arms: usize,
    },
}

/// Per-arm state.
#[derive(Debug, Clone)]
struct Arm {
    name: String,
    /// Decayed average cost in seconds per size unit; meaningless while
    /// `samples == 0`.
    estimate: f64,
    samples: u64,
}

/// Chooses among transports (arms) to one peer by their decayed,
/// size-normalised latency; see the [module docs](self) for the model.
#[derive(Debug, Clone)]
pub struct TransportBandit {
    arms: Vec<Arm>,
    config: BanditConfig,
}

impl TransportBandit {
    /// A bandit over the named arms, in the order given; indices into that
    /// order identify arms from then on.
    pub fn new<S: AsRef<str>>(arms: &[S], config: BanditConfig) -> Result<Self, BanditError> {
        config.validate()?;
        if arms.is_empty() {
            return Err(BanditError::NoArms);
        }
        let mut out: Vec<Arm> = Vec::with_capacity(arms.len());
        for name in arms {
            let name = name.as_ref();
            if out.iter().any(|a| a.name == name) {
                return Err(BanditError::DuplicateArm(name.to_owned()));
            }
            out.push(Arm {
                name: name.to_owned(),
                estimate: 0.0,
                samples: 0,
            });
        }
        Ok(Self { arms: out, config })
    }

    /// The configuration.
    pub fn config(&self) -> &BanditConfig {
        &self.config
    }

    /// The number of arms.
    pub fn len(&self) -> usize {
        self.arms.len()
    }

    /// Always false: a bandit has at least one arm.
    pub fn is_empty(&self) -> bool {
        self.arms.is_empty()
    }

    /// The name of arm `arm`.
    pub fn name(&self, arm: usize) -> Option<&str> {
        self.arms.get(arm).map(|a| a.name.as_str())
    }

    /// The index of the arm called `name`.
    pub fn arm(&self, name: &str) -> Option<usize> {
        self.arms.iter().position(|a| a.name == name)
    }

    /// Picks an arm, given `uniform` drawn uniformly from `[0, 1)` (values
    /// outside are clamped, NaN counts as 0). An arm without samples is
    /// chosen first; then arm `i` is chosen with
    /// [`probability(i)`](Self::probability).
    pub fn choose(&mut self, uniform: f64) -> usize {
        if let Some(untried) = self.untried() {
            return untried;
        }
        let u = if uniform.is_nan() {
            0.0
        } else {
            uniform.clamp(0.0, 1.0)
        };
        let mut cumulative = 0.0;
        let mut last = 0;
        for arm in 0..self.arms.len() {
            let p = self.probability(arm);
            if p <= 0.0 {
                continue;
            }
            cumulative += p;
            last = arm;
            if u < cumulative {
                return arm;
            }
        }
        // Rounding left `u` above the total: the last arm with any mass.
        last
    }

    /// Records one call on `arm` that moved `bytes` (request plus response)
    /// in `latency`, failed calls included (see the module docs).
    pub fn observe(
        &mut self,
        arm: usize,
        bytes: u64,
        latency: Duration,
    ) -> Result<(), BanditError> {
        let arms = self.arms.len();
        let size_unit = self.config.size_unit;
        let decay = self.config.decay;
        let state = self
            .arms
            .get_mut(arm)
            .ok_or(BanditError::UnknownArm { arm, arms })?;
        let cost = normalised_cost(bytes, latency, size_unit);
        if state.samples == 0 {
            state.estimate = cost;
        } else {
            state.estimate += decay * (cost - state.estimate);
        }
        state.samples = state.samples.saturating_add(1);
        Ok(())
    }

    /// The arm with the lowest estimate among those sampled (the lowest
    /// index on a tie), or `None` before the first sample.
    pub fn best(&self) -> Option<usize> {
        self.arms
            .iter()
            .enumerate()
            .filter(|(_, a)| a.samples > 0)
            .min_by(|(_, a), (_, b)| a.estimate.total_cmp(&b.estimate))
            .map(|(i, _)| i)
    }

    /// The probability that the next [`choose`](Self::choose) picks `arm`
    /// (0 for an unknown arm). While some arm is untried, that is 1 for the
    /// first untried arm and 0 for the others.
    pub fn probability(&self, arm: usize) -> f64 {
        if arm >= self.arms.len() {
            return 0.0;
        }
        if let Some(untried) = self.untried() {
            return if arm == untried { 1.0 } else { 0.0 };
        }
        let Some(best) = self.best() else {
            return 0.0;
        };
        if self.arms.len() == 1 {
            return 1.0;
        }
        // Softmax weights relative to the best arm, whose weight is 1.
        let others: f64 = (0..self.arms.len())
            .filter(|&i| i != best)
            .map(|i| self.weight(best, i))
            .sum();
        let explore =
            (others / (1.0 + others)).clamp(self.config.min_explore, self.config.max_explore);
        if arm == best {
            1.0 - explore
        } else if others > 0.0 {
            explore * self.weight(best, arm) / others
        } else {
            // Every other weight underflowed: share the floor evenly.
            explore / (self.arms.len() - 1) as f64
        }
    }

    /// The state of every arm, in arm order, for `debug_info`.
    pub fn snapshot(&self) -> Vec<ArmStats> {
        let best = self.best();
        self.arms
            .iter()
            .enumerate()
            .map(|(i, arm)| ArmStats {
                name: arm.name.clone(),
                probability: self.probability(i),
                cost: (arm.samples > 0).then(|| Duration::from_secs_f64(arm.estimate)),
                samples: arm.samples,
                best: best == Some(i),
            })
            .collect()
    }

    fn untried(&self) -> Option<usize> {
        self.arms.iter().position(|a| a.samples == 0)
    }

    /// Softmax weight of `arm` relative to `best`: `(est_best / est_arm)^(1/T)`.
    fn weight(&self, best: usize, arm: usize) -> f64 {
        let best = self.arms[best].estimate.max(MIN_COST);
        let this = self.arms[arm].estimate.max(MIN_COST);
        ((best.ln() - this.ln()) / self.config.temperature).exp()
    }
}

impl fmt::Display for TransportBandit {
    /// One line: every arm's [`ArmStats`], separated by `"; "`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, stats) in self.snapshot().iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{stats}")?;
        }
        Ok(())
    }
}

/// `latency / (1 + bytes / size_unit)` in seconds, never negative or NaN.
fn normalised_cost(bytes: u64, latency: Duration, size_unit: u64) -> f64 {
    let units = 1.0 + bytes as f64 / size_unit.max(1) as f64;
    latency.as_secs_f64() / units
}

/// One arm's state in a [`TransportBandit::snapshot`].
///
/// `Display` prints `name p=0.990 cost=12.3µs n=42`, with a `*` after the
/// name of the best arm and `cost=?` before the first sample.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmStats {
    /// The arm's (transport's) name.
    pub name: String,
    /// Probability that the next choice picks it.
    pub probability: f64,
    /// Decayed average latency per size unit; `None` before the first sample.
    pub cost: Option<Duration>,
    /// Number of observed calls.
    pub samples: u64,
    /// Whether it is the current best arm.
    pub best: bool,
}

impl fmt::Display for ArmStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let star = if self.best { "*" } else { "" };
        write!(f, "{}{star} p={:.3} cost=", self.name, self.probability)?;
        match self.cost {
            Some(cost) => write!(f, "{cost:.1?}")?,
            None => f.write_str("?")?,
        }
        write!(f, " n={}", self.samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bandit(arms: &[&str]) -> TransportBandit {
        TransportBandit::new(arms, BanditConfig::default()).expect("valid config")
    }

    #[track_caller]
    fn check_config(config: BanditConfig, field: Option<&str>) {
        let got = config.validate().err().map(|e| match e {
            BanditError::InvalidConfig { field, .. } => field,
            other => panic!("unexpected {other}"),
        });
        assert_eq!(got, field);
    }

    #[test]
    fn config_ranges() {
        let d = BanditConfig::default();
        check_config(d, None);
        check_config(
            BanditConfig {
                temperature: 0.0,
                ..d
            },
            Some("temperature"),
        );
        check_config(
            BanditConfig {
                temperature: f64::NAN,
                ..d
            },
            Some("temperature"),
        );
        check_config(BanditConfig { decay: 0.0, ..d }, Some("decay"));
        check_config(BanditConfig { decay: 1.0, ..d }, None);
        check_config(BanditConfig { size_unit: 0, ..d }, Some("size_unit"));
        check_config(
            BanditConfig {
                min_explore: -0.1,
                ..d
            },
            Some("min_explore"),
        );
        check_config(
            BanditConfig {
                max_explore: 0.001,
                ..d
            },
            Some("max_explore"),
        );
        check_config(
            BanditConfig {
                min_explore: 0.0,
                max_explore: 0.0,
                ..d
            },
            None,
        );
    }

    #[test]
    fn cost_normalisation() {
        let unit = 64 * 1024;
        let ms = Duration::from_millis(1);
        assert_eq!(normalised_cost(0, ms, unit), 0.001);
        assert_eq!(normalised_cost(unit, ms, unit), 0.0005);
        assert_eq!(normalised_cost(15 * unit, 16 * ms, unit), 0.001);
    }

    #[test]
    fn probabilities_sum_to_one_and_display() {
        let mut b = bandit(&["tcp", "shm", "ib"]);
        assert_eq!(
            b.to_string(),
            "tcp p=1.000 cost=? n=0; shm p=0.000 cost=? n=0; ib p=0.000 cost=? n=0"
        );
        b.observe(0, 8, Duration::from_micros(100)).unwrap();
        b.observe(1, 8, Duration::from_micros(10)).unwrap();
        b.observe(2, 8, Duration::from_micros(11)).unwrap();
        let total: f64 = (0..3).map(|i| b.probability(i)).sum();
        assert!((total - 1.0).abs() < 1e-12, "{total}");
        assert_eq!(b.best(), Some(1));
        assert!(
            b.to_string().contains("shm* p=0.900 cost=10.0µs n=1"),
            "{b}"
        );
        assert_eq!(b.probability(3), 0.0);
        assert_eq!(
            b.observe(3, 0, Duration::ZERO),
            Err(BanditError::UnknownArm { arm: 3, arms: 3 })
        );
    }

    #[test]
    fn zero_latency_and_odd_uniforms() {
        let mut b = bandit(&["a", "b"]);
        b.observe(0, 0, Duration::ZERO).unwrap();
        b.observe(1, 0, Duration::ZERO).unwrap();
        for u in [f64::NAN, -1.0, 0.0, 0.5, 0.999_999, 1.0, 7.0, f64::INFINITY] {
            assert!(b.choose(u) < 2);
        }
    }
}
