//! The cache stage: [`HttpCache::handle`] decides, for one request, whether
//! to answer from storage, revalidate, coalesce, or go to the origin.
//!
//! The cache owns every decision and calls the origin through the
//! [`Origin`] callback, so coalescing, background refresh
//! (stale-while-revalidate) and stale-if-error live in one place instead of
//! being split between the cache and the proxy. The flow per request:
//!
//! 1. Route disabled, non-GET/HEAD, or several ranges: bypass. Unsafe
//!    methods invalidate the target URI and `Location`/`Content-Location`
//!    when the origin answers with a non-error status (RFC 9111 §4.4). A
//!    single range is taken off the request; steps 2-4 produce the whole
//!    response, and the range is cut from it (`partial`).
//! 2. Build the primary key; look up the `Vary` names stored for it and
//!    with them the variant.
//! 3. Stored: serve fresh, serve stale (client `max-stale`, or
//!    stale-while-revalidate with exactly one background refresh), or
//!    revalidate with `If-None-Match`/`If-Modified-Since` (304 merges headers;
//!    an origin failure serves stale when stale-if-error allows).
//! 4. Not stored: join the flight for the key. The leader fetches and tees
//!    the body into storage; waiters wait up to `coalesce_timeout`, then
//!    look again or fetch on their own.
//!
//! This module is the public face: [`HttpCache`]'s constructors and
//! accessors and the decision above ([`HttpCache::handle`]). Each path's
//! work lives in a submodule, layered so none imports one above it:
//!
//! - `origin`, `route`, `purge`: what the gateway hands in (the [`Origin`]
//!   callback, the [`RouteCacheContext`]) and the purge vocabulary.
//! - `state`: the [`HttpCache`] handle and the state its clones share.
//! - `validators`: conditional requests (strip, build, match).
//! - `partial`: one byte range cut from a whole response (206, 416).
//! - `lookup`: the request's URL key and its stored variant.
//! - `respond`: every response leaves through here (`Cache-Status`, the
//!   fields that stay inside, stats).
//! - `coalesce`: one origin fetch per key; waiters.
//! - `admission`: storability, what is stored, teeing the body in.
//! - `revalidate`: validation with the origin, 304 merge, stale-if-error,
//!   HEAD responses updating a stored GET.
//! - `refresh`: stale-while-revalidate background refresh.
//! - `invalidate`: purges and invalidation after unsafe methods.

mod admission;
mod coalesce;
mod invalidate;
mod lookup;
mod origin;
mod partial;
mod purge;
mod refresh;
mod respond;
mod revalidate;
mod route;
mod state;
mod validators;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use gateway_core::{body, Body, Clock};
use http::{header, request, HeaderName, Method, Request, Response};
use parking_lot::Mutex;
use tokio::sync::Notify;

pub use origin::{origin_fn, Origin, OriginError};
pub use purge::{Purge, PurgeError, PurgeFanout, PurgeResult, PurgeTarget};
pub use respond::CACHE_STATUS;
pub use route::RouteCacheContext;
pub use state::HttpCache;

use crate::config::CacheConfig;
use crate::directives::RequestDirectives;
use crate::disk::{DiskOpenError, DiskStore};
use crate::key::{self, PrimaryKey, VariantKey};
use crate::policy::{self, Usability};
use crate::range::RangeRequest;
use crate::stats::{CacheStats, Stats};
use crate::status::{CacheDecision, CacheStatus, Fwd};
use crate::storage::{CachedResponse, MemoryStorage, Storage};
use crate::tiered::TieredStorage;
use coalesce::{FlightGuard, Role};
use lookup::key_primary;
use partial::answer_range;
use state::{FlightKey, Inner};
use validators::strip_conditionals;

impl HttpCache {
    /// A cache with in-memory storage bounded by `cfg.max_bytes`; it has
    /// no disk tier whatever `cfg.disk` says (see [`HttpCache::open`]).
    ///
    /// `cfg` should have passed [`CacheConfig::validate`]; out-of-range
    /// values are clamped rather than trusted.
    pub fn new(cfg: CacheConfig, clock: Arc<dyn Clock>) -> Self {
        let stats = Arc::new(Stats::default());
        let storage = Self::memory_storage(&cfg, &stats);
        Self::build(cfg, clock, Arc::new(storage), stats)
    }

    /// The cache `cfg` describes: in memory, and with the disk tier in
    /// `cfg.disk` when set (its directory created when missing and the
    /// entries a previous run left loaded).
    pub fn open(cfg: CacheConfig, clock: Arc<dyn Clock>) -> Result<Self, DiskOpenError> {
        let Some(disk_cfg) = &cfg.disk else {
            return Ok(Self::new(cfg, clock));
        };
        let disk = DiskStore::open(disk_cfg, cfg.max_variants)?;
        let stats = Arc::new(Stats::default());
        let memory = Self::memory_storage(&cfg, &stats);
        let storage = TieredStorage::new(memory, disk);
        Ok(Self::build(cfg, clock, Arc::new(storage), stats))
    }

    fn memory_storage(cfg: &CacheConfig, stats: &Arc<Stats>) -> MemoryStorage {
        let hook_stats = stats.clone();
        MemoryStorage::new(
            cfg.max_bytes.max(1),
            cfg.max_variants,
            Some(Arc::new(move |obj: &CachedResponse| {
                hook_stats.evicted(&obj.route)
            })),
        )
    }

    /// Blocks until stores, removals and purges have reached the disk
    /// tier (no-op without one). For shutdown and tests; the request path
    /// never waits for the disk.
    pub fn flush(&self) {
        self.inner.storage.flush();
    }

    /// A cache over another [`Storage`] implementation (e.g. a tiered or
    /// shared store). Per-route eviction counts are only reported by the
    /// built-in [`MemoryStorage`].
    pub fn with_storage(
        cfg: CacheConfig,
        clock: Arc<dyn Clock>,
        storage: Arc<dyn Storage>,
    ) -> Self {
        Self::build(cfg, clock, storage, Arc::default())
    }

    fn build(
        cfg: CacheConfig,
        clock: Arc<dyn Clock>,
        storage: Arc<dyn Storage>,
        stats: Arc<Stats>,
    ) -> Self {
        let tag_header = HeaderName::from_bytes(cfg.tag_header.as_bytes())
            .unwrap_or_else(|_| HeaderName::from_static("surrogate-key"));
        let targeted = HeaderName::from_bytes(cfg.targeted_cache_control.as_bytes())
            .ok()
            .into_iter()
            .chain([crate::targeted::CDN_CACHE_CONTROL.clone()])
            .collect();
        Self {
            inner: Arc::new(Inner {
                cfg,
                clock,
                storage,
                tag_header,
                targeted,
                flights: Mutex::default(),
                next_flight: AtomicU64::new(1),
                refreshing: Mutex::default(),
                refresh_done: Notify::new(),
                stats,
                fanout: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.cfg
    }

    /// Answers `req` from the cache or through `origin`; never fails: origin
    /// errors become the [`OriginError`]'s problem response.
    pub async fn handle(
        &self,
        req: Request<Body>,
        route: &RouteCacheContext,
        origin: Arc<dyn Origin>,
    ) -> Response<Body> {
        let (mut parts, req_body) = req.into_parts();
        if !route.config.enabled {
            return self
                .pass(parts, req_body, route, &origin, Fwd::Bypass, None)
                .await;
        }
        if parts.method != Method::GET && parts.method != Method::HEAD {
            if matches!(parts.method, Method::OPTIONS | Method::TRACE) {
                return self
                    .pass(parts, req_body, route, &origin, Fwd::Method, None)
                    .await;
            }
            return self.unsafe_method(parts, req_body, route, &origin).await;
        }
        // The cache works on whole representations; a single range is cut
        // from the whole response at the end.
        let range = match parts.method {
            Method::GET => RangeRequest::of(&parts.headers),
            _ => RangeRequest::Whole,
        };
        if range == RangeRequest::Multiple {
            return self
                .pass(
                    parts,
                    req_body,
                    route,
                    &origin,
                    Fwd::Bypass,
                    Some("multipart_range"),
                )
                .await;
        }
        let if_range = parts.headers.remove(header::IF_RANGE);
        parts.headers.remove(header::RANGE);
        let whole = self.whole(parts, req_body, route, origin).await;
        match range {
            RangeRequest::Single(range) => answer_range(whole, range, if_range.as_ref()),
            _ => whole,
        }
    }

    /// Answers a GET or HEAD without `Range` from storage or the origin.
    async fn whole(
        &self,
        parts: request::Parts,
        req_body: Body,
        route: &RouteCacheContext,
        origin: Arc<dyn Origin>,
    ) -> Response<Body> {
        let Ok(url) = self.url_of(&parts, route) else {
            return self
                .pass(parts, req_body, route, &origin, Fwd::Bypass, Some("no_key"))
                .await;
        };
        drop(req_body);
        let primary = PrimaryKey {
            url: url.into(),
            extra: key::extra_key(
                &parts.headers,
                &route.config.key_headers,
                route
                    .config
                    .key_consumer
                    .then_some(route.consumer.as_deref().unwrap_or("")),
            )
            .into(),
        };
        let rd = RequestDirectives::from_headers(&parts.headers);
        let (vary, found) = self.lookup(&primary, &parts.headers);
        if let Some((key, obj)) = found {
            return self.serve_stored(parts, route, origin, key, obj, rd).await;
        }
        let fwd = if vary.is_some() {
            Fwd::VaryMiss
        } else {
            Fwd::UriMiss
        };
        if rd.only_if_cached {
            return self.unavailable(route, fwd);
        }
        if parts.method == Method::HEAD {
            return self
                .pass(parts, body::empty(), route, &origin, fwd, Some("head"))
                .await;
        }
        let secondary = vary.map(|v| Arc::<str>::from(key::secondary_key(&parts.headers, &v)));
        self.miss(parts, route, origin, primary, secondary, rd, fwd)
            .await
    }

    /// Counters and occupancy.
    pub fn stats(&self) -> CacheStats {
        self.inner.stats.snapshot(self.inner.storage.usage())
    }

    /// Bytes held by stored responses right now (headers, bodies, keys).
    pub fn stored_bytes(&self) -> u64 {
        self.inner.storage.bytes()
    }

    async fn serve_stored(
        &self,
        parts: request::Parts,
        route: &RouteCacheContext,
        origin: Arc<dyn Origin>,
        key: VariantKey,
        obj: Arc<CachedResponse>,
        rd: RequestDirectives,
    ) -> Response<Body> {
        let now = self.inner.clock.now();
        let fresh = &obj.freshness;
        let mut d = CacheDecision::new(CacheStatus::Hit);
        d.ttl = Some(fresh.ttl(now));
        match policy::usability(fresh, obj.is_invalidated(), &rd, now) {
            Usability::Fresh => self.respond_stored(&parts, route, &obj, d, now),
            Usability::StaleAcceptedByClient => {
                d.status = CacheStatus::Stale;
                d.detail = Some("max-stale");
                self.respond_stored(&parts, route, &obj, d, now)
            }
            Usability::StaleWhileRevalidate => {
                self.spawn_refresh(&parts, route, origin, key, obj.clone());
                d.status = CacheStatus::Stale;
                d.detail = Some("stale-while-revalidate");
                self.respond_stored(&parts, route, &obj, d, now)
            }
            Usability::MustRevalidate => {
                let really_stale = obj.is_invalidated() || fresh.no_cache || fresh.ttl(now) <= 0;
                let fwd = if really_stale {
                    Fwd::Stale
                } else {
                    Fwd::Request
                };
                if rd.only_if_cached {
                    return self.unavailable(route, fwd);
                }
                if parts.method == Method::HEAD {
                    return self
                        .revalidate_by_head(parts, route, &origin, fwd, key, obj)
                        .await;
                }
                // Concurrent requests for one expired variant make one
                // validation request; client-forced ones (fwd=request) go
                // forward as asked.
                let mut flight = None;
                if fwd == Fwd::Stale {
                    let primary = key_primary(&key);
                    match self.join_flight((primary.clone(), Some(key.secondary.clone()))) {
                        Role::Leader(guard) => flight = Some(guard),
                        Role::Waiter(rx) => {
                            if let Some(res) =
                                self.await_flight(rx, &parts, route, &primary, &rd).await
                            {
                                return res;
                            }
                        }
                    }
                }
                self.revalidate(parts, route, origin, key, obj, rd, fwd, flight)
                    .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn miss(
        &self,
        parts: request::Parts,
        route: &RouteCacheContext,
        origin: Arc<dyn Origin>,
        primary: PrimaryKey,
        secondary: Option<Arc<str>>,
        rd: RequestDirectives,
        fwd: Fwd,
    ) -> Response<Body> {
        let flight_key: FlightKey = (primary.clone(), secondary);
        match self.join_flight(flight_key) {
            Role::Leader(guard) => {
                return self
                    .fetch_and_store(parts, route, origin, primary, rd, fwd, Some(guard))
                    .await
            }
            Role::Waiter(rx) => {
                if let Some(res) = self.await_flight(rx, &parts, route, &primary, &rd).await {
                    return res;
                }
            }
        }
        self.fetch_and_store(parts, route, origin, primary, rd, fwd, None)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_and_store(
        &self,
        parts: request::Parts,
        route: &RouteCacheContext,
        origin: Arc<dyn Origin>,
        primary: PrimaryKey,
        rd: RequestDirectives,
        fwd: Fwd,
        flight: Option<FlightGuard>,
    ) -> Response<Body> {
        let mut fwd_parts = parts.clone();
        strip_conditionals(&mut fwd_parts.headers);
        let request_time = self.inner.clock.now();
        let res = origin
            .fetch(Request::from_parts(fwd_parts, body::empty()))
            .await;
        let response_time = self.inner.clock.now();
        let mut d = CacheDecision::new(CacheStatus::Miss);
        d.fwd = Some(fwd);
        match res {
            Ok(res) => self.store_response(
                res,
                &parts,
                route,
                primary,
                &rd,
                request_time,
                response_time,
                flight,
                d,
                None,
            ),
            Err(e) => self.origin_failed(route, d, e),
        }
    }
}
