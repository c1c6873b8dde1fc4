//! The change feed: how key changes reach every node.
//!
//! Every mutation made through [`crate::KeyService`] is applied to the local
//! keyring at once (so a revocation holds for the very next request on that
//! node) and published as a [`KeyEvent`]. Every node subscribes and applies
//! events to its own keyring by re-reading the named record from the shared
//! store; events carry ids only, never hashes or secrets.
//!
//! [`InProcessFeed`] (a tokio broadcast channel) serves a single node and
//! tests. The scale-out work implements [`ChangeFeed`] over Redis pub/sub so
//! an event reaches every node within a second; the periodic full reload
//! covers anything a feed drops.

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::key::{ConsumerId, KeyId};

/// A change to apply to every keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KeyEvent {
    /// A key was created, rotated (its record changed) or otherwise updated.
    KeyChanged {
        /// Which key.
        id: KeyId,
    },
    /// A key was revoked.
    KeyRevoked {
        /// Which key.
        id: KeyId,
    },
    /// A consumer was created or changed.
    ConsumerChanged {
        /// Which consumer.
        id: ConsumerId,
    },
    /// Reload everything from the store (e.g. after a subscriber lagged).
    ReloadAll,
}

impl KeyEvent {
    /// Stable identifier.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::KeyChanged { .. } => "key_changed",
            Self::KeyRevoked { .. } => "key_revoked",
            Self::ConsumerChanged { .. } => "consumer_changed",
            Self::ReloadAll => "reload_all",
        }
    }
}

/// A feed failure.
#[derive(Debug, thiserror::Error)]
#[error("change feed: {0}")]
pub struct FeedError(pub String);

/// Distributes [`KeyEvent`]s to every node.
#[async_trait]
pub trait ChangeFeed: Send + Sync + 'static {
    /// Publishes an event to every subscriber (including this node's). An
    /// error means other nodes may learn of the change only at their next
    /// full reload; the local keyring is already updated.
    async fn publish(&self, event: KeyEvent) -> Result<(), FeedError>;

    /// A stream of events from now on. When the implementation cannot
    /// guarantee delivery (a subscriber fell behind, a reconnect), it yields
    /// [`KeyEvent::ReloadAll`] so the node resynchronises.
    fn subscribe(&self) -> BoxStream<'static, KeyEvent>;
}

/// A single-process feed over a tokio broadcast channel.
#[derive(Debug, Clone)]
pub struct InProcessFeed {
    tx: broadcast::Sender<KeyEvent>,
}

impl InProcessFeed {
    /// A feed buffering up to `capacity` events per slow subscriber.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }
}

impl Default for InProcessFeed {
    fn default() -> Self {
        Self::new(1024)
    }
}

#[async_trait]
impl ChangeFeed for InProcessFeed {
    async fn publish(&self, event: KeyEvent) -> Result<(), FeedError> {
        // No subscribers is not an error: there is nobody to tell.
        let _ = self.tx.send(event);
        Ok(())
    }

    fn subscribe(&self) -> BoxStream<'static, KeyEvent> {
        let rx = self.tx.subscribe();
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(ev) => Some((ev, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((KeyEvent::ReloadAll, rx)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn subscribers_receive_events_and_lag_turns_into_reload() {
        let feed = InProcessFeed::new(2);
        let mut sub = feed.subscribe();
        let id = KeyId::generate();
        feed.publish(KeyEvent::KeyRevoked { id: id.clone() })
            .await
            .unwrap();
        assert_eq!(sub.next().await, Some(KeyEvent::KeyRevoked { id }));
        for _ in 0..5 {
            feed.publish(KeyEvent::ReloadAll).await.unwrap();
        }
        let mut lagged = feed.subscribe();
        feed.publish(KeyEvent::ReloadAll).await.unwrap();
        assert_eq!(lagged.next().await, Some(KeyEvent::ReloadAll));
        // The first subscriber missed events and is told to reload.
        assert_eq!(sub.next().await, Some(KeyEvent::ReloadAll));
    }
}
