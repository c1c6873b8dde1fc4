//! cache: the response cache, for routes that have one. On a miss or a
//! revalidation the cache calls back into [`Forward`] (upstream request
//! and upstream); other routes go to it directly.

use std::sync::Arc;

use gateway_cache::{HttpCache, RouteCacheContext};
use gateway_core::{Body, Problem};
use http::{Request, Response};

use super::context::{ConnInfo, RequestContext, Routed};
use super::upstream::Forward;
use crate::headers;

pub(super) async fn cache_or_forward(
    cache: &HttpCache,
    req: Request<Body>,
    routed: &Routed,
    ctx: &RequestContext,
    conn: &ConnInfo,
    forward: Forward,
) -> Result<Response<Body>, Problem> {
    let route = routed.route();
    match &route.cache {
        // An upgrade is a GET but never a cacheable one.
        Some(cfg) if !headers::is_upgrade(req.headers()) => {
            let mut rctx = RouteCacheContext::new(route.name.clone(), cfg.clone())
                .with_authority(conn.scheme, ctx.authority.clone());
            if let Some(consumer) = routed.consumer() {
                rctx = rctx.with_consumer(consumer);
            }
            // Boxed: only cached routes pay for the cache's large future.
            Ok(Box::pin(cache.handle(req, &rctx, Arc::new(forward))).await)
        }
        _ => forward.run(req).await,
    }
}
