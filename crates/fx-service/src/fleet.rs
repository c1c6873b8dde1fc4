//! Several `gatehouse fx serve` instances sharing one database and one Redis.
//!
//! The database holds every raw rate; each instance serves from its own
//! in-memory table. Redis (through `gateway-redis`) keeps those tables in
//! step and the providers from being fetched once per instance:
//!
//! - **Rates changed.** An instance that stores new rows (a scheduled fetch,
//!   `gatehouse fx import`, [`crate::RunningFx::ingest_bytes`]) publishes a
//!   [`RatesChanged`] on the bus `{redis_prefix}fx:rates`, naming the
//!   provider and the span of fixing dates it stored. Every other instance
//!   re-reads just that span from the database
//!   ([`fx::FxEngine::reload_range`]), merges it and swaps the table in
//!   atomically, so the cost follows what changed, not the history. Its own
//!   events are ignored. A [`BusMessage::Resync`] (the subscription was
//!   lost, events may have been missed) or an event without a span (from an
//!   older instance, or the bundled history) reloads everything
//!   ([`fx::FxEngine::reload`], the start-up load). Events are hints to
//!   re-read the database, never data.
//! - **One fetch per provider per interval.** Before a scheduled fetch an
//!   instance takes the lease `{redis_prefix}fx:lease:{provider}`
//!   (`SET NX PX`, half the interval); only the holder fetches, the others
//!   skip the tick and learn the result from the bus.
//! - **Availability first.** When Redis is unreachable every instance
//!   fetches on its own schedule (as a single instance does) and publishes
//!   nothing; when the bus comes back, the `Resync` reloads what was missed.
//!
//! The instances register in `{redis_prefix}fx:nodes`, not in the gateway's
//! node set, so they never count as gateway nodes (which would lower the
//! gateway's per-node fallback rate limits).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use futures::stream::BoxStream;
use futures::{FutureExt as _, StreamExt as _};
use fx::engine::IngestError;
use fx::store::IngestReport;
use fx::{Format, FxEngine};
use gateway_redis::{BusMessage, RedisBus, RedisConfig, RedisState};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use crate::config::FxServiceConfig;
use crate::health::HealthRegistry;

/// Bus name of rate changes (channel `{redis_prefix}fx:rates`).
pub const RATES_BUS: &str = "rates";
/// What the fx service appends to `redis_prefix`, keeping its keys and its
/// node set apart from the gateway's.
pub const FX_KEY_PREFIX: &str = "fx:";
/// Bound on Redis calls made by the fx service (publishes, leases). None is
/// on the request path, so this is looser than the gateway's 50 ms.
pub const FX_REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// First delay before retrying a failed reload; doubles up to
/// [`RELOAD_RETRY_MAX`].
pub const RELOAD_RETRY: Duration = Duration::from_millis(500);
/// Longest delay between reload retries while the database fails.
pub const RELOAD_RETRY_MAX: Duration = Duration::from_secs(30);

/// Published when an instance stored new rows: re-read the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatesChanged {
    /// Provider the rows were stored under.
    pub provider: String,
    /// Oldest fixing date in the ingested file: with `last_fixing`, the
    /// span a peer re-reads. `None` (absent on the wire, e.g. from an older
    /// instance) makes peers reload everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_fixing: Option<NaiveDate>,
    /// Newest fixing date in the ingested file.
    pub last_fixing: NaiveDate,
    /// Rows newly stored.
    pub rows: u64,
}

/// Outcome of asking for a provider's fetch lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// This instance holds it: fetch.
    Acquired,
    /// Another instance holds it: skip this tick.
    HeldElsewhere,
    /// Redis did not answer: fetch anyway (availability first).
    Unavailable,
}

impl Lease {
    /// Name for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Lease::Acquired => "acquired",
            Lease::HeldElsewhere => "held_elsewhere",
            Lease::Unavailable => "unavailable",
        }
    }

    /// Whether this instance should fetch.
    pub fn should_fetch(&self) -> bool {
        !matches!(self, Lease::HeldElsewhere)
    }
}

/// How long a fetch lease lasts for a provider fetched every `interval`:
/// half of it, so a holder that dies costs the fleet at most half a tick,
/// and a tick that drifts never finds its own previous lease still alive.
pub fn lease_ttl(interval: Duration) -> Duration {
    (interval / 2).max(Duration::from_millis(100))
}

/// This instance's membership of a fleet. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    state: RedisState,
    bus: RedisBus<RatesChanged>,
    client: redis::Client,
    /// Connection for leases, opened on first use and dropped after an
    /// error (the next lease reconnects).
    lease_conn: Arc<Mutex<Option<redis::aio::MultiplexedConnection>>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("state", &self.state)
            .field("channel", &self.bus.channel())
            .finish_non_exhaustive()
    }
}

// === impl Fleet ===

impl Fleet {
    /// Joins the fleet configured in `cfg`; `None` without `redis_url`.
    ///
    /// Fails only on an unusable URL. An unreachable Redis is not an error:
    /// the instance starts alone (fetching on its own) and joins when Redis
    /// answers.
    pub async fn connect(cfg: &FxServiceConfig) -> anyhow::Result<Option<Fleet>> {
        let Some(url) = &cfg.redis_url else {
            return Ok(None);
        };
        let rc = RedisConfig {
            url: url.clone(),
            prefix: format!("{}{FX_KEY_PREFIX}", cfg.redis_prefix),
            op_timeout: FX_REDIS_TIMEOUT,
            ..RedisConfig::default()
        };
        let client = redis::Client::open(url.as_str())
            .map_err(|e| anyhow::anyhow!("redis_url `{}` is not usable: {e}", rc.redacted_url()))?;
        let state = RedisState::connect(rc)
            .await
            .map_err(|e| anyhow::anyhow!("cannot use redis_url: {e}"))?;
        let bus = RedisBus::new(state.clone(), RATES_BUS);
        tracing::info!(
            node_id = state.node_id(),
            channel = bus.channel(),
            up = state.is_up(),
            "fx fleet: rates shared through Redis"
        );
        Ok(Some(Fleet {
            state,
            bus,
            client,
            lease_conn: Arc::new(Mutex::new(None)),
        }))
    }

    /// The Redis state (node id, health).
    pub fn state(&self) -> &RedisState {
        &self.state
    }

    /// This instance's node id (the `origin` of what it publishes).
    pub fn node_id(&self) -> &str {
        self.state.node_id()
    }

    /// The rates channel.
    pub fn channel(&self) -> &str {
        self.bus.channel()
    }

    /// Rate changes and resyncs from now on. Subscribe before loading the
    /// table so that nothing published during the load is missed.
    pub fn subscribe(&self) -> BoxStream<'static, BusMessage<RatesChanged>> {
        self.bus.subscribe()
    }

    /// Tells the other instances that `provider` has new rows. Failure is
    /// logged and returned: they catch up at their next reload.
    pub async fn announce(&self, event: &RatesChanged) -> Result<(), gateway_redis::RedisError> {
        let res = self.bus.publish(event).await;
        match &res {
            Ok(()) => tracing::debug!(
                provider = %event.provider,
                first_fixing = ?event.first_fixing,
                last_fixing = %event.last_fixing,
                rows = event.rows,
                "fx fleet: rates change announced"
            ),
            Err(e) => tracing::warn!(
                provider = %event.provider,
                error = %e,
                "fx fleet: could not announce new rates; other instances see them at their next reload"
            ),
        }
        res
    }

    /// Announces an ingestion if it stored anything.
    pub async fn announce_ingest(&self, provider: &str, report: &IngestReport) {
        let rows = report.inserted + report.corrected.len() as u64;
        if rows == 0 {
            return;
        }
        let _ = self
            .announce(&RatesChanged {
                provider: provider.to_string(),
                first_fixing: Some(report.first_date),
                last_fixing: report.last_date,
                rows,
            })
            .await;
    }

    /// Asks for the fetch lease of `provider` for `ttl`.
    pub async fn try_lease(&self, provider: &str, ttl: Duration) -> Lease {
        if self.state.is_shut_down() || !self.state.is_up() {
            return Lease::Unavailable;
        }
        let key = self.state.key(&format!("lease:{provider}"));
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let attempt = async {
            let mut conn = self.lease_connection().await?;
            redis::cmd("SET")
                .arg(&key)
                .arg(self.node_id())
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async::<Option<String>>(&mut conn)
                .await
        };
        match tokio::time::timeout(FX_REDIS_TIMEOUT, attempt).await {
            Ok(Ok(Some(_))) => Lease::Acquired,
            Ok(Ok(None)) => Lease::HeldElsewhere,
            Ok(Err(e)) => {
                tracing::debug!(provider, error = %e, "fx fleet: lease failed; fetching locally");
                *self.lease_conn.lock().await = None;
                Lease::Unavailable
            }
            Err(_) => {
                tracing::debug!(provider, "fx fleet: lease timed out; fetching locally");
                *self.lease_conn.lock().await = None;
                Lease::Unavailable
            }
        }
    }

    async fn lease_connection(
        &self,
    ) -> Result<redis::aio::MultiplexedConnection, redis::RedisError> {
        let mut slot = self.lease_conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self.client.get_multiplexed_async_connection().await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Starts the task that reloads `engine` when another instance announces
    /// new rates or the bus resyncs, until `shutdown` turns true. Announcements
    /// that arrive during a reload are served by one more reload; those
    /// already queued are served by the same one: only the
    /// announced spans when every message names one, everything otherwise.
    pub fn spawn_follower(
        &self,
        mut events: BoxStream<'static, BusMessage<RatesChanged>>,
        engine: Arc<FxEngine>,
        health: Arc<HealthRegistry>,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let me = self.node_id().to_string();
        tokio::spawn(async move {
            loop {
                let first = tokio::select! {
                    m = events.next() => m,
                    _ = shutdown.changed() => return,
                };
                let Some(first) = first else { return };
                let mut pending = Pending::default();
                pending.add(relevance(&me, first, &health, &engine));
                // Everything already queued is served by the same reload.
                while let Some(Some(m)) = events.next().now_or_never() {
                    pending.add(relevance(&me, m, &health, &engine));
                }
                let mut delay = RELOAD_RETRY;
                while !pending.is_empty() {
                    if let Err(e) = pending.reload(&engine).await {
                        tracing::warn!(error = %e, retry_in = ?delay, "fx fleet: reload failed");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = shutdown.changed() => return,
                        }
                        delay = (delay * 2).min(RELOAD_RETRY_MAX);
                    }
                }
            }
        })
    }

    /// Leaves the fleet: stops the heartbeat and the subscription.
    pub fn shutdown(&self) {
        self.state.shutdown();
    }
}

/// What one bus message calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wanted {
    /// Nothing: it is this instance's own announcement.
    Nothing,
    /// Re-read `provider`'s rows fixed in `first..=last`.
    Range {
        provider: String,
        first: NaiveDate,
        last: NaiveDate,
    },
    /// Re-read everything, for this reason.
    Full(&'static str),
}

/// What a bus message calls for. A peer's announcement also updates that
/// provider's health here, since this instance may not have fetched it
/// itself.
fn relevance(
    me: &str,
    msg: BusMessage<RatesChanged>,
    health: &HealthRegistry,
    engine: &FxEngine,
) -> Wanted {
    match msg {
        BusMessage::Event { origin, .. } if origin == me => Wanted::Nothing,
        BusMessage::Event { origin, event } => {
            tracing::debug!(%origin, provider = %event.provider, first_fixing = ?event.first_fixing, last_fixing = %event.last_fixing, rows = event.rows, "fx fleet: peer stored new rates");
            health.record_peer_fetch(&event.provider, event.last_fixing, engine.clock().now());
            wanted(event)
        }
        BusMessage::Resync => Wanted::Full("resync"),
    }
}

/// What a peer's announcement calls for.
fn wanted(event: RatesChanged) -> Wanted {
    match event.first_fixing {
        Some(first) => Wanted::Range {
            first: first.min(event.last_fixing),
            last: first.max(event.last_fixing),
            provider: event.provider,
        },
        None => Wanted::Full("peer_stored_rates_without_span"),
    }
}

/// The reload the queued bus messages call for: the union span of the
/// announced fixing dates per provider, or everything as soon as one
/// message gives no span (a `Resync`, an event without `first_fixing`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Pending {
    /// A full reload is wanted, and why.
    full: Option<&'static str>,
    /// Per provider, `(first, last)` fixing dates to re-read.
    ranges: BTreeMap<String, (NaiveDate, NaiveDate)>,
}

impl Pending {
    fn add(&mut self, w: Wanted) {
        match w {
            Wanted::Nothing => {}
            Wanted::Full(why) => {
                self.full.get_or_insert(why);
            }
            Wanted::Range {
                provider,
                first,
                last,
            } => {
                let span = self.ranges.entry(provider).or_insert((first, last));
                span.0 = span.0.min(first);
                span.1 = span.1.max(last);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.full.is_none() && self.ranges.is_empty()
    }

    /// Runs the reloads still pending; each one done is removed, so a
    /// retry after an error does only what is left.
    async fn reload(&mut self, engine: &FxEngine) -> Result<(), fx::FxError> {
        if let Some(why) = self.full {
            let r = engine.reload().await?;
            tracing::info!(
                reason = why,
                days_changed = r.days_changed,
                rows = r.rows,
                version = r.version,
                millis = r.millis as u64,
                "fx fleet: rates reloaded from the database"
            );
            // Everything was read: the spans are covered.
            *self = Pending::default();
            return Ok(());
        }
        while let Some((provider, (first, last))) = self.ranges.pop_first() {
            match engine.reload_range(&provider, first, last).await {
                Ok(r) => tracing::info!(
                    reason = "peer_stored_rates",
                    provider,
                    %first,
                    %last,
                    days_changed = r.days_changed,
                    rows = r.rows,
                    version = r.version,
                    millis = r.millis as u64,
                    "fx fleet: announced rates reloaded from the database"
                ),
                Err(e) => {
                    self.ranges.insert(provider, (first, last));
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// Ingests a provider file and, in a fleet, tells the other instances.
/// Used by `gatehouse fx import` and [`crate::RunningFx::ingest_bytes`].
pub async fn ingest_and_announce(
    engine: &FxEngine,
    fleet: Option<&Fleet>,
    provider: &str,
    format: Option<Format>,
    bytes: &[u8],
) -> Result<IngestReport, IngestError> {
    let report = engine.ingest_bytes(provider, format, bytes).await?;
    if let Some(f) = fleet {
        f.announce_ingest(provider, &report).await;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn events_serialise_compactly() {
        let e = RatesChanged {
            provider: "ecb".into(),
            first_fixing: Some(day("2026-10-29")),
            last_fixing: day("2026-10-30"),
            rows: 29,
        };
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(
            s,
            r#"{"provider":"ecb","first_fixing":"2026-10-29","last_fixing":"2026-10-30","rows":29}"#
        );
        assert_eq!(serde_json::from_str::<RatesChanged>(&s).unwrap(), e);

        // Without a span the field is left out, and a message from an
        // instance that predates it still parses (and means "reload all").
        let old = r#"{"provider":"ecb","last_fixing":"2026-10-30","rows":29}"#;
        let e = RatesChanged {
            first_fixing: None,
            ..e
        };
        assert_eq!(serde_json::to_string(&e).unwrap(), old);
        assert_eq!(serde_json::from_str::<RatesChanged>(old).unwrap(), e);
        assert!(matches!(wanted(e), Wanted::Full(_)));
    }

    fn event(provider: &str, first: Option<&str>, last: &str) -> Wanted {
        wanted(RatesChanged {
            provider: provider.into(),
            first_fixing: first.map(day),
            last_fixing: day(last),
            rows: 1,
        })
    }

    #[test]
    fn queued_events_reload_the_union_of_their_spans() {
        let mut p = Pending::default();
        assert!(p.is_empty());
        p.add(Wanted::Nothing);
        assert!(p.is_empty());
        p.add(event("ecb", Some("2026-10-30"), "2026-10-30"));
        p.add(event("oxr", Some("2026-11-02"), "2026-11-02"));
        p.add(event("ecb", Some("2026-11-02"), "2026-11-03"));
        p.add(event("ecb", Some("2026-10-27"), "2026-10-28"));
        assert_eq!(p.full, None);
        assert_eq!(
            p.ranges.into_iter().collect::<Vec<_>>(),
            vec![
                ("ecb".to_string(), (day("2026-10-27"), day("2026-11-03"))),
                ("oxr".to_string(), (day("2026-11-02"), day("2026-11-02"))),
            ]
        );

        // One event without a span, or a resync, makes it a full reload.
        let mut p = Pending::default();
        p.add(event("ecb", Some("2026-10-30"), "2026-10-30"));
        p.add(event("ecb", None, "2026-10-30"));
        assert!(p.full.is_some());
        let mut p = Pending::default();
        p.add(Wanted::Full("resync"));
        p.add(event("ecb", Some("2026-10-30"), "2026-10-30"));
        assert_eq!(p.full, Some("resync"));
    }

    #[test]
    fn lease_is_half_the_interval() {
        assert_eq!(
            lease_ttl(Duration::from_secs(3600)),
            Duration::from_secs(1800)
        );
        assert_eq!(
            lease_ttl(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        assert!(Lease::Unavailable.should_fetch());
        assert!(!Lease::HeldElsewhere.should_fetch());
    }
}
