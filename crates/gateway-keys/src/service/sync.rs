//! The keyring kept in step with the store: changes announced on the
//! change feed, events from other nodes applied, full reloads.

use crate::feed::KeyEvent;
use crate::keyring::Snapshot;

use super::error::ServiceError;
use super::state::KeyService;

impl KeyService {
    pub(super) async fn publish(&self, ev: KeyEvent) {
        if let Err(e) = self.inner.feed.publish(ev.clone()).await {
            tracing::warn!(event = ev.as_str(), error = %e, "change feed publish failed; other nodes catch up when the feed retries or at their next reload");
        }
    }

    /// Reloads consumers, keys and quota counts from the store.
    pub async fn reload(&self) -> Result<(), ServiceError> {
        let consumers = self.inner.store.list_consumers().await?;
        let keys = self.inner.store.list_keys(None).await?;
        self.inner.keyring.replace(Snapshot::build(consumers, keys));
        let periods = self.inner.limits.current_periods();
        let usage = self.inner.store.quota_usage(&periods).await?;
        self.inner.limits.quotas().load(usage, &periods);
        Ok(())
    }

    /// Applies one change-feed event to the local keyring.
    pub async fn apply_event(&self, ev: &KeyEvent) -> Result<(), ServiceError> {
        match ev {
            KeyEvent::KeyChanged { id } | KeyEvent::KeyRevoked { id } => {
                if let Some(k) = self.inner.store.get_key(id).await? {
                    self.inner.keyring.upsert_key(k);
                }
            }
            KeyEvent::ConsumerChanged { id } => {
                if let Some(c) = self.inner.store.get_consumer(id).await? {
                    self.inner.keyring.upsert_consumer(c);
                }
            }
            KeyEvent::ReloadAll => self.reload().await?,
        }
        Ok(())
    }
}
