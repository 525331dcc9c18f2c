//! Warnings that a peer can trigger at will (refused connections, the
//! connection limit) are rate-limited: the first is logged, then at most
//! one per interval, saying how many were left out meanwhile.

use std::time::Duration;

use tokio::time::Instant;

/// How often a rate-limited warning may be logged.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(10);

/// Decides whether a repeated warning may be logged now (pure: time is
/// passed in).
#[derive(Debug, Default)]
pub(crate) struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// `Some(n)` when the warning may be logged now, `n` being how many
    /// were left out since the last one; `None` when it is left out.
    pub(crate) fn allow(&mut self, now: Instant, every: Duration) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Logs a warning through `limit`: the message, and how many like it were
/// left out since the last one logged.
macro_rules! warn_limited {
    ($limit:expr, $($arg:tt)+) => {{
        let allowed = $crate::engine::handler::lock(&$limit)
            .allow(tokio::time::Instant::now(), $crate::engine::ratelimit::WARN_EVERY);
        if let Some(left_out) = allowed {
            if left_out > 0 {
                tracing::warn!("{} ({left_out} more like it not logged)", format_args!($($arg)+));
            } else {
                tracing::warn!($($arg)+);
            }
        }
    }};
}
pub(crate) use warn_limited;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_then_one_per_interval_with_the_count_left_out() {
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        let mut limit = RateLimit::default();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let got: Vec<Option<u64>> = [0, 1, 2, 9, 10, 11, 25]
            .iter()
            .map(|&s| limit.allow(at(s), every))
            .collect();
        assert_eq!(got, [Some(0), None, None, None, Some(3), None, Some(1)]);
    }
}
