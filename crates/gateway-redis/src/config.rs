//! Connection settings for the shared Redis.

use std::time::Duration;

use gateway_core::config_issue::{finish, ConfigIssue};
use serde::{Deserialize, Serialize};

/// Default key prefix: every key and channel this crate touches starts with
/// it, so several deployments (or test runs) can share one Redis.
pub const DEFAULT_PREFIX: &str = "gatehouse:";
/// Default bound on every hot-path Redis call. A rate-limit decision that
/// takes longer is decided locally instead: a slow Redis must not become a
/// slow gateway.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(50);
/// Default heartbeat period. A node missing 3 heartbeats no longer counts.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// Where the shared Redis is and how this node uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]` (or `redis+unix://`). The
    /// password never appears in logs or errors.
    pub url: String,
    /// Prefix of every key and pub/sub channel (default `gatehouse:`).
    pub prefix: String,
    /// Bound on every hot-path call (rate-limit decisions, publishes,
    /// pings); default 50 ms.
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
    /// This node's id in the node set and in bus envelopes (default: random,
    /// `node-<uuid>`). Must be unique per running gateway process.
    pub node_id: String,
    /// Heartbeat period (default 1 s): how often the node registers itself,
    /// counts live nodes and re-checks Redis health.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            prefix: DEFAULT_PREFIX.into(),
            op_timeout: DEFAULT_OP_TIMEOUT,
            node_id: random_node_id(),
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }
}

impl RedisConfig {
    /// A config for `url` with every other field at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Rejects settings that cannot work; paths are relative to the Redis
    /// settings (the caller prefixes them, e.g. `redis.`). The URL itself
    /// is checked by [`crate::RedisState::connect`] (parsing it is the
    /// client's job).
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if self.url.trim().is_empty() {
            issues.push(ConfigIssue::new("url", "must not be empty"));
        }
        if self.op_timeout.is_zero() {
            issues.push(ConfigIssue::new("op_timeout", "must be greater than zero"));
        }
        if self.heartbeat < Duration::from_millis(10) {
            issues.push(ConfigIssue::new("heartbeat", "must be at least 10ms"));
        }
        if self.node_id.is_empty() || self.node_id.chars().any(|c| c.is_whitespace()) {
            issues.push(ConfigIssue::new(
                "node_id",
                "must be non-empty and contain no whitespace",
            ));
        }
        finish(issues)
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// A fresh random node id (`node-<uuid v4, simple form>`).
pub fn random_node_id() -> String {
    format!("node-{}", uuid::Uuid::new_v4().simple())
}

/// Replaces the user-info part of a URL (`user:password@`) with `***@`.
///
/// Done by hand rather than with a URL parser because the point is to be
/// safe on URLs that do *not* parse.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}***{}", &rest[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_serde() {
        let c: RedisConfig =
            serde_json::from_str(r#"{"url":"redis://h:1","op_timeout":"20ms"}"#).unwrap();
        assert_eq!(c.prefix, "gatehouse:");
        assert_eq!(c.op_timeout, Duration::from_millis(20));
        assert_eq!(c.heartbeat, Duration::from_secs(1));
        assert!(c.node_id.starts_with("node-"));
        assert_ne!(c.node_id, RedisConfig::default().node_id);
        c.validate().unwrap();
        assert!(serde_json::from_str::<RedisConfig>(r#"{"nope":1}"#).is_err());
    }

    #[test]
    fn validate_rejects_nonsense() {
        let mut c = RedisConfig::new("redis://h");
        c.op_timeout = Duration::ZERO;
        assert_eq!(c.validate().unwrap_err()[0].path, "op_timeout");
        let mut c = RedisConfig::new("redis://h");
        c.node_id = "a b".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_url("redis://u:secret@h:6379/0"),
            "redis://***@h:6379/0"
        );
        assert_eq!(redact_url("redis://:secret@h"), "redis://***@h");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact_url("u:p@x"), "***@x");
        assert_eq!(redact_url("redis://h/a@b"), "redis://h/a@b");
    }
}
