//! The crate's one error type.

use std::time::Duration;

/// What went wrong talking to Redis.
///
/// Callers on the hot path rarely look inside: a rate-limit decision falls
/// back to the local limiter on any error, and a failed publish means other
/// nodes learn of the change at their next full reload or `Resync`. The
/// variants exist for logs, readiness probes and tests.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL could not be used (bad syntax, unknown scheme, TLS without
    /// support). The URL in the message is redacted.
    #[error("invalid Redis URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL, password replaced by `***`.
        url: String,
        /// What the client library said.
        reason: String,
    },
    /// Settings that cannot work, each with its path (`redis.op_timeout`).
    #[error("invalid Redis config: {}", gateway_core::config_issue::render(.0))]
    InvalidConfig(Vec<gateway_core::ConfigIssue>),
    /// Redis has not been reachable since this node started (no connection
    /// exists yet; the heartbeat keeps trying).
    #[error("Redis is not connected yet")]
    NotConnected,
    /// A call did not answer within its bound.
    #[error("Redis {op} timed out after {after:?}")]
    Timeout {
        /// The operation (`ratelimit_check`, `publish`, ...).
        op: &'static str,
        /// The bound that was exceeded.
        after: Duration,
    },
    /// The server or the connection failed.
    #[error("Redis {op} failed: {source}")]
    Command {
        /// The operation.
        op: &'static str,
        /// The client library's error.
        #[source]
        source: redis::RedisError,
    },
    /// A reply had an unexpected shape (a script of another version?).
    #[error("Redis {op}: unexpected reply: {detail}")]
    Protocol {
        /// The operation.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A bus payload could not be encoded.
    #[error("encoding a bus message: {0}")]
    Encode(#[from] serde_json::Error),
    /// [`crate::RedisState::shutdown`] was called.
    #[error("the Redis state is shut down")]
    ShutDown,
}

impl RedisError {
    /// Stable identifier for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::InvalidUrl { .. } => "invalid_url",
            Self::InvalidConfig(_) => "invalid_config",
            Self::NotConnected => "not_connected",
            Self::Timeout { .. } => "timeout",
            Self::Command { .. } => "command",
            Self::Protocol { .. } => "protocol",
            Self::Encode(_) => "encode",
            Self::ShutDown => "shut_down",
        }
    }
}
