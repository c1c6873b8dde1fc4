//! [`RedisState`]: the connection, the node heartbeat and Redis health.
//!
//! One `RedisState` per gateway process, cloned into every user (rate
//! limiter, buses, readiness probe). It owns:
//!
//! - a [`ConnectionManager`] (one multiplexed connection, reconnected
//!   automatically) for commands;
//! - a heartbeat task that registers the node in `{prefix}nodes`, counts
//!   the live nodes and decides whether Redis is up;
//! - the health flag every hot-path user consults before calling Redis, so
//!   an outage costs one failed call per probe interval, not one per request.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use gateway_core::config_issue::nested;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};
use tokio_util::sync::CancellationToken;

use crate::config::RedisConfig;
use crate::error::RedisError;

/// Bound on establishing a connection (initial connect, reconnects, pub/sub
/// subscriptions). Larger than `op_timeout` because a TCP handshake plus the
/// client's setup commands is several round trips, and nothing on the hot
/// path waits for it.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// While Redis is known down, at most one hot-path call per this interval
/// probes it; every other decision is made locally without touching Redis.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// A node that has not beaten for this many heartbeats is dropped from the
/// node set.
pub const STALE_AFTER_HEARTBEATS: u32 = 3;

/// Registers this node with the Redis server's clock (so node clocks do not
/// matter), drops nodes whose last beat is older than ARGV[2] ms, keeps the
/// set from outliving the cluster, and returns the live node count.
const HEARTBEAT_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stale = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now - stale))
redis.call('PEXPIRE', KEYS[1], stale * 10)
return redis.call('ZCARD', KEYS[1])
";

/// The shared Redis connection and this node's view of the cluster.
///
/// Cheap to clone (an `Arc`). The background heartbeat stops at
/// [`shutdown`](Self::shutdown) or when the last clone is dropped.
#[derive(Clone)]
pub struct RedisState {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: RedisConfig,
    client: redis::Client,
    /// Set once the first connection succeeds; the manager reconnects by
    /// itself after that. Empty while Redis has been down since start.
    manager: OnceLock<ConnectionManager>,
    up: AtomicBool,
    nodes: AtomicU64,
    /// Milliseconds since `started` of the last hot-path probe while down.
    last_probe_ms: AtomicU64,
    started: Instant,
    token: CancellationToken,
    runtime: tokio::runtime::Handle,
    heartbeat_script: Script,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Stops the heartbeat and ends bus subscriptions.
        self.token.cancel();
    }
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("url", &self.inner.cfg.redacted_url())
            .field("prefix", &self.inner.cfg.prefix)
            .field("node_id", &self.inner.cfg.node_id)
            .field("up", &self.is_up())
            .field("nodes", &self.node_count())
            .finish_non_exhaustive()
    }
}

// === impl RedisState ===

impl RedisState {
    /// Opens the shared state.
    ///
    /// Fails only on configuration errors (an invalid URL names the problem,
    /// with any password redacted). If Redis is unreachable the state is
    /// returned anyway, **down**, with a warning: a node must be able to
    /// start during a Redis outage, deciding rate limits locally until the
    /// heartbeat (which keeps retrying) finds Redis again.
    ///
    /// Must be called within a tokio runtime; background tasks run on it.
    pub async fn connect(cfg: RedisConfig) -> Result<RedisState, RedisError> {
        let issues = nested("redis", cfg.validate());
        if !issues.is_empty() {
            return Err(RedisError::InvalidConfig(issues));
        }
        let client = redis::Client::open(cfg.url.as_str()).map_err(|e| RedisError::InvalidUrl {
            url: cfg.redacted_url(),
            reason: e.to_string(),
        })?;
        let inner = Arc::new(Inner {
            client,
            manager: OnceLock::new(),
            up: AtomicBool::new(false),
            nodes: AtomicU64::new(1),
            last_probe_ms: AtomicU64::new(0),
            started: Instant::now(),
            token: CancellationToken::new(),
            runtime: tokio::runtime::Handle::current(),
            heartbeat_script: Script::new(HEARTBEAT_LUA),
            cfg,
        });
        metrics::gauge!("gatehouse_redis_up").set(0.0);
        metrics::gauge!("gatehouse_cluster_nodes").set(1.0);
        let state = RedisState { inner };
        // First beat inline, so a state that could connect is up (and knows
        // the node count) as soon as `connect` returns.
        if let Err(e) = state.beat().await {
            tracing::warn!(
                url = %state.inner.cfg.redacted_url(),
                error = %e,
                "Redis unreachable at start; continuing with local rate limits and retrying every heartbeat"
            );
        }
        let weak = Arc::downgrade(&state.inner);
        let token = state.inner.token.clone();
        let period = state.inner.cfg.heartbeat;
        state
            .inner
            .runtime
            .spawn(heartbeat_loop(weak, token, period));
        Ok(state)
    }

    /// The configuration in use.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.cfg
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.cfg.node_id
    }

    /// `{prefix}{suffix}`: the full name of a key or channel.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{}", self.inner.cfg.prefix, suffix)
    }

    /// Whether Redis answered the last heartbeat or hot-path call.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    /// Live gateway nodes sharing this Redis (at least 1), as of the last
    /// successful heartbeat. Kept while Redis is down: it is what the local
    /// fallback divides rates by.
    pub fn node_count(&self) -> u64 {
        self.inner.nodes.load(Ordering::Acquire).max(1)
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Round-trip time of a `PING`, bounded by `op_timeout`; for readiness
    /// probes. Does not change the health flag (the heartbeat owns it).
    pub async fn ping(&self) -> Result<Duration, RedisError> {
        let start = Instant::now();
        let limit = self.inner.cfg.op_timeout;
        self.call("ping", limit, |mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await?;
        Ok(start.elapsed())
    }

    /// Stops the heartbeat and every bus subscription (their streams end),
    /// and removes this node from the node set in the background (best
    /// effort, bounded by `op_timeout`) so the other nodes' counts drop at
    /// their next heartbeat rather than after the stale window. Hot-path
    /// calls made afterwards do not reach Redis (the limiter decides
    /// locally). Idempotent; synchronous so it can run from `Drop`-like
    /// shutdown paths.
    pub fn shutdown(&self) {
        if self.inner.token.is_cancelled() {
            return;
        }
        self.inner.token.cancel();
        self.inner.up.store(false, Ordering::Release);
        metrics::gauge!("gatehouse_redis_up").set(0.0);
        let Some(mut conn) = self.inner.manager.get().cloned() else {
            return;
        };
        let key = self.key("nodes");
        let id = self.inner.cfg.node_id.clone();
        let limit = self.inner.cfg.op_timeout.max(Duration::from_millis(200));
        self.inner.runtime.spawn(async move {
            let start = Instant::now();
            let mut zrem = redis::cmd("ZREM");
            zrem.arg(&key).arg(&id);
            let zrem = zrem.query_async::<i64>(&mut conn);
            let ok = matches!(tokio::time::timeout(limit, zrem).await, Ok(Ok(_)));
            record_latency("deregister", start.elapsed());
            if !ok {
                record_error("deregister");
                tracing::debug!("could not deregister the node; it expires from the node set");
            }
        });
    }

    // --- crate-internal ---

    pub(crate) fn client(&self) -> &redis::Client {
        &self.inner.client
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        &self.inner.token
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.inner.runtime
    }

    /// Whether a hot-path caller should call Redis now: always while up;
    /// while down, only the one caller that wins this probe interval.
    pub(crate) fn should_try(&self) -> bool {
        if self.is_up() {
            return true;
        }
        if self.is_shut_down() || self.inner.manager.get().is_none() {
            return false;
        }
        let now = self.inner.started.elapsed().as_millis() as u64;
        let last = self.inner.last_probe_ms.load(Ordering::Acquire);
        if now.saturating_sub(last) < PROBE_INTERVAL.as_millis() as u64 {
            return false;
        }
        self.inner
            .last_probe_ms
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Records that Redis answered.
    pub(crate) fn mark_up(&self) {
        if self.is_shut_down() {
            return;
        }
        if !self.inner.up.swap(true, Ordering::AcqRel) {
            metrics::gauge!("gatehouse_redis_up").set(1.0);
            tracing::info!(url = %self.inner.cfg.redacted_url(), "Redis is reachable");
        }
    }

    /// Records that Redis failed; warns once per outage.
    pub(crate) fn mark_down(&self, err: &RedisError) {
        if self.inner.up.swap(false, Ordering::AcqRel) {
            metrics::gauge!("gatehouse_redis_up").set(0.0);
            // Start the probe clock now: the next probe is one interval away.
            let now = self.inner.started.elapsed().as_millis() as u64;
            self.inner.last_probe_ms.store(now, Ordering::Release);
            tracing::warn!(
                url = %self.inner.cfg.redacted_url(),
                error = %err,
                "Redis is unreachable; shared state degrades to local decisions until it is back"
            );
        }
    }

    /// Runs one Redis call on the managed connection, bounded by `limit`,
    /// recording `gatehouse_store_latency_seconds` and, on failure,
    /// `gatehouse_store_errors_total` for `op`.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        op: &'static str,
        limit: Duration,
        f: F,
    ) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if self.is_shut_down() {
            return Err(RedisError::ShutDown);
        }
        let Some(conn) = self.inner.manager.get().cloned() else {
            record_error(op);
            return Err(RedisError::NotConnected);
        };
        let start = Instant::now();
        let res = match tokio::time::timeout(limit, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(RedisError::Command { op, source }),
            Err(_) => Err(RedisError::Timeout { op, after: limit }),
        };
        record_latency(op, start.elapsed());
        if res.is_err() {
            record_error(op);
        }
        res
    }

    /// One heartbeat: connect if never connected, register, count nodes,
    /// update health.
    async fn beat(&self) -> Result<u64, RedisError> {
        if self.inner.manager.get().is_none() {
            if let Err(e) = self.open_manager().await {
                self.mark_down(&e);
                return Err(e);
            }
        }
        let cfg = &self.inner.cfg;
        // Not a hot-path call: allow up to a second (but never less than the
        // hot-path bound) before calling Redis down.
        let limit = cfg
            .heartbeat
            .min(Duration::from_secs(1))
            .max(cfg.op_timeout);
        let key = self.key("nodes");
        let stale_ms = cfg.heartbeat.as_millis() as u64 * u64::from(STALE_AFTER_HEARTBEATS);
        let script = &self.inner.heartbeat_script;
        let res = self
            .call("heartbeat", limit, |mut c| async move {
                script
                    .key(&key)
                    .arg(&cfg.node_id)
                    .arg(stale_ms)
                    .invoke_async::<u64>(&mut c)
                    .await
            })
            .await;
        match res {
            Ok(n) => {
                let n = n.max(1);
                self.inner.nodes.store(n, Ordering::Release);
                metrics::gauge!("gatehouse_cluster_nodes").set(n as f64);
                self.mark_up();
                Ok(n)
            }
            Err(e) => {
                self.mark_down(&e);
                Err(e)
            }
        }
    }

    async fn open_manager(&self) -> Result<(), RedisError> {
        // No retries inside the manager: a single attempt per reconnect,
        // and the next failed call triggers the next attempt. Our own
        // cadence (heartbeat, probe interval) paces them; the library's
        // backoff would start at a full second.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(CONNECT_TIMEOUT);
        let start = Instant::now();
        let res = tokio::time::timeout(
            CONNECT_TIMEOUT,
            ConnectionManager::new_with_config(self.inner.client.clone(), config),
        )
        .await;
        record_latency("connect", start.elapsed());
        let manager = match res {
            Ok(Ok(m)) => m,
            Ok(Err(source)) => {
                record_error("connect");
                return Err(RedisError::Command {
                    op: "connect",
                    source,
                });
            }
            Err(_) => {
                record_error("connect");
                return Err(RedisError::Timeout {
                    op: "connect",
                    after: CONNECT_TIMEOUT,
                });
            }
        };
        // Only the heartbeat (one task) opens managers, so this cannot race;
        // if it somehow did, the first one wins and the other is dropped.
        let _ = self.inner.manager.set(manager);
        Ok(())
    }
}

async fn heartbeat_loop(weak: Weak<Inner>, token: CancellationToken, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; `connect` already beat.
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = ticks.tick() => {}
        }
        // Holding a strong reference only for the duration of one beat: the
        // last user handle going away ends the loop at the next tick.
        let Some(inner) = weak.upgrade() else { return };
        let state = RedisState { inner };
        tokio::select! {
            _ = token.cancelled() => return,
            _ = state.beat() => {}
        }
    }
}

pub(crate) fn record_latency(op: &'static str, d: Duration) {
    metrics::histogram!("gatehouse_store_latency_seconds", "store" => "redis", "op" => op)
        .record(d.as_secs_f64());
}

pub(crate) fn record_error(op: &'static str) {
    metrics::counter!("gatehouse_store_errors_total", "store" => "redis", "op" => op).increment(1);
}
