//! Metric names and the typed events that emit them.
//!
//! Names and labels are part of the public contract (dashboards and alerts
//! use them) and are documented in `docs/upstreams.md`. Everything goes
//! through the `metrics` facade; the binary installs the recorder.

use std::sync::OnceLock;
use std::time::Duration;

/// Counter: attempts sent to targets, and requests refused before one was
/// chosen. Labels: `cluster`, `target` (`none` when no target was chosen),
/// `outcome` (`success`, `failure_status` for 502/503/504, or an error code).
pub const REQUESTS_TOTAL: &str = "gatehouse_upstream_requests_total";
/// Histogram (seconds): time from `send` to response headers or error. Label: `cluster`.
pub const REQUEST_DURATION_SECONDS: &str = "gatehouse_upstream_request_duration_seconds";
/// Gauge: 1 when a target may receive traffic, 0 when unhealthy or ejected.
/// Labels: `cluster`, `target`.
pub const TARGET_HEALTHY: &str = "gatehouse_upstream_target_healthy";
/// Gauge: requests in flight per target (until the response body ends).
/// Labels: `cluster`, `target`.
pub const IN_FLIGHT: &str = "gatehouse_upstream_in_flight";
/// Counter: retries sent. Label: `cluster`.
pub const RETRIES_TOTAL: &str = "gatehouse_upstream_retries_total";
/// Counter: retries wanted but refused by the retry budget. Label: `cluster`.
pub const RETRIES_BUDGET_EXHAUSTED_TOTAL: &str = "gatehouse_upstream_retry_budget_exhausted_total";
/// Gauge: circuit state, 0 closed, 1 open, 2 half-open. Label: `cluster`.
pub const CIRCUIT_STATE: &str = "gatehouse_upstream_circuit_state";
/// Counter: passive ejections. Labels: `cluster`, `target`.
pub const EJECTIONS_TOTAL: &str = "gatehouse_upstream_ejections_total";
/// Gauge: requests waiting for a concurrency slot. Label: `cluster`.
pub const PENDING: &str = "gatehouse_upstream_pending";
/// Counter: targets picked in panic mode (fewer than `panic_threshold`
/// percent of the cluster available, so every target is used). Label:
/// `cluster`.
pub const PANIC_TOTAL: &str = "gatehouse_upstream_panic_total";
/// Counter: DNS refreshes that failed or got an empty answer (the cluster
/// kept its last good targets). Label: `cluster`.
pub const DNS_FAILURES_TOTAL: &str = "gatehouse_upstream_dns_failures_total";
/// Gauge: targets in a cluster after its last DNS refresh changed them.
/// Label: `cluster`.
pub const DNS_TARGETS: &str = "gatehouse_upstream_dns_targets";

/// Handles for the metrics a target touches on every request, registered
/// the first time each is used: the request path then neither allocates
/// label strings nor looks the metric up in the recorder's registry.
#[derive(Default)]
pub(crate) struct TargetHandles {
    success: OnceLock<metrics::Counter>,
    in_flight: OnceLock<metrics::Gauge>,
}

impl TargetHandles {
    /// [`REQUESTS_TOTAL`] with outcome `success`.
    pub(crate) fn success(&self, cluster: &str, target: &str) {
        self.success
            .get_or_init(|| {
                metrics::counter!(REQUESTS_TOTAL, "cluster" => cluster.to_string(), "target" => target.to_string(), "outcome" => "success")
            })
            .increment(1);
    }

    /// [`IN_FLIGHT`] for this target.
    pub(crate) fn in_flight(&self, cluster: &str, target: &str, n: usize) {
        self.in_flight
            .get_or_init(|| {
                metrics::gauge!(IN_FLIGHT, "cluster" => cluster.to_string(), "target" => target.to_string())
            })
            .set(n as f64);
    }
}

/// [`REQUEST_DURATION_SECONDS`] for one cluster, registered on first use.
#[derive(Default)]
pub(crate) struct ClusterHandles {
    duration: OnceLock<metrics::Histogram>,
}

impl ClusterHandles {
    pub(crate) fn duration(&self, cluster: &str, took: Duration) {
        self.duration
            .get_or_init(
                || metrics::histogram!(REQUEST_DURATION_SECONDS, "cluster" => cluster.to_string()),
            )
            .record(took.as_secs_f64());
    }
}

pub(crate) fn attempt(cluster: &str, target: &str, outcome: &'static str) {
    metrics::counter!(REQUESTS_TOTAL, "cluster" => cluster.to_string(), "target" => target.to_string(), "outcome" => outcome)
        .increment(1);
}

pub(crate) fn healthy(cluster: &str, target: &str, healthy: bool) {
    metrics::gauge!(TARGET_HEALTHY, "cluster" => cluster.to_string(), "target" => target.to_string())
        .set(if healthy { 1.0 } else { 0.0 });
}

pub(crate) fn retry(cluster: &str) {
    metrics::counter!(RETRIES_TOTAL, "cluster" => cluster.to_string()).increment(1);
}

pub(crate) fn budget_exhausted(cluster: &str) {
    metrics::counter!(RETRIES_BUDGET_EXHAUSTED_TOTAL, "cluster" => cluster.to_string())
        .increment(1);
}

pub(crate) fn circuit(cluster: &str, state: crate::CircuitState) {
    metrics::gauge!(CIRCUIT_STATE, "cluster" => cluster.to_string()).set(state.gauge_value());
}

pub(crate) fn ejected(cluster: &str, target: &str) {
    metrics::counter!(EJECTIONS_TOTAL, "cluster" => cluster.to_string(), "target" => target.to_string())
        .increment(1);
}

pub(crate) fn panic(cluster: &str) {
    metrics::counter!(PANIC_TOTAL, "cluster" => cluster.to_string()).increment(1);
}

pub(crate) fn dns_failure(cluster: &str) {
    metrics::counter!(DNS_FAILURES_TOTAL, "cluster" => cluster.to_string()).increment(1);
}

pub(crate) fn dns_targets(cluster: &str, n: usize) {
    metrics::gauge!(DNS_TARGETS, "cluster" => cluster.to_string()).set(n as f64);
}

pub(crate) fn pending(cluster: &str, n: usize) {
    metrics::gauge!(PENDING, "cluster" => cluster.to_string()).set(n as f64);
}

/// Gauge: open TCP connections per target (idle in the pool plus active).
/// Labels: `cluster`, `target`.
pub const CONNECTIONS_OPEN: &str = "gatehouse_upstream_connections_open";
/// Counter: TCP connections opened per target. Labels: `cluster`, `target`.
pub const CONNECTIONS_OPENED_TOTAL: &str = "gatehouse_upstream_connections_opened_total";

pub(crate) fn connection_opened(cluster: &str, target: &str, open: usize) {
    metrics::counter!(CONNECTIONS_OPENED_TOTAL, "cluster" => cluster.to_string(), "target" => target.to_string())
        .increment(1);
    metrics::gauge!(CONNECTIONS_OPEN, "cluster" => cluster.to_string(), "target" => target.to_string()).set(open as f64);
}

pub(crate) fn connection_closed(cluster: &str, target: &str, open: usize) {
    metrics::gauge!(CONNECTIONS_OPEN, "cluster" => cluster.to_string(), "target" => target.to_string()).set(open as f64);
}

impl std::fmt::Debug for ClusterHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHandles").finish_non_exhaustive()
    }
}
