//! What `GET /v1/upstreams` answers: every cluster's targets, health and
//! circuit state, as the admin API's own types with their schema.
//!
//! The upstream crate's status snapshots are copied field by field with
//! exhaustive destructuring, so a field added there fails to compile here
//! until the answer (and so the document) says what to do with it.

use std::collections::BTreeMap;

use gateway_upstream::{CircuitState, ClusterStatus, TargetState, TargetStatus};
use serde::Serialize;
use utoipa::ToSchema;

/// `GET /v1/upstreams`: every cluster, by name.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(transparent)]
pub(crate) struct UpstreamsStatus(BTreeMap<String, ClusterView>);

/// One cluster.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ClusterStatus)]
pub(crate) struct ClusterView {
    /// Cluster name.
    name: String,
    /// Circuit breaker state.
    circuit: Circuit,
    /// Requests holding a concurrency slot.
    in_flight: usize,
    /// Every current target, in config order (or DNS answer order).
    targets: Vec<TargetView>,
}

/// Circuit breaker state.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = CircuitState)]
enum Circuit {
    /// Requests flow normally.
    Closed,
    /// Requests are rejected with `circuit_open`.
    Open,
    /// A limited number of probe requests are let through.
    HalfOpen,
}

/// One target of a cluster.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = TargetStatus)]
struct TargetView {
    /// `scheme://host:port`.
    address: String,
    /// Configured weight.
    weight: u32,
    /// Current state.
    state: Health,
    /// Requests in flight (until their response body ends).
    in_flight: usize,
    /// Open TCP connections (idle in the pool plus active).
    open_connections: usize,
    /// Consecutive failed requests (resets on success).
    consecutive_failures: u32,
    /// How many times passive detection ejected this target.
    times_ejected: u32,
    /// Time left in the current ejection (e.g. `12s 500ms`).
    ejected_for: Option<String>,
    /// The most recent failure (request or health check), if any.
    last_error: Option<String>,
}

/// Where a target stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = TargetState)]
enum Health {
    /// Receiving traffic.
    Healthy,
    /// Failing active health checks; skipped until they pass again.
    Unhealthy,
    /// Ejected by passive outlier detection; skipped until the ejection
    /// expires or an active check passes.
    Ejected,
}

impl From<BTreeMap<String, ClusterStatus>> for UpstreamsStatus {
    fn from(clusters: BTreeMap<String, ClusterStatus>) -> Self {
        Self(
            clusters
                .into_iter()
                .map(|(name, status)| (name, status.into()))
                .collect(),
        )
    }
}

impl From<ClusterStatus> for ClusterView {
    fn from(status: ClusterStatus) -> Self {
        let ClusterStatus {
            name,
            circuit,
            in_flight,
            targets,
        } = status;
        Self {
            name,
            circuit: match circuit {
                CircuitState::Closed => Circuit::Closed,
                CircuitState::Open => Circuit::Open,
                CircuitState::HalfOpen => Circuit::HalfOpen,
            },
            in_flight,
            targets: targets.into_iter().map(TargetView::from).collect(),
        }
    }
}

impl From<TargetStatus> for TargetView {
    fn from(status: TargetStatus) -> Self {
        let TargetStatus {
            address,
            weight,
            state,
            in_flight,
            open_connections,
            consecutive_failures,
            times_ejected,
            ejected_for,
            last_error,
        } = status;
        Self {
            address,
            weight,
            state: match state {
                TargetState::Healthy => Health::Healthy,
                TargetState::Unhealthy => Health::Unhealthy,
                TargetState::Ejected => Health::Ejected,
            },
            in_flight,
            open_connections,
            consecutive_failures,
            times_ejected,
            // As the upstream crate writes durations (humantime).
            ejected_for: ejected_for.map(|d| humantime::format_duration(d).to_string()),
            last_error,
        }
    }
}
