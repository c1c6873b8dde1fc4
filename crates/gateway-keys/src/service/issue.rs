//! Issuing a key: checked, stored with its audit entry, live on this node
//! at once and announced to the others. The secret is returned once.

use serde_json::json;

use crate::feed::KeyEvent;
use crate::key::{ApiKey, ConsumerId, KeyId};
use crate::model::{AuditAction, KeyRecord, NewAuditEntry};

use super::error::ServiceError;
use super::requests::{CreateConsumer, CreateKey, IssuedKey};
use super::state::KeyService;

impl KeyService {
    /// Creates a key; the secret is in the result and nowhere else.
    pub async fn create(&self, req: CreateKey, actor: &str) -> Result<IssuedKey, ServiceError> {
        let now = self.inner.clock.now();
        let scopes = self.parse_scopes(&req.scopes)?;
        self.check_plan(&req.plan)?;
        let environment = req
            .environment
            .clone()
            .unwrap_or_else(|| self.inner.config.load().environment.clone());
        let secret = ApiKey::generate(&environment).map_err(|_| ServiceError::InvalidField {
            field: "environment",
            message: format!("`{environment}` is not 1-16 characters of a-z and 0-9"),
        })?;
        let expires_at = match req
            .expires_in
            .or(self.inner.config.load().rotation.rotate_every)
        {
            Some(d) => Some(self.expiry_after(now, d, "expires_in")?),
            None => None,
        };
        let name = req.name.clone().unwrap_or_else(|| "default".into());
        if name.len() > 200 || name.chars().any(char::is_control) {
            return Err(ServiceError::InvalidField {
                field: "name",
                message: "a key name is at most 200 printable characters".into(),
            });
        }
        super::update::check_metadata(&req.metadata)?;
        if req.owner.trim().is_empty() {
            return Err(ServiceError::InvalidField {
                field: "owner",
                message: "name the consumer (id or name) that owns the key".into(),
            });
        }
        let consumer = match self.consumer(req.owner.trim()).await {
            Ok(c) => c,
            Err(ServiceError::ConsumerNotFound(_)) if req.owner.parse::<ConsumerId>().is_err() => {
                self.create_consumer(
                    CreateConsumer {
                        name: req.owner.clone(),
                        plan: req.plan.clone(),
                        group: req.group.clone(),
                    },
                    actor,
                )
                .await?
            }
            Err(e) => return Err(e),
        };
        let record = KeyRecord {
            id: KeyId::generate(),
            consumer_id: consumer.id.clone(),
            name,
            environment,
            scopes,
            plan: req.plan.filter(|p| consumer.plan.as_ref() != Some(p)),
            created_at: now,
            created_by: actor.to_string(),
            expires_at,
            revoked_at: None,
            revoked_reason: None,
            last_used_at: None,
            predecessor: None,
            successor: None,
            grace_until: None,
            warned_at: None,
            expiry_noted_at: None,
            metadata: req.metadata.clone(),
            hash: secret.hash(),
        };
        let audit = NewAuditEntry {
            at: now,
            actor: actor.to_string(),
            action: AuditAction::KeyCreated,
            key_id: Some(record.id.clone()),
            consumer_id: Some(consumer.id.clone()),
            detail: json!({
                "name": record.name,
                "scopes": record.scopes,
                "expires_at": record.expires_at,
                "plan": record.plan,
            }),
        };
        self.inner.store.insert_key(&record, &audit).await?;
        self.inner.keyring.upsert_key(record.clone());
        self.publish(KeyEvent::KeyChanged {
            id: record.id.clone(),
        })
        .await;
        tracing::info!(key_id = %record.id, consumer_id = %consumer.id, actor, "key created");
        Ok(IssuedKey {
            key: record.view(now),
            secret,
            previous: None,
        })
    }
}
