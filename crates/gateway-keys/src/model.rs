//! The records of the key system: consumers, key metadata, lifecycle
//! states and audit entries.
//!
//! None of these types holds a secret. [`KeyRecord`] carries the key's
//! SHA-256 hash for the keyring, and that field is never serialized, so
//! admin responses and logs cannot show it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::key::{ConsumerId, KeyHash, KeyId};
use crate::scope::Scope;

/// A consumer: a customer or an app that owns keys. Limits and quotas
/// count per consumer across all its keys (or per group, see
/// [`crate::config::PlanConfig::shared_by_group`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Consumer {
    /// Stable id.
    pub id: ConsumerId,
    /// Unique human name (the `--owner` of the CLI).
    pub name: String,
    /// Plan name; falls back to `keys.default_plan`.
    pub plan: Option<String>,
    /// Group sharing a plan's quota.
    pub group: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Lifecycle state of a key at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Works.
    Active,
    /// Rotated: works until its grace period ends, next to its successor.
    Retiring,
    /// Past its expiry (or its grace period): no longer works.
    Expired,
    /// Revoked by an admin: no longer works.
    Revoked,
}

impl KeyStatus {
    /// Stable identifier for logs, metrics and the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Retiring => "retiring",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    /// Whether a key in this state authenticates.
    pub fn is_usable(&self) -> bool {
        matches!(self, Self::Active | Self::Retiring)
    }
}

impl std::str::FromStr for KeyStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "active" => Self::Active,
            "retiring" => Self::Retiring,
            "expired" => Self::Expired,
            "revoked" => Self::Revoked,
            other => {
                return Err(format!(
                    "unknown status `{other}`: expected active, retiring, expired or revoked"
                ))
            }
        })
    }
}

/// A key's metadata. Never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct KeyRecord {
    /// Short non-secret id.
    pub id: KeyId,
    /// Owner.
    pub consumer_id: ConsumerId,
    /// Human label.
    pub name: String,
    /// Environment segment of the key (`live`, `test`, ...).
    pub environment: String,
    /// Scopes granted.
    pub scopes: Vec<Scope>,
    /// Plan override for this key; falls back to the consumer's.
    pub plan: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Who created it.
    pub created_by: String,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
    /// Last successful use, as of the last flush.
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key this one replaced by rotation.
    pub predecessor: Option<KeyId>,
    /// The key that replaced this one by rotation.
    pub successor: Option<KeyId>,
    /// End of the grace period after rotation.
    pub grace_until: Option<DateTime<Utc>>,
    /// When an expiry warning was sent.
    pub warned_at: Option<DateTime<Utc>>,
    /// When the sweeper noted the expiry in the audit log (internal).
    #[serde(skip)]
    pub expiry_noted_at: Option<DateTime<Utc>>,
    /// Free-form metadata (a JSON object), never a secret by convention.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// SHA-256 of the secret; never serialized.
    #[serde(skip)]
    pub hash: KeyHash,
}

impl KeyRecord {
    /// The instant after which the key stops working, if any: the earlier of
    /// its expiry and the end of its grace period.
    pub fn effective_expiry(&self) -> Option<DateTime<Utc>> {
        match (self.expires_at, self.grace_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The state at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.effective_expiry().is_some_and(|e| e <= now) {
            KeyStatus::Expired
        } else if self.successor.is_some() {
            KeyStatus::Retiring
        } else {
            KeyStatus::Active
        }
    }

    /// The record plus its state at `now`, as the admin API shows it.
    pub fn view(&self, now: DateTime<Utc>) -> KeyView {
        KeyView {
            status: self.status(now),
            consumer_name: None,
            record: self.clone(),
        }
    }
}

/// A key record with its current status, for responses.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    /// State at the time of the response.
    pub status: KeyStatus,
    /// The owner's name, where the response shows it (lists, reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer_name: Option<String>,
    /// Metadata.
    #[serde(flatten)]
    pub record: KeyRecord,
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum AuditAction {
    /// A consumer was created.
    #[serde(rename = "consumer.create")]
    ConsumerCreated,
    /// A key was created.
    #[serde(rename = "key.create")]
    KeyCreated,
    /// A key was rotated (entry on the old key; detail names the successor).
    #[serde(rename = "key.rotate")]
    KeyRotated,
    /// A key was revoked.
    #[serde(rename = "key.revoke")]
    KeyRevoked,
    /// A key's name, scopes, plan, expiry or metadata was changed.
    #[serde(rename = "key.update")]
    KeyUpdated,
    /// A key passed its expiry or grace end (noted by the sweeper).
    #[serde(rename = "key.expire")]
    KeyExpired,
    /// A key will expire soon (rotation policy warning).
    #[serde(rename = "key.expiring")]
    KeyExpiring,
    /// A retiring key was used during its grace period.
    #[serde(rename = "key.used_in_grace")]
    UsedInGrace,
    /// A key was refused a route outside its scopes.
    #[serde(rename = "auth.scope_denied")]
    ScopeDenied,
    /// A client IP tripped the failed-verification limit.
    #[serde(rename = "auth.failure_burst")]
    FailureBurst,
}

impl AuditAction {
    /// Stable identifier, as stored.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ConsumerCreated => "consumer.create",
            Self::KeyCreated => "key.create",
            Self::KeyRotated => "key.rotate",
            Self::KeyRevoked => "key.revoke",
            Self::KeyUpdated => "key.update",
            Self::KeyExpired => "key.expire",
            Self::KeyExpiring => "key.expiring",
            Self::UsedInGrace => "key.used_in_grace",
            Self::ScopeDenied => "auth.scope_denied",
            Self::FailureBurst => "auth.failure_burst",
        }
    }

    /// Parses a stored identifier.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::ConsumerCreated,
            Self::KeyCreated,
            Self::KeyRotated,
            Self::KeyRevoked,
            Self::KeyUpdated,
            Self::KeyExpired,
            Self::KeyExpiring,
            Self::UsedInGrace,
            Self::ScopeDenied,
            Self::FailureBurst,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// An audit entry to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who: an admin actor name, `system`, or a client IP for auth events.
    pub actor: String,
    /// What.
    pub action: AuditAction,
    /// Which key.
    pub key_id: Option<KeyId>,
    /// Which consumer.
    pub consumer_id: Option<ConsumerId>,
    /// Structured detail (never a secret).
    pub detail: serde_json::Value,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Sequence number (increasing).
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What.
    pub action: AuditAction,
    /// Which key.
    pub key_id: Option<KeyId>,
    /// Which consumer.
    pub consumer_id: Option<ConsumerId>,
    /// Structured detail (never a secret): a JSON object whose fields
    /// depend on the action.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(now: DateTime<Utc>) -> KeyRecord {
        KeyRecord {
            id: KeyId::generate(),
            consumer_id: ConsumerId::generate(),
            name: "k".into(),
            environment: "live".into(),
            scopes: vec![],
            plan: None,
            created_at: now,
            created_by: "t".into(),
            expires_at: None,
            revoked_at: None,
            revoked_reason: None,
            last_used_at: None,
            predecessor: None,
            successor: None,
            grace_until: None,
            warned_at: None,
            expiry_noted_at: None,
            metadata: Default::default(),
            hash: KeyHash::of("x"),
        }
    }

    #[test]
    fn hash_is_never_serialized() {
        let r = record(Utc::now());
        let json = serde_json::to_string(&r.view(Utc::now())).unwrap();
        assert!(!json.contains(&r.hash.to_hex()));
        assert!(json.contains("\"status\":\"active\""));
    }

    #[test]
    fn audit_actions_round_trip() {
        for a in [
            AuditAction::KeyCreated,
            AuditAction::FailureBurst,
            AuditAction::UsedInGrace,
        ] {
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
    }
}
