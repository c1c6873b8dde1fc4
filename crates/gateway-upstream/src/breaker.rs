//! The per-cluster circuit breaker.
//!
//! Closed: everything passes; `consecutive_failures` failed attempts in a
//! row open it. Open: requests fail fast with `circuit_open` for `open_for`.
//! Half-open: up to `half_open_probes` requests pass; the first success
//! closes the circuit, a failure opens it again. A probe whose request is
//! abandoned before an outcome (client went away) gives its slot back, so
//! the breaker cannot wedge half-open.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::config::CircuitBreakerConfig;

/// Circuit breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Requests flow normally.
    Closed,
    /// Requests are rejected with `circuit_open`.
    Open,
    /// A limited number of probe requests are let through.
    HalfOpen,
}

impl CircuitState {
    /// Stable name for logs, metrics and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    /// Value of the `gatehouse_upstream_circuit_state` gauge.
    pub fn gauge_value(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::Open => 1.0,
            CircuitState::HalfOpen => 2.0,
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: CircuitState,
    failures: u32,
    open_until: Instant,
    probes: u32,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    open_for: Duration,
    max_probes: u32,
    inner: Mutex<Inner>,
}

/// Permission to send one request. Holds a half-open probe slot, if any,
/// until an outcome is recorded or it is dropped.
#[derive(Debug)]
pub(crate) struct Admission {
    breaker: Option<Arc<Breaker>>,
}

impl Admission {
    fn probe(breaker: &Arc<Breaker>) -> Self {
        Self {
            breaker: Some(breaker.clone()),
        }
    }

    pub(crate) fn none() -> Self {
        Self { breaker: None }
    }

    /// Whether this request is a half-open probe.
    #[cfg(test)]
    pub(crate) fn is_probe(&self) -> bool {
        self.breaker.is_some()
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(b) = self.breaker.take() {
            let mut inner = b.inner.lock();
            if inner.state == CircuitState::HalfOpen {
                inner.probes = inner.probes.saturating_sub(1);
            }
        }
    }
}

impl Breaker {
    pub(crate) fn new(cfg: &CircuitBreakerConfig) -> Self {
        Self {
            threshold: cfg.consecutive_failures,
            open_for: cfg.open_for,
            max_probes: cfg.half_open_probes.max(1),
            inner: Mutex::new(Inner {
                state: CircuitState::Closed,
                failures: 0,
                open_until: Instant::now(),
                probes: 0,
            }),
        }
    }

    pub(crate) fn state(&self, now: Instant) -> CircuitState {
        let inner = self.inner.lock();
        match inner.state {
            CircuitState::Open if now >= inner.open_until => CircuitState::HalfOpen,
            s => s,
        }
    }

    /// Asks to send a request; `Err(())` while open (or half-open with
    /// every probe slot taken).
    pub(crate) fn admit(self: &Arc<Self>, now: Instant) -> Result<Admission, ()> {
        if self.threshold == 0 {
            return Ok(Admission::none());
        }
        let mut inner = self.inner.lock();
        if inner.state == CircuitState::Open {
            if now < inner.open_until {
                return Err(());
            }
            inner.state = CircuitState::HalfOpen;
            inner.probes = 0;
        }
        match inner.state {
            CircuitState::Closed => Ok(Admission::none()),
            _ if inner.probes < self.max_probes => {
                inner.probes += 1;
                Ok(Admission::probe(self))
            }
            _ => Err(()),
        }
    }

    /// Records one attempt's outcome; returns the new state if it changed.
    pub(crate) fn record(
        &self,
        success: bool,
        admission: &mut Admission,
        now: Instant,
    ) -> Option<CircuitState> {
        if self.threshold == 0 {
            return None;
        }
        // The probe slot is spent: the outcome, not a drop, decides.
        admission.breaker.take();
        let mut inner = self.inner.lock();
        let before = inner.state;
        match (inner.state, success) {
            (CircuitState::Closed, true) => inner.failures = 0,
            (CircuitState::Closed, false) => {
                inner.failures += 1;
                if inner.failures >= self.threshold {
                    inner.state = CircuitState::Open;
                    inner.open_until = now + self.open_for;
                }
            }
            (CircuitState::HalfOpen, true) => {
                inner.state = CircuitState::Closed;
                inner.failures = 0;
                inner.probes = 0;
            }
            (CircuitState::HalfOpen, false) => {
                inner.state = CircuitState::Open;
                inner.open_until = now + self.open_for;
                inner.probes = 0;
            }
            // Late outcomes of requests admitted before the circuit opened
            // do not extend or end the cool-down.
            (CircuitState::Open, _) => {}
        }
        (inner.state != before).then_some(inner.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, probes: u32) -> Arc<Breaker> {
        Arc::new(Breaker::new(&CircuitBreakerConfig {
            consecutive_failures: threshold,
            open_for: Duration::from_secs(10),
            half_open_probes: probes,
            ..CircuitBreakerConfig::default()
        }))
    }

    #[test]
    fn opens_after_consecutive_failures_and_half_opens_after_cool_down() {
        let b = breaker(3, 1);
        let t0 = Instant::now();
        for i in 0..3 {
            let mut a = b.admit(t0).unwrap();
            let changed = b.record(false, &mut a, t0);
            assert_eq!(changed.is_some(), i == 2);
        }
        assert_eq!(b.state(t0), CircuitState::Open);
        assert!(b.admit(t0 + Duration::from_secs(9)).is_err());
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.state(later), CircuitState::HalfOpen);
        let mut probe = b.admit(later).unwrap();
        assert!(probe.is_probe());
        assert!(b.admit(later).is_err(), "only one probe at a time");
        assert_eq!(
            b.record(true, &mut probe, later),
            Some(CircuitState::Closed)
        );
        assert!(b.admit(later).is_ok());
    }

    #[test]
    fn failed_probe_reopens_and_abandoned_probe_frees_its_slot() {
        let b = breaker(1, 1);
        let t0 = Instant::now();
        let mut a = b.admit(t0).unwrap();
        b.record(false, &mut a, t0);
        let t1 = t0 + Duration::from_secs(10);
        drop(b.admit(t1).unwrap());
        let mut probe = b.admit(t1).expect("slot given back");
        assert_eq!(b.record(false, &mut probe, t1), Some(CircuitState::Open));
        assert!(b.admit(t1 + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn success_resets_the_failure_count() {
        let b = breaker(2, 1);
        let t0 = Instant::now();
        for ok in [false, true, false, true, false] {
            let mut a = b.admit(t0).unwrap();
            b.record(ok, &mut a, t0);
        }
        assert_eq!(b.state(t0), CircuitState::Closed);
    }

    #[test]
    fn zero_threshold_disables_the_breaker() {
        let b = breaker(0, 1);
        let t0 = Instant::now();
        for _ in 0..100 {
            let mut a = b.admit(t0).unwrap();
            b.record(false, &mut a, t0);
        }
        assert_eq!(b.state(t0), CircuitState::Closed);
    }
}
