//! Admission arithmetic for the hot path: deterministic per-launch sampling
//! (the same key always gets the same decision) and the per-launch token
//! bucket that caps mirrored requests per second.
//!
//! Pure and allocation-free, so [`MirrorEngine::plan`](crate::MirrorEngine::plan)
//! can call them on every request; recording samples with the same function.

use tokio::time::Instant;

use crate::stats::splitmix64;

/// Deterministic sampling: the same key always gets the same decision for a
/// launch, so a consumer sampled in stays in across restarts and replicas.
pub fn sampled(launch: &str, key: &str, percent: f64) -> bool {
    if percent >= 100.0 {
        return true;
    }
    if percent <= 0.0 {
        return false;
    }
    // FNV-1a over "launch\0key", then SplitMix64 to spread sequential ids.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in launch.bytes().chain(std::iter::once(0)).chain(key.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let bucket = splitmix64(h) % 1_000_000;
    (bucket as f64) < percent * 10_000.0
}

/// A token bucket holding up to one second of `rate`.
pub(crate) struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: u32) -> Self {
        Self {
            rate: rate as f64,
            tokens: rate as f64,
            last: Instant::now(),
        }
    }

    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sampling_is_deterministic_and_proportional() {
        let n = 10_000;
        for pct in [1.0, 10.0, 50.0] {
            let hits = (0..n)
                .filter(|i| sampled("rates-v2", &format!("req-{i:08}"), pct))
                .count() as f64;
            let expect = n as f64 * pct / 100.0;
            // Within 4 standard deviations of a binomial(n, p).
            let sd = (n as f64 * pct / 100.0 * (1.0 - pct / 100.0)).sqrt();
            assert!(
                (hits - expect).abs() <= 4.0 * sd,
                "{pct}%: {hits} vs {expect}"
            );
        }
        assert_eq!(sampled("a", "x", 37.0), sampled("a", "x", 37.0));
        assert!(sampled("a", "x", 100.0));
        assert!(!sampled("a", "x", 0.0));
    }

    #[test]
    fn token_bucket_caps_rate() {
        let mut b = TokenBucket::new(5);
        let now = b.last;
        let got = (0..20).filter(|_| b.try_take(now)).count();
        assert_eq!(got, 5);
        let later = now + Duration::from_millis(400);
        let got = (0..20).filter(|_| b.try_take(later)).count();
        assert_eq!(got, 2);
    }
}
