//! The cache stage: [`HttpCache::handle`] decides, for one request, whether
//! to answer from storage, revalidate, coalesce, or go to the origin.
//!
//! The cache owns every decision and calls the origin through the
//! [`Origin`] callback, so coalescing, background refresh
//! (stale-while-revalidate) and stale-if-error live in one place instead of
//! being split between the cache and the proxy. The flow per request:
//!
//! 1. Route disabled, non-GET/HEAD, or `Range`: bypass. Unsafe methods
//!    invalidate the target URI and `Location`/`Content-Location` when the
//!    origin answers with a non-error status (RFC 9111 §4.4).
//! 2. Build the primary key; look up the `Vary` names stored for it and
//!    with them the variant.
//! 3. Stored: serve fresh, serve stale (client `max-stale`, or
//!    stale-while-revalidate with exactly one background refresh), or
//!    revalidate with `If-None-Match`/`If-Modified-Since` (304 merges headers;
//!    an origin failure serves stale when stale-if-error allows).
//! 4. Not stored: join the flight for the key. The leader fetches and tees
//!    the body into storage; waiters wait up to `coalesce_timeout`, then
//!    look again or fetch on their own.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use gateway_core::{body, Body, Clock, Problem};
use http::{
    header, request, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode,
};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};

use crate::config::{CacheConfig, RouteCacheConfig};
use crate::directives::{fmt_http_date, header_date, RequestDirectives, ResponseDirectives};
use crate::key::{self, PrimaryKey, VariantKey};
use crate::policy::{self, Freshness, Usability};
use crate::stats::{CacheStats, Stats};
use crate::status::{CacheDecision, CacheStatus, Fwd, NotStoredReason};
use crate::storage::{CachedResponse, MemoryStorage, PurgeSelector, Storage};
use crate::tee::{OnComplete, TeeBody};

/// The `Cache-Status` header name (RFC 9211).
pub static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
/// The Cloudflare-style tag header, always read besides the configured one.
static CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// The origin the cache calls on a miss, a revalidation or a refresh.
///
/// Called with a request whose body is empty for cache-driven fetches
/// (GET/HEAD); unsafe methods are passed with their body. The returned
/// future is `'static` so background refreshes can outlive the request.
pub trait Origin: Send + Sync + 'static {
    /// Sends `req` to the origin.
    fn fetch(&self, req: Request<Body>) -> BoxFuture<'static, Result<Response<Body>, OriginError>>;
}

/// Wraps a closure as an [`Origin`], for wiring the cache in front of an
/// existing upstream call without a named type.
pub fn origin_fn<F>(f: F) -> Arc<dyn Origin>
where
    F: Fn(Request<Body>) -> BoxFuture<'static, Result<Response<Body>, OriginError>>
        + Send
        + Sync
        + 'static,
{
    struct FnOrigin<F>(F);
    impl<F> Origin for FnOrigin<F>
    where
        F: Fn(Request<Body>) -> BoxFuture<'static, Result<Response<Body>, OriginError>>
            + Send
            + Sync
            + 'static,
    {
        fn fetch(
            &self,
            req: Request<Body>,
        ) -> BoxFuture<'static, Result<Response<Body>, OriginError>> {
            (self.0)(req)
        }
    }
    Arc::new(FnOrigin(f))
}

/// The origin could not produce a response (connect failure, timeout...).
///
/// Carries the problem the client sees when nothing stale may be served.
#[derive(Debug, thiserror::Error)]
#[error("origin failed: {problem}")]
pub struct OriginError {
    /// What the client is told.
    pub problem: Problem,
}

impl OriginError {
    /// An error answering the client with `problem`.
    pub fn new(problem: Problem) -> Self {
        Self { problem }
    }
}

/// Per-request route information the cache needs.
#[derive(Debug, Clone)]
pub struct RouteCacheContext {
    /// Route name, for metrics and logs.
    pub route: Arc<str>,
    /// The route's cache settings.
    pub config: Arc<RouteCacheConfig>,
    /// The authenticated consumer, used in the key when `key_consumer`.
    pub consumer: Option<String>,
    /// `http` or `https`, as the client connected.
    pub scheme: String,
    /// The authority the client addressed; when `None`, the request URI's
    /// authority or `Host` header is used.
    pub authority: Option<String>,
}

impl RouteCacheContext {
    /// A context for `route` with its settings; scheme `http`, authority
    /// taken from the request.
    pub fn new(route: impl Into<Arc<str>>, config: Arc<RouteCacheConfig>) -> Self {
        Self {
            route: route.into(),
            config,
            consumer: None,
            scheme: "http".into(),
            authority: None,
        }
    }

    /// Sets the authenticated consumer id.
    pub fn with_consumer(mut self, consumer: impl Into<String>) -> Self {
        self.consumer = Some(consumer.into());
        self
    }

    /// Sets the scheme and authority the client addressed.
    pub fn with_authority(
        mut self,
        scheme: impl Into<String>,
        authority: impl Into<String>,
    ) -> Self {
        self.scheme = scheme.into();
        self.authority = Some(authority.into());
        self
    }
}

/// What a purge selects; plain data so it can be sent between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeTarget {
    /// One URL: every variant, every consumer.
    Url(String),
    /// Every URL starting with this prefix (`https://host/path`).
    Prefix(String),
    /// Every response tagged with this surrogate key.
    Tag(String),
}

/// A purge request: target plus hard (remove) or soft (mark stale).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purge {
    /// What to purge.
    pub target: PurgeTarget,
    /// Soft purges mark entries stale so stale-while-revalidate and
    /// stale-if-error can still serve them; hard purges remove them.
    #[serde(default)]
    pub soft: bool,
}

/// Carries purges to the other gateway nodes (the scale-out change feed).
/// The cache only calls it; how purges travel (Redis pub/sub) is the
/// gateway's business. Implementations must not block: publish in the
/// background and log failures.
pub trait PurgeFanout: Send + Sync + 'static {
    /// Tells every other node to apply `purge` to its own cache.
    fn publish(&self, purge: &Purge);
}

/// The outcome of a purge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeResult {
    /// Stored variants removed or marked stale.
    pub purged: usize,
    /// Whether it was a soft purge.
    pub soft: bool,
}

/// Why a purge was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurgeError {
    /// The URL or prefix is not an absolute http(s) URL.
    #[error("invalid {field}: {source}")]
    InvalidUrl {
        /// `url` or `prefix`.
        field: &'static str,
        /// What is wrong with it.
        source: key::KeyError,
    },
    /// The tag is empty.
    #[error("invalid tag: must not be empty")]
    EmptyTag,
}

impl PurgeError {
    /// The stable problem code.
    pub fn code(&self) -> &'static str {
        "cache_purge_invalid"
    }
}

/// The RFC 9111 shared cache. Cheap to clone: clones share storage.
#[derive(Clone)]
pub struct HttpCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HttpCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCache")
            .field("config", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

type FlightKey = (PrimaryKey, Option<Arc<str>>);

struct Inner {
    cfg: CacheConfig,
    clock: Arc<dyn Clock>,
    storage: Arc<dyn Storage>,
    tag_header: HeaderName,
    flights: Mutex<HashMap<FlightKey, (u64, watch::Receiver<()>)>>,
    next_flight: AtomicU64,
    refreshing: Mutex<HashSet<VariantKey>>,
    refresh_done: Notify,
    stats: Arc<Stats>,
    fanout: std::sync::OnceLock<Arc<dyn PurgeFanout>>,
}

impl HttpCache {
    /// A cache with in-memory storage bounded by `cfg.max_bytes`.
    ///
    /// `cfg` should have passed [`CacheConfig::validate`]; out-of-range
    /// values are clamped rather than trusted.
    pub fn new(cfg: CacheConfig, clock: Arc<dyn Clock>) -> Self {
        let stats = Arc::new(Stats::default());
        let hook_stats = stats.clone();
        let storage = MemoryStorage::new(
            cfg.max_bytes.max(1),
            cfg.max_variants,
            Some(Arc::new(move |obj: &CachedResponse| {
                hook_stats.evicted(&obj.route)
            })),
        );
        Self::build(cfg, clock, Arc::new(storage), stats)
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
        Self {
            inner: Arc::new(Inner {
                cfg,
                clock,
                storage,
                tag_header,
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
        let (parts, req_body) = req.into_parts();
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
        if parts.headers.contains_key(header::RANGE) {
            return self
                .pass(parts, req_body, route, &origin, Fwd::Bypass, Some("range"))
                .await;
        }
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

    /// Sets where purges made through [`HttpCache::purge_everywhere`] are
    /// sent. Once per cache; later calls are ignored.
    pub fn set_fanout(&self, fanout: Arc<dyn PurgeFanout>) {
        let _ = self.inner.fanout.set(fanout);
    }

    /// Purges here and tells every other node (the admin API's purge). A
    /// purge that fails validation goes nowhere.
    pub fn purge_everywhere(&self, p: &Purge) -> Result<PurgeResult, PurgeError> {
        let result = self.purge(p)?;
        if let Some(fanout) = self.inner.fanout.get() {
            fanout.publish(p);
        }
        Ok(result)
    }

    /// Marks every stored response stale, so the next request for each
    /// revalidates (cheap with validators) while `stale-if-error` still
    /// covers an origin outage. A node does this when it may have missed
    /// purges (its change feed reconnected), which bounds how long a missed
    /// purge can leave an object served.
    pub fn mark_all_stale(&self) -> usize {
        let n = self
            .inner
            .storage
            .purge(&PurgeSelector::Prefix(String::new()), true);
        tracing::info!(
            marked = n,
            "cache: every object marked stale after a change-feed gap"
        );
        n
    }

    /// Purges stored responses here only; see [`Purge`] and
    /// [`HttpCache::purge_everywhere`].
    pub fn purge(&self, p: &Purge) -> Result<PurgeResult, PurgeError> {
        let selector = match &p.target {
            PurgeTarget::Url(u) => PurgeSelector::Url(
                key::normalize_absolute(u, &[&self.inner.cfg.ignore_query_params]).map_err(
                    |source| PurgeError::InvalidUrl {
                        field: "url",
                        source,
                    },
                )?,
            ),
            PurgeTarget::Prefix(u) => {
                PurgeSelector::Prefix(key::normalize_prefix(u).map_err(|source| {
                    PurgeError::InvalidUrl {
                        field: "prefix",
                        source,
                    }
                })?)
            }
            PurgeTarget::Tag(t) => {
                let t = t.trim();
                if t.is_empty() {
                    return Err(PurgeError::EmptyTag);
                }
                PurgeSelector::Tag(t.to_string())
            }
        };
        let purged = self.inner.storage.purge(&selector, p.soft);
        self.inner.stats.purged(purged);
        Stats::bytes_gauge(self.inner.storage.usage().bytes);
        tracing::info!(target = ?p.target, soft = p.soft, purged, "cache purge");
        Ok(PurgeResult {
            purged,
            soft: p.soft,
        })
    }

    /// Counters and occupancy.
    pub fn stats(&self) -> CacheStats {
        self.inner.stats.snapshot(self.inner.storage.usage())
    }

    /// Bytes held by stored responses right now (headers, bodies, keys).
    pub fn stored_bytes(&self) -> u64 {
        self.inner.storage.bytes()
    }

    /// Resolves once no background refresh is running (for shutdown and tests).
    pub async fn background_idle(&self) {
        loop {
            let notified = self.inner.refresh_done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.refreshing.lock().is_empty() {
                return;
            }
            notified.await;
        }
    }

    // === lookup ===

    fn url_of(
        &self,
        parts: &request::Parts,
        route: &RouteCacheContext,
    ) -> Result<String, key::KeyError> {
        let authority = route
            .authority
            .clone()
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            })
            .ok_or_else(|| key::KeyError::NotAbsolute(parts.uri.to_string()))?;
        let scheme = parts.uri.scheme_str().unwrap_or(&route.scheme);
        let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        key::normalize_url(
            scheme,
            &authority,
            pq,
            &[
                &self.inner.cfg.ignore_query_params,
                &route.config.ignore_query_params,
            ],
        )
    }

    #[allow(clippy::type_complexity)]
    fn lookup(
        &self,
        primary: &PrimaryKey,
        headers: &HeaderMap,
    ) -> (
        Option<Vec<HeaderName>>,
        Option<(VariantKey, Arc<CachedResponse>)>,
    ) {
        let Some(vary) = self.inner.storage.vary(primary) else {
            return (None, None);
        };
        let key = primary.variant(key::secondary_key(headers, &vary));
        let found = self.inner.storage.get(&key).map(|o| (key, o));
        (Some(vary), found)
    }

    // === stored responses ===

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
                        .pass(parts, body::empty(), route, &origin, fwd, Some("head"))
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
    async fn revalidate(
        &self,
        parts: request::Parts,
        route: &RouteCacheContext,
        origin: Arc<dyn Origin>,
        key: VariantKey,
        obj: Arc<CachedResponse>,
        rd: RequestDirectives,
        fwd: Fwd,
        flight: Option<FlightGuard>,
    ) -> Response<Body> {
        let request_time = self.inner.clock.now();
        let res = origin.fetch(conditional_request(&parts, &obj)).await;
        let response_time = self.inner.clock.now();
        let mut d = CacheDecision::new(CacheStatus::Revalidated);
        d.fwd = Some(fwd);
        match res {
            Ok(res) if res.status() == StatusCode::NOT_MODIFIED => {
                self.inner.stats.revalidation(&route.route, "not_modified");
                let merged =
                    self.merge_304(&obj, res.headers(), request_time, response_time, route);
                self.inner
                    .storage
                    .put(key, key_vary(&merged.headers), merged.clone());
                d.fwd_status = Some(304);
                d.stored = true;
                d.ttl = Some(merged.freshness.ttl(response_time));
                self.respond_stored(&parts, route, &merged, d, response_time)
            }
            Ok(res)
                if res.status().is_server_error()
                    && policy::stale_if_error_allows(&obj.freshness, response_time) =>
            {
                self.inner.stats.revalidation(&route.route, "error");
                d.status = CacheStatus::Stale;
                d.fwd_status = Some(res.status().as_u16());
                d.detail = Some("stale-if-error");
                d.ttl = Some(obj.freshness.ttl(response_time));
                self.respond_stored(&parts, route, &obj, d, response_time)
            }
            Err(e) if policy::stale_if_error_allows(&obj.freshness, response_time) => {
                self.inner.stats.revalidation(&route.route, "error");
                tracing::warn!(route = %route.route, error = %e, "origin failed; serving stale-if-error");
                d.status = CacheStatus::Stale;
                d.detail = Some("stale-if-error");
                d.ttl = Some(obj.freshness.ttl(response_time));
                self.respond_stored(&parts, route, &obj, d, response_time)
            }
            Err(e) => {
                self.inner.stats.revalidation(&route.route, "error");
                d.status = CacheStatus::Expired;
                self.origin_failed(route, d, e)
            }
            Ok(res) => {
                self.inner.stats.revalidation(&route.route, "modified");
                d.status = CacheStatus::Expired;
                self.store_response(
                    res,
                    &parts,
                    route,
                    key_primary(&key),
                    &rd,
                    request_time,
                    response_time,
                    flight,
                    d,
                    Some(&key),
                )
            }
        }
    }

    /// RFC 9111 §4.3.4: update the stored header fields with those of the
    /// 304, except `Content-Length` and fields never stored.
    fn merge_304(
        &self,
        obj: &CachedResponse,
        fresh_headers: &HeaderMap,
        request_time: DateTime<Utc>,
        response_time: DateTime<Utc>,
        route: &RouteCacheContext,
    ) -> Arc<CachedResponse> {
        let mut headers = obj.headers.clone();
        for name in fresh_headers.keys() {
            if !never_stored(name) && name != header::CONTENT_LENGTH {
                headers.remove(name);
            }
        }
        for (name, value) in fresh_headers {
            if !never_stored(name) && name != header::CONTENT_LENGTH {
                headers.append(name.clone(), value.clone());
            }
        }
        if !fresh_headers.contains_key(header::DATE) {
            // The stored Date describes the old response; keeping it would
            // age the validated entry by its whole past life.
            if let Ok(v) = HeaderValue::from_str(&fmt_http_date(response_time)) {
                headers.insert(header::DATE, v);
            }
        }
        let dirs = ResponseDirectives::from_headers(&headers);
        let mut for_age = headers.clone();
        if let Some(age) = fresh_headers.get(header::AGE) {
            for_age.insert(header::AGE, age.clone());
        }
        let freshness = Freshness::compute(
            &for_age,
            &dirs,
            request_time,
            response_time,
            &self.inner.cfg,
            &route.config,
        );
        let tags = self.tags_of(&headers);
        Arc::new(CachedResponse::new(
            route.route.clone(),
            obj.status,
            headers,
            obj.body.clone(),
            tags,
            freshness,
        ))
    }

    fn respond_stored(
        &self,
        parts: &request::Parts,
        route: &RouteCacheContext,
        obj: &CachedResponse,
        d: CacheDecision,
        now: DateTime<Utc>,
    ) -> Response<Body> {
        let mut headers = obj.headers.clone();
        headers.insert(
            header::AGE,
            HeaderValue::from(obj.freshness.current_age(now)),
        );
        let not_modified =
            obj.status == StatusCode::OK && client_validator_matches(&parts.headers, obj);
        let (status, body) = if not_modified {
            headers.remove(header::CONTENT_LENGTH);
            (StatusCode::NOT_MODIFIED, body::empty())
        } else if parts.method == Method::HEAD {
            (obj.status, body::empty())
        } else {
            (obj.status, body::full(obj.body.clone()))
        };
        if !not_modified && parts.method == Method::GET {
            self.inner
                .stats
                .served_bytes(&route.route, obj.body.len() as u64);
        }
        let mut res = Response::new(body);
        *res.status_mut() = status;
        *res.headers_mut() = headers;
        self.finish(res, route, d)
    }

    // === misses ===

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

    /// Joins the flight for `key`: the first caller leads (and must hold
    /// the guard until its outcome is stored), later callers wait.
    fn join_flight(&self, key: FlightKey) -> Role {
        let mut flights = self.inner.flights.lock();
        if let Some((_, rx)) = flights.get(&key) {
            return Role::Waiter(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        let id = self.inner.next_flight.fetch_add(1, Ordering::Relaxed);
        flights.insert(key.clone(), (id, rx));
        Role::Leader(FlightGuard {
            inner: self.inner.clone(),
            key,
            id,
            _tx: tx,
        })
    }

    /// Waits (at most `coalesce_timeout`) for the leader, then answers from
    /// what it stored if that is fresh for this request; `None` means the
    /// caller goes to the origin itself.
    async fn await_flight(
        &self,
        mut rx: watch::Receiver<()>,
        parts: &request::Parts,
        route: &RouteCacheContext,
        primary: &PrimaryKey,
        rd: &RequestDirectives,
    ) -> Option<Response<Body>> {
        let waited = tokio::time::timeout(self.inner.cfg.coalesce_timeout, rx.changed()).await;
        if waited.is_err() {
            tracing::debug!(route = %route.route, url = %primary.url, "coalesce timeout; fetching alone");
        }
        let (_, (_, obj)) = match self.lookup(primary, &parts.headers) {
            (v, Some(found)) => (v, found),
            _ => return None,
        };
        let now = self.inner.clock.now();
        if policy::usability(&obj.freshness, obj.is_invalidated(), rd, now) != Usability::Fresh {
            return None;
        }
        let mut d = CacheDecision::new(CacheStatus::Hit);
        d.ttl = Some(obj.freshness.ttl(now));
        d.collapsed = true;
        Some(self.respond_stored(parts, route, &obj, d, now))
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

    /// Decides whether `res` is stored; if so, tees its body into storage.
    #[allow(clippy::too_many_arguments)]
    fn store_response(
        &self,
        res: Response<Body>,
        req: &request::Parts,
        route: &RouteCacheContext,
        primary: PrimaryKey,
        rd: &RequestDirectives,
        request_time: DateTime<Utc>,
        response_time: DateTime<Utc>,
        flight: Option<FlightGuard>,
        mut d: CacheDecision,
        replaces: Option<&VariantKey>,
    ) -> Response<Body> {
        let (res_parts, res_body) = res.into_parts();
        d.fwd_status = Some(res_parts.status.as_u16());
        let planned = self
            .plan_store(
                req,
                route,
                primary,
                rd,
                &res_parts,
                request_time,
                response_time,
            )
            .and_then(|plan| {
                // Bodies known to be too large are never buffered at all.
                match http_body::Body::size_hint(&res_body).exact() {
                    Some(n) if n > self.inner.cfg.max_object_bytes => {
                        Err(NotStoredReason::TooLarge)
                    }
                    _ => Ok(plan),
                }
            });
        match planned {
            Err(reason) => {
                self.inner.stats.not_stored(&route.route, reason);
                d.detail = Some(reason.as_str());
                if let Some(old) = replaces {
                    // The origin sent a new response that may not be stored:
                    // the old one is outdated and must not be reused.
                    self.inner.storage.remove(old);
                }
                drop(flight);
                self.finish(Response::from_parts(res_parts, res_body), route, d)
            }
            Ok(plan) => {
                d.stored = true;
                let job = StoreJob {
                    inner: self.inner.clone(),
                    plan,
                    _flight: flight,
                };
                let limit = usize::try_from(self.inner.cfg.max_object_bytes).unwrap_or(usize::MAX);
                let tee = TeeBody::new(res_body, limit, Box::new(job));
                self.finish(
                    Response::from_parts(res_parts, tee.boxed_unsync()),
                    route,
                    d,
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_store(
        &self,
        req: &request::Parts,
        route: &RouteCacheContext,
        primary: PrimaryKey,
        rd: &RequestDirectives,
        res: &http::response::Parts,
        request_time: DateTime<Utc>,
        response_time: DateTime<Utc>,
    ) -> Result<StorePlan, NotStoredReason> {
        let dirs = ResponseDirectives::from_headers(&res.headers);
        policy::storable(
            &req.method,
            &req.headers,
            rd,
            res.status,
            &res.headers,
            &dirs,
            &route.config,
        )?;
        let declared = res
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.inner.cfg.max_object_bytes) {
            return Err(NotStoredReason::TooLarge);
        }
        let freshness = Freshness::compute(
            &res.headers,
            &dirs,
            request_time,
            response_time,
            &self.inner.cfg,
            &route.config,
        );
        if !policy::worth_storing(&freshness, &res.headers) {
            return Err(NotStoredReason::NoFreshness);
        }
        let vary = key_vary(&res.headers);
        let key = primary.variant(key::secondary_key(&req.headers, &vary));
        let mut headers = HeaderMap::with_capacity(res.headers.len());
        for (name, value) in &res.headers {
            if !never_stored(name) && name != header::SET_COOKIE {
                headers.append(name.clone(), value.clone());
            }
        }
        if !headers.contains_key(header::DATE) {
            // A stored response always carries Date (RFC 9110 §6.6.1).
            if let Ok(v) = HeaderValue::from_str(&fmt_http_date(response_time)) {
                headers.insert(header::DATE, v);
            }
        }
        let tags = self.tags_of(&headers);
        Ok(StorePlan {
            key,
            vary,
            route: route.route.clone(),
            status: res.status,
            headers,
            tags,
            freshness,
        })
    }

    fn tags_of(&self, headers: &HeaderMap) -> Vec<String> {
        let mut tags: Vec<String> = headers
            .get_all(&self.inner.tag_header)
            .iter()
            .chain(headers.get_all(&CACHE_TAG).iter())
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([' ', ',', '\t']))
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        tags.sort();
        tags.dedup();
        tags
    }

    // === background refresh ===

    fn spawn_refresh(
        &self,
        parts: &request::Parts,
        route: &RouteCacheContext,
        origin: Arc<dyn Origin>,
        key: VariantKey,
        obj: Arc<CachedResponse>,
    ) {
        if !self.inner.refreshing.lock().insert(key.clone()) {
            return;
        }
        let guard = RefreshGuard {
            inner: self.inner.clone(),
            key: key.clone(),
        };
        let this = self.clone();
        let route = route.clone();
        let mut parts = parts.clone();
        parts.method = Method::GET;
        tokio::spawn(async move {
            let _guard = guard;
            let request_time = this.inner.clock.now();
            let res = origin.fetch(conditional_request(&parts, &obj)).await;
            let response_time = this.inner.clock.now();
            let outcome = match res {
                Ok(res) if res.status() == StatusCode::NOT_MODIFIED => {
                    let merged =
                        this.merge_304(&obj, res.headers(), request_time, response_time, &route);
                    this.inner
                        .storage
                        .put(key, key_vary(&merged.headers), merged);
                    "not_modified"
                }
                Ok(res) => {
                    let rd = RequestDirectives::from_headers(&parts.headers);
                    let (res_parts, res_body) = res.into_parts();
                    match this.plan_store(
                        &parts,
                        &route,
                        key_primary(&key),
                        &rd,
                        &res_parts,
                        request_time,
                        response_time,
                    ) {
                        Ok(plan) => {
                            let limit = usize::try_from(this.inner.cfg.max_object_bytes)
                                .unwrap_or(usize::MAX);
                            match collect_limited(res_body, limit).await {
                                Some(bytes) => {
                                    let (key, vary, obj) = plan.into_object(bytes);
                                    this.inner.storage.put(key, vary, obj);
                                    this.inner.stats.stored(&route.route);
                                    "modified"
                                }
                                None => "error",
                            }
                        }
                        Err(reason) => {
                            this.inner.stats.not_stored(&route.route, reason);
                            this.inner.storage.remove(&key);
                            "uncacheable"
                        }
                    }
                }
                Err(_) => "error",
            };
            this.inner.stats.revalidation(&route.route, outcome);
            tracing::debug!(route = %route.route, outcome, "background refresh done");
        });
    }

    // === pass-through paths ===

    async fn pass(
        &self,
        parts: request::Parts,
        req_body: Body,
        route: &RouteCacheContext,
        origin: &Arc<dyn Origin>,
        fwd: Fwd,
        detail: Option<&'static str>,
    ) -> Response<Body> {
        let status = match fwd {
            Fwd::Bypass | Fwd::Method => CacheStatus::Bypass,
            _ => CacheStatus::Miss,
        };
        let mut d = CacheDecision::new(status);
        d.fwd = Some(fwd);
        d.detail = detail;
        match origin.fetch(Request::from_parts(parts, req_body)).await {
            Ok(res) => {
                d.fwd_status = Some(res.status().as_u16());
                self.finish(res, route, d)
            }
            Err(e) => self.origin_failed(route, d, e),
        }
    }

    async fn unsafe_method(
        &self,
        parts: request::Parts,
        req_body: Body,
        route: &RouteCacheContext,
        origin: &Arc<dyn Origin>,
    ) -> Response<Body> {
        let target = self.url_of(&parts, route).ok();
        let mut d = CacheDecision::new(CacheStatus::Bypass);
        d.fwd = Some(Fwd::Method);
        let res = match origin.fetch(Request::from_parts(parts, req_body)).await {
            Ok(res) => res,
            Err(e) => return self.origin_failed(route, d, e),
        };
        d.fwd_status = Some(res.status().as_u16());
        let status = res.status();
        if let Some(target) = target.filter(|_| status.is_success() || status.is_redirection()) {
            let mut urls = vec![target.clone()];
            for h in [header::LOCATION, header::CONTENT_LOCATION] {
                if let Some(u) = res.headers().get(&h).and_then(|v| v.to_str().ok()) {
                    if let Some(u) =
                        same_origin_url(&target, u, &self.inner.cfg.ignore_query_params)
                    {
                        urls.push(u);
                    }
                }
            }
            urls.dedup();
            let mut purged = 0;
            for u in urls {
                purged += self.inner.storage.purge(&PurgeSelector::Url(u), false);
            }
            if purged > 0 {
                tracing::debug!(route = %route.route, purged, "invalidated after unsafe method");
            }
        }
        self.finish(res, route, d)
    }

    fn unavailable(&self, route: &RouteCacheContext, fwd: Fwd) -> Response<Body> {
        let mut d = CacheDecision::new(CacheStatus::Unavailable);
        d.detail = Some("only-if-cached");
        let _ = fwd;
        let problem = Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "cache_only_if_cached_miss",
            "the request said only-if-cached and no usable stored response exists",
        );
        self.finish(problem_response(problem), route, d)
    }

    fn origin_failed(
        &self,
        route: &RouteCacheContext,
        d: CacheDecision,
        e: OriginError,
    ) -> Response<Body> {
        tracing::debug!(route = %route.route, error = %e, "origin failed");
        self.finish(problem_response(e.problem), route, d)
    }

    /// Adds `Cache-Status` and records the decision.
    fn finish(
        &self,
        mut res: Response<Body>,
        route: &RouteCacheContext,
        d: CacheDecision,
    ) -> Response<Body> {
        res.headers_mut()
            .append(CACHE_STATUS.clone(), d.header_value());
        self.inner.stats.request(&route.route, d.status);
        tracing::trace!(route = %route.route, status = d.status.as_str(), detail = d.detail, "cache decision");
        res
    }
}

/// Reads a whole body of at most `limit` bytes; `None` when it is larger
/// or fails.
async fn collect_limited(mut body: Body, limit: usize) -> Option<Bytes> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            if buf.len() + data.len() > limit {
                return None;
            }
            buf.extend_from_slice(&data);
        }
    }
    Some(buf.freeze())
}

fn problem_response(problem: Problem) -> Response<Body> {
    let res: Response<Bytes> = problem.into_response();
    res.map(body::full)
}

fn key_vary(headers: &HeaderMap) -> Vec<HeaderName> {
    key::parse_vary(headers).unwrap_or_default()
}

fn key_primary(key: &VariantKey) -> PrimaryKey {
    PrimaryKey {
        url: key.url.clone(),
        extra: key.extra.clone(),
    }
}

/// Header fields a cache never stores or forwards from storage: hop-by-hop
/// fields (RFC 9110 §7.6.1), `Age` (recomputed on every use) and upstream
/// `Cache-Status` (describes a past request).
fn never_stored(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "age"
            | "cache-status"
    )
}

const CONDITIONALS: [HeaderName; 5] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
];

fn strip_conditionals(headers: &mut HeaderMap) {
    for h in &CONDITIONALS {
        headers.remove(h);
    }
}

/// The origin request revalidating `obj`: the client's request with the
/// stored validators instead of the client's own (RFC 9111 §4.3.1).
fn conditional_request(parts: &request::Parts, obj: &CachedResponse) -> Request<Body> {
    let mut p = parts.clone();
    p.method = Method::GET;
    strip_conditionals(&mut p.headers);
    if let Some(etag) = obj.headers.get(header::ETAG) {
        p.headers.insert(header::IF_NONE_MATCH, etag.clone());
    }
    if let Some(lm) = obj.headers.get(header::LAST_MODIFIED) {
        p.headers.insert(header::IF_MODIFIED_SINCE, lm.clone());
    }
    Request::from_parts(p, body::empty())
}

/// Whether the client's own validators match the stored response, so it
/// can be answered 304 (RFC 9111 §4.3.2, RFC 9110 §13.1.2-3).
fn client_validator_matches(req: &HeaderMap, obj: &CachedResponse) -> bool {
    if req.contains_key(header::IF_NONE_MATCH) {
        let Some(etag) = obj.headers.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
        let stored = weak(etag);
        return req
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim() == "*" || weak(t) == stored);
    }
    if let Some(since) = header_date(req, &header::IF_MODIFIED_SINCE) {
        let lm = header_date(&obj.headers, &header::LAST_MODIFIED)
            .or_else(|| header_date(&obj.headers, &header::DATE));
        return lm.is_some_and(|lm| lm <= since);
    }
    false
}

/// Resolves a `Location`/`Content-Location` value against `target` and
/// keeps it only when it is on the same scheme and host (RFC 9111 §4.4).
fn same_origin_url(target: &str, value: &str, ignore: &[String]) -> Option<String> {
    let origin_end = target.find("://").map(|i| i + 3)?;
    let host_end = target[origin_end..]
        .find('/')
        .map_or(target.len(), |i| origin_end + i);
    let origin = &target[..host_end];
    let abs = if value.starts_with('/') && !value.starts_with("//") {
        format!("{origin}{value}")
    } else if value.contains("://") {
        value.to_string()
    } else {
        return None;
    };
    let normalized = key::normalize_absolute(&abs, &[ignore]).ok()?;
    (normalized.starts_with(origin) && normalized[origin.len()..].starts_with('/'))
        .then_some(normalized)
}

/// Everything needed to store a response once its body is complete.
struct StorePlan {
    key: VariantKey,
    vary: Vec<HeaderName>,
    route: Arc<str>,
    status: StatusCode,
    headers: HeaderMap,
    tags: Vec<String>,
    freshness: Freshness,
}

impl StorePlan {
    fn into_object(mut self, body: Bytes) -> (VariantKey, Vec<HeaderName>, Arc<CachedResponse>) {
        // Served from storage with a known length, whatever framing the
        // origin used.
        self.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let obj = CachedResponse::new(
            self.route,
            self.status,
            self.headers,
            body,
            self.tags,
            self.freshness,
        );
        (self.key, self.vary, Arc::new(obj))
    }
}

/// Stores a teed body when it completes; dropping it releases the flight.
struct StoreJob {
    inner: Arc<Inner>,
    plan: StorePlan,
    _flight: Option<FlightGuard>,
}

impl OnComplete for StoreJob {
    fn complete(self: Box<Self>, body: Bytes) {
        let StoreJob {
            inner,
            plan,
            _flight,
        } = *self;
        let route = plan.route.clone();
        let (key, vary, obj) = plan.into_object(body);
        inner.storage.put(key, vary, obj);
        inner.stats.stored(&route);
        Stats::bytes_gauge(inner.storage.usage().bytes);
        // `_flight` drops here, after the put: waiters find the entry.
    }

    fn too_large(self: Box<Self>) {
        self.inner
            .stats
            .not_stored(&self.plan.route, NotStoredReason::TooLarge);
    }
}

enum Role {
    Leader(FlightGuard),
    Waiter(watch::Receiver<()>),
}

/// Held by the leader of a coalesced miss; dropping it wakes the waiters.
struct FlightGuard {
    inner: Arc<Inner>,
    key: FlightKey,
    id: u64,
    _tx: watch::Sender<()>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut flights = self.inner.flights.lock();
        if flights.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            flights.remove(&self.key);
        }
    }
}

/// Held by a background refresh; dropping it allows the next one.
struct RefreshGuard {
    inner: Arc<Inner>,
    key: VariantKey,
}

impl Drop for RefreshGuard {
    fn drop(&mut self) {
        self.inner.refreshing.lock().remove(&self.key);
        self.inner.refresh_done.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_resolution_stays_on_origin() {
        let t = "https://h/items";
        assert_eq!(
            same_origin_url(t, "/items/7", &[]).as_deref(),
            Some("https://h/items/7")
        );
        assert_eq!(
            same_origin_url(t, "https://H:443/x", &[]).as_deref(),
            Some("https://h/x")
        );
        assert_eq!(same_origin_url(t, "https://other/x", &[]), None);
        assert_eq!(same_origin_url(t, "https://h.evil/x", &[]), None);
        assert_eq!(same_origin_url(t, "//other/x", &[]), None);
        assert_eq!(same_origin_url(t, "relative", &[]), None);
    }
}
