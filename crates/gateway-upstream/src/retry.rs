//! Retry budget and backoff.
//!
//! Retries multiply load exactly when a cluster is weakest, so besides the
//! per-request `attempts` cap a cluster-wide budget (Finagle/Envoy style)
//! bounds them: over a sliding 10-second window, retries may not exceed
//! `budget_ratio × requests + min_per_second × 10`. When every request
//! fails, traffic to the cluster therefore grows by at most `budget_ratio`
//! (plus the small floor), instead of by `attempts`×.

use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use tokio::time::Instant;

use crate::config::RetryConfig;

/// Length of the budget's sliding window, in one-second buckets.
pub const BUDGET_WINDOW_SECS: u64 = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    second: u64,
    requests: u64,
    retries: u64,
}

#[derive(Debug)]
pub(crate) struct RetryBudget {
    ratio: f64,
    floor: f64,
    origin: Instant,
    buckets: Mutex<[Bucket; BUDGET_WINDOW_SECS as usize]>,
}

impl RetryBudget {
    pub(crate) fn new(cfg: &RetryConfig) -> Self {
        Self {
            ratio: cfg.budget_ratio,
            floor: f64::from(cfg.min_per_second) * BUDGET_WINDOW_SECS as f64,
            origin: Instant::now(),
            buckets: Mutex::new([Bucket::default(); BUDGET_WINDOW_SECS as usize]),
        }
    }

    fn bucket(buckets: &mut [Bucket; BUDGET_WINDOW_SECS as usize], second: u64) -> &mut Bucket {
        let b = &mut buckets[(second % BUDGET_WINDOW_SECS) as usize];
        if b.second != second {
            *b = Bucket {
                second,
                ..Bucket::default()
            };
        }
        b
    }

    /// Counts a new request (its first attempt).
    pub(crate) fn deposit(&self, now: Instant) {
        let second = now.saturating_duration_since(self.origin).as_secs();
        Self::bucket(&mut self.buckets.lock(), second).requests += 1;
    }

    /// Takes one retry from the budget, if there is room.
    pub(crate) fn try_withdraw(&self, now: Instant) -> bool {
        let second = now.saturating_duration_since(self.origin).as_secs();
        let mut buckets = self.buckets.lock();
        let (mut requests, mut retries) = (0u64, 0u64);
        for b in buckets.iter() {
            if b.second + BUDGET_WINDOW_SECS > second && b.second <= second {
                requests += b.requests;
                retries += b.retries;
            }
        }
        let allowed = self.ratio * requests as f64 + self.floor;
        if (retries as f64) < allowed.floor() {
            Self::bucket(&mut buckets, second).retries += 1;
            true
        } else {
            false
        }
    }
}

/// Backoff before retry number `retry` (1-based): uniformly random in
/// `[0, min(max, base × 2^(retry-1))]` ("full jitter"), so retries from many
/// requests spread out instead of arriving together.
pub(crate) fn backoff(cfg: &RetryConfig, retry: u32) -> Duration {
    let exp = cfg
        .backoff_base
        .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
    let cap = exp.min(cfg.backoff_max);
    if cap.is_zero() {
        return cap;
    }
    rand::thread_rng().gen_range(Duration::ZERO..=cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ratio: f64, min: u32) -> RetryConfig {
        RetryConfig {
            budget_ratio: ratio,
            min_per_second: min,
            ..RetryConfig::default()
        }
    }

    #[test]
    fn budget_allows_ratio_of_requests() {
        let b = RetryBudget::new(&cfg(0.2, 0));
        let now = Instant::now();
        for _ in 0..100 {
            b.deposit(now);
        }
        let granted = (0..100).filter(|_| b.try_withdraw(now)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn floor_allows_retries_on_a_quiet_cluster_and_window_slides() {
        let b = RetryBudget::new(&cfg(0.0, 1));
        let t0 = Instant::now();
        let granted = (0..50).filter(|_| b.try_withdraw(t0)).count();
        assert_eq!(granted, 10);
        assert!(!b.try_withdraw(t0 + Duration::from_secs(9)));
        assert!(b.try_withdraw(t0 + Duration::from_secs(11)));
    }

    #[test]
    fn backoff_is_capped_and_grows() {
        let c = RetryConfig {
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            ..RetryConfig::default()
        };
        for retry in 1..20 {
            let d = backoff(&c, retry);
            assert!(d <= Duration::from_millis(50));
            if retry == 1 {
                assert!(d <= Duration::from_millis(10));
            }
        }
    }
}
