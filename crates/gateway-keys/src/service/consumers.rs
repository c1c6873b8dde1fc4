//! Consumers: looked up by id or name, listed, created.

use serde_json::json;

use crate::feed::KeyEvent;
use crate::key::ConsumerId;
use crate::model::{AuditAction, Consumer, NewAuditEntry};
use crate::store::StoreError;

use super::error::ServiceError;
use super::requests::CreateConsumer;
use super::state::KeyService;

impl KeyService {
    /// Resolves a consumer by id or name.
    pub async fn consumer(&self, id_or_name: &str) -> Result<Consumer, ServiceError> {
        let found = match id_or_name.parse::<ConsumerId>() {
            Ok(id) => self.inner.store.get_consumer(&id).await?,
            Err(_) => self.inner.store.find_consumer_by_name(id_or_name).await?,
        };
        found.ok_or_else(|| ServiceError::ConsumerNotFound(id_or_name.to_string()))
    }

    /// Lists consumers.
    pub async fn consumers(&self) -> Result<Vec<Consumer>, ServiceError> {
        Ok(self.inner.store.list_consumers().await?)
    }

    /// Creates a consumer.
    pub async fn create_consumer(
        &self,
        req: CreateConsumer,
        actor: &str,
    ) -> Result<Consumer, ServiceError> {
        let name = req.name.trim();
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(ServiceError::InvalidField {
                field: "name",
                message: "a consumer name is 1-200 printable characters".into(),
            });
        }
        if name.parse::<ConsumerId>().is_ok() {
            return Err(ServiceError::InvalidField {
                field: "name",
                message: "a consumer name must not look like a consumer id".into(),
            });
        }
        self.check_plan(&req.plan)?;
        let c = Consumer {
            id: ConsumerId::generate(),
            name: name.to_string(),
            plan: req.plan,
            group: req.group.filter(|g| !g.is_empty()),
            created_at: self.inner.clock.now(),
        };
        let audit = NewAuditEntry {
            at: c.created_at,
            actor: actor.to_string(),
            action: AuditAction::ConsumerCreated,
            key_id: None,
            consumer_id: Some(c.id.clone()),
            detail: json!({ "name": c.name, "plan": c.plan, "group": c.group }),
        };
        self.inner
            .store
            .insert_consumer(&c, &audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ServiceError::ConsumerExists(c.name.clone()),
                e => e.into(),
            })?;
        self.inner.keyring.upsert_consumer(c.clone());
        self.publish(KeyEvent::ConsumerChanged { id: c.id.clone() })
            .await;
        tracing::info!(consumer_id = %c.id, consumer = %c.name, actor, "consumer created");
        Ok(c)
    }
}
