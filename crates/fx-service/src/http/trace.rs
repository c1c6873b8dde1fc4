//! OpenTelemetry server spans of the API (`[otlp]`): a request that
//! continues a sampled trace (the gateway's `traceparent`), or a new one
//! kept by the ratio, is exported as a span named by its route, so one
//! trace shows the gateway's attempt and the fx service's work under it.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use gateway_trace::{KeyValue, TraceContext, Tracer};

/// `router` with every matched route traced by `tracer`.
pub fn traced(router: Router, tracer: Tracer) -> Router {
    // A route layer: it runs once the route is known (`http.route`).
    router.route_layer(axum::middleware::from_fn_with_state(tracer, server_span))
}

async fn server_span(State(tracer): State<Tracer>, req: Request, next: Next) -> Response {
    let mut trace = TraceContext::from_headers(req.headers());
    if !tracer.sample(&mut trace) {
        return next.run(req).await;
    }
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let mut attributes = vec![
        KeyValue::new("http.request.method", method.clone()),
        KeyValue::new("http.route", route.clone()),
        KeyValue::new("url.path", req.uri().path().to_string()),
        KeyValue::new("url.scheme", "http"),
    ];
    if let Some(ua) = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        attributes.push(KeyValue::new("user_agent.original", ua.to_string()));
    }
    let span = tracer.server_span(&trace, format!("{method} {route}"), attributes);
    let res = next.run(req).await;
    let status = res.status().as_u16();
    let mut end = vec![KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    )];
    let error = (status >= 500).then(|| status.to_string());
    if let Some(e) = &error {
        end.push(KeyValue::new("error.type", e.clone()));
    }
    span.end(end, error);
    res
}
