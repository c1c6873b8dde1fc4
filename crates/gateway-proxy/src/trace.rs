//! OpenTelemetry spans of proxied requests (`[telemetry.otlp]`): the
//! server span's attributes per the HTTP semantic conventions, the stages
//! as its events, and every upstream attempt as a client span whose id
//! goes upstream in that attempt's `traceparent`.
//!
//! Only sampled requests have a span; for the others every function here
//! is a test of `None`.

use std::net::IpAddr;

use gateway_trace::{KeyValue, ServerSpan, SpanId, TraceContext, Tracer, TRACEPARENT};
use gateway_upstream::{Attempt, AttemptObserver, AttemptOutcome};
use http::{HeaderMap, Method, Version};
use parking_lot::Mutex;

/// What the server span starts with: the request as it arrived.
pub(crate) struct Arrival<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub version: Version,
    pub scheme: &'static str,
    pub client: IpAddr,
    pub peer: std::net::SocketAddr,
    pub user_agent: Option<&'a str>,
    pub request_id: &'a str,
}

/// Decides the request's sampling (setting the flag its `traceparent`
/// carries upstream) and starts its server span when it is sampled.
pub(crate) fn start(
    tracer: &Tracer,
    trace: &mut TraceContext,
    arrival: &Arrival<'_>,
) -> Option<ServerSpan> {
    if !tracer.sample(trace) {
        return None;
    }
    let method = method_name(arrival.method);
    let mut attributes = vec![
        KeyValue::new("http.request.method", method),
        KeyValue::new("url.path", arrival.path.to_string()),
        KeyValue::new("url.scheme", arrival.scheme),
        KeyValue::new(
            "network.protocol.version",
            match arrival.version {
                Version::HTTP_2 => "2",
                Version::HTTP_10 => "1.0",
                _ => "1.1",
            },
        ),
        KeyValue::new("client.address", arrival.client.to_string()),
        KeyValue::new("network.peer.address", arrival.peer.ip().to_string()),
        KeyValue::new("network.peer.port", i64::from(arrival.peer.port())),
        KeyValue::new("gatehouse.request_id", arrival.request_id.to_string()),
    ];
    if method == "_OTHER" {
        attributes.push(KeyValue::new(
            "http.request.method_original",
            arrival.method.to_string(),
        ));
    }
    if let Some(ua) = arrival.user_agent {
        attributes.push(KeyValue::new("user_agent.original", ua.to_string()));
    }
    Some(tracer.server_span(trace, method, attributes))
}

/// The route is known: the span is named `METHOD /route/template`.
pub(crate) fn routed(
    span: Option<&ServerSpan>,
    method: &Method,
    route: &crate::router::Route,
    host: &str,
) {
    let Some(span) = span else { return };
    span.set_name(format!("{} {}", method_name(method), route.http_route));
    span.set_attribute(KeyValue::new("http.route", route.http_route.to_string()));
    span.set_attribute(KeyValue::new("gatehouse.route", route.name.to_string()));
    span.set_attribute(KeyValue::new("server.address", host.to_string()));
}

/// A stage happened: an event on the span.
pub(crate) fn stage(
    span: Option<&ServerSpan>,
    name: &'static str,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) {
    if let Some(span) = span {
        span.add_event(name, attributes());
    }
}

/// The response is complete (or the client went away): the span ends
/// with the status, and as an error for a 5xx (the gateway's own error
/// code, when it answered itself, is `error.type`).
pub(crate) fn end(
    span: Option<ServerSpan>,
    status: u16,
    error_code: Option<&str>,
    completed: bool,
) {
    let Some(span) = span else { return };
    let mut attributes = vec![KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    )];
    let error_type = match error_code {
        Some(code) => Some(code.to_string()),
        None if status >= 500 => Some(status.to_string()),
        None if !completed => Some("client_closed".to_string()),
        None => None,
    };
    if let Some(e) = &error_type {
        attributes.push(KeyValue::new("error.type", e.clone()));
    }
    let error =
        (status >= 500 || !completed).then(|| error_type.unwrap_or_else(|| status.to_string()));
    span.end(attributes, error);
}

/// Records each upstream attempt of one request as a client span under
/// its server span, and sends the attempt's own span id upstream as the
/// parent.
#[derive(Debug)]
pub(crate) struct AttemptSpans {
    span: ServerSpan,
    trace: TraceContext,
    method: &'static str,
    current: Mutex<Option<SpanId>>,
}

impl AttemptSpans {
    pub(crate) fn new(span: ServerSpan, trace: TraceContext, method: &Method) -> Self {
        Self {
            span,
            trace,
            method: method_name(method),
            current: Mutex::new(None),
        }
    }
}

impl AttemptObserver for AttemptSpans {
    fn started(&self, attempt: &Attempt<'_>, headers: &mut HeaderMap) {
        let mut attributes = vec![
            KeyValue::new("http.request.method", self.method),
            KeyValue::new("server.address", attempt.host.to_string()),
            KeyValue::new("server.port", i64::from(attempt.port)),
            KeyValue::new("gatehouse.upstream.cluster", attempt.cluster.to_string()),
            KeyValue::new("gatehouse.upstream.target", attempt.target.to_string()),
        ];
        if attempt.number > 1 {
            attributes.push(KeyValue::new(
                "http.request.resend_count",
                i64::from(attempt.number - 1),
            ));
        }
        let id = self.span.start_client(self.method, attributes);
        headers.insert(TRACEPARENT, self.trace.child_header_value(id));
        *self.current.lock() = Some(id);
    }

    fn ended(&self, outcome: AttemptOutcome<'_>) {
        let Some(id) = self.current.lock().take() else {
            return;
        };
        let (attributes, error) = match outcome {
            AttemptOutcome::Answered(status) => {
                let code = status.as_u16();
                let mut attributes =
                    vec![KeyValue::new("http.response.status_code", i64::from(code))];
                let error = (code >= 500).then(|| code.to_string());
                if let Some(e) = &error {
                    attributes.push(KeyValue::new("error.type", e.clone()));
                }
                (attributes, error)
            }
            AttemptOutcome::Failed(e) => (
                vec![KeyValue::new("error.type", e.as_str())],
                Some(e.to_string()),
            ),
        };
        self.span.end_client(id, attributes, error);
    }
}

/// The method as the semantic conventions name it: the known ones as
/// they are, any other as `_OTHER`.
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}
