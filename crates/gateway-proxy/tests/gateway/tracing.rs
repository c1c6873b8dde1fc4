//! OpenTelemetry traces as a collector receives them: a request's server
//! span with its stages as events and every upstream attempt as a client
//! span whose id the upstream received as its parent; parent-based
//! sampling; export over OTLP/HTTP and OTLP/gRPC; a collector that never
//! answers costs requests nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use test_support::origin::{Handler, Origin, Reply};
use test_support::otlp::{ExportedSpan, OtlpCollector, KIND_CLIENT, KIND_SERVER};

use crate::harness::{base, body, client, TestGateway};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// An origin that answers its first request 503 and the rest 200
/// (cacheable), and remembers each request's `traceparent`.
fn flaky_origin(seen: Arc<Mutex<Vec<String>>>) -> Handler {
    let count = Arc::new(AtomicUsize::new(0));
    Handler::new(move |req| {
        let count = count.clone();
        let seen = seen.clone();
        async move {
            let parent = req
                .headers()
                .get("traceparent")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            seen.lock().unwrap().push(parent);
            let status = if count.fetch_add(1, Ordering::SeqCst) == 0 {
                503
            } else {
                200
            };
            Reply::Response(
                http::Response::builder()
                    .status(status)
                    .header("cache-control", "max-age=60")
                    .body(body("item"))
                    .unwrap(),
            )
        }
    })
}

fn config(collector: &str, otlp_extra: &str, origin: &Origin) -> String {
    base(&format!(
        r#"
[telemetry.otlp]
endpoint = "{collector}"
{otlp_extra}

[cache]
max_bytes = "16MiB"

[plans.basic]
rate_per_second = 100.0
burst = 100

[clusters.items]
targets = ["{origin}"]
retry = {{ attempts = 2, on = [503] }}

[[routes]]
name = "items"
path_prefix = "/items"
cluster = "items"
auth = {{ methods = ["api_key"] }}
cache = {{}}

[[routes]]
name = "open"
path_prefix = "/open"
cluster = "items"
"#,
        origin = origin.authority()
    ))
}

fn in_trace<'a>(spans: &'a [ExportedSpan], trace: &str) -> Vec<&'a ExportedSpan> {
    spans.iter().filter(|s| s.trace_id == trace).collect()
}

#[tokio::test]
async fn a_traced_request_exports_its_span_its_stages_and_each_upstream_attempt() {
    let collector = OtlpCollector::http().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let origin = Origin::start(flaky_origin(seen.clone())).await;
    let gw = TestGateway::start(&config(
        &collector.endpoint(),
        "[telemetry.otlp.headers]\nauthorization = \"Bearer collector-token\"",
        &origin,
    ))
    .await;
    let issued = gw
        .create_key(serde_json::json!({ "owner": "acme", "plan": "basic" }))
        .await;
    let secret = issued["secret"].as_str().unwrap().to_string();

    let res = client()
        .get(gw.url("/items/1"))
        .bearer_auth(&secret)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the retry answered");

    let spans = collector
        .wait_until(Duration::from_secs(15), |s| {
            in_trace(s, CALLER_TRACE).len() >= 3
        })
        .await;
    let trace = in_trace(&spans, CALLER_TRACE);
    assert_eq!(
        trace.len(),
        3,
        "one server span and two attempts: {trace:#?}"
    );

    let server = trace.iter().find(|s| s.kind == KIND_SERVER).unwrap();
    assert_eq!(server.service, "gatehouse");
    assert_eq!(
        server.parent_span_id, CALLER_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(server.name, "GET /items/*");
    for (key, value) in [
        ("http.request.method", "GET"),
        ("http.route", "/items/*"),
        ("url.path", "/items/1"),
        ("url.scheme", "http"),
        ("http.response.status_code", "200"),
        ("network.protocol.version", "1.1"),
        ("gatehouse.route", "items"),
        ("client.address", "127.0.0.1"),
    ] {
        assert_eq!(server.attr(key), Some(value), "{key} in {server:#?}");
    }
    assert!(server.attr("error.type").is_none(), "{server:#?}");
    assert_eq!(server.status_code, 0);
    let events: Vec<&str> = server.events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(events, ["authenticate", "limit", "cache"], "{server:#?}");
    assert!(
        server.events[0].1.contains_key("gatehouse.consumer.id"),
        "{server:#?}"
    );
    let cache_status = &server.events[2].1["gatehouse.cache.status"];
    assert!(cache_status.contains("fwd=uri-miss"), "{cache_status}");

    // The attempts, children of the server span, in the order they ran;
    // each sent its own span id upstream as the parent.
    let mut attempts: Vec<&&ExportedSpan> =
        trace.iter().filter(|s| s.kind == KIND_CLIENT).collect();
    attempts.sort_by_key(|s| s.attr("http.request.resend_count").map(str::to_string));
    let received = seen.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    for (attempt, traceparent) in attempts.iter().zip(&received) {
        assert_eq!(attempt.parent_span_id, server.span_id);
        assert_eq!(attempt.name, "GET");
        assert_eq!(
            traceparent,
            &format!("00-{CALLER_TRACE}-{}-01", attempt.span_id),
            "the upstream's parent is the attempt's span"
        );
        assert_eq!(attempt.attr("server.address"), Some("127.0.0.1"));
        assert_eq!(
            attempt.attr("server.port"),
            Some(origin.addr().port().to_string().as_str())
        );
        assert_eq!(attempt.attr("gatehouse.upstream.cluster"), Some("items"));
    }
    let (first, retry) = (attempts[0], attempts[1]);
    assert_eq!(first.attr("http.response.status_code"), Some("503"));
    assert_eq!(first.attr("error.type"), Some("503"));
    assert_eq!(first.status_code, 2, "a 503 attempt is an error");
    assert!(first.attr("http.request.resend_count").is_none());
    assert_eq!(retry.attr("http.response.status_code"), Some("200"));
    assert_eq!(retry.attr("http.request.resend_count"), Some("1"));
    assert_eq!(retry.status_code, 0);

    assert_eq!(
        collector
            .last_headers()
            .get("authorization")
            .map(String::as_str),
        Some("Bearer collector-token"),
        "the configured headers go with every export"
    );

    // The same request again is a cache hit: no attempt, a `hit` event.
    let again = client()
        .get(gw.url("/items/1"))
        .bearer_auth(&secret)
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let spans = collector
        .wait_until(Duration::from_secs(15), |s| {
            !in_trace(s, "0af7651916cd43dd8448eb211c80319c").is_empty()
        })
        .await;
    let hit = in_trace(&spans, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(hit.len(), 1, "a hit makes no upstream attempt: {hit:#?}");
    let cache_event = hit[0].events.iter().find(|(n, _)| n == "cache").unwrap();
    assert!(
        cache_event.1["gatehouse.cache.status"].contains("hit"),
        "{cache_event:?}"
    );
}

#[tokio::test]
async fn sampling_follows_the_caller_and_the_ratio_and_travels_upstream() {
    let collector = OtlpCollector::http().await;
    let origin = Origin::start(Handler::echo()).await;
    // A ratio of 0: no new trace is recorded, but callers that sampled
    // their trace are followed (parent-based).
    let gw = TestGateway::start(&config(
        &collector.endpoint(),
        "sample_ratio = 0.0",
        &origin,
    ))
    .await;
    let http = client();

    let new = http.get(gw.url("/open/new")).send().await.unwrap();
    assert_eq!(new.status(), 200);
    let echoed: serde_json::Value = new.json().await.unwrap();
    let upstream_parent = echoed["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        upstream_parent.ends_with("-00"),
        "a trace not sampled here is not sampled upstream: {upstream_parent}"
    );
    let new_trace = upstream_parent[3..35].to_string();

    let out_trace = "11111111111111111111111111111111";
    let res = http
        .get(gw.url("/open/out"))
        .header("traceparent", format!("00-{out_trace}-{CALLER_SPAN}-00"))
        .send()
        .await
        .unwrap();
    let echoed: serde_json::Value = res.json().await.unwrap();
    let sent = echoed["headers"]["traceparent"].as_str().unwrap();
    assert!(
        sent.starts_with(&format!("00-{out_trace}-")) && sent.ends_with("-00"),
        "{sent}"
    );

    // Sent last: when its span has arrived, any span of the two requests
    // before it would have (one queue, exported in order).
    let in_trace_id = "22222222222222222222222222222222";
    http.get(gw.url("/open/in"))
        .header("traceparent", format!("00-{in_trace_id}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    let spans = collector
        .wait_until(Duration::from_secs(15), |s| {
            in_trace(s, in_trace_id)
                .iter()
                .any(|s| s.kind == KIND_SERVER)
        })
        .await;
    assert!(
        in_trace(&spans, in_trace_id)
            .iter()
            .any(|s| s.kind == KIND_SERVER),
        "a sampled caller is followed despite the ratio: {spans:#?}"
    );
    assert!(in_trace(&spans, out_trace).is_empty(), "{spans:#?}");
    assert!(in_trace(&spans, &new_trace).is_empty(), "{spans:#?}");
}

#[tokio::test]
async fn spans_go_over_otlp_grpc_with_the_configured_metadata() {
    let collector = OtlpCollector::grpc().await;
    let origin = Origin::start(Handler::echo()).await;
    let gw = TestGateway::start(&config(
        &collector.endpoint(),
        "protocol = \"grpc\"\nservice_name = \"edge-eu\"\n[telemetry.otlp.headers]\nx-tenant = \"acme\"",
        &origin,
    ))
    .await;
    let res = client()
        .get(gw.url("/open/grpc"))
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let spans = collector
        .wait_until(Duration::from_secs(15), |s| {
            in_trace(s, CALLER_TRACE).len() >= 2
        })
        .await;
    let trace = in_trace(&spans, CALLER_TRACE);
    let server = trace
        .iter()
        .find(|s| s.kind == KIND_SERVER)
        .expect("server span");
    assert_eq!(server.service, "edge-eu");
    assert_eq!(server.name, "GET /open/*");
    assert!(trace
        .iter()
        .any(|s| s.kind == KIND_CLIENT && s.parent_span_id == server.span_id));
    assert_eq!(
        collector.last_headers().get("x-tenant").map(String::as_str),
        Some("acme")
    );
}

#[tokio::test]
async fn a_graceful_shutdown_exports_the_last_spans() {
    let collector = OtlpCollector::http().await;
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let mut gw = TestGateway::start(&config(&collector.endpoint(), "", &origin)).await;
    let res = client()
        .get(gw.url("/open/last"))
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap();
    assert!(gw.shutdown(Duration::from_secs(5)).await);
    // No waiting: the shutdown itself sent them.
    let spans = collector.spans();
    assert!(
        in_trace(&spans, CALLER_TRACE)
            .iter()
            .any(|s| s.kind == KIND_SERVER),
        "{spans:#?}"
    );
}

#[tokio::test]
async fn a_collector_that_never_answers_costs_requests_nothing() {
    // Accepts connections and never answers: every export waits for its
    // whole timeout, far longer than the requests below may take.
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", blackhole.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = blackhole.accept().await {
            keep.lock().unwrap().push(stream);
        }
    });
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let gw = TestGateway::start(&config(
        &endpoint,
        "timeout = \"60s\"\nqueue_size = 8",
        &origin,
    ))
    .await;
    let http = client();

    let started = Instant::now();
    for i in 0..200 {
        let res = http
            .get(gw.url(&format!("/open/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "request {i}");
    }
    // Had any request waited for an export, this loop would have taken at
    // least the export timeout (60 s).
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "requests waited for the collector: {:?}",
        started.elapsed()
    );
    let metrics = gw.metrics().await;
    let dropped: f64 = metrics
        .lines()
        .find(|l| l.starts_with("gatehouse_trace_spans_total{outcome=\"dropped\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        dropped > 0.0,
        "the full queue dropped spans, counted:\n{metrics}"
    );
}
