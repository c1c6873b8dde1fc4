//! Reading keys and the audit log, with uses not yet flushed shown.

use crate::key::KeyId;
use crate::model::{AuditEntry, KeyRecord, KeyStatus, KeyView};
use crate::store::AuditQuery;

use super::error::ServiceError;
use super::requests::KeyFilter;
use super::state::KeyService;

impl KeyService {
    pub(super) async fn get_record(&self, id: &str) -> Result<KeyRecord, ServiceError> {
        let kid: KeyId = id
            .parse()
            .map_err(|_| ServiceError::KeyNotFound(id.to_string()))?;
        self.inner
            .store
            .get_key(&kid)
            .await?
            .ok_or_else(|| ServiceError::KeyNotFound(id.to_string()))
    }

    /// One key's metadata and status.
    pub async fn get(&self, id: &str) -> Result<KeyView, ServiceError> {
        let now = self.inner.clock.now();
        let mut rec = self.get_record(id).await?;
        // Show uses not yet flushed, so `last_used_at` is current.
        if let Some(n) = self.inner.uses.get(&rec.id) {
            if rec.last_used_at.is_none_or(|t| t < n.at) {
                rec.last_used_at = Some(n.at);
            }
        }
        let mut view = rec.view(now);
        view.consumer_name = self
            .inner
            .store
            .get_consumer(&rec.consumer_id)
            .await?
            .map(|c| c.name);
        Ok(view)
    }

    /// A key's requests and refusals per hour over the last day, on this
    /// node.
    pub async fn usage(&self, id: &str) -> Result<crate::usage::KeyUsageReport, ServiceError> {
        let rec = self.get_record(id).await?;
        let now = self.inner.clock.now();
        let mut report = self
            .inner
            .usage
            .report(&rec.id, u64::try_from(now.timestamp()).unwrap_or(0));
        if rec.status(now) == KeyStatus::Retiring {
            report.grace_clients = Some(self.inner.grace_clients.report(&rec.id));
        }
        Ok(report)
    }

    /// Keys, optionally filtered.
    pub async fn list(&self, filter: &KeyFilter) -> Result<Vec<KeyView>, ServiceError> {
        let now = self.inner.clock.now();
        let consumer = match &filter.consumer {
            Some(c) => Some(self.consumer(c).await?.id),
            None => None,
        };
        let keys = self.inner.store.list_keys(consumer.as_ref()).await?;
        // Names by id, so each key shows whose it is.
        let names: std::collections::HashMap<_, _> = self
            .inner
            .store
            .list_consumers()
            .await?
            .into_iter()
            .map(|c| (c.id, c.name))
            .collect();
        Ok(keys
            .into_iter()
            .map(|mut k| {
                if let Some(n) = self.inner.uses.get(&k.id) {
                    if k.last_used_at.is_none_or(|t| t < n.at) {
                        k.last_used_at = Some(n.at);
                    }
                }
                let mut view = k.view(now);
                view.consumer_name = names.get(&k.consumer_id).cloned();
                view
            })
            .filter(|v| filter.status.is_none_or(|s| v.status == s))
            .collect())
    }

    /// Audit entries, newest first; of one key when `key` is given.
    pub async fn audit(
        &self,
        key: Option<&str>,
        limit: u32,
        before_id: Option<i64>,
    ) -> Result<Vec<AuditEntry>, ServiceError> {
        let key_id = match key {
            Some(k) => Some(self.get_record(k).await?.id),
            None => None,
        };
        Ok(self
            .inner
            .store
            .audit(&AuditQuery {
                key_id,
                consumer_id: None,
                before_id,
                limit,
            })
            .await?)
    }
}
