//! [`RedisBus`]: typed fan-out of events to every node over Redis pub/sub.
//!
//! Redis pub/sub is **at most once**: a message published while a
//! subscriber is disconnected is lost for it. The bus does not hide that; it
//! makes it visible. After a subscription is lost and re-established the
//! stream yields [`BusMessage::Resync`], and the consumer re-reads whatever
//! state the events were about (the key feed maps it to
//! `KeyEvent::ReloadAll`). Events are therefore hints to re-read a source
//! of truth, never the truth itself.
//!
//! Wire format: a JSON envelope `{"origin": "<node id>", "event": <T>}` on
//! channel `{prefix}{name}`. A message that does not decode is logged,
//! counted (`gatehouse_bus_malformed_total`) and skipped.

use std::marker::PhantomData;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::RedisError;
use crate::state::{record_error, record_latency, RedisState, CONNECT_TIMEOUT};

/// First delay before re-subscribing after a loss; doubles up to
/// [`RESUBSCRIBE_MAX_BACKOFF`].
pub const RESUBSCRIBE_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay between re-subscribe attempts.
pub const RESUBSCRIBE_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long a failed publish of a purge or key change is tried again
/// (`RedisBus::publish_retrying`) before the nodes are left to catch up
/// at their next resync or full reload.
pub const PUBLISH_RETRY_WINDOW: Duration = Duration::from_secs(60);

/// Messages buffered per subscriber. When the consumer falls further behind,
/// reading from Redis pauses; Redis then buffers, and past its pub/sub
/// output limit disconnects the subscriber, which turns into a `Resync`.
const SUBSCRIBER_BUFFER: usize = 1024;

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusMessage<T> {
    /// An event published by some node (possibly this one).
    Event {
        /// The publishing node's id.
        origin: String,
        /// The event.
        event: T,
    },
    /// Events may have been missed (the subscription was lost and is back):
    /// re-read the state the events describe.
    Resync,
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    origin: &'a str,
    event: &'a T,
}

#[derive(Deserialize)]
struct EnvelopeIn<T> {
    origin: String,
    event: T,
}

/// A typed pub/sub channel `{prefix}{name}` shared by every node.
pub struct RedisBus<T> {
    state: RedisState,
    channel: String,
    _event: PhantomData<fn() -> T>,
}

impl<T> Clone for RedisBus<T> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            channel: self.channel.clone(),
            _event: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for RedisBus<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl<T> RedisBus<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    /// The bus `name` (channel `{prefix}{name}`) over `state`.
    pub fn new(state: RedisState, name: &str) -> Self {
        Self {
            channel: state.key(name),
            state,
            _event: PhantomData,
        }
    }

    /// The full channel name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Publishes `event` to every current subscriber (this node's included),
    /// bounded by `op_timeout`. An error means subscribers may never see the
    /// event; they catch up at their next resync or full reload.
    pub async fn publish(&self, event: &T) -> Result<(), RedisError> {
        let payload = serde_json::to_string(&EnvelopeOut {
            origin: self.state.node_id(),
            event,
        })?;
        let channel = self.channel.as_str();
        let limit = self.state.config().op_timeout;
        let res = self
            .state
            .call("publish", limit, |mut c| async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await;
        if let Err(e) = &res {
            tracing::debug!(channel = %self.channel, error = %e, "bus publish failed");
        }
        res.map(|_| ())
    }

    /// [`Self::publish`], tried again (backoff 100 ms doubling to 2 s) until
    /// it succeeds, the state shuts down, or `within` has passed; returns
    /// the last error. A subscriber that kept its subscription through a
    /// failed publish gets no resync, so without a retry it would never
    /// see the event. Receivers must not depend on event order: a retried
    /// event can arrive after a later one.
    pub async fn publish_retrying(&self, event: &T, within: Duration) -> Result<(), RedisError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut backoff = RESUBSCRIBE_BACKOFF;
        loop {
            match self.publish(event).await {
                Ok(()) => return Ok(()),
                Err(e @ RedisError::ShutDown) => return Err(e),
                Err(e) if tokio::time::Instant::now() + backoff >= deadline => return Err(e),
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RESUBSCRIBE_MAX_BACKOFF);
                }
            }
        }
    }

    /// Events from now on, on a dedicated pub/sub connection that is
    /// re-established forever (backoff 100 ms doubling to 2 s), with a
    /// [`BusMessage::Resync`] after each re-subscription that follows a
    /// loss, including a first subscription that did not succeed at the
    /// first attempt. The stream ends only when the state shuts down (or
    /// the last handle to it is dropped).
    ///
    /// The subscription is made in the background: an event published
    /// right after this call returns may be missed (as with any pub/sub).
    pub fn subscribe(&self) -> BoxStream<'static, BusMessage<T>> {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        let worker = Subscriber {
            client: self.state.client().clone(),
            channel: self.channel.clone(),
            token: self.state.token().clone(),
            tx,
        };
        self.state.runtime().spawn(worker.run());
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
            .boxed()
    }
}

/// Decodes one payload; `None` (logged) when malformed.
fn decode<T: DeserializeOwned>(channel: &str, payload: &[u8]) -> Option<BusMessage<T>> {
    match serde_json::from_slice::<EnvelopeIn<T>>(payload) {
        Ok(env) => Some(BusMessage::Event {
            origin: env.origin,
            event: env.event,
        }),
        Err(e) => {
            metrics::counter!("gatehouse_bus_malformed_total").increment(1);
            tracing::warn!(
                channel,
                error = %e,
                bytes = payload.len(),
                "skipping a malformed bus message"
            );
            None
        }
    }
}

struct Subscriber<T> {
    client: redis::Client,
    channel: String,
    token: CancellationToken,
    tx: mpsc::Sender<BusMessage<T>>,
}

/// Why a subscription's message loop ended.
enum End {
    /// Shut down or nobody listens any more: stop for good.
    Stop,
    /// The connection was lost: re-subscribe.
    Lost,
}

impl<T: DeserializeOwned + Send + 'static> Subscriber<T> {
    async fn run(self) {
        let mut missed = false;
        let mut backoff = RESUBSCRIBE_BACKOFF;
        loop {
            let attempt = tokio::select! {
                _ = self.token.cancelled() => return,
                _ = self.tx.closed() => return,
                r = self.open() => r,
            };
            match attempt {
                Ok(stream) => {
                    backoff = RESUBSCRIBE_BACKOFF;
                    if missed {
                        tracing::info!(channel = %self.channel, "bus re-subscribed; asking for a resync");
                        metrics::counter!("gatehouse_bus_resync_total").increment(1);
                        if self.tx.send(BusMessage::Resync).await.is_err() {
                            return;
                        }
                    }
                    match self.pump(stream).await {
                        End::Stop => return,
                        End::Lost => {
                            tracing::warn!(channel = %self.channel, "bus subscription lost; re-subscribing");
                            missed = true;
                            // Reconnect at once: a dropped connection is
                            // usually a restart or a cut, and the first
                            // attempt is cheap. Backoff applies to failures.
                            continue;
                        }
                    }
                }
                Err(e) => {
                    if !missed {
                        tracing::warn!(channel = %self.channel, error = %e, "bus subscription failed; retrying");
                    } else {
                        tracing::debug!(channel = %self.channel, error = %e, "bus re-subscribe failed");
                    }
                    missed = true;
                    tokio::select! {
                        _ = self.token.cancelled() => return,
                        _ = self.tx.closed() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(RESUBSCRIBE_MAX_BACKOFF);
                }
            }
        }
    }

    /// Connects and subscribes, bounded by the connect timeout.
    async fn open(&self) -> Result<redis::aio::PubSubStream, RedisError> {
        let start = std::time::Instant::now();
        let res = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(&self.channel).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        })
        .await;
        record_latency("subscribe", start.elapsed());
        match res {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(source)) => {
                record_error("subscribe");
                Err(RedisError::Command {
                    op: "subscribe",
                    source,
                })
            }
            Err(_) => {
                record_error("subscribe");
                Err(RedisError::Timeout {
                    op: "subscribe",
                    after: CONNECT_TIMEOUT,
                })
            }
        }
    }

    /// Forwards messages until the connection ends or nobody listens.
    async fn pump(&self, mut stream: redis::aio::PubSubStream) -> End {
        loop {
            let msg = tokio::select! {
                _ = self.token.cancelled() => return End::Stop,
                _ = self.tx.closed() => return End::Stop,
                m = stream.next() => m,
            };
            let Some(msg) = msg else { return End::Lost };
            let Some(decoded) = decode::<T>(&self.channel, msg.get_payload_bytes()) else {
                continue;
            };
            let sent = tokio::select! {
                _ = self.token.cancelled() => return End::Stop,
                r = self.tx.send(decoded) => r,
            };
            if sent.is_err() {
                return End::Stop;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_roundtrip_and_malformed_payloads() {
        let out = serde_json::to_string(&EnvelopeOut {
            origin: "n1",
            event: &vec![1, 2],
        })
        .unwrap();
        assert_eq!(out, r#"{"origin":"n1","event":[1,2]}"#);
        assert_eq!(
            decode::<Vec<i32>>("c", out.as_bytes()),
            Some(BusMessage::Event {
                origin: "n1".into(),
                event: vec![1, 2]
            })
        );
        for bad in [
            &b"not json"[..],
            br#"{"origin":"n1"}"#,
            br#"{"origin":"n1","event":"x"}"#,
            b"\xff\xfe",
            b"",
        ] {
            assert_eq!(decode::<Vec<i32>>("c", bad), None);
        }
    }
}
