//! The request pipeline: one request's trip through named phases.
//!
//! ```text
//! client ─▶ early_request ─▶ route ─▶ request_filter ─▶ upstream_request ─▶ upstream
//!                                                                            │
//! client ◀─ logging (on body end) ◀─ response_filter ◀────────────────────────┘
//! ```
//!
//! Each phase is a method taking the shared [`RequestContext`]; a phase that
//! must answer early returns `Err(Problem)`, and the problem becomes the
//! response (problem+json) while logging still runs. Later stages slot in
//! between `route` and `upstream` in this order, each as its own phase:
//! authenticate (API keys, JWT) → limit (rate limits, quotas) → cache
//! lookup → upstream → mirror (dark launch), so the order is visible here
//! and nowhere else.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use gateway_cache::RouteCacheContext;
use gateway_core::{errors, Body, Problem, ToProblem};
use gateway_keys::auth::Identity;
use gateway_keys::ratelimit::RateLimitInfo;
use gateway_mirror::{ErrorKind, MirrorPlan, Observation};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt as _;

use crate::forward::Forward;
use crate::shadow::{Captured, OnEnd, Tee};

use crate::body::{ObservedBody, Observer};
use crate::gateway::{Gateway, Snapshot};
use crate::headers::{self, TraceContext};
use crate::router::RouteMatch;
use crate::telemetry::{AccessRecord, RequestMetrics};

/// A request the gateway answers itself: a problem+json body plus the
/// headers that go with it (`WWW-Authenticate`, `Retry-After`, `RateLimit-*`).
pub struct Refusal {
    /// The body.
    pub problem: Problem,
    /// Extra response headers.
    pub headers: http::HeaderMap,
}

impl From<Problem> for Refusal {
    fn from(problem: Problem) -> Self {
        Self {
            problem,
            headers: http::HeaderMap::new(),
        }
    }
}

/// A request chosen for mirroring: the plan and the request bytes copied so far.
struct Mirroring {
    plan: MirrorPlan,
    request: Arc<parking_lot::Mutex<Captured>>,
}

impl Mirroring {
    /// Copies the primary response as it streams to the client; when it
    /// ends, hands both sides to the dark-launch queue (`try_send`, never
    /// waiting).
    fn tee_response(self, res: Response<Body>, started: Instant) -> Response<Body> {
        let (parts, body) = res.into_parts();
        let status = parts.status;
        let headers = parts.headers.clone();
        let cap = self.plan.max_body_bytes();
        let Mirroring { plan, request } = self;
        let on_end: OnEnd = Box::new(move |body, complete| {
            // A request body over the cap cannot be replayed to the candidate.
            let Some(request_body) = request.lock().take() else {
                return;
            };
            let primary = if complete {
                let mut obs = Observation::response(
                    status,
                    headers,
                    body.clone().unwrap_or_default(),
                    started.elapsed(),
                );
                obs.body = body;
                obs
            } else {
                Observation::failed(
                    ErrorKind::Reset,
                    "the primary response broke off",
                    started.elapsed(),
                )
            };
            let _ = plan.submit(request_body, primary);
        });
        let body =
            ObservedBody::new(body, Tee::new(cap, Arc::default(), Some(on_end))).boxed_unsync();
        Response::from_parts(parts, body)
    }

    /// The primary failed before answering: the comparison still counts it.
    fn primary_failed(self, problem: &Problem, started: Instant) {
        if let Some(request_body) = self.request.lock().take() {
            let obs = Observation::failed(ErrorKind::Other, problem.code(), started.elapsed());
            let _ = self.plan.submit(request_body, obs);
        }
    }
}

/// Facts about the client connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The listener's name, for logs.
    pub listener: &'static str,
    /// `"http"` or `"https"`.
    pub scheme: &'static str,
    /// The peer's IP as it goes into `X-Forwarded-For`: formatted once per
    /// connection, shared by its requests.
    forwarded_for: HeaderValue,
}

impl ConnInfo {
    /// A connection from `peer` on listener `listener`.
    pub fn new(peer: SocketAddr, listener: &'static str, scheme: &'static str) -> Self {
        Self {
            peer,
            listener,
            scheme,
            forwarded_for: headers::ip_header_value(peer.ip()),
        }
    }

    /// The peer's IP as a header value.
    pub(crate) fn forwarded_for(&self) -> &HeaderValue {
        &self.forwarded_for
    }
}

/// Everything the phases learn about one request, shared between them.
pub struct RequestContext {
    /// When the request arrived.
    pub started: Instant,
    /// The id sent upstream and back to the client.
    pub request_id: HeaderValue,
    /// W3C trace context for this hop.
    pub trace: TraceContext,
    /// The client address used for logs and limits.
    pub client_ip: IpAddr,
    /// Host without port, lower-cased.
    pub host: String,
    /// The matched route.
    pub matched: Option<RouteMatch>,
    /// The error code if the gateway answered itself.
    pub error: Option<Cow<'static, str>>,
    /// Who is calling, once authenticated.
    pub identity: Option<Arc<Identity>>,
    /// Plan limit state, returned as `RateLimit-*` headers.
    pub rate_limit: Option<RateLimitInfo>,
    // For the access log; shared with the request, copied only when a
    // line is written.
    method: Method,
    path_and_query: Option<http::uri::PathAndQuery>,
    version: Version,
    user_agent: Option<HeaderValue>,
}

impl Gateway {
    /// Serves one client request through every phase.
    pub async fn handle(&self, req: Request<Body>, conn: &ConnInfo) -> Response<Body> {
        let snapshot = self.snapshot();
        let mut ctx = self.early_request(&req, conn, &snapshot);
        let Some(in_flight) = self.admit() else {
            ctx.error = Some(Cow::Borrowed(errors::OVERLOADED.code));
            let mut res = Problem::new(
                &errors::OVERLOADED,
                "the gateway is at its in-flight request limit; retry shortly",
            )
            .response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            metrics::counter!("gatehouse_shed_total").increment(1);
            return self.logging(res, ctx, conn, None);
        };
        let res = match self.proxy(req, &mut ctx, &snapshot, conn).await {
            Ok(res) => res,
            Err(refusal) => {
                if ctx.error.is_none() {
                    ctx.error = Some(Cow::Borrowed(refusal.problem.code()));
                }
                let mut res = refusal
                    .problem
                    .with("request_id", ctx.request_id.to_str().unwrap_or_default())
                    .response();
                res.headers_mut().extend(refusal.headers);
                res
            }
        };
        let res = self.response_filter(res, &ctx);
        self.logging(res, ctx, conn, Some(in_flight))
    }

    async fn proxy(
        &self,
        req: Request<Body>,
        ctx: &mut RequestContext,
        snapshot: &Snapshot,
        conn: &ConnInfo,
    ) -> Result<Response<Body>, Refusal> {
        let req = self.route(req, ctx, snapshot)?;
        let req = self.request_filter(req, ctx)?;
        // Authentication and limits are boxed and only entered when the
        // route has them: their futures are large, and inline they would
        // make every request's future (moved and dropped whole) larger.
        let needs_auth = ctx.matched.as_ref().is_some_and(|m| m.route.auth.is_some());
        let req = if needs_auth {
            // Most authenticated requests are decided at once; only the
            // rest (refusals, JWTs, limited addresses) build the future.
            let (mut parts, body) = req.into_parts();
            let decided = self.authenticate_now(&mut parts, ctx);
            let req = Request::from_parts(parts, body);
            if decided {
                req
            } else {
                Box::pin(self.authenticate(req, ctx)).await?
            }
        } else {
            req
        };
        if ctx
            .identity
            .as_ref()
            .is_some_and(|i| self.keys().has_limits(i))
        {
            Box::pin(self.limit(ctx)).await?;
        }
        let (req, mirroring) = self.mirror_plan(req, ctx);
        let matched = ctx.matched.clone().expect("routed");
        let forward = Forward::new(snapshot, matched, ctx, conn);
        let started = Instant::now();
        let result = self.cache_or_forward(req, ctx, conn, forward).await;
        match (mirroring, result) {
            (None, result) => Ok(result?),
            (Some(m), Ok(res)) => Ok(m.tee_response(res, started)),
            (Some(m), Err(problem)) => {
                m.primary_failed(&problem, started);
                Err(problem.into())
            }
        }
    }

    /// Phase 3c: decide whether a dark launch mirrors this request (no I/O:
    /// sampling, method, rate and queue checks). When it does, the request
    /// body is copied as it streams to the primary, never delayed.
    fn mirror_plan(
        &self,
        req: Request<Body>,
        ctx: &RequestContext,
    ) -> (Request<Body>, Option<Mirroring>) {
        let Some(engine) = self.mirror() else {
            return (req, None);
        };
        let matched = ctx.matched.as_ref().expect("routed");
        let route = &matched.route;
        let (parts, body) = req.into_parts();
        let consumer = ctx.identity.as_ref().and_then(|i| i.consumer_id.as_deref());
        let request_id = ctx.request_id.to_str().unwrap_or_default();
        // The candidate is a version of the upstream service, so it gets the
        // path the primary's upstream gets (after strip_prefix or rewrite).
        let plan = if !route.rewrites_path() {
            engine.plan(&route.name, &parts, request_id, consumer)
        } else {
            let upstream_path = route.upstream_path(parts.uri.path(), &matched.params);
            let pq = match parts.uri.query() {
                Some(q) => format!("{upstream_path}?{q}"),
                None => upstream_path,
            };
            let (mut shadow, ()) = Request::new(()).into_parts();
            shadow.method = parts.method.clone();
            shadow.version = parts.version;
            shadow.headers = parts.headers.clone();
            shadow.uri = pq.parse().unwrap_or_else(|_| parts.uri.clone());
            engine.plan(&route.name, &shadow, request_id, consumer)
        };
        let Some(plan) = plan else {
            return (Request::from_parts(parts, body), None);
        };
        let captured = Arc::new(parking_lot::Mutex::new(Captured::default()));
        let body = if body.is_end_stream() {
            body
        } else {
            ObservedBody::new(
                body,
                Tee::new(plan.max_body_bytes(), captured.clone(), None),
            )
            .boxed_unsync()
        };
        (
            Request::from_parts(parts, body),
            Some(Mirroring {
                plan,
                request: captured,
            }),
        )
    }

    /// Phase 3a, the common case: a valid API key, decided without waiting
    /// (see `Authenticator::authenticate_now`). False: run [`Self::authenticate`].
    fn authenticate_now(&self, parts: &mut http::request::Parts, ctx: &mut RequestContext) -> bool {
        let route = &ctx.matched.as_ref().expect("routed").route;
        let Some(auth) = &route.auth else {
            return true;
        };
        let prepared = route
            .auth_prepared
            .get_or_init(|| self.auth().prepared_auth(&route.name, auth));
        match self
            .auth()
            .authenticate_now(parts, prepared, &route.name, ctx.client_ip)
        {
            Some(identity) => {
                ctx.identity = Some(identity);
                true
            }
            None => false,
        }
    }

    /// Phase 3a: authenticate the consumer (API key or JWT) on routes that
    /// require it. The credential is stripped and the identity forwarded
    /// upstream in headers; 401/403 carry `WWW-Authenticate`.
    async fn authenticate(
        &self,
        req: Request<Body>,
        ctx: &mut RequestContext,
    ) -> Result<Request<Body>, Refusal> {
        let route = ctx.matched.as_ref().expect("routed").route.clone();
        let Some(auth) = &route.auth else {
            return Ok(req);
        };
        let (mut parts, body) = req.into_parts();
        match self
            .auth()
            .authenticate_client(&mut parts, auth, &route.name, ctx.client_ip)
            .await
        {
            Ok(identity) => {
                ctx.identity = Some(identity);
                Ok(Request::from_parts(parts, body))
            }
            Err(e) => Err(Refusal {
                problem: e.problem,
                headers: e.headers,
            }),
        }
    }

    /// Phase 3b: the consumer's plan limits (rate, then quotas), counted per
    /// consumer across all its keys and routes. The state goes back to the
    /// client as `RateLimit-*` headers.
    async fn limit(&self, ctx: &mut RequestContext) -> Result<(), Refusal> {
        let Some(identity) = &ctx.identity else {
            return Ok(());
        };
        match self.keys().check_limits(identity).await {
            Ok(info) => {
                ctx.rate_limit = Some(info);
                Ok(())
            }
            Err(limited) => Err(Refusal {
                problem: limited.to_problem(),
                headers: limited.headers(),
            }),
        }
    }

    /// Phase 4: the response cache, for routes that have one. On a miss or
    /// revalidation the cache calls back into [`Forward`] (phases 5 and 6).
    async fn cache_or_forward(
        &self,
        req: Request<Body>,
        ctx: &RequestContext,
        conn: &ConnInfo,
        forward: Forward,
    ) -> Result<Response<Body>, Problem> {
        let route = &forward.matched.route;
        match &route.cache {
            // An upgrade is a GET but never a cacheable one.
            Some(cfg) if !headers::is_upgrade(req.headers()) => {
                let mut rctx = RouteCacheContext::new(route.name.clone(), cfg.clone())
                    .with_authority(conn.scheme, ctx.host.clone());
                if let Some(consumer) = ctx.identity.as_ref().and_then(|i| i.consumer_id.as_deref())
                {
                    rctx = rctx.with_consumer(consumer);
                }
                // Boxed: only cached routes pay for the cache's large future.
                Ok(Box::pin(self.cache().handle(req, &rctx, Arc::new(forward))).await)
            }
            _ => forward.run(req).await,
        }
    }

    /// Phase 1: request id, trace context, client address.
    fn early_request<B>(
        &self,
        req: &Request<B>,
        conn: &ConnInfo,
        snapshot: &Snapshot,
    ) -> RequestContext {
        let trust = snapshot.config.config.gateway.trust_forwarded_headers;
        RequestContext {
            started: Instant::now(),
            request_id: headers::request_id(req.headers()),
            trace: TraceContext::from_headers(req.headers()),
            client_ip: headers::client_ip(req.headers(), conn.peer.ip(), trust),
            // Set by `route` once the request's one authority is settled.
            host: String::new(),
            matched: None,
            error: None,
            identity: None,
            rate_limit: None,
            method: req.method().clone(),
            path_and_query: req.uri().path_and_query().cloned(),
            version: req.version(),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
        }
    }

    /// Phase 2: settle the one authority, normalise the path and find the
    /// route.
    fn route(
        &self,
        req: Request<Body>,
        ctx: &mut RequestContext,
        snapshot: &Snapshot,
    ) -> Result<Request<Body>, Problem> {
        let (mut parts, body) = req.into_parts();
        match crate::authority::settle(&mut parts) {
            Ok(authority) => ctx.host = authority.host,
            Err(problem) => {
                ctx.error = Some(Cow::Borrowed(errors::BAD_HOST.code));
                return Err(problem);
            }
        }
        let mut req = Request::from_parts(parts, body);
        let path = req.uri().path();
        let Some(normalized) = headers::normalize_path(path) else {
            ctx.error = Some(Cow::Borrowed(errors::BAD_PATH.code));
            return Err(Problem::new(
                &errors::BAD_PATH,
                format!("path `{path}` climbs above the root"),
            ));
        };
        if normalized != path {
            let pq = match req.uri().query() {
                Some(q) => format!("{normalized}?{q}"),
                None => normalized.into_owned(),
            };
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = pq.parse().ok();
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
        match snapshot
            .routes
            .find(&ctx.host, req.uri().path(), req.method(), req.headers())
        {
            Some(m) => {
                ctx.matched = Some(m);
                Ok(req)
            }
            None => {
                ctx.error = Some(Cow::Borrowed(errors::ROUTE_NOT_FOUND.code));
                Err(Problem::new(
                    &errors::ROUTE_NOT_FOUND,
                    format!(
                        "no route matches {} {}{}",
                        req.method(),
                        ctx.host,
                        req.uri().path()
                    ),
                ))
            }
        }
    }

    /// Phase 3: checks on the request itself (body size). Authentication
    /// and rate limiting join here.
    fn request_filter(
        &self,
        req: Request<Body>,
        ctx: &mut RequestContext,
    ) -> Result<Request<Body>, Problem> {
        let route = &ctx.matched.as_ref().expect("routed").route;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > route.max_body) {
            ctx.error = Some(Cow::Borrowed(errors::BODY_TOO_LARGE.code));
            return Err(crate::forward::body_too_large(route.max_body));
        }
        Ok(req)
    }

    /// Phase 6: clean up and decorate the response.
    fn response_filter(&self, mut res: Response<Body>, ctx: &RequestContext) -> Response<Body> {
        let upgrading = res.status() == StatusCode::SWITCHING_PROTOCOLS;
        headers::strip_hop_by_hop(res.headers_mut(), upgrading);
        if let Some(m) = &ctx.matched {
            m.route.response_headers.apply(res.headers_mut());
        }
        res.headers_mut()
            .insert(headers::X_REQUEST_ID, ctx.request_id.clone());
        if let Some(info) = &ctx.rate_limit {
            info.apply(res.headers_mut());
        }
        res
    }

    /// Phase 7: attach logging and metrics to the end of the response body.
    fn logging(
        &self,
        res: Response<Body>,
        ctx: RequestContext,
        conn: &ConnInfo,
        in_flight: Option<crate::gateway::InFlight>,
    ) -> Response<Body> {
        let status = res.status().as_u16();
        let went_upstream = ctx.error.as_deref().is_none_or(is_upstream_error);
        let route = ctx.matched.as_ref().map(|m| m.route.clone());
        // The access-log line is only built when it goes somewhere.
        let record = self.access_log().enabled().then(|| AccessRecord {
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
        let finish = Finish {
            status,
            route,
            went_upstream,
            // The gateway is only kept to hand the line to its access log.
            record: record.map(|r| (r, self.clone())),
            started: ctx.started,
            _in_flight: in_flight,
        };
        res.map(|b| ObservedBody::new(b, finish).boxed_unsync())
    }
}

fn is_upstream_error(code: &str) -> bool {
    !matches!(
        code,
        "route_not_found"
            | "bad_host"
            | "bad_path"
            | "body_too_large"
            | "overloaded"
            | "unknown_upstream"
    )
}

struct Finish {
    status: u16,
    route: Option<Arc<crate::router::Route>>,
    /// Whether the request went (or was meant to go) upstream: the
    /// `upstream` label is then the route's cluster.
    went_upstream: bool,
    /// The access-log line and where it goes, when the access log is on.
    record: Option<(AccessRecord, Gateway)>,
    started: Instant,
    _in_flight: Option<crate::gateway::InFlight>,
}

impl Observer for Finish {
    fn data(&mut self, chunk: &bytes::Bytes) {
        if let Some((r, _)) = &mut self.record {
            r.bytes_out += chunk.len() as u64;
        }
    }

    fn end(self, completed: bool) {
        let elapsed = self.started.elapsed();
        match &self.route {
            Some(route) => route.metrics.record(
                self.status,
                self.went_upstream.then_some(&route.cluster),
                elapsed,
            ),
            None => RequestMetrics::unrouted().record(self.status, None, elapsed),
        }
        if let Some((mut record, gateway)) = self.record {
            record.completed = completed;
            record.duration_ms = elapsed.as_secs_f64() * 1000.0;
            gateway.access_log().log(record);
        }
    }
}
