//! [`RedisKeyFeed`]: the key change feed across nodes.

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use gateway_keys::feed::{ChangeFeed, FeedError, KeyEvent};

use crate::bus::{BusMessage, RedisBus};
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
    async fn publish(&self, event: KeyEvent) -> Result<(), FeedError> {
        self.bus
            .publish(&event)
            .await
            .map_err(|e| FeedError(e.to_string()))
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
