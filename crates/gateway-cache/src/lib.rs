//! An RFC 9111 shared response cache for the Gatehouse pipeline.
//!
//! The gateway calls [`HttpCache::handle`] with the request, the route's
//! [`RouteCacheContext`] and an [`Origin`] callback; the cache decides
//! everything else — keys and variants, freshness and Age, revalidation,
//! request coalescing, stale-while-revalidate and stale-if-error — and
//! answers with `Age` and `Cache-Status` (RFC 9211). Purges ([`Purge`]) are
//! plain data so they can be fanned out between nodes; [`admin::router`]
//! and [`cli::CacheCommand`] expose them to operators.
//!
//! Module map:
//! - [`config`]: `[cache]` and `routes[].cache` settings.
//! - [`key`]: URL normalisation, extra key parts, `Vary` secondary keys.
//! - [`directives`]: tolerant `Cache-Control`/`Expires`/`Age`/date parsing.
//! - [`targeted`]: `CDN-Cache-Control` and the cache's own targeted field
//!   (RFC 9213), which take precedence over `Cache-Control`.
//! - [`policy`]: storability, freshness lifetime, Age, stale rules.
//! - [`range`]: `Range`/`If-Range` parsing and byte range resolution.
//! - [`storage`]: the [`Storage`] trait and moka-backed [`MemoryStorage`].
//! - [`disk`]: the optional disk tier ([`DiskStore`]): entry files with
//!   checksums, an index in memory, one writer thread.
//! - [`tiered`]: [`TieredStorage`], memory in front of disk.
//! - [`cache`]: [`HttpCache`] and the request flow; its parts are private
//!   submodules, one job each: lookup, coalescing, admission,
//!   revalidation, background refresh, invalidation (purges), responses.
//! - [`status`]: decisions as data, rendered into `Cache-Status`.
//! - [`stats`]: counters and metrics.
//! - [`tee`]: streaming a body to the client while storing a copy.
//!
//! See `docs/cache.md` for the design and its reasons.

pub mod admin;
pub mod cache;
pub mod cli;
pub mod config;
pub mod directives;
pub mod disk;
pub mod key;
pub mod policy;
pub mod range;
pub mod stats;
pub mod status;
pub mod storage;
pub mod targeted;
pub mod tee;
pub mod tiered;

pub use cache::{
    origin_fn, HttpCache, Origin, OriginError, Purge, PurgeError, PurgeFanout, PurgeResult,
    PurgeTarget, RouteCacheContext, CACHE_STATUS,
};
pub use config::{CacheConfig, DiskConfig, RouteCacheConfig};
pub use disk::{DiskOpenError, DiskStore};
pub use stats::{CacheStats, RouteStats};
pub use status::{CacheDecision, CacheStatus, Fwd, NotStoredReason};
pub use storage::{CachedResponse, DiskUsage, MemoryStorage, Storage, StorageUsage};
pub use tiered::TieredStorage;
