//! [`RedisKeyFeed`]: the key change feed across nodes.

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use gateway_keys::feed::{ChangeFeed, FeedError, KeyEvent};

use crate::bus::{BusMessage, RedisBus, PUBLISH_RETRY_WINDOW};
use crate::error::RedisError;
use crate::state::RedisState;

/// Bus name of the key feed (channel `{prefix}keys`).
pub const KEYS_CHANNEL: &str = "keys";

/// A [`ChangeFeed`] over [`RedisBus<KeyEvent>`] on channel `{prefix}keys`.
///
/// A lost subscription surfaces as [`KeyEvent::ReloadAll`] once it is back,
/// as the trait requires of a subscriber that may have missed events.
#[derive(Debug, Clone)]
pub struct RedisKeyFeed {
    bus: RedisBus<KeyEvent>,
}

impl RedisKeyFeed {
    /// The key feed over `state`.
    pub fn new(state: RedisState) -> Self {
        Self {
            bus: RedisBus::new(state, KEYS_CHANNEL),
        }
    }

    /// The underlying bus (e.g. to see event origins).
    pub fn bus(&self) -> &RedisBus<KeyEvent> {
        &self.bus
    }
}

#[async_trait]
impl ChangeFeed for RedisKeyFeed {
    /// One attempt inline; when it fails, the event is tried again in the
    /// background for [`PUBLISH_RETRY_WINDOW`] (a revocation must not wait
    /// for the next full reload because one `PUBLISH` failed), and the
    /// error is returned so the caller can log it.
    async fn publish(&self, event: KeyEvent) -> Result<(), FeedError> {
        let err = match self.bus.publish(&event).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if !matches!(err, RedisError::ShutDown) {
            let bus = self.bus.clone();
            tokio::spawn(async move {
                match bus.publish_retrying(&event, PUBLISH_RETRY_WINDOW).await {
                    Ok(()) => tracing::info!(
                        event = event.as_str(),
                        "change feed event published on retry"
                    ),
                    Err(e) => {
                        tracing::warn!(event = event.as_str(), error = %e, "change feed publish given up; other nodes catch up at their next reload")
                    }
                }
            });
        }
        Err(FeedError(err.to_string()))
    }

    fn subscribe(&self) -> BoxStream<'static, KeyEvent> {
        self.bus
            .subscribe()
            .map(|m| match m {
                BusMessage::Event { event, .. } => event,
                BusMessage::Resync => KeyEvent::ReloadAll,
            })
            .boxed()
    }
}
