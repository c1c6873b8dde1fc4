//! upstream request and upstream: turn the client request into the
//! upstream request and send it to the route's cluster.
//!
//! Both live in a `'static` value, [`Forward`], because the response cache
//! calls them back later: on a miss, on revalidation, and from a background
//! refresh that outlives the client request (stale-while-revalidate).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use gateway_cache::{Origin, OriginError};
use gateway_core::{errors, grpc, Body, Problem, ToProblem};
use gateway_http1::client::UpstreamUpgrade;
use gateway_http1::splice::SpliceOffer;
use gateway_upstream::{Cluster, SendOptions, UpstreamError};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt as _;

use super::context::{ConnInfo, RequestContext, Routed};
use crate::body::LimitedBody;
use crate::gateway::Snapshot;
use crate::headers;
use crate::router::RouteMatch;
use crate::trace::AttemptSpans;

/// Everything needed to forward a request of one client request upstream.
#[derive(Clone)]
pub(crate) struct Forward {
    /// The route's cluster in the request's snapshot (`None` only if the
    /// config named a cluster that does not exist, which validation refuses).
    cluster: Option<Arc<Cluster>>,
    pub(crate) matched: RouteMatch,
    /// The client's IP, for `X-Forwarded-For`.
    peer: HeaderValue,
    scheme: &'static str,
    request_id: HeaderValue,
    /// `None` when the route's header rules replace it.
    traceparent: Option<HeaderValue>,
    /// Each attempt as a client span, when the request is traced.
    attempts: Option<Arc<AttemptSpans>>,
}

impl Forward {
    pub(crate) fn new(
        snapshot: &Snapshot,
        routed: &Routed,
        ctx: &RequestContext,
        conn: &ConnInfo,
    ) -> Self {
        Self {
            cluster: snapshot.clusters.get(&*routed.route().cluster).cloned(),
            matched: routed.matched.clone(),
            peer: conn.forwarded_for().clone(),
            scheme: conn.scheme,
            request_id: ctx.request_id.clone(),
            traceparent: routed
                .route()
                .request_headers
                .added_fields()
                .traceparent
                .then(|| ctx.trace.header_value()),
            attempts: ctx.span.as_ref().map(|span| {
                Arc::new(AttemptSpans::new(
                    span.clone(),
                    ctx.trace.clone(),
                    &ctx.method,
                ))
            }),
        }
    }

    /// Runs upstream request, then upstream.
    pub(crate) async fn run(&self, req: Request<Body>) -> Result<Response<Body>, Problem> {
        let prepared = self.upstream_request(req)?;
        self.upstream(prepared).await
    }

    /// upstream request: forwarding headers in (hop-by-hop headers left
    /// with `route`), header rules, path rewriting, streamed body limit,
    /// and the time allowed for the response head (a gRPC call's deadline
    /// when it is shorter than the route's).
    fn upstream_request(&self, req: Request<Body>) -> Result<Prepared, Problem> {
        let route = &self.matched.route;
        let (mut parts, body) = req.into_parts();
        let timeout = match grpc_deadline(&parts.headers)? {
            Some(deadline) => deadline.min(route.timeout),
            None => route.timeout,
        };
        // Only a request its engine offers to hand over can be upgraded;
        // looking for the offer first spares most requests a header lookup.
        let offered = parts.extensions.get::<gateway_http1::OnUpgrade>().is_some()
            || parts
                .extensions
                .get::<hyper::upgrade::OnUpgrade>()
                .is_some();
        let upgrade = if offered
            && parts.version == Version::HTTP_11
            && headers::is_upgrade(&parts.headers)
        {
            // The native HTTP/1.1 engine or hyper, whichever serves the client.
            match parts.extensions.remove::<gateway_http1::OnUpgrade>() {
                Some(native) => Some(ClientUpgrade::Native(native)),
                None => parts
                    .extensions
                    .remove::<hyper::upgrade::OnUpgrade>()
                    .map(ClientUpgrade::Hyper),
            }
        } else {
            None
        };
        let fields = route.request_headers.added_fields();
        // `Host` is the request's one authority, settled by `route`.
        // A `Host` that is not visible ASCII is not repeated in `X-Forwarded-Host`.
        let original_host = fields
            .forwarded_host
            .then(|| parts.headers.get(header::HOST))
            .flatten()
            .filter(|h| h.to_str().is_ok())
            .cloned();
        headers::add_forwarded_value(
            &mut parts.headers,
            fields,
            &self.peer,
            self.scheme,
            original_host,
        );
        if fields.request_id {
            parts
                .headers
                .insert(headers::X_REQUEST_ID, self.request_id.clone());
        }
        if let Some(traceparent) = &self.traceparent {
            parts
                .headers
                .insert(headers::TRACEPARENT, traceparent.clone());
        }
        route.request_headers.apply(&mut parts.headers);

        parts.uri = upstream_uri(&self.matched, &parts.uri)?;
        // The upstream connection's protocol is the cluster's choice.
        parts.version = Version::HTTP_11;

        // A request without a body (most GETs) has no limit to watch.
        let (body, tripped) = if http_body::Body::is_end_stream(&body) {
            (body, None)
        } else {
            let tripped = Arc::new(AtomicBool::new(false));
            let limited = LimitedBody::new(body, route.max_body, tripped.clone()).boxed_unsync();
            (limited, Some(tripped))
        };
        Ok(Prepared {
            req: Request::from_parts(parts, body),
            upgrade,
            tripped,
            timeout,
        })
    }

    /// upstream: send to the route's cluster (retries, breaker and
    /// balancing live there) and wait for the response headers.
    async fn upstream(&self, prepared: Prepared) -> Result<Response<Body>, Problem> {
        let Prepared {
            req,
            upgrade: client_upgrade,
            tripped,
            timeout,
        } = prepared;
        let route = &self.matched.route;
        let Some(cluster) = &self.cluster else {
            return Err(UpstreamError::unknown_cluster(&route.cluster).to_problem());
        };
        let opts = SendOptions {
            preserve_host: route.preserve_host,
            observer: self
                .attempts
                .clone()
                .map(|a| a as Arc<dyn gateway_upstream::AttemptObserver>),
            ..SendOptions::for_method(req.method()).with_timeout(timeout)
        };
        let mut res = match cluster.send(req, opts).await {
            Ok(res) => res,
            Err(e) => {
                if tripped.is_some_and(|t| t.load(Ordering::Relaxed)) {
                    return Err(body_too_large(route.max_body));
                }
                tracing::warn!(
                    request_id = self.request_id.to_str().unwrap_or_default(),
                    route = &*route.name,
                    cluster = &*route.cluster,
                    error = %e,
                    "upstream request failed"
                );
                return Err(e.to_problem());
            }
        };
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream = match res.extensions_mut().remove::<UpstreamUpgrade>() {
                Some(native) => Some(UpstreamSide::Native(native)),
                None => res
                    .extensions_mut()
                    .remove::<hyper::upgrade::OnUpgrade>()
                    .map(UpstreamSide::Hyper),
            };
            if let (Some(client), Some(upstream)) = (client_upgrade, upstream) {
                tokio::spawn(tunnel(client, upstream));
            }
        }
        Ok(res)
    }
}

/// An upstream request ready to send.
struct Prepared {
    req: Request<Body>,
    /// The client side of a protocol upgrade, if the request asks for one.
    upgrade: Option<ClientUpgrade>,
    /// Set when the request body went over the route's limit (`None`:
    /// the request has no body).
    tripped: Option<Arc<AtomicBool>>,
    /// Time allowed for the response head.
    timeout: Duration,
}

/// A gRPC call's `grpc-timeout`, if it is a gRPC call and has one. The
/// header goes upstream as it came, so the service enforces the deadline
/// on the rest of the call.
fn grpc_deadline(headers: &HeaderMap) -> Result<Option<Duration>, Problem> {
    if !grpc::is_grpc(headers) {
        return Ok(None);
    }
    let Some(value) = headers.get(grpc::GRPC_TIMEOUT) else {
        return Ok(None);
    };
    grpc::parse_timeout(value)
        .map(Some)
        .map_err(|e| Problem::new(&errors::BAD_GRPC_TIMEOUT, format!("grpc-timeout: {e}")))
}

impl Origin for Forward {
    fn fetch(&self, req: Request<Body>) -> BoxFuture<'static, Result<Response<Body>, OriginError>> {
        let this = self.clone();
        Box::pin(async move {
            let mut res = this.run(req).await.map_err(OriginError::new)?;
            // The cache must see every byte it stores: no splicing past it.
            res.extensions_mut().remove::<SpliceOffer>();
            Ok(res)
        })
    }
}

/// The path and query the upstream is asked for: the request's own
/// (origin-form), or as the route rewrites it (`strip_prefix`, `rewrite`).
/// The primary and a dark launch's candidate both get this.
pub(super) fn upstream_uri(matched: &RouteMatch, uri: &Uri) -> Result<Uri, Problem> {
    let route = &matched.route;
    match uri.path_and_query() {
        Some(pq) if !route.rewrites_path() => Ok(Uri::from(pq.clone())),
        _ => {
            let path = route.upstream_path(uri.path(), &matched.params);
            let pq = match uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            pq.parse().map_err(|_| {
                Problem::new(
                    &errors::BAD_PATH,
                    format!("rewritten path `{pq}` is not a valid URI"),
                )
            })
        }
    }
}

pub(super) fn body_too_large(limit: u64) -> Problem {
    Problem::new(
        &errors::BODY_TOO_LARGE,
        format!("request body exceeds this route's limit of {limit} bytes"),
    )
}

/// The client connection of an upgrade, from the engine serving it.
enum ClientUpgrade {
    Native(gateway_http1::OnUpgrade),
    Hyper(hyper::upgrade::OnUpgrade),
}

/// The upstream connection of an upgrade, from the client that made it.
enum UpstreamSide {
    Native(UpstreamUpgrade),
    Hyper(hyper::upgrade::OnUpgrade),
}

/// Copies bytes both ways between an upgraded client and upstream connection.
async fn tunnel(client: ClientUpgrade, upstream: UpstreamSide) {
    let mut upstream: Box<dyn gateway_http1::server::Io> = match upstream {
        UpstreamSide::Native(native) => match native.take() {
            Some(io) => Box::new(io),
            None => return,
        },
        UpstreamSide::Hyper(hyper) => match hyper.await {
            Ok(io) => Box::new(hyper_util::rt::TokioIo::new(io)),
            Err(e) => {
                tracing::debug!(error = %e, "upstream upgrade failed");
                return;
            }
        },
    };
    let copied = match client {
        ClientUpgrade::Native(client) => match client.upgraded().await {
            Ok(mut client) => tokio::io::copy_bidirectional(&mut client, &mut upstream).await,
            Err(e) => {
                tracing::debug!(error = %e, "client upgrade failed");
                return;
            }
        },
        ClientUpgrade::Hyper(client) => match client.await {
            Ok(client) => {
                let mut client = hyper_util::rt::TokioIo::new(client);
                tokio::io::copy_bidirectional(&mut client, &mut upstream).await
            }
            Err(e) => {
                tracing::debug!(error = %e, "client upgrade failed");
                return;
            }
        },
    };
    if let Err(e) = copied {
        tracing::debug!(error = %e, "upgraded connection closed with an error");
    }
}
