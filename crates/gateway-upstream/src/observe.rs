//! What a caller can learn about each attempt of one `Cluster::send`:
//! the gateway's tracing records every attempt as a client span and sends
//! each its own `traceparent`.

use std::fmt;

use http::{HeaderMap, StatusCode};

use crate::error::UpstreamError;

/// One attempt, as it is about to be sent.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// 1 for the first try, 2 for the first retry, ...
    pub number: u32,
    /// The cluster's name.
    pub cluster: &'a str,
    /// The target as the cluster shows it (`host:port`).
    pub target: &'a str,
    /// The target's host (a name or an IP).
    pub host: &'a str,
    /// The target's port.
    pub port: u16,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy)]
pub enum AttemptOutcome<'a> {
    /// The target answered with this status (the body may still stream).
    Answered(StatusCode),
    /// No usable answer.
    Failed(&'a UpstreamError),
}

/// Told about each attempt of a send, in order; attempts never overlap.
pub trait AttemptObserver: Send + Sync + fmt::Debug {
    /// `attempt` is about to go out with `headers`, which the observer may
    /// change (its `traceparent`).
    fn started(&self, attempt: &Attempt<'_>, headers: &mut HeaderMap);
    /// The attempt last started has ended.
    fn ended(&self, outcome: AttemptOutcome<'_>);
}
