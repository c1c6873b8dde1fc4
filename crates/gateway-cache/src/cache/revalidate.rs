//! Revalidation of a stored response with its validators
//! (`If-None-Match`/`If-Modified-Since`, RFC 9111 §4.3): a 304 merges the
//! new header fields into the stored entry (§4.3.4), a new response goes
//! through admission, and an origin failure serves stale when
//! `stale-if-error` allows. A HEAD that went to the origin updates the
//! stored GET the same way when its validators match (§4.3.5).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gateway_core::{body, Body};
use http::{header, request, HeaderMap, HeaderValue, Request, Response, StatusCode};

use super::admission::UnstoredFields;
use super::coalesce::FlightGuard;
use super::lookup::{key_primary, key_vary};
use super::origin::Origin;
use super::route::RouteCacheContext;
use super::state::HttpCache;
use super::validators::conditional_request;
use crate::directives::{fmt_http_date, RequestDirectives};
use crate::key::VariantKey;
use crate::policy::{self, Freshness};
use crate::status::{CacheDecision, CacheStatus, Fwd};
use crate::storage::CachedResponse;

impl HttpCache {
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn revalidate(
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

    /// A HEAD request that needs the origin goes there as it is; a 200
    /// answer updates the stored GET it could have been served from
    /// (RFC 9111 §4.3.5): with matching validators its header fields and
    /// freshness are merged as from a 304, otherwise the stored response is
    /// stale from now on.
    pub(crate) async fn revalidate_by_head(
        &self,
        parts: request::Parts,
        route: &RouteCacheContext,
        origin: &Arc<dyn Origin>,
        fwd: Fwd,
        key: VariantKey,
        obj: Arc<CachedResponse>,
    ) -> Response<Body> {
        let mut d = CacheDecision::new(CacheStatus::Miss);
        d.fwd = Some(fwd);
        d.detail = Some("head");
        let request_time = self.inner.clock.now();
        let res = origin
            .fetch(Request::from_parts(parts, body::empty()))
            .await;
        let response_time = self.inner.clock.now();
        let res = match res {
            Ok(res) => res,
            Err(e) => return self.origin_failed(route, d, e),
        };
        d.fwd_status = Some(res.status().as_u16());
        if res.status() == StatusCode::OK {
            if head_matches_stored(res.headers(), &obj) {
                self.inner.stats.revalidation(&route.route, "not_modified");
                let merged =
                    self.merge_304(&obj, res.headers(), request_time, response_time, route);
                self.inner
                    .storage
                    .put(key, key_vary(&merged.headers), merged);
                d.stored = true;
            } else {
                self.inner.stats.revalidation(&route.route, "modified");
                self.inner.storage.mark_stale(&key, &obj);
            }
        }
        self.finish(res, route, d)
    }

    /// RFC 9111 §4.3.4: update the stored header fields with those of the
    /// 304, except `Content-Length` and fields never stored.
    pub(crate) fn merge_304(
        &self,
        obj: &CachedResponse,
        fresh_headers: &HeaderMap,
        request_time: DateTime<Utc>,
        response_time: DateTime<Utc>,
        route: &RouteCacheContext,
    ) -> Arc<CachedResponse> {
        let mut headers = obj.headers.clone();
        let unstored = UnstoredFields::of(fresh_headers);
        for name in fresh_headers.keys() {
            if !unstored.excludes(name) && name != header::CONTENT_LENGTH {
                headers.remove(name);
            }
        }
        for (name, value) in fresh_headers {
            if !unstored.excludes(name) && name != header::CONTENT_LENGTH {
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
        let dirs = self.response_directives(&headers);
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
}

/// Whether a HEAD response describes the stored GET response (RFC 9111
/// §4.3.5): it carries at least one validator, every validator it carries
/// equals the stored one, and its `Content-Length`, if any, is the stored
/// body's length.
fn head_matches_stored(head: &HeaderMap, obj: &CachedResponse) -> bool {
    let validators = [header::ETAG, header::LAST_MODIFIED];
    let received: Vec<_> = validators
        .iter()
        .filter_map(|name| head.get(name).map(|v| (name, v)))
        .collect();
    if received.is_empty() {
        return false;
    }
    let validators_match = received
        .iter()
        .all(|(name, value)| obj.headers.get(*name) == Some(*value));
    let length_matches = head.get(header::CONTENT_LENGTH).is_none_or(|v| {
        v.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()) == Some(obj.body.len())
    });
    validators_match && length_matches
}
