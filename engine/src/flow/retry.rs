//! When a failed step runs again: its `retries`, the exponential `backoff` between attempts
//! and which errors are worth another attempt.

use std::time::Duration;

/// The most `retries` a step may ask for.
pub const MAX_RETRIES: u32 = 20;
/// The wait before the first retry when the flow does not say.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two attempts when the flow does not say.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The longest `backoff` or `max_backoff` a flow may ask for: a day.
pub const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);

/// How the wait before a retry is spread, so that runs failing together do not all retry at
/// the same instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// The wait is exactly the backoff.
    None,
    /// "Full jitter": a uniformly random wait between 0 and the backoff.
    Full,
    /// The backoff, plus or minus up to this fraction of it (`"20%"` is 0.2).
    Percent(f64),
}

/// A step's retry policy (`retries`, `backoff`, `max_backoff`, `jitter`, `retry_on_trap`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts after the first; 0: a failure is final.
    pub retries: u32,
    /// The wait before the first retry; each later one doubles it.
    pub backoff: Duration,
    /// The longest wait between two attempts, before jitter.
    pub max_backoff: Duration,
    pub jitter: Jitter,
    /// Whether traps and panics are retried too (timeouts and upstream errors always are).
    pub on_trap: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 0,
            backoff: DEFAULT_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            jitter: Jitter::None,
            on_trap: false,
        }
    }
}

impl RetryPolicy {
    /// Whether a failure of this kind (see `StepFailure::kind`) is retried: `timeout` and
    /// `upstream` always, `trap` and `panic` with `retry_on_trap`. Other kinds (bad input,
    /// config, mapping, denied, output and memory limits) would fail the same way again.
    pub fn retries_on(&self, kind: &str) -> bool {
        match kind {
            "timeout" | "upstream" => true,
            "trap" | "panic" => self.on_trap,
            _ => false,
        }
    }

    /// The wait after failed attempt `attempt` (1 for the first), before jitter:
    /// `backoff · 2^(attempt-1)`, at most `max_backoff`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.backoff
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.max_backoff)
    }

    /// The wait after failed attempt `attempt` with jitter applied; `random` is uniform in
    /// `[0, 1)`.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let base = self.base_delay(attempt);
        let random = random.clamp(0.0, 1.0);
        match self.jitter {
            Jitter::None => base,
            Jitter::Full => base.mul_f64(random),
            Jitter::Percent(fraction) => base.mul_f64(1.0 + fraction * (2.0 * random - 1.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            retries: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            jitter,
            on_trap: false,
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let p = policy(Jitter::None);
        let waits: Vec<u64> = (1..=5).map(|n| p.delay(n, 0.7).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(p.base_delay(64), Duration::from_secs(5), "no overflow");
    }

    #[test]
    fn jitter_stays_in_its_range() {
        let full = policy(Jitter::Full);
        assert_eq!(full.delay(3, 0.0), Duration::ZERO);
        assert_eq!(full.delay(3, 0.5), Duration::from_secs(2));
        let pct = policy(Jitter::Percent(0.25));
        assert_eq!(pct.delay(3, 0.0), Duration::from_secs(3));
        assert_eq!(pct.delay(3, 0.5), Duration::from_secs(4));
        assert!(pct.delay(3, 0.999) <= Duration::from_secs(5));
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let mut p = policy(Jitter::None);
        assert!(p.retries_on("timeout") && p.retries_on("upstream"));
        assert!(!p.retries_on("trap") && !p.retries_on("invalid-input"));
        p.on_trap = true;
        assert!(p.retries_on("trap") && p.retries_on("panic"));
        assert!(!p.retries_on("memory-limit") && !p.retries_on("mapping"));
    }
}
