//! [`ServiceError`]: every refused admin operation, with its entry of the
//! error table.

use chrono::{DateTime, Utc};
use gateway_core::errors::{self, ErrorCode};
use gateway_core::{Problem, ToProblem};

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

impl ToProblem for ServiceError {
    fn code(&self) -> &'static ErrorCode {
        match self {
            Self::KeyNotFound(_) => &errors::KEY_NOT_FOUND,
            Self::ConsumerNotFound(_) => &errors::CONSUMER_NOT_FOUND,
            Self::InvalidScope(_) => &errors::INVALID_SCOPE,
            Self::UnknownScope(_) => &errors::UNKNOWN_SCOPE,
            Self::UnknownPlan(_) => &errors::UNKNOWN_PLAN,
            Self::InvalidField { .. } => &errors::INVALID_REQUEST,
            Self::GraceTooLong { .. } => &errors::GRACE_TOO_LONG,
            Self::GraceExceedsExpiry { .. } => &errors::GRACE_EXCEEDS_EXPIRY,
            Self::WrongState { .. } => &errors::KEY_STATE_CONFLICT,
            Self::ConsumerExists(_) => &errors::CONSUMER_EXISTS,
            Self::Store(_) => &errors::KEY_STORE_UNAVAILABLE,
        }
    }

    /// Store internals are logged, not shown; a bad field is named.
    fn to_problem(&self) -> Problem {
        let detail = match self {
            Self::Store(e) => {
                tracing::error!(error = %e, "key store failure");
                "the key store is unavailable; try again".to_string()
            }
            other => other.to_string(),
        };
        let mut p = Problem::new(self.code(), detail);
        if let Self::InvalidField { field, .. } = self {
            p = p.with("field", *field);
        }
        p
    }
}
