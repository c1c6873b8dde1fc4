//! Upstream failures as data.
//!
//! Every way a request to a cluster can fail is an [`UpstreamErrorKind`]
//! with a stable public code ([`UpstreamErrorKind::as_str`]) and an HTTP
//! status; [`UpstreamError`] adds which cluster and target failed and the
//! underlying cause, and renders as problem+json with
//! [`ToProblem::to_problem`]. Transport errors from the pooled client
//! are classified here, once, so retries, outlier detection, metrics and
//! responses share one vocabulary.

use std::error::Error as StdError;
use std::fmt;

use gateway_core::errors::{self, ErrorCode};
use gateway_core::{BoxError, Problem, ToProblem};
use http::StatusCode;

/// What kind of failure happened. The codes are public and stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamErrorKind {
    /// The TCP connection could not be opened (refused, unreachable, DNS).
    ConnectFailed,
    /// Opening the TCP connection took longer than `connect_timeout`.
    ConnectTimeout,
    /// The TLS handshake failed (certificate, name, protocol).
    Tls,
    /// No response headers arrived within the route's timeout.
    Timeout,
    /// The connection was closed or reset before a complete response.
    Reset,
    /// The target sent something that is not valid HTTP.
    Protocol,
    /// Every target is unhealthy or ejected.
    NoHealthyTargets,
    /// The cluster's circuit breaker is open.
    CircuitOpen,
    /// The cluster's concurrency and queue limits are reached.
    Overloaded,
    /// The route names a cluster that does not exist.
    UnknownCluster,
    /// Reading the client's request body failed while forwarding it.
    RequestBody,
}

impl UpstreamErrorKind {
    /// Every kind, for documentation and exhaustive tests.
    pub const ALL: [UpstreamErrorKind; 11] = [
        Self::ConnectFailed,
        Self::ConnectTimeout,
        Self::Tls,
        Self::Timeout,
        Self::Reset,
        Self::Protocol,
        Self::NoHealthyTargets,
        Self::CircuitOpen,
        Self::Overloaded,
        Self::UnknownCluster,
        Self::RequestBody,
    ];

    /// The entry of the error table (problem `code` and HTTP status).
    pub fn code(self) -> &'static ErrorCode {
        match self {
            Self::ConnectFailed => &errors::UPSTREAM_CONNECT_FAILED,
            Self::ConnectTimeout => &errors::UPSTREAM_CONNECT_TIMEOUT,
            Self::Tls => &errors::UPSTREAM_TLS_FAILED,
            Self::Timeout => &errors::UPSTREAM_TIMEOUT,
            Self::Reset => &errors::UPSTREAM_RESET,
            Self::Protocol => &errors::UPSTREAM_PROTOCOL_ERROR,
            Self::NoHealthyTargets => &errors::NO_HEALTHY_UPSTREAM,
            Self::CircuitOpen => &errors::CIRCUIT_OPEN,
            Self::Overloaded => &errors::OVERLOADED,
            Self::UnknownCluster => &errors::UNKNOWN_UPSTREAM,
            Self::RequestBody => &errors::REQUEST_BODY_FAILED,
        }
    }

    /// The stable public code (problem `code`, metric `outcome` label).
    pub fn as_str(self) -> &'static str {
        self.code().code
    }

    /// The HTTP status the client gets.
    pub fn status(self) -> StatusCode {
        self.code().status
    }

    /// Whether this failure says something about the target's health
    /// (counts toward passive ejection and the circuit breaker).
    pub fn is_target_failure(self) -> bool {
        matches!(
            self,
            Self::ConnectFailed
                | Self::ConnectTimeout
                | Self::Tls
                | Self::Timeout
                | Self::Reset
                | Self::Protocol
        )
    }

    /// Whether the request certainly never reached the target, so even a
    /// non-idempotent request may be sent elsewhere.
    pub fn before_send(self) -> bool {
        matches!(self, Self::ConnectFailed | Self::ConnectTimeout | Self::Tls)
    }
}

impl fmt::Display for UpstreamErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed upstream request: the kind, where it failed and why.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct UpstreamError {
    kind: UpstreamErrorKind,
    cluster: String,
    target: Option<String>,
    detail: String,
    #[source]
    source: Option<BoxError>,
}

impl UpstreamError {
    /// A new error. `detail` is one sentence naming cluster/target as needed.
    pub fn new(
        kind: UpstreamErrorKind,
        cluster: impl Into<String>,
        target: Option<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            cluster: cluster.into(),
            target,
            detail: detail.into(),
            source: None,
        }
    }

    /// The error for a route naming a cluster that is not configured.
    pub fn unknown_cluster(cluster: &str) -> Self {
        Self::new(
            UpstreamErrorKind::UnknownCluster,
            cluster,
            None,
            format!("upstream cluster `{cluster}` is not configured"),
        )
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind.
    pub fn kind(&self) -> UpstreamErrorKind {
        self.kind
    }

    /// The stable public code.
    pub fn as_str(&self) -> &'static str {
        self.kind.as_str()
    }

    /// The HTTP status for the client.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The cluster the request was for.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The target (`scheme://host:port`) that failed, when one was chosen.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// What happened, in one sentence.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Classifies an error from the pooled client.
    pub(crate) fn from_client(
        cluster: &str,
        target: &str,
        err: hyper_util::client::legacy::Error,
    ) -> Self {
        let cause = root_cause(&err);
        let (kind, what) = classify(&err);
        Self::new(
            kind,
            cluster,
            Some(target.to_string()),
            format!("upstream `{cluster}` target {target} {what}: {cause}"),
        )
        .with_source(err)
    }
}

impl UpstreamError {
    /// Classifies an error from the native HTTP/1.1 client.
    pub(crate) fn from_native(
        cluster: &str,
        target: &str,
        err: crate::native::NativeError,
    ) -> Self {
        use crate::native::NativeError;
        use gateway_http1::client::ClientError;
        let (kind, what) = match &err {
            NativeError::Connect(e) if e.kind() == std::io::ErrorKind::TimedOut => (
                UpstreamErrorKind::ConnectTimeout,
                "did not accept a connection in time",
            ),
            NativeError::Connect(_) => (
                UpstreamErrorKind::ConnectFailed,
                "could not be connected to",
            ),
            NativeError::ConnectTimeout(_) => (
                UpstreamErrorKind::ConnectTimeout,
                "did not accept a connection in time",
            ),
            NativeError::Exchange(ClientError::Head(_)) => {
                (UpstreamErrorKind::Protocol, "sent an invalid HTTP response")
            }
            NativeError::Exchange(ClientError::RequestBody(_)) => (
                UpstreamErrorKind::RequestBody,
                "could not be sent the request body",
            ),
            NativeError::Exchange(ClientError::Io(_) | ClientError::Closed { .. }) => (
                UpstreamErrorKind::Reset,
                "closed the connection before responding",
            ),
        };
        Self::new(
            kind,
            cluster,
            Some(target.to_string()),
            format!("upstream `{cluster}` target {target} {what}: {err}"),
        )
        .with_source(err)
    }
}

/// The client sees the detail, which names the cluster and target and
/// says why, and the `upstream` and `target` extension members carrying
/// them as data.
impl ToProblem for UpstreamError {
    fn code(&self) -> &'static ErrorCode {
        self.kind.code()
    }

    fn to_problem(&self) -> Problem {
        let mut p =
            Problem::new(self.code(), self.detail.clone()).with("upstream", self.cluster.as_str());
        if let Some(t) = &self.target {
            p = p.with("target", t.as_str());
        }
        p
    }
}

fn classify(err: &hyper_util::client::legacy::Error) -> (UpstreamErrorKind, &'static str) {
    let chain = || error_chain(err);
    if err.is_connect() {
        if chain().any(has_rustls_error) {
            return (UpstreamErrorKind::Tls, "failed the TLS handshake");
        }
        let timed_out = chain().any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        });
        if timed_out {
            return (
                UpstreamErrorKind::ConnectTimeout,
                "did not accept a connection in time",
            );
        }
        return (
            UpstreamErrorKind::ConnectFailed,
            "could not be connected to",
        );
    }
    for e in chain() {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() {
                return (UpstreamErrorKind::Protocol, "sent an invalid HTTP response");
            }
            if h.is_user() && !h.is_canceled() {
                return (
                    UpstreamErrorKind::RequestBody,
                    "could not be sent the request body",
                );
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::InvalidData {
                return (UpstreamErrorKind::Protocol, "sent invalid data");
            }
        }
    }
    (
        UpstreamErrorKind::Reset,
        "closed the connection before responding",
    )
}

/// Whether `e` is, or wraps through `io::Error` layers, a rustls error.
/// hyper-rustls double-wraps handshake errors in `io::Error`, whose
/// `source()` skips the wrapped error, so `get_ref` is followed explicitly.
fn has_rustls_error(mut e: &(dyn StdError + 'static)) -> bool {
    loop {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => e = inner,
            None => return false,
        }
    }
}

fn error_chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e| (*e).source())
}

fn root_cause(err: &(dyn StdError + 'static)) -> String {
    let mut last = err;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_statuses_match_the_contract() {
        let mut codes: Vec<&str> = UpstreamErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), UpstreamErrorKind::ALL.len());
        use UpstreamErrorKind::*;
        for (kind, status) in [
            (ConnectFailed, 502),
            (Reset, 502),
            (Protocol, 502),
            (Timeout, 504),
            (NoHealthyTargets, 503),
            (CircuitOpen, 503),
            (Overloaded, 503),
        ] {
            assert_eq!(kind.status().as_u16(), status, "{kind}");
        }
        assert_eq!(CircuitOpen.as_str(), "circuit_open");
        assert_eq!(Overloaded.as_str(), "overloaded");
    }

    #[test]
    fn problem_names_upstream_and_target() {
        let e = UpstreamError::new(
            UpstreamErrorKind::ConnectFailed,
            "fx",
            Some("http://10.0.0.1:80".into()),
            "upstream `fx` target http://10.0.0.1:80 could not be connected to: refused",
        );
        let p = e.to_problem();
        assert_eq!(p.status(), 502);
        assert_eq!(p.code(), "upstream_connect_failed");
        assert_eq!(p.extensions["upstream"], "fx");
        assert_eq!(p.extensions["target"], "http://10.0.0.1:80");
        assert!(p.detail.contains("fx") && p.detail.contains("10.0.0.1:80"));
        let p = UpstreamError::unknown_cluster("nope").to_problem();
        assert!(!p.extensions.contains_key("target"));
        assert_eq!(p.code(), "unknown_upstream");
    }
}
