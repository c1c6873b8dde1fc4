//! The stores a node shares with its fleet, and how it copes without them.
//!
//! - The **database** (SQLite embedded, PostgreSQL for a fleet) holds keys,
//!   audit, dark-launch statistics. Nothing on the request path reads it:
//!   keys verify from the in-memory keyring, so a database outage only
//!   fails admin writes (503 after `storage.database_timeout`).
//! - **Redis** (optional) carries rate-limit state, key changes and cache
//!   purges between nodes. Without it a node limits locally at its share of
//!   each limit and keeps serving; see `docs/deployment.md`.
//!
//! [`Stores`] probes both once a second for `/readyz` and the
//! `gatehouse_store_*` metrics, and runs the subscriber that applies other
//! nodes' cache purges.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use gateway_cache::{HttpCache, Purge, PurgeFanout};
use gateway_config::StorageConfig;
use gateway_keys::store::KeyStore;
use gateway_redis::{BusMessage, RedisBus, RedisConfig, RedisState};
use tokio::task::JoinHandle;

const PROBE_INTERVAL: Duration = Duration::from_secs(1);
const PURGE_CHANNEL: &str = "cache-purges";

/// The stores' state as `/readyz` shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StoresReport {
    /// The database (keys, audit, dark-launch statistics).
    pub database: DatabaseReport,
    /// Redis, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisReport>,
}

/// The database's last probe.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DatabaseReport {
    /// Whether it answered.
    pub up: bool,
    /// How long it took to answer, in milliseconds.
    pub latency_ms: f64,
}

/// Redis's last probe and the fleet it sees.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RedisReport {
    /// Whether it answered.
    pub up: bool,
    /// Gateway nodes in the fleet (at least this one).
    pub nodes: u64,
    /// This node's id in the fleet.
    pub node_id: String,
}

/// Health of the shared stores and the tasks that follow them. Cheap to clone.
#[derive(Clone)]
pub struct Stores {
    inner: Arc<Inner>,
}

struct Inner {
    database: Arc<dyn KeyStore>,
    database_timeout: Duration,
    database_up: AtomicBool,
    database_latency_us: AtomicU64,
    redis: Option<RedisState>,
    tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

/// Connects to Redis when `storage.redis_url` is set. A Redis that is down
/// at start is not fatal: the node starts on local limits and joins the
/// fleet's shared state when Redis comes up.
pub async fn connect_redis(storage: &StorageConfig) -> anyhow::Result<Option<RedisState>> {
    let Some(url) = &storage.redis_url else {
        return Ok(None);
    };
    let cfg = RedisConfig {
        url: url.clone(),
        prefix: storage.redis_prefix.clone(),
        op_timeout: storage.redis_timeout,
        ..RedisConfig::default()
    };
    // The error already hides the URL's password.
    let state = RedisState::connect(cfg)
        .await
        .map_err(|e| anyhow::anyhow!("storage.redis_url: {e}"))?;
    tracing::info!(node = %state.node_id(), "sharing hot state through Redis");
    Ok(Some(state))
}

impl Stores {
    /// Starts probing the database (through the key store) and Redis.
    pub fn start(
        database: Arc<dyn KeyStore>,
        database_timeout: Duration,
        redis: Option<RedisState>,
    ) -> Stores {
        let stores = Stores {
            inner: Arc::new(Inner {
                database,
                database_timeout,
                database_up: AtomicBool::new(true),
                database_latency_us: AtomicU64::new(0),
                redis,
                tasks: parking_lot::Mutex::new(Vec::new()),
            }),
        };
        let probe = stores.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                probe.probe_database().await;
            }
        });
        stores.inner.tasks.lock().push(task);
        stores
    }

    async fn probe_database(&self) {
        let inner = &self.inner;
        let start = Instant::now();
        let result = tokio::time::timeout(inner.database_timeout, inner.database.ping()).await;
        let took = start.elapsed();
        metrics::histogram!("gatehouse_store_latency_seconds", "store" => "database", "op" => "ping")
            .record(took.as_secs_f64());
        let up = matches!(result, Ok(Ok(())));
        if !up {
            metrics::counter!("gatehouse_store_errors_total", "store" => "database", "op" => "ping")
                .increment(1);
        }
        let was_up = inner.database_up.swap(up, Ordering::AcqRel);
        inner
            .database_latency_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
        metrics::gauge!("gatehouse_store_up", "store" => "database").set(if up {
            1.0
        } else {
            0.0
        });
        match (was_up, up, result) {
            (true, false, Ok(Err(e))) => {
                tracing::warn!(error = %e, "database unreachable: admin writes fail with 503, traffic keeps flowing")
            }
            (true, false, _) => {
                tracing::warn!(timeout = ?inner.database_timeout, "database not answering: admin writes fail with 503, traffic keeps flowing")
            }
            (false, true, _) => tracing::info!("database reachable again"),
            _ => {}
        }
    }

    /// Shares cache purges with the fleet: purges made through this node's
    /// admin API are published, other nodes' purges are applied here, and
    /// after a gap in the feed every object is marked stale (a purge may
    /// have been missed).
    pub fn share_purges(&self, cache: &HttpCache) {
        let Some(redis) = &self.inner.redis else {
            return;
        };
        let bus = RedisBus::<Purge>::new(redis.clone(), PURGE_CHANNEL);
        cache.set_fanout(Arc::new(RedisPurges { bus: bus.clone() }));
        let node = redis.node_id().to_string();
        let cache = cache.clone();
        let task = tokio::spawn(async move {
            let mut messages = bus.subscribe();
            while let Some(msg) = messages.next().await {
                match msg {
                    // This node applied its own purge before publishing.
                    BusMessage::Event { origin, .. } if origin == node => {}
                    BusMessage::Event { origin, event } => match cache.purge(&event) {
                        Ok(r) => {
                            tracing::debug!(from = %origin, purged = r.purged, "applied a fleet purge")
                        }
                        Err(e) => {
                            tracing::warn!(from = %origin, error = %e, "ignored an invalid fleet purge")
                        }
                    },
                    BusMessage::Resync => {
                        cache.mark_all_stale();
                    }
                }
            }
        });
        self.inner.tasks.lock().push(task);
    }

    /// Redis, when configured.
    pub fn redis(&self) -> Option<&RedisState> {
        self.inner.redis.as_ref()
    }

    /// Whether the last database probe succeeded.
    pub fn database_up(&self) -> bool {
        self.inner.database_up.load(Ordering::Acquire)
    }

    /// Whether every configured store answered its last probe.
    pub fn all_up(&self) -> bool {
        self.database_up() && self.inner.redis.as_ref().is_none_or(|r| r.is_up())
    }

    /// The stores' state for `/readyz`.
    pub fn report(&self) -> StoresReport {
        let inner = &self.inner;
        StoresReport {
            database: DatabaseReport {
                up: self.database_up(),
                latency_ms: inner.database_latency_us.load(Ordering::Relaxed) as f64 / 1000.0,
            },
            redis: inner.redis.as_ref().map(|redis| RedisReport {
                up: redis.is_up(),
                nodes: redis.node_count(),
                node_id: redis.node_id().to_string(),
            }),
        }
    }

    /// Stops the probes and subscribers, and leaves the fleet's node set.
    pub async fn shutdown(&self) {
        let tasks: Vec<_> = self.inner.tasks.lock().drain(..).collect();
        for t in tasks {
            t.abort();
        }
        if let Some(redis) = &self.inner.redis {
            redis.shutdown();
        }
    }
}

/// Publishes purges on the fleet's bus without holding up the admin call.
struct RedisPurges {
    bus: RedisBus<Purge>,
}

impl PurgeFanout for RedisPurges {
    fn publish(&self, purge: &Purge) {
        let bus = self.bus.clone();
        let purge = purge.clone();
        tokio::spawn(async move {
            // Tried again for a while: a node whose subscription held gets
            // no resync, so a lost publish would leave it serving the
            // purged object until it expires.
            if let Err(e) = bus
                .publish_retrying(&purge, gateway_redis::PUBLISH_RETRY_WINDOW)
                .await
            {
                // Nodes whose feed was lost mark everything stale when it
                // comes back; the others may serve the purged object.
                tracing::warn!(error = %e, "could not tell the fleet about a cache purge");
                metrics::counter!("gatehouse_cache_purge_publish_errors_total").increment(1);
            }
        });
    }
}
