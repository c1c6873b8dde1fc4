//! cors: on a route with `cors`, a preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) is answered here and goes no further:
//! not to authentication (browsers send preflights without credentials)
//! and never to the upstream. Any other request's `Origin` is kept for
//! the response stage, which adds the CORS headers.

use gateway_core::{errors, Body, Problem};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use super::context::{Refusal, RequestContext, Routed};
use crate::cors::{self, PreflightRefused};

/// `Vary` of a preflight answer, allowed or refused: it depends on all
/// three request headers.
const PREFLIGHT_VARY: &str =
    "origin, access-control-request-method, access-control-request-headers";

/// The preflight's answer, or `None` for a request that goes on.
pub(super) fn preflight_or_note<B>(
    req: &Request<B>,
    routed: &Routed,
    ctx: &mut RequestContext,
) -> Option<Result<Response<Body>, Refusal>> {
    let policy = routed.route().cors.as_ref()?;
    let origin = req.headers().get(header::ORIGIN)?.clone();
    let Some(method) = cors::preflight_method(req.method(), req.headers()) else {
        ctx.cors_origin = Some(origin);
        return None;
    };
    metrics::counter!("gatehouse_cors_preflights_total", "route" => routed.route().name.to_string())
        .increment(1);
    let vary = HeaderValue::from_static(PREFLIGHT_VARY);
    Some(match policy.preflight(&origin, &method, req.headers()) {
        Ok(headers) => {
            let mut res = Response::new(gateway_core::body::empty());
            *res.status_mut() = StatusCode::NO_CONTENT;
            res.headers_mut().extend(headers);
            res.headers_mut().insert(header::VARY, vary);
            Ok(res)
        }
        Err(PreflightRefused(why)) => {
            let mut refusal = Refusal::from(Problem::new(
                &errors::CORS_REFUSED,
                format!("CORS preflight refused: {why}"),
            ));
            refusal.headers.insert(header::VARY, vary);
            Err(refusal)
        }
    })
}
