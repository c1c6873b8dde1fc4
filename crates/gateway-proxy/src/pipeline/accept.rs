//! accept: what is known the moment a request arrives (its id, trace
//! context, client address and whether it is a gRPC call), and the
//! in-flight limit that sheds load.

use std::time::Instant;

use gateway_core::errors;
use gateway_core::Problem;
use http::header::{self, HeaderValue};
use http::{Request, Version};

use super::context::{ConnInfo, Refusal, RequestContext};
use crate::gateway::Snapshot;
use gateway_trace::TraceContext;

use crate::headers;
use crate::trace::{self, Arrival};

/// The request's context as it arrives: request id, trace context, client
/// address (from `X-Forwarded-For` only when the peer is a trusted proxy).
/// Tracing, when configured, decides here whether the request is sampled.
pub(super) fn arrive<B>(
    req: &Request<B>,
    conn: &ConnInfo,
    snapshot: &Snapshot,
    tracer: Option<&gateway_trace::Tracer>,
) -> RequestContext {
    let started = Instant::now();
    let request_id = headers::request_id(req.headers());
    let client_ip = snapshot
        .client_address
        .resolve(req.headers(), conn.peer.ip());
    let mut trace = TraceContext::from_headers(req.headers());
    let span = tracer.and_then(|tracer| {
        trace::start(
            tracer,
            &mut trace,
            &Arrival {
                method: req.method(),
                path: req.uri().path(),
                version: req.version(),
                scheme: conn.scheme,
                client: client_ip,
                peer: conn.peer,
                user_agent: req
                    .headers()
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok()),
                request_id: request_id.to_str().unwrap_or_default(),
            },
        )
    });
    RequestContext {
        started,
        request_id,
        trace,
        span,
        client_ip,
        host: String::new(),
        authority: String::new(),
        route: None,
        error: None,
        rate_limit: None,
        cors_origin: None,
        cors_preflight: false,
        // gRPC runs over HTTP/2 only; an HTTP/1 client keeps problem+json.
        grpc: req.version() == Version::HTTP_2 && gateway_core::grpc::is_grpc(req.headers()),
        method: req.method().clone(),
        path_and_query: req.uri().path_and_query().cloned(),
        version: req.version(),
        user_agent: req.headers().get(header::USER_AGENT).cloned(),
    }
}

/// The answer when the gateway is at its in-flight limit.
pub(super) fn overloaded() -> Refusal {
    let mut refusal = Refusal::from(Problem::new(
        &errors::OVERLOADED,
        "the gateway is at its in-flight request limit; retry shortly",
    ));
    refusal
        .headers
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    metrics::counter!("gatehouse_shed_total").increment(1);
    refusal
}
