//! Every response the cache sends ends here: `Cache-Status` added and the
//! decision counted ([`HttpCache::finish`]), stored responses rendered with
//! `Age` (or 304 to the client's validators), pass-through and problem
//! answers.
//!
//! One place for the response side, so no path can forget `Cache-Status`
//! or the statistics.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use gateway_core::{body, errors, Body, Problem};
use http::{header, request, HeaderName, HeaderValue, Method, Request, Response, StatusCode};

use super::origin::{Origin, OriginError};
use super::route::RouteCacheContext;
use super::state::HttpCache;
use super::validators::client_validator_matches;
use crate::status::{CacheDecision, CacheStatus, Fwd};
use crate::storage::CachedResponse;
use std::sync::Arc;

/// The `Cache-Status` header name (RFC 9211).
pub static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// The Cloudflare-style tag header, always read besides the configured one.
pub(crate) static CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

impl HttpCache {
    pub(crate) fn respond_stored(
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

    pub(crate) async fn pass(
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

    pub(crate) fn unavailable(&self, route: &RouteCacheContext, fwd: Fwd) -> Response<Body> {
        let mut d = CacheDecision::new(CacheStatus::Unavailable);
        d.detail = Some("only-if-cached");
        let _ = fwd;
        let problem = Problem::new(
            &errors::CACHE_ONLY_IF_CACHED_MISS,
            "the request said only-if-cached and no usable stored response exists",
        );
        self.finish(problem_response(problem), route, d)
    }

    pub(crate) fn origin_failed(
        &self,
        route: &RouteCacheContext,
        d: CacheDecision,
        e: OriginError,
    ) -> Response<Body> {
        tracing::debug!(route = %route.route, error = %e, "origin failed");
        self.finish(problem_response(e.problem), route, d)
    }

    /// Adds `Cache-Status`, removes what stays inside the cache and records
    /// the decision.
    pub(crate) fn finish(
        &self,
        mut res: Response<Body>,
        route: &RouteCacheContext,
        d: CacheDecision,
    ) -> Response<Body> {
        if !self.inner.cfg.forward_tag_headers {
            let headers = res.headers_mut();
            headers.remove(&self.inner.tag_header);
            headers.remove(&CACHE_TAG);
        }
        if !self.inner.cfg.forward_targeted_cache_control {
            for name in &self.inner.targeted {
                res.headers_mut().remove(name);
            }
        }
        res.headers_mut()
            .append(CACHE_STATUS.clone(), d.header_value());
        self.inner.stats.request(&route.route, d.status);
        tracing::trace!(route = %route.route, status = d.status.as_str(), detail = d.detail, "cache decision");
        res
    }
}

fn problem_response(problem: Problem) -> Response<Body> {
    let res: Response<Bytes> = problem.into_response();
    res.map(body::full)
}
