//! What the stages share: the client connection, the request's context,
//! the routed request, and a refusal.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use gateway_core::{Problem, ToProblem};
use gateway_keys::auth::{AuthError, Identity};
use gateway_keys::ratelimit::{Limited, RateLimitInfo};
use http::header::HeaderValue;
use http::{Method, Version};

use crate::client_cert::ClientCert;
use gateway_trace::{ServerSpan, TraceContext};

use crate::headers;
use crate::router::{Route, RouteMatch};

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
    /// The TLS client certificate the connection presented, verified
    /// against the listener's `client_ca`.
    client_cert: Option<Arc<ClientCert>>,
}

impl ConnInfo {
    /// A connection from `peer` on listener `listener`.
    pub fn new(peer: SocketAddr, listener: &'static str, scheme: &'static str) -> Self {
        Self {
            peer,
            listener,
            scheme,
            forwarded_for: headers::ip_header_value(peer.ip()),
            client_cert: None,
        }
    }

    /// The connection presented (and the handshake verified) `cert`.
    pub fn with_client_cert(mut self, cert: ClientCert) -> Self {
        self.client_cert = Some(Arc::new(cert));
        self
    }

    /// The verified client certificate, if any.
    pub fn client_cert(&self) -> Option<&ClientCert> {
        self.client_cert.as_deref()
    }

    /// The peer's IP as a header value.
    pub(crate) fn forwarded_for(&self) -> &HeaderValue {
        &self.forwarded_for
    }
}

/// What the gateway knows about one request from its arrival to its log
/// line, whether or not it was routed.
pub struct RequestContext {
    /// When the request arrived.
    pub started: Instant,
    /// The id sent upstream and back to the client.
    pub request_id: HeaderValue,
    /// W3C trace context for this hop.
    pub trace: TraceContext,
    /// The request's server span, when tracing sampled it.
    pub span: Option<ServerSpan>,
    /// The client address used for logs and limits.
    pub client_ip: IpAddr,
    /// The request's one authority: host without port, lower-cased (empty
    /// until `route` has settled it).
    pub host: String,
    /// The same authority with its port, as in the target URI (empty until
    /// `route`): what the cache keys on.
    pub authority: String,
    /// The route, once matched: its response headers and metrics apply
    /// to the answer, refusals included.
    pub route: Option<Arc<Route>>,
    /// The error code when the gateway answered itself.
    pub error: Option<Cow<'static, str>>,
    /// Plan limit state, returned as `RateLimit-*` headers.
    pub rate_limit: Option<RateLimitInfo>,
    /// On a route with `cors`: the request's `Origin`, for the response's
    /// CORS headers (`None` for a preflight, which is answered whole).
    pub cors_origin: Option<HeaderValue>,
    /// The request was a CORS preflight answered by the gateway.
    pub cors_preflight: bool,
    /// The request is a gRPC call (HTTP/2, `Content-Type:
    /// application/grpc*`): a refusal is answered with a gRPC status, not
    /// problem+json.
    pub grpc: bool,
    // For the access log; shared with the request, copied only when a
    // line is written.
    pub(super) method: Method,
    pub(super) path_and_query: Option<http::uri::PathAndQuery>,
    pub(super) version: Version,
    pub(super) user_agent: Option<HeaderValue>,
}

/// A request that found its route: what the stages after `route` know.
pub struct Routed {
    /// The route and the path parameters it captured.
    pub matched: RouteMatch,
    /// Who is calling, once authenticated.
    pub identity: Option<Arc<Identity>>,
}

impl Routed {
    /// The matched route.
    pub fn route(&self) -> &Arc<Route> {
        &self.matched.route
    }

    /// The authenticated consumer's id, if any.
    pub fn consumer(&self) -> Option<&str> {
        self.identity
            .as_ref()
            .and_then(|i| i.consumer_id.as_deref())
    }
}

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

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Self {
        Self {
            problem: e.problem,
            headers: e.headers,
        }
    }
}

impl From<Limited> for Refusal {
    fn from(limited: Limited) -> Self {
        Self {
            problem: limited.to_problem(),
            headers: limited.headers(),
        }
    }
}
