//! The request pipeline: one request's trip through the gateway, stage by
//! stage, in the order they run.
//!
//! ```text
//!  client ─▶ accept ─▶ ip rules ─▶ route ─▶ ip rules ─▶ cors ─▶ client cert ─▶ authenticate ─▶ limit ─▶ mirror plan ─▶ cache ─▶ upstream request ─▶ upstream
//!                                                                                                                                                    │
//!  client ◀─ log ◀─ mirror submit ◀─ response ◀───────────────────────────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! [`Gateway::handle`] and [`Gateway::through`] below are the whole order,
//! read top to bottom; each stage with more than a call to make lives in
//! the module of its name. A stage that must answer the request itself
//! returns a [`Refusal`], which becomes the problem+json response (for a
//! gRPC call, a trailers-only response with its gRPC status); the
//! response and log stages run for every request, refused or not.
//!
//! After `route`, stages get a [`Routed`] request: the route is known, so
//! nothing downstream of it asks whether there is one.
//!
//! `log` and `mirror submit` run when the response body ends, not when the
//! headers are sent: the log line carries the bytes sent and the whole
//! duration, and the candidate is compared with what the client received.

mod accept;
mod cache;
mod client_cert;
mod context;
mod cors;
mod ip_rules;
mod log;
mod mirror;
mod response;
mod route;
mod upstream;

use std::time::Instant;

use gateway_core::Body;
use gateway_keys::auth::Decision;
use http::{Request, Response};

pub use context::{ConnInfo, Refusal, RequestContext, Routed};

use crate::gateway::{Gateway, Snapshot};
use crate::trace;
use upstream::Forward;

impl Gateway {
    /// Serves one client request through every stage.
    pub async fn handle(&self, req: Request<Body>, conn: &ConnInfo) -> Response<Body> {
        // The config this request sees from start to end.
        let snapshot = self.snapshot();
        let mut ctx = accept::arrive(&req, conn, &snapshot, self.tracer());
        let Some(in_flight) = self.admit() else {
            let res = response::refusal(accept::overloaded(), &mut ctx);
            return log::on_end(self, response::decorate(res, &ctx), ctx, conn, None);
        };
        let res = match self.through(req, &mut ctx, &snapshot, conn).await {
            Ok(res) => res,
            Err(refused) => response::refusal(refused, &mut ctx),
        };
        let res = response::decorate(res, &ctx);
        log::on_end(self, res, ctx, conn, Some(in_flight))
    }

    /// The stages between arrival and the response.
    async fn through(
        &self,
        req: Request<Body>,
        ctx: &mut RequestContext,
        snapshot: &Snapshot,
        conn: &ConnInfo,
    ) -> Result<Response<Body>, Refusal> {
        // ip rules (global): before routing, so a refused address learns
        // nothing about the routes.
        ip_rules::global(ctx, snapshot)?;
        let (req, mut routed) = route::route(req, ctx, snapshot)?;
        // ip rules (route): before authentication, so a refused address
        // costs no credential check and cannot probe keys.
        ip_rules::route(ctx, &routed)?;
        // cors: a preflight is answered here, before authentication
        // (browsers send it without credentials) and never upstream.
        if let Some(answer) = cors::preflight_or_note(&req, &routed, ctx) {
            ctx.cors_preflight = true;
            return answer;
        }

        // client cert: the verified certificate headers (the client's
        // copies removed) for every request that goes on; a route's
        // requirement for one, before authentication.
        let mut req = req;
        client_cert::forward_and_require(&mut req, &routed, conn)?;

        // authenticate: decided at once for a valid API key; awaited only
        // when it must be (JWTs, refusals to count, limited addresses).
        let route = routed.route().clone();
        let req = match &route.auth {
            None => req,
            Some(auth) => {
                let (mut parts, body) = req.into_parts();
                let identity = match self.auth().decide(&mut parts, auth, Some(ctx.client_ip)) {
                    Decision::Now(identity) => identity,
                    Decision::Later(rest) => rest.await?,
                };
                trace::stage(ctx.span.as_ref(), "authenticate", || {
                    identity_attributes(&identity)
                });
                routed.identity = Some(identity);
                Request::from_parts(parts, body)
            }
        };

        // limit: the consumer's plan (rate, then quotas), counted across
        // all its keys and routes. Boxed: only limited consumers pay for
        // the future's size.
        if let Some(identity) = routed.identity.as_ref() {
            if self.keys().has_limits(identity) {
                ctx.rate_limit = Some(Box::pin(self.keys().check_limits(identity)).await?);
                trace::stage(ctx.span.as_ref(), "limit", Vec::new);
            }
        }

        let (req, mirroring) = mirror::plan(self.mirror(), req, &routed, ctx);

        // cache, then upstream request and upstream (on a miss, or directly).
        let forward = Forward::new(snapshot, &routed, ctx, conn);
        // The live side's own latency, compared with the candidate's: only
        // a mirrored request reads the clock for it.
        let mirroring = mirroring.map(|m| (m, Instant::now()));
        let result = cache::cache_or_forward(self.cache(), req, &routed, ctx, conn, forward).await;
        if let (Some(span), Some(_), Ok(res)) = (&ctx.span, &routed.route().cache, &result) {
            trace::stage(Some(span), "cache", || cache_attributes(res));
        }

        match (mirroring, result) {
            (None, result) => Ok(result?),
            (Some((m, started)), Ok(res)) => Ok(m.submit_on_end(res, started)),
            (Some((m, started)), Err(problem)) => {
                m.submit_failed(&problem, started);
                Err(problem.into())
            }
        }
    }
}

/// The `authenticate` event's attributes: who the caller is.
fn identity_attributes(identity: &gateway_keys::auth::Identity) -> Vec<gateway_trace::KeyValue> {
    identity
        .consumer_id
        .as_deref()
        .map(|id| gateway_trace::KeyValue::new("gatehouse.consumer.id", id.to_string()))
        .into_iter()
        .collect()
}

/// The `cache` event's attributes: the cache's own account of the answer
/// (`Cache-Status`, RFC 9211).
fn cache_attributes(res: &Response<Body>) -> Vec<gateway_trace::KeyValue> {
    res.headers()
        .get(&gateway_cache::CACHE_STATUS)
        .and_then(|v| v.to_str().ok())
        .map(|v| gateway_trace::KeyValue::new("gatehouse.cache.status", v.to_string()))
        .into_iter()
        .collect()
}
