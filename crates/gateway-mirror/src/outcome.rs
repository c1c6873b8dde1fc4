//! The vocabulary of mirroring: outcomes, skip and drop reasons, diff
//! categories and launch states.
//!
//! Logs, metrics, stored statistics, the admin API and tests all use these
//! enums and their `as_str()` names, so one word means one thing everywhere.

use serde::{Deserialize, Serialize};

/// Why a request was not mirrored, by policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Outside the sample.
    NotSampled,
    /// The method is not in the launch's `methods` (or unsafe and not allowed).
    Method,
    /// The launch is paused or stopped.
    Inactive,
    /// The request body is larger than `max_body_bytes`.
    BodyTooLarge,
    /// The primary failed, so the candidate's answer had nothing to be
    /// compared with (still counted for error rates).
    PrimaryFailed,
}

impl SkipReason {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotSampled => "not_sampled",
            Self::Method => "method",
            Self::Inactive => "inactive",
            Self::BodyTooLarge => "body_too_large",
            Self::PrimaryFailed => "primary_failed",
        }
    }
}

/// Why a mirrored request was dropped for lack of capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Over `max_rps`.
    RateLimited,
    /// The bounded queue is full.
    QueueFull,
    /// The engine is shutting down.
    Shutdown,
    /// The candidate timed out while the shadow thread was short of CPU:
    /// the timeout may be ours, so it is not charged to the candidate.
    Starved,
}

impl DropReason {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::QueueFull => "queue_full",
            Self::Shutdown => "shutdown",
            Self::Starved => "starved",
        }
    }
}

/// What happened to one request as far as mirroring is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "reason")]
pub enum MirrorOutcome {
    /// The candidate's response matched the primary's (noise aside).
    Match,
    /// The candidate's response differed.
    Differ,
    /// The candidate failed (connect error, reset, invalid response).
    ShadowFailed,
    /// The candidate did not answer within the launch's timeout.
    ShadowTimeout,
    /// Not mirrored by policy.
    Skipped(SkipReason),
    /// Not mirrored for lack of capacity.
    Dropped(DropReason),
}

impl MirrorOutcome {
    /// Stable name (the `outcome` label of `gatehouse_mirror_total`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Match => "match",
            Self::Differ => "differ",
            Self::ShadowFailed => "shadow_failed",
            Self::ShadowTimeout => "shadow_timeout",
            Self::Skipped(_) => "skipped",
            Self::Dropped(_) => "dropped",
        }
    }
}

/// The group a difference belongs to.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DiffCategory {
    /// Different status codes.
    StatusMismatch,
    /// A body field (or the whole non-JSON body) differs.
    BodyField,
    /// A compared header differs.
    Header,
    /// The candidate failed.
    CandidateError,
    /// The candidate timed out.
    CandidateTimeout,
}

impl DiffCategory {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StatusMismatch => "status_mismatch",
            Self::BodyField => "body_field",
            Self::Header => "header",
            Self::CandidateError => "candidate_error",
            Self::CandidateTimeout => "candidate_timeout",
        }
    }
}

/// How a single field differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// Same type, different value.
    Changed,
    /// Present in the primary only.
    Missing,
    /// Present in the candidate only.
    Extra,
    /// Different JSON types (e.g. number vs string).
    TypeChanged,
    /// Arrays of different lengths.
    ArrayLength,
    /// Non-JSON bodies with different hashes.
    HashMismatch,
}

impl DiffKind {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Changed => "changed",
            Self::Missing => "missing",
            Self::Extra => "extra",
            Self::TypeChanged => "type_changed",
            Self::ArrayLength => "array_length",
            Self::HashMismatch => "hash_mismatch",
        }
    }
}

/// Lifecycle of a launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LaunchState {
    /// Mirroring.
    Active,
    /// Not mirroring; statistics kept; can resume.
    Paused,
    /// Finished; statistics kept for the report; cannot resume.
    Stopped,
}

impl LaunchState {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "paused" => Some(Self::Paused),
            "stopped" => Some(Self::Stopped),
            _ => None,
        }
    }

    /// Compact form for atomics.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Active => 0,
            Self::Paused => 1,
            Self::Stopped => 2,
        }
    }

    /// Inverse of [`to_u8`](Self::to_u8); unknown values mean stopped.
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Active,
            1 => Self::Paused,
            _ => Self::Stopped,
        }
    }
}

/// Where a launch was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchOrigin {
    /// `[[dark_launches]]` in the config file.
    Config,
    /// `POST /v1/shadow` or `gatehouse shadow create`.
    Api,
}

impl LaunchOrigin {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "config" => Some(Self::Config),
            "api" => Some(Self::Api),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable() {
        assert_eq!(MirrorOutcome::Match.as_str(), "match");
        assert_eq!(
            MirrorOutcome::Dropped(DropReason::QueueFull).as_str(),
            "dropped"
        );
        assert_eq!(DropReason::QueueFull.as_str(), "queue_full");
        assert_eq!(SkipReason::Method.as_str(), "method");
        assert_eq!(DiffCategory::CandidateTimeout.as_str(), "candidate_timeout");
        for s in [
            LaunchState::Active,
            LaunchState::Paused,
            LaunchState::Stopped,
        ] {
            assert_eq!(LaunchState::parse(s.as_str()), Some(s));
            assert_eq!(LaunchState::from_u8(s.to_u8()), s);
        }
    }
}
