//! response: the answer as the client gets it, whether it came from the
//! upstream, the cache or a refusal: hop-by-hop headers out, the route's
//! response headers, the request id and the plan's `RateLimit-*` state.
//! A refused gRPC call gets its gRPC status instead of problem+json.

use std::borrow::Cow;

use gateway_core::{grpc, Body};
use http::{Response, StatusCode};

use super::context::{Refusal, RequestContext};
use crate::headers;

/// A refusal as a problem+json response carrying the request id, or for a
/// gRPC call as a trailers-only response with the entry's gRPC status.
pub(super) fn refusal(refusal: Refusal, ctx: &mut RequestContext) -> Response<Body> {
    if ctx.error.is_none() {
        ctx.error = Some(Cow::Borrowed(refusal.problem.code()));
    }
    let mut res = if ctx.grpc {
        grpc::trailers_only(&refusal.problem)
    } else {
        refusal
            .problem
            .with("request_id", ctx.request_id.to_str().unwrap_or_default())
            .response()
    };
    res.headers_mut().extend(refusal.headers);
    res
}

/// Cleans up and decorates the response.
pub(super) fn decorate(mut res: Response<Body>, ctx: &RequestContext) -> Response<Body> {
    let upgrading = res.status() == StatusCode::SWITCHING_PROTOCOLS;
    headers::strip_hop_by_hop(res.headers_mut(), upgrading);
    if let Some(route) = &ctx.route {
        // CORS headers after the cache: each request's own origin.
        if let (Some(cors), false) = (&route.cors, ctx.cors_preflight) {
            cors.decorate(res.headers_mut(), ctx.cors_origin.as_ref());
        }
        route.response_headers.apply(res.headers_mut());
    }
    res.headers_mut()
        .insert(headers::X_REQUEST_ID, ctx.request_id.clone());
    if let Some(info) = &ctx.rate_limit {
        info.apply(res.headers_mut());
    }
    res
}
