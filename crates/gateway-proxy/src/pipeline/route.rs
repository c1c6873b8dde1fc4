//! route: settle the request's one authority, drop hop-by-hop headers,
//! normalise the path, find the route, and check the declared body size
//! against it.

use std::borrow::Cow;

use gateway_core::{errors, Body, Problem};
use http::header;
use http::{Request, Uri, Version};

use super::context::{RequestContext, Routed};
use super::upstream::body_too_large;
use crate::gateway::Snapshot;
use crate::headers;

/// Routes `req`; on success the request as it goes on and its route.
pub(super) fn route(
    req: Request<Body>,
    ctx: &mut RequestContext,
    snapshot: &Snapshot,
) -> Result<(Request<Body>, Routed), Problem> {
    let (mut parts, body) = req.into_parts();
    match crate::authority::settle(&mut parts) {
        Ok(authority) => {
            ctx.host = authority.host;
            ctx.authority = authority.authority;
        }
        Err(problem) => {
            ctx.error = Some(Cow::Borrowed(errors::BAD_HOST.code));
            return Err(problem);
        }
    }
    // Hop-by-hop headers, and any the client names in `Connection`, go
    // before any stage sets a header: a client cannot name the identity
    // or forwarding headers the gateway adds and have them removed.
    let upgrade = parts.version == Version::HTTP_11 && headers::is_upgrade(&parts.headers);
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);

    let path = parts.uri.path();
    let Some(normalized) = headers::normalize_path(path) else {
        ctx.error = Some(Cow::Borrowed(errors::BAD_PATH.code));
        return Err(Problem::new(
            &errors::BAD_PATH,
            format!("path `{path}` climbs above the root"),
        ));
    };
    if normalized != path {
        let pq = match parts.uri.query() {
            Some(q) => format!("{normalized}?{q}"),
            None => normalized.into_owned(),
        };
        let mut uri = parts.uri.clone().into_parts();
        uri.path_and_query = pq.parse().ok();
        if let Ok(uri) = Uri::from_parts(uri) {
            parts.uri = uri;
        }
    }
    // A CORS preflight is routed as the request it asks about (a route
    // for `PUT` answers the `OPTIONS` before a `PUT`), or, asking for a
    // method no route takes, by host and path alone (so the route's policy
    // refuses it by name); when that route has `cors`. Otherwise it is
    // routed as the `OPTIONS` it is.
    let routes = &snapshot.routes;
    let found = crate::cors::preflight_method(&parts.method, &parts.headers)
        .and_then(|asked| {
            routes
                .find(&ctx.host, parts.uri.path(), &asked, &parts.headers)
                .or_else(|| routes.find_any_method(&ctx.host, parts.uri.path(), &parts.headers))
        })
        .filter(|m| m.route.cors.is_some())
        .or_else(|| {
            snapshot
                .routes
                .find(&ctx.host, parts.uri.path(), &parts.method, &parts.headers)
        });
    let Some(matched) = found else {
        ctx.error = Some(Cow::Borrowed(errors::ROUTE_NOT_FOUND.code));
        return Err(Problem::new(
            &errors::ROUTE_NOT_FOUND,
            format!(
                "no route matches {} {}{}",
                parts.method,
                ctx.host,
                parts.uri.path()
            ),
        ));
    };
    ctx.route = Some(matched.route.clone());
    crate::trace::routed(ctx.span.as_ref(), &parts.method, &matched.route, &ctx.host);

    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > matched.route.max_body) {
        ctx.error = Some(Cow::Borrowed(errors::BODY_TOO_LARGE.code));
        return Err(body_too_large(matched.route.max_body));
    }
    Ok((
        Request::from_parts(parts, body),
        Routed {
            matched,
            identity: None,
        },
    ))
}
