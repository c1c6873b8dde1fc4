//! Editing a key: name, scopes, plan, expiry and metadata, written with an
//! audit entry that records what changed from what, live on this node at
//! once and announced to the others. The secret and the lifecycle links
//! (rotation, revocation) are not editable.

use serde_json::{json, Map, Value};

use crate::feed::KeyEvent;
use crate::model::{AuditAction, KeyStatus, KeyView, NewAuditEntry};
use crate::store::StoreError;

use super::error::ServiceError;
use super::requests::UpdateKey;
use super::state::KeyService;

/// Metadata kept at most, as JSON text.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

impl KeyService {
    /// Changes the fields given in `req`; refuses a revoked or expired key.
    pub async fn update(
        &self,
        id: &str,
        req: UpdateKey,
        actor: &str,
    ) -> Result<KeyView, ServiceError> {
        let now = self.inner.clock.now();
        let old = self.get_record(id).await?;
        let status = old.status(now);
        if matches!(status, KeyStatus::Revoked | KeyStatus::Expired) {
            return Err(ServiceError::WrongState {
                id: old.id.clone(),
                status: status.as_str(),
            });
        }
        let mut new = old.clone();
        let mut changes = Map::new();
        let mut note = |field: &str, from: Value, to: Value| {
            if from != to {
                changes.insert(field.into(), json!({ "from": from, "to": to }));
            }
        };
        if let Some(name) = req.name {
            check_name(&name)?;
            note("name", json!(old.name), json!(name));
            new.name = name;
        }
        if let Some(scopes) = req.scopes {
            new.scopes = self.parse_scopes(&scopes)?;
            note("scopes", json!(old.scopes), json!(new.scopes));
        }
        if let Some(plan) = req.plan {
            self.check_plan(&plan)?;
            note("plan", json!(old.plan), json!(plan));
            new.plan = plan;
        }
        if let Some(expires_at) = req.expires_at {
            if expires_at.is_some_and(|e| e <= now) {
                return Err(ServiceError::InvalidField {
                    field: "expires_at",
                    message: "must be in the future (revoke the key to stop it now)".into(),
                });
            }
            note("expires_at", json!(old.expires_at), json!(expires_at));
            new.expires_at = expires_at;
        }
        if let Some(metadata) = req.metadata {
            check_metadata(&metadata)?;
            note(
                "metadata",
                Value::Object(old.metadata.clone()),
                Value::Object(metadata.clone()),
            );
            new.metadata = metadata;
        }
        if changes.is_empty() {
            return Ok(old.view(now));
        }
        let audit = NewAuditEntry {
            at: now,
            actor: actor.to_string(),
            action: AuditAction::KeyUpdated,
            key_id: Some(new.id.clone()),
            consumer_id: Some(new.consumer_id.clone()),
            detail: Value::Object(changes),
        };
        self.inner
            .store
            .update_key(&new, &audit)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => ServiceError::KeyNotFound(new.id.to_string()),
                e => e.into(),
            })?;
        self.inner.keyring.upsert_key(new.clone());
        self.publish(KeyEvent::KeyChanged { id: new.id.clone() })
            .await;
        tracing::info!(key_id = %new.id, consumer_id = %new.consumer_id, actor, "key updated");
        Ok(new.view(now))
    }
}

/// A key name: 1 to 200 printable characters.
pub(super) fn check_name(name: &str) -> Result<(), ServiceError> {
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(ServiceError::InvalidField {
            field: "name",
            message: "a key name is 1 to 200 printable characters".into(),
        });
    }
    Ok(())
}

/// Metadata: a JSON object of at most [`MAX_METADATA_BYTES`].
pub(super) fn check_metadata(m: &Map<String, Value>) -> Result<(), ServiceError> {
    let len = Value::Object(m.clone()).to_string().len();
    if len > MAX_METADATA_BYTES {
        return Err(ServiceError::InvalidField {
            field: "metadata",
            message: format!("{len} bytes of JSON; at most {MAX_METADATA_BYTES}"),
        });
    }
    Ok(())
}
