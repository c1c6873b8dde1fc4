//! The purge vocabulary: what a purge selects, its outcome, why it is
//! refused, and the [`PurgeFanout`] hook that carries it to other nodes.
//!
//! Plain data (serde) so purges can travel between nodes and through the
//! admin API; applying them is in `invalidate.rs`.

use gateway_core::errors::{self, ErrorCode};
use gateway_core::ToProblem;
use serde::{Deserialize, Serialize};

use crate::key;

/// What a purge selects; plain data so it can be sent between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeTarget {
    /// One URL: every variant, every consumer.
    Url(String),
    /// Every URL starting with this prefix (`https://host/path`).
    Prefix(String),
    /// Every response tagged with this surrogate key.
    Tag(String),
}

/// A purge request: target plus hard (remove) or soft (mark stale).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purge {
    /// What to purge.
    pub target: PurgeTarget,
    /// Soft purges mark entries stale so stale-while-revalidate and
    /// stale-if-error can still serve them; hard purges remove them.
    #[serde(default)]
    pub soft: bool,
}

/// Carries purges to the other gateway nodes (the scale-out change feed).
/// The cache only calls it; how purges travel (Redis pub/sub) is the
/// gateway's business. Implementations must not block: publish in the
/// background and log failures.
pub trait PurgeFanout: Send + Sync + 'static {
    /// Tells every other node to apply `purge` to its own cache.
    fn publish(&self, purge: &Purge);
}

/// The outcome of a purge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PurgeResult {
    /// Stored variants removed or marked stale.
    pub purged: usize,
    /// Whether it was a soft purge.
    pub soft: bool,
}

/// Why a purge was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurgeError {
    /// The URL or prefix is not an absolute http(s) URL.
    #[error("invalid {field}: {source}")]
    InvalidUrl {
        /// `url` or `prefix`.
        field: &'static str,
        /// What is wrong with it.
        source: key::KeyError,
    },
    /// The tag is empty.
    #[error("invalid tag: must not be empty")]
    EmptyTag,
}

impl ToProblem for PurgeError {
    fn code(&self) -> &'static ErrorCode {
        &errors::CACHE_PURGE_INVALID
    }
}
