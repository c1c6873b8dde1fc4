//! Redis-backed shared hot state, so several gateway nodes behind one load
//! balancer behave as one gateway.
//!
//! - [`RedisState`]: the connection (auto-reconnecting), a heartbeat that
//!   registers the node and counts live nodes, and the health flag that
//!   every hot-path user consults.
//! - [`RedisRateLimiter`]: GCRA in a Lua script, one round trip per
//!   decision, on the Redis server's clock; falls back to local decisions
//!   with each node's share of the rate when Redis is unreachable.
//! - [`RedisBus`]: a typed pub/sub fan-out with `Resync` after a lost
//!   subscription (at-most-once delivery made visible).
//! - [`RedisKeyFeed`]: the key change feed over the bus.
//! - [`RedisQuotas`]: plan quotas counted once for the fleet, all windows
//!   or none in one script.
//!
//! Architecture invariant: nothing here is on the request path's critical
//! availability: if Redis is down, requests are still decided (locally) in
//! bounded time (`op_timeout`, default 50 ms, at most once per probe
//! interval). Layout, scripts and failure policy: `docs/redis.md`.

mod bus;
mod config;
mod error;
mod feed;
mod limiter;
mod quotas;
mod state;

pub use bus::{
    BusMessage, RedisBus, PUBLISH_RETRY_WINDOW, RESUBSCRIBE_BACKOFF, RESUBSCRIBE_MAX_BACKOFF,
};
pub use config::{
    random_node_id, RedisConfig, DEFAULT_HEARTBEAT, DEFAULT_OP_TIMEOUT, DEFAULT_PREFIX,
};
pub use error::RedisError;
pub use feed::{RedisKeyFeed, KEYS_CHANNEL};
pub use limiter::RedisRateLimiter;
pub use quotas::RedisQuotas;
pub use state::{RedisState, PROBE_INTERVAL, STALE_AFTER_HEARTBEATS};
