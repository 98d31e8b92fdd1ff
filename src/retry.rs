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

/// A random number in [0, 1), from a generator seeded by the system's random source: devices
/// that failed together do not retry together.
pub fn jitter() -> f64 {
    rand::random::<f64>()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jitter_is_random_and_within_20_percent() {
        let mut draws: Vec<f64> = (0..200).map(|_| jitter()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        draws.sort_by(f64::total_cmp);
        draws.dedup();
        assert!(draws.len() > 190, "{} distinct of 200", draws.len());
        let mut backoff = Backoff::new(Duration::from_secs(10));
        let first = backoff.failed().as_secs_f64();
        assert!((1.6..=2.4).contains(&first), "{first}");
        let second = backoff.failed().as_secs_f64();
        assert!((3.2..=4.8).contains(&second), "{second}");
        let third = backoff.failed().as_secs_f64();
        assert!((6.4..=9.6).contains(&third), "{third}");
        for _ in 0..5 {
            let capped = backoff.failed().as_secs_f64();
            assert!((8.0..=12.0).contains(&capped), "{capped}");
        }
        backoff.succeeded();
        assert_eq!(backoff.failures(), 0);
    }
}
