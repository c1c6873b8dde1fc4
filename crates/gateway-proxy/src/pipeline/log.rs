//! log: the access-log line and the request metrics, written when the
//! response body ends.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use gateway_console::history::{CacheOutcome, Sample};
use gateway_core::errors::{self, ErrorCode};
use gateway_core::Body;
use gateway_http1::splice::SpliceOffer;
use http::{Response, Version};
use http_body_util::BodyExt as _;

use super::context::{ConnInfo, RequestContext};
use crate::body::{ObservedBody, Observer};
use crate::gateway::{Gateway, InFlight};
use crate::telemetry::{AccessRecord, RequestMetrics};

/// Attaches the access-log line and the request metrics to the end of the
/// response body: they are written when the client has the whole answer
/// (or it broke off), with the bytes sent and the full duration.
pub(super) fn on_end(
    gateway: &Gateway,
    res: Response<Body>,
    mut ctx: RequestContext,
    conn: &ConnInfo,
    in_flight: Option<InFlight>,
) -> Response<Body> {
    let route = ctx.route.clone();
    let status = res.status().as_u16();
    let cache = route
        .as_ref()
        .filter(|r| r.cache.is_some())
        .and_then(|_| cache_outcome(res.headers()));
    let went_upstream = ctx.error.as_deref().is_none_or(is_upstream_error);
    // Only a traced request keeps its error code past the log line.
    let span = ctx.span.take();
    let error_code = span.as_ref().and_then(|_| ctx.error.clone());
    // The access-log line is only built when it goes somewhere.
    let record = gateway.access_log().enabled().then(|| AccessRecord {
        ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        request_id: ctx.request_id.to_str().unwrap_or_default().to_string(),
        trace_id: ctx.trace.trace_id().to_string(),
        client: ctx.client_ip.to_string(),
        listener: conn.listener,
        method: ctx.method.to_string(),
        host: ctx.host,
        path: ctx
            .path_and_query
            .as_ref()
            .map_or_else(|| "/".into(), |p| p.as_str().to_string()),
        protocol: match ctx.version {
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        },
        status,
        route: route.as_ref().map(|r| r.name.to_string()),
        upstream: route
            .as_ref()
            .filter(|_| went_upstream)
            .map(|r| r.cluster.to_string()),
        error: ctx.error,
        bytes_out: 0,
        completed: false,
        duration_ms: 0.0,
        user_agent: ctx
            .user_agent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    });
    // A spliced body's bytes pass this observer by; the offer counts them.
    let spliced = res.extensions().get::<SpliceOffer>().cloned();
    let finish = Finish {
        spliced,
        span,
        error_code,
        status,
        route,
        went_upstream,
        cache,
        // Kept to hand the line to its access log and the request to the
        // console's history.
        gateway: gateway.clone(),
        record,
        started: ctx.started,
        _in_flight: in_flight,
    };
    res.map(|b| ObservedBody::new(b, finish).boxed_unsync())
}

/// Whether a cached route's response came from the cache, from the
/// `Cache-Status` the cache stage set (RFC 9211: `hit`, or `fwd=...`).
fn cache_outcome(headers: &http::HeaderMap) -> Option<CacheOutcome> {
    let v = headers.get(&gateway_cache::CACHE_STATUS)?.to_str().ok()?;
    if v.contains("; hit") {
        Some(CacheOutcome::Hit)
    } else if v.contains("fwd=") {
        Some(CacheOutcome::Miss)
    } else {
        None
    }
}

fn is_upstream_error(code: &str) -> bool {
    // Refusals decided before any upstream was chosen.
    const BEFORE_UPSTREAM: [&ErrorCode; 6] = [
        &errors::ROUTE_NOT_FOUND,
        &errors::BAD_HOST,
        &errors::BAD_PATH,
        &errors::BODY_TOO_LARGE,
        &errors::OVERLOADED,
        &errors::UNKNOWN_UPSTREAM,
    ];
    !BEFORE_UPSTREAM.iter().any(|e| e.code == code)
}

struct Finish {
    /// The request's server span, when it is traced.
    span: Option<gateway_trace::ServerSpan>,
    /// The gateway's error code, when it answered itself.
    error_code: Option<Cow<'static, str>>,
    status: u16,
    route: Option<Arc<crate::router::Route>>,
    /// Whether the request went (or was meant to go) upstream: the
    /// `upstream` label is then the route's cluster.
    went_upstream: bool,
    /// Whether the cache answered (cached routes only).
    cache: Option<CacheOutcome>,
    gateway: Gateway,
    /// The access-log line, when the access log is on.
    record: Option<AccessRecord>,
    /// The body's splice offer: it counts the bytes the kernel moved.
    spliced: Option<SpliceOffer>,
    started: Instant,
    _in_flight: Option<InFlight>,
}

impl Observer for Finish {
    fn data(&mut self, chunk: &bytes::Bytes) {
        if let Some(r) = &mut self.record {
            r.bytes_out += chunk.len() as u64;
        }
    }

    fn end(self, completed: bool) {
        let elapsed = self.started.elapsed();
        crate::trace::end(
            self.span,
            self.status,
            self.error_code.as_deref(),
            completed,
        );
        match &self.route {
            Some(route) => route.metrics.record(
                self.status,
                self.went_upstream.then_some(&route.cluster),
                elapsed,
            ),
            None => RequestMetrics::unrouted().record(self.status, None, elapsed),
        }
        let sample = Sample {
            route: self.route.as_ref().map(|r| &*r.name),
            upstream: self
                .route
                .as_ref()
                .filter(|_| self.went_upstream)
                .map(|r| &*r.cluster),
            status: self.status,
            elapsed,
            cache: self.cache,
        };
        match &self.route {
            Some(route) => self.gateway.history().record_cached(&route.history, sample),
            None => self.gateway.history().record(sample),
        }
        let spliced = self.spliced.map_or(0, |offer| offer.moved());
        if let (true, Some(route)) = (spliced > 0, &self.route) {
            route.metrics.record_spliced(spliced);
        }
        if let Some(mut record) = self.record {
            record.bytes_out += spliced;
            record.completed = completed;
            record.duration_ms = elapsed.as_secs_f64() * 1000.0;
            self.gateway.access_log().log(record);
        }
    }
}
