//! One retry policy for background work and `tether watch`: after an error, wait 2 s, 4 s, 8 s…
//! up to a cap, each with ±20% jitter so that many devices do not retry in step; reset on
//! success.
use std::time::Duration;

/// The shortest schedule `tether_schedule` and `tether watch` accept.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest (a year): beyond it a schedule is a mistake, not a plan.
pub const MAX_INTERVAL: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, Clone)]
pub struct Backoff {
    failures: u32,
    cap: Duration,
}

impl Backoff {
    pub fn new(cap: Duration) -> Backoff {
        Backoff { failures: 0, cap }
    }

    /// Records a failure; returns how long to wait before the next try.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let base = Duration::from_secs(2u64.saturating_pow(self.failures.min(30))).min(self.cap);
        base.mul_f64(0.8 + 0.4 * jitter())
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A number in [0, 1) that differs between processes and moments (no randomness needed beyond
/// keeping devices out of step).
pub fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mixed =
        (u64::from(nanos) ^ u64::from(std::process::id())).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

/// Checks a schedule interval against [`MIN_INTERVAL`] and [`MAX_INTERVAL`].
pub fn interval(seconds: f64) -> crate::Result<Duration> {
    if !seconds.is_finite()
        || seconds < MIN_INTERVAL.as_secs_f64()
        || seconds > MAX_INTERVAL.as_secs_f64()
    {
        crate::bail!(
            "the interval must be between {} and {} seconds, got {seconds}",
            MIN_INTERVAL.as_secs(),
            MAX_INTERVAL.as_secs()
        );
    }
    Ok(Duration::from_secs_f64(seconds))
}
