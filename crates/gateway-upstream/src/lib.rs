//! Everything about talking to upstream services.
//!
//! A *cluster* is a named set of equivalent *targets* (`host:port` sockets).
//! The proxy's upstream stage hands a prepared request to [`Cluster::send`];
//! this crate picks a target (load balancing that skips unhealthy and
//! ejected targets), enforces the cluster's concurrency limits and circuit
//! breaker, sends the request over a pooled keep-alive connection
//! (HTTP/1.1, h2c, or TLS with ALPN), retries within a budget, and turns
//! failures into [`UpstreamError`]s that carry a stable code and render as
//! problem+json.
//!
//! - [`config`]: `[clusters.NAME]` as serde structs with defaults and `validate()`.
//! - [`Upstreams`]: the registry, swapped atomically on reconfigure while
//!   keeping pools and health state of unchanged targets.
//! - [`Cluster`]: one cluster at runtime; [`Cluster::send`],
//!   [`Cluster::targets_status`], [`Cluster::circuit_state`].
//! - [`discovery`]: re-resolving host-name and SRV targets (`dns_refresh`)
//!   through an injectable [`resolve::Resolve`].
//! - [`metrics`]: metric names (documented in `docs/upstreams.md`).
//!
//! Architecture invariant: this crate knows nothing about routes, keys,
//! caching or the listener; it receives a ready-to-forward request and
//! returns a streaming response or a classified error.

mod balancer;
mod breaker;
mod cluster;
pub mod config;
mod connector;
pub mod discovery;
mod error;
mod grpc_health;
mod health;
mod members;
pub mod metrics;
mod native;
pub mod observe;
mod registry;
pub mod resolve;
mod retry;
mod srv;
mod target;

pub use balancer::{hash_key, VNODES_PER_WEIGHT};
pub use breaker::CircuitState;
pub use cluster::{is_idempotent, Cluster, ClusterStatus, SendOptions};
pub use config::ClusterConfig;
pub use error::{UpstreamError, UpstreamErrorKind};
pub use health::HEALTH_CHECK_USER_AGENT;
pub use observe::{Attempt, AttemptObserver, AttemptOutcome};
pub use registry::{BuildError, ClusterIssue, ClusterMap, ClusterPlan, Upstreams};
pub use retry::BUDGET_WINDOW_SECS;
pub use target::{TargetState, TargetStatus};
