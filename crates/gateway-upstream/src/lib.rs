//! Everything about talking to upstream services.
//!
//! A *cluster* is a named set of equivalent *targets* (`host:port` sockets).
//! The proxy's upstream stage hands a prepared request to
//! [`Cluster::send`](crate::Cluster::send); this crate picks a target (load
//! balancing that skips unhealthy and ejected targets), enforces the
//! cluster's concurrency limits and circuit breaker, sends the request over
//! a pooled keep-alive connection (HTTP/1.1, h2c or TLS with ALPN), retries
//! within a budget, and turns failures into [`UpstreamError`](crate::UpstreamError)s
//! that carry a stable code and render as problem+json.
//!
//! Configuration lives in [`config`]; the runtime registry is
//! [`Upstreams`](crate::Upstreams), swapped atomically on reconfigure while
//! keeping pools and health state of unchanged targets.

pub mod config;

pub use config::{ClusterConfig, ConfigIssue};
