//! Rotation: a successor issued while the old key keeps working for its
//! grace period.

use serde_json::json;

use crate::feed::KeyEvent;
use crate::key::{ApiKey, KeyId};
use crate::model::{AuditAction, KeyRecord, KeyStatus, NewAuditEntry};
use crate::store::StoreError;

use super::error::ServiceError;
use super::requests::{IssuedKey, RotateKey};
use super::state::KeyService;

impl KeyService {
    /// Rotates a key: issues a successor and lets the old key work for the
    /// grace period.
    pub async fn rotate(
        &self,
        id: &str,
        req: RotateKey,
        actor: &str,
    ) -> Result<IssuedKey, ServiceError> {
        let now = self.inner.clock.now();
        let old = self.get_record(id).await?;
        let status = old.status(now);
        if status != KeyStatus::Active {
            return Err(ServiceError::WrongState {
                id: old.id.clone(),
                status: match status {
                    KeyStatus::Retiring => "already rotated",
                    KeyStatus::Expired => "expired",
                    KeyStatus::Revoked => "revoked",
                    KeyStatus::Active => "active",
                },
            });
        }
        let grace = req.grace.unwrap_or(self.inner.config.load().default_grace);
        if grace > self.inner.config.load().max_grace {
            return Err(ServiceError::GraceTooLong {
                requested: humantime::format_duration(grace).to_string(),
                max: humantime::format_duration(self.inner.config.load().max_grace).to_string(),
            });
        }
        let grace_until = now
            + chrono::Duration::from_std(grace).map_err(|_| ServiceError::InvalidField {
                field: "grace",
                message: "is out of range".into(),
            })?;
        if let Some(exp) = old.expires_at {
            if grace_until > exp {
                return Err(ServiceError::GraceExceedsExpiry {
                    grace_until,
                    expires_at: exp,
                });
            }
        }
        let lifetime = req
            .expires_in
            .or_else(|| {
                old.expires_at
                    .and_then(|e| (e - old.created_at).to_std().ok())
                    .filter(|d| !d.is_zero())
            })
            .or(self.inner.config.load().rotation.rotate_every);
        let expires_at = match lifetime {
            Some(d) => Some(self.expiry_after(now, d, "expires_in")?),
            None => None,
        };
        let secret =
            ApiKey::generate(&old.environment).map_err(|_| ServiceError::InvalidField {
                field: "environment",
                message: "the old key's environment is invalid".into(),
            })?;
        let successor = KeyRecord {
            id: KeyId::generate(),
            consumer_id: old.consumer_id.clone(),
            name: old.name.clone(),
            environment: old.environment.clone(),
            scopes: old.scopes.clone(),
            plan: old.plan.clone(),
            created_at: now,
            created_by: actor.to_string(),
            expires_at,
            revoked_at: None,
            revoked_reason: None,
            last_used_at: None,
            predecessor: Some(old.id.clone()),
            successor: None,
            grace_until: None,
            warned_at: None,
            expiry_noted_at: None,
            metadata: old.metadata.clone(),
            hash: secret.hash(),
        };
        let audits = [
            NewAuditEntry {
                at: now,
                actor: actor.to_string(),
                action: AuditAction::KeyRotated,
                key_id: Some(old.id.clone()),
                consumer_id: Some(old.consumer_id.clone()),
                detail: json!({ "successor": successor.id, "grace_until": grace_until }),
            },
            NewAuditEntry {
                at: now,
                actor: actor.to_string(),
                action: AuditAction::KeyCreated,
                key_id: Some(successor.id.clone()),
                consumer_id: Some(old.consumer_id.clone()),
                detail: json!({ "rotated_from": old.id, "expires_at": expires_at }),
            },
        ];
        self.inner
            .store
            .rotate_key(&old.id, grace_until, &successor, &audits)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ServiceError::WrongState {
                    id: old.id.clone(),
                    status: "already rotated or revoked",
                },
                e => e.into(),
            })?;
        let mut old_after = old.clone();
        old_after.successor = Some(successor.id.clone());
        old_after.grace_until = Some(grace_until);
        self.inner.keyring.upsert_key(old_after.clone());
        self.inner.keyring.upsert_key(successor.clone());
        self.publish(KeyEvent::KeyChanged { id: old.id.clone() })
            .await;
        self.publish(KeyEvent::KeyChanged {
            id: successor.id.clone(),
        })
        .await;
        tracing::info!(key_id = %old.id, successor = %successor.id, consumer_id = %old.consumer_id, grace_until = %grace_until, actor, "key rotated");
        Ok(IssuedKey {
            key: successor.view(now),
            secret,
            previous: Some(old_after.view(now)),
        })
    }
}
