//! [`ServiceError`]: every refused admin operation, with its public code
//! and HTTP status.

use chrono::{DateTime, Utc};
use gateway_core::Problem;
use http::StatusCode;

use crate::key::KeyId;
use crate::scope::ScopeError;
use crate::store::StoreError;

/// A refused admin operation. Each variant has a stable code and status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No such key.
    #[error("no key with id `{0}`")]
    KeyNotFound(String),
    /// No such consumer.
    #[error("no consumer with id or name `{0}`")]
    ConsumerNotFound(String),
    /// A scope is malformed.
    #[error(transparent)]
    InvalidScope(#[from] ScopeError),
    /// A scope names a route, tag or custom scope that does not exist.
    #[error("unknown scope `{0}`: no such route, tag or declared custom scope")]
    UnknownScope(String),
    /// A plan name is not configured.
    #[error("unknown plan `{0}`")]
    UnknownPlan(String),
    /// A field is invalid.
    #[error("invalid `{field}`: {message}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The requested grace is longer than allowed.
    #[error("grace {requested} is longer than the maximum {max}")]
    GraceTooLong {
        /// Requested, human readable.
        requested: String,
        /// Maximum, human readable.
        max: String,
    },
    /// The grace period would outlive the key's own expiry.
    #[error(
        "grace would end at {grace_until} but the key expires at {expires_at}; use a shorter grace"
    )]
    GraceExceedsExpiry {
        /// End of the requested grace.
        grace_until: DateTime<Utc>,
        /// The key's expiry.
        expires_at: DateTime<Utc>,
    },
    /// The key is not in a state that allows the operation.
    #[error("key `{id}` is {status}")]
    WrongState {
        /// Which key.
        id: KeyId,
        /// Its state.
        status: &'static str,
    },
    /// A consumer with that name exists.
    #[error("a consumer named `{0}` already exists")]
    ConsumerExists(String),
    /// The store failed.
    #[error("key store unavailable: {0}")]
    Store(StoreError),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::Store(e)
    }
}

impl ServiceError {
    /// Stable public code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::KeyNotFound(_) => "key_not_found",
            Self::ConsumerNotFound(_) => "consumer_not_found",
            Self::InvalidScope(_) => "invalid_scope",
            Self::UnknownScope(_) => "unknown_scope",
            Self::UnknownPlan(_) => "unknown_plan",
            Self::InvalidField { .. } => "invalid_request",
            Self::GraceTooLong { .. } => "grace_too_long",
            Self::GraceExceedsExpiry { .. } => "grace_exceeds_expiry",
            Self::WrongState { .. } => "key_state_conflict",
            Self::ConsumerExists(_) => "consumer_exists",
            Self::Store(_) => "key_store_unavailable",
        }
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::KeyNotFound(_) | Self::ConsumerNotFound(_) => StatusCode::NOT_FOUND,
            Self::WrongState { .. } | Self::ConsumerExists(_) => StatusCode::CONFLICT,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The problem+json body. Store internals are logged, not shown.
    pub fn problem(&self) -> Problem {
        let detail = match self {
            Self::Store(e) => {
                tracing::error!(error = %e, "key store failure");
                "the key store is unavailable; try again".to_string()
            }
            other => other.to_string(),
        };
        let mut p = Problem::new(self.status(), self.code(), detail);
        if let Self::InvalidField { field, .. } = self {
            p = p.with("field", *field);
        }
        p
    }
}
