//! Admission: whether an origin response may be stored (RFC 9111 §3 via
//! [`policy`]), what is stored (headers filtered, `Date`
//! ensured, surrogate tags read), and teeing its body into storage while it
//! streams to the client.
//!
//! Used by misses, by revalidations that got a new response and by
//! background refreshes.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use gateway_core::Body;
use http::{header, request, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;

use super::coalesce::FlightGuard;
use super::lookup::key_vary;
use super::partial::StoringCopy;
use super::respond::CACHE_TAG;
use super::route::RouteCacheContext;
use super::state::{HttpCache, Inner};
use crate::directives::{fmt_http_date, RequestDirectives, ResponseDirectives};
use crate::key::{self, PrimaryKey, VariantKey};
use crate::policy::{self, Freshness};
use crate::stats::Stats;
use crate::status::{CacheDecision, NotStoredReason};
use crate::storage::CachedResponse;
use crate::targeted;
use crate::tee::{OnComplete, TeeBody};

impl HttpCache {
    /// Decides whether `res` is stored; if so, tees its body into storage.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn store_response(
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
                let mut res = Response::from_parts(res_parts, tee.boxed_unsync());
                res.extensions_mut().insert(StoringCopy);
                self.finish(res, route, d)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn plan_store(
        &self,
        req: &request::Parts,
        route: &RouteCacheContext,
        primary: PrimaryKey,
        rd: &RequestDirectives,
        res: &http::response::Parts,
        request_time: DateTime<Utc>,
        response_time: DateTime<Utc>,
    ) -> Result<StorePlan, NotStoredReason> {
        let dirs = self.response_directives(&res.headers);
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
        let unstored = UnstoredFields::of(&res.headers);
        for (name, value) in &res.headers {
            if !unstored.excludes(name) && name != header::SET_COOKIE {
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

    /// The response directives this cache follows: a targeted field's
    /// when there is a valid one (RFC 9213), else `Cache-Control`'s.
    pub(crate) fn response_directives(&self, headers: &HeaderMap) -> ResponseDirectives {
        targeted::response_directives(headers, &self.inner.targeted)
    }

    pub(crate) fn tags_of(&self, headers: &HeaderMap) -> Vec<String> {
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

/// Which fields of one response are left out of storage: those
/// [`never_stored`] names, plus the fields its `Connection` header lists,
/// which are hop-by-hop for that message only (RFC 9110 §7.6.1). A stored
/// copy loses its `Connection` header, so nothing later could tell that
/// they must not be forwarded.
pub(crate) struct UnstoredFields {
    connection_named: Vec<HeaderName>,
}

impl UnstoredFields {
    /// The fields `headers` must not pass on to storage.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let connection_named = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        Self { connection_named }
    }

    /// Whether `name` is left out.
    pub(crate) fn excludes(&self, name: &HeaderName) -> bool {
        never_stored(name) || self.connection_named.contains(name)
    }
}

/// Everything needed to store a response once its body is complete.
pub(crate) struct StorePlan {
    key: VariantKey,
    vary: Vec<HeaderName>,
    route: Arc<str>,
    status: StatusCode,
    headers: HeaderMap,
    tags: Vec<String>,
    freshness: Freshness,
}

impl StorePlan {
    pub(crate) fn into_object(
        mut self,
        body: Bytes,
    ) -> (VariantKey, Vec<HeaderName>, Arc<CachedResponse>) {
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
