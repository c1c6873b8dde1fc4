//! Revocation: effective for the next request on this node, announced to
//! the others.

use serde_json::json;

use crate::feed::KeyEvent;
use crate::model::{AuditAction, KeyView, NewAuditEntry};
use crate::store::StoreError;

use super::error::ServiceError;
use super::state::KeyService;

impl KeyService {
    /// Revokes a key; effective for the next request on this node.
    pub async fn revoke(
        &self,
        id: &str,
        reason: Option<String>,
        actor: &str,
    ) -> Result<KeyView, ServiceError> {
        let now = self.inner.clock.now();
        let key = self.get_record(id).await?;
        if let Some(r) = &reason {
            if r.len() > 500 {
                return Err(ServiceError::InvalidField {
                    field: "reason",
                    message: "at most 500 characters".into(),
                });
            }
        }
        let audit = NewAuditEntry {
            at: now,
            actor: actor.to_string(),
            action: AuditAction::KeyRevoked,
            key_id: Some(key.id.clone()),
            consumer_id: Some(key.consumer_id.clone()),
            detail: json!({ "reason": reason }),
        };
        self.inner
            .store
            .revoke_key(&key.id, now, reason.as_deref(), &audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ServiceError::WrongState {
                    id: key.id.clone(),
                    status: "already revoked",
                },
                StoreError::NotFound(_) => ServiceError::KeyNotFound(key.id.to_string()),
                e => e.into(),
            })?;
        let mut after = key.clone();
        after.revoked_at = Some(now);
        after.revoked_reason = reason;
        self.inner.keyring.upsert_key(after.clone());
        self.publish(KeyEvent::KeyRevoked { id: key.id.clone() })
            .await;
        tracing::info!(key_id = %key.id, consumer_id = %key.consumer_id, actor, "key revoked");
        Ok(after.view(now))
    }
}
