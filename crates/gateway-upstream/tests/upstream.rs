//! End-to-end behaviour of clusters over real sockets, against mock origins
//! from `test-support`. Durations in configs are short (tens of ms) so the
//! suite stays fast without sleeping on long timers.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use gateway_core::body::{boxed, empty, full};
use gateway_core::{Body, ToProblem};
use gateway_upstream::config::{ClientEngine, HealthCheckConfig, LoadBalancing, Protocol};
use gateway_upstream::{
    CircuitState, Cluster, ClusterConfig, SendOptions, TargetState, UpstreamError,
    UpstreamErrorKind, Upstreams,
};
use http::{Method, Request, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use test_support::{Handler, Origin, OriginBody, Reply};

// === helpers ===

fn config(targets: &[String], tweak: impl FnOnce(&mut ClusterConfig)) -> ClusterConfig {
    let mut c = ClusterConfig::with_targets(targets.iter().cloned());
    // Quiet defaults for tests: no retries, breaker and ejection off, no
    // panic mode, no trials of ejected targets; each test turns on what it
    // exercises.
    c.retry.attempts = 1;
    c.panic_threshold = 0;
    c.passive.trial_interval = Duration::from_secs(3600);
    c.retry.backoff_base = Duration::from_millis(1);
    c.retry.backoff_max = Duration::from_millis(2);
    c.circuit_breaker.consecutive_failures = 0;
    c.passive.consecutive_failures = 0;
    c.connect_timeout = Duration::from_millis(500);
    tweak(&mut c);
    c
}

fn build(cfg: ClusterConfig) -> (Upstreams, Arc<Cluster>) {
    let u = Upstreams::new(BTreeMap::from([("api".to_string(), cfg)])).unwrap();
    let c = u.get("api").unwrap();
    (u, c)
}

fn request(method: Method, path: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "api.example.com")
        .body(body)
        .unwrap()
}

async fn send(
    c: &Cluster,
    method: Method,
    path: &str,
    body: Body,
) -> Result<(StatusCode, Bytes), UpstreamError> {
    let opts = SendOptions::for_method(&method);
    let res = c.send(request(method, path, body), opts).await?;
    let status = res.status();
    Ok((status, res.into_body().collect().await.unwrap().to_bytes()))
}

async fn get(c: &Cluster, path: &str) -> Result<(StatusCode, Bytes), UpstreamError> {
    send(c, Method::GET, path, empty()).await
}

fn json(b: &Bytes) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

/// An address nothing listens on (bound, then released).
async fn dead_addr() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a.to_string()
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A request body of unknown length (never replayable).
struct Chunked(Option<Bytes>);

impl http_body::Body for Chunked {
    type Data = Bytes;
    type Error = gateway_core::BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }
}

// === forwarding ===

#[test]
fn send_future_is_send_so_the_proxy_can_spawn_it() {
    fn assert_send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let (_u, c) = build(config(&["127.0.0.1:1".to_string()], |_| {}));
    let fut = c.send(request(Method::GET, "/", empty()), SendOptions::default());
    assert_send(&fut);
}

#[tokio::test]
async fn forwards_method_path_query_headers_and_body_and_keeps_host() {
    let origin = Origin::start(Handler::echo()).await;
    let (_u, c) = build(config(&[origin.authority()], |_| {}));
    let mut req = request(Method::POST, "/v1/rates?base=EUR", full("hello"));
    req.headers_mut()
        .insert("x-forwarded-for", "10.1.2.3".parse().unwrap());
    let res = c.send(req, SendOptions::default()).await.unwrap();
    let v = json(&res.into_body().collect().await.unwrap().to_bytes());
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/v1/rates");
    assert_eq!(v["query"], "base=EUR");
    assert_eq!(v["headers"]["host"], "api.example.com");
    assert_eq!(v["headers"]["x-forwarded-for"], "10.1.2.3");
    assert_eq!(v["body_len"], 5);
    assert_eq!(v["version"], "HTTP/1.1");

    let opts = SendOptions {
        preserve_host: false,
        ..SendOptions::default()
    };
    let res = c
        .send(request(Method::GET, "/", empty()), opts)
        .await
        .unwrap();
    let v = json(&res.into_body().collect().await.unwrap().to_bytes());
    assert_eq!(v["headers"]["host"], origin.authority());
}

#[tokio::test]
async fn large_request_bodies_stream_to_the_target() {
    let origin = Origin::start(Handler::echo()).await;
    let (_u, c) = build(config(&[origin.authority()], |c| c.retry.attempts = 3));
    let big = vec![7u8; 5 * 1024 * 1024 + 1];
    let (status, body) = send(&c, Method::PUT, "/upload", full(big)).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(json(&body)["body_len"], 5 * 1024 * 1024 + 1);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn h2c_upstream_speaks_http2_with_prior_knowledge() {
    let origin = Origin::start(Handler::echo()).await;
    let (_u, c) = build(config(&[origin.url()], |c| c.protocol = Protocol::H2c));
    for _ in 0..3 {
        let (status, body) = get(&c, "/h2?x=1").await.unwrap();
        assert_eq!(status, 200);
        let v = json(&body);
        assert_eq!(v["version"], "HTTP/2.0");
        assert_eq!(v["path"], "/h2");
        assert_eq!(
            v["headers"]["host"], "api.example.com",
            "client Host kept over HTTP/2"
        );
    }
}

#[tokio::test]
async fn https_upstream_verifies_with_ca_file_and_negotiates_h2() {
    let origin = Origin::builder(Handler::echo()).tls().start().await;
    let certs = origin.certs().unwrap().clone();
    let target = origin.url(); // https://localhost:PORT
    let (_u, c) = build(config(std::slice::from_ref(&target), |c| {
        c.tls.ca_file = Some(certs.ca_file())
    }));
    let (status, body) = get(&c, "/secure").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(json(&body)["version"], "HTTP/2.0");

    let (_u1, c1) = build(config(std::slice::from_ref(&target), |c| {
        c.tls.ca_file = Some(certs.ca_file());
        c.protocol = Protocol::Http1;
    }));
    assert_eq!(json(&get(&c1, "/").await.unwrap().1)["version"], "HTTP/1.1");

    // The IP literal is in the certificate too; server_name overrides SNI.
    let (_u2, c2) = build(config(&[format!("https://{}", origin.authority())], |c| {
        c.tls.ca_file = Some(certs.ca_file());
        c.tls.server_name = Some("localhost".into());
    }));
    assert_eq!(get(&c2, "/").await.unwrap().0, 200);

    // Without the CA the certificate is not trusted.
    let (_u3, c3) = build(config(&[target], |_| {}));
    let err = get(&c3, "/").await.unwrap_err();
    assert_eq!(err.kind(), UpstreamErrorKind::Tls, "{err}");
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn unreadable_ca_file_is_a_build_error_naming_the_key() {
    let mut cfg = config(&["https://localhost:1".to_string()], |_| {});
    cfg.tls.ca_file = Some("/nonexistent/ca.pem".into());
    let err = Upstreams::new(BTreeMap::from([("api".to_string(), cfg)])).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("clusters.api.tls.ca_file") && text.contains("/nonexistent/ca.pem"),
        "{text}"
    );
}

// === failures, ejection, health ===

#[tokio::test]
async fn dead_upstream_is_502_then_ejected_then_readmitted_by_health_check() {
    let origin = Origin::start(Handler::echo().on_path("/healthz", Handler::status(200))).await;
    let addr = origin.addr();
    let (_u, c) = build(config(&[origin.authority()], |c| {
        c.passive.consecutive_failures = 2;
        c.passive.base_ejection_time = Duration::from_secs(600);
        c.health_check = Some(HealthCheckConfig {
            interval: Duration::from_millis(30),
            timeout: Duration::from_millis(30),
            healthy_threshold: 1,
            unhealthy_threshold: 1000,
            ..HealthCheckConfig::default()
        });
    }));
    assert_eq!(get(&c, "/").await.unwrap().0, 200);
    origin.stop().await;

    let err = get(&c, "/").await.unwrap_err();
    assert_eq!(err.kind(), UpstreamErrorKind::ConnectFailed);
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
    let p = err.to_problem();
    assert_eq!(p.code(), "upstream_connect_failed");
    assert_eq!(p.extensions["upstream"], "api");
    assert_eq!(p.extensions["target"], format!("http://{addr}"));
    assert!(
        p.detail.contains("`api`") && p.detail.contains(&addr.to_string()),
        "{}",
        p.detail
    );

    assert_eq!(
        get(&c, "/").await.unwrap_err().kind(),
        UpstreamErrorKind::ConnectFailed
    );
    let status = &c.targets_status()[0];
    assert_eq!(status.state, TargetState::Ejected);
    assert_eq!(status.times_ejected, 1);
    assert!(status.ejected_for.unwrap() > Duration::from_secs(500));

    let err = get(&c, "/").await.unwrap_err();
    assert_eq!(err.kind(), UpstreamErrorKind::NoHealthyTargets);
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(err.detail().contains("ejected"), "{}", err.detail());

    let origin = Origin::builder(Handler::echo().on_path("/healthz", Handler::status(200)))
        .addr(addr)
        .start()
        .await;
    eventually("the health check re-admits the target", || {
        c.targets_status()[0].state == TargetState::Healthy
    })
    .await;
    assert_eq!(get(&c, "/").await.unwrap().0, 200);
    assert!(origin.requests_to("/healthz") >= 1);
}

/// Envoy's panic threshold: with too few targets available, every target
/// gets traffic, so ejecting a cluster's only target does not turn a short
/// outage into a long one; the first answer ends the ejection.
#[tokio::test]
async fn below_the_panic_threshold_ejected_targets_still_get_traffic() {
    let origin = Origin::start(Handler::status(200)).await;
    let addr = origin.addr();
    let (_u, c) = build(config(&[origin.authority()], |c| {
        c.panic_threshold = 50;
        c.passive.consecutive_failures = 1;
        c.passive.base_ejection_time = Duration::from_secs(600);
    }));
    origin.stop().await;
    for _ in 0..3 {
        assert_eq!(
            get(&c, "/").await.unwrap_err().kind(),
            UpstreamErrorKind::ConnectFailed,
            "the ejected only target is still dialled"
        );
    }
    assert_eq!(c.targets_status()[0].state, TargetState::Ejected);

    let _back = Origin::builder(Handler::status(200))
        .addr(addr)
        .start()
        .await;
    assert_eq!(get(&c, "/").await.unwrap().0, 200);
    assert_eq!(
        c.targets_status()[0].state,
        TargetState::Healthy,
        "an answer ends the ejection"
    );
}

/// Above the panic threshold an ejected target is skipped, except for one
/// trial request per `trial_interval`; the trial that succeeds brings it
/// back long before its ejection time is over.
#[tokio::test]
async fn an_ejected_target_is_tried_again_after_the_trial_interval() {
    let flaky = Origin::start(Handler::fixed(200, &[], "flaky")).await;
    let flaky_addr = flaky.addr();
    let steady = Origin::start(Handler::fixed(200, &[], "steady")).await;
    let (_u, c) = build(config(&[flaky.authority(), steady.authority()], |c| {
        c.panic_threshold = 50;
        c.passive.consecutive_failures = 1;
        c.passive.base_ejection_time = Duration::from_secs(600);
        c.passive.trial_interval = Duration::from_secs(1);
        c.retry.attempts = 2;
    }));
    flaky.stop().await;
    // Round robin reaches the flaky target within two requests; its
    // connect failure is retried on the steady one.
    for _ in 0..2 {
        assert_eq!(get(&c, "/").await.unwrap().1, "steady");
    }
    assert_eq!(c.targets_status()[0].state, TargetState::Ejected);
    let flaky = Origin::builder(Handler::fixed(200, &[], "flaky"))
        .addr(flaky_addr)
        .start()
        .await;
    // Skipped until the trial is due (50% available: no panic).
    for _ in 0..4 {
        assert_eq!(get(&c, "/").await.unwrap().1, "steady");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&c, "/").await.unwrap().1, "flaky", "the trial");
    assert_eq!(c.targets_status()[0].state, TargetState::Healthy);
    assert_eq!(c.targets_status()[0].times_ejected, 1);
    assert!(flaky.requests() >= 1);
}

#[tokio::test]
async fn failing_health_checks_take_a_target_out_of_rotation() {
    let sick =
        Origin::start(Handler::fixed(200, &[], "sick").on_path("/healthz", Handler::status(500)))
            .await;
    let well = Origin::start(Handler::fixed(200, &[], "well")).await;
    let (_u, c) = build(config(&[sick.authority(), well.authority()], |c| {
        c.health_check = Some(HealthCheckConfig {
            interval: Duration::from_millis(20),
            timeout: Duration::from_millis(20),
            unhealthy_threshold: 2,
            ..HealthCheckConfig::default()
        });
    }));
    eventually("sick target marked unhealthy", || {
        c.targets_status()[0].state == TargetState::Unhealthy
    })
    .await;
    assert!(c.targets_status()[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("500"));
    for _ in 0..10 {
        assert_eq!(get(&c, "/").await.unwrap().1, "well");
    }
    assert_eq!(sick.requests_to("/"), 0);
}

#[tokio::test]
async fn a_target_that_accepts_but_never_handshakes_is_a_connect_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let (_u, c) = build(config(&[format!("https://{addr}")], |c| {
        c.connect_timeout = Duration::from_millis(100);
        c.tls.insecure_skip_verify = true;
    }));
    let opts = SendOptions::default().with_timeout(Duration::from_secs(10));
    let started = std::time::Instant::now();
    let err = c
        .send(request(Method::GET, "/", empty()), opts)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), UpstreamErrorKind::ConnectTimeout, "{err}");
    assert_eq!(err.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by connect_timeout, not the route timeout"
    );
    holder.abort();
}

#[tokio::test]
async fn insecure_skip_verify_accepts_an_untrusted_certificate() {
    let origin = Origin::builder(Handler::status(204)).tls().start().await;
    let (_u, c) = build(config(&[format!("https://{}", origin.authority())], |c| {
        c.tls.insecure_skip_verify = true;
    }));
    assert_eq!(get(&c, "/").await.unwrap().0, 204);
}

#[tokio::test]
async fn timeout_is_504_naming_the_target() {
    let origin = Origin::start(Handler::status(200).delay(Duration::from_millis(500))).await;
    let (_u, c) = build(config(&[origin.authority()], |_| {}));
    let opts = SendOptions::default().with_timeout(Duration::from_millis(50));
    let err = c
        .send(request(Method::GET, "/", empty()), opts)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), UpstreamErrorKind::Timeout);
    assert_eq!(err.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        err.detail().contains(&origin.authority()) && err.detail().contains("50ms"),
        "{}",
        err.detail()
    );
}

#[tokio::test]
async fn health_checks_stop_when_the_cluster_is_removed_or_on_shutdown() {
    let origin = Origin::start(Handler::status(200)).await;
    let mut cfg = config(&[origin.authority()], |_| {});
    cfg.health_check = Some(HealthCheckConfig {
        interval: Duration::from_millis(10),
        timeout: Duration::from_millis(10),
        ..HealthCheckConfig::default()
    });
    let u = Upstreams::new(BTreeMap::from([("a".to_string(), cfg.clone())])).unwrap();
    eventually("health checks running", || {
        origin.requests_to("/healthz") >= 3
    })
    .await;
    u.reconfigure(BTreeMap::new()).unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let after_removal = origin.requests_to("/healthz");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        origin.requests_to("/healthz"),
        after_removal,
        "removed cluster stopped checking"
    );

    u.reconfigure(BTreeMap::from([("b".to_string(), cfg)]))
        .unwrap();
    eventually("new cluster checks", || {
        origin.requests_to("/healthz") > after_removal
    })
    .await;
    u.shutdown();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let after_shutdown = origin.requests_to("/healthz");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        origin.requests_to("/healthz"),
        after_shutdown,
        "shutdown stopped checking"
    );
}

// === load balancing ===

#[tokio::test]
async fn round_robin_spreads_evenly_and_honours_weights() {
    let origins = [
        Origin::start(Handler::status(200)).await,
        Origin::start(Handler::status(200)).await,
        Origin::start(Handler::status(200)).await,
    ];
    let addrs: Vec<String> = origins.iter().map(|o| o.authority()).collect();
    let (_u, c) = build(config(&addrs, |_| {}));
    for _ in 0..300 {
        get(&c, "/").await.unwrap();
    }
    assert_eq!(
        origins.iter().map(|o| o.requests()).collect::<Vec<_>>(),
        [100, 100, 100]
    );

    let (_u2, c2) = build(config(&addrs[..2], |c| c.targets[0].weight = 3));
    for _ in 0..40 {
        get(&c2, "/").await.unwrap();
    }
    assert_eq!(origins[0].requests() - 100, 30);
    assert_eq!(origins[1].requests() - 100, 10);
}

#[tokio::test]
async fn least_outstanding_avoids_the_slow_target() {
    let slow = Origin::start(Handler::status(200).delay(Duration::from_millis(50))).await;
    let fast = Origin::start(Handler::status(200)).await;
    let (_u, c) = build(config(&[slow.authority(), fast.authority()], |c| {
        c.load_balancing = LoadBalancing::LeastOutstanding;
    }));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let c = c.clone();
        workers.push(tokio::spawn(async move {
            for _ in 0..50 {
                get(&c, "/").await.unwrap();
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let (s, f) = (slow.requests(), fast.requests());
    assert_eq!(s + f, 200);
    assert!(s * 4 < s + f, "slow target got {s} of {} requests", s + f);
}

#[tokio::test]
async fn consistent_hash_is_sticky_and_ejection_moves_only_that_targets_keys() {
    let origins = [
        Origin::start(Handler::fixed(200, &[], "0")).await,
        Origin::start(Handler::fixed(200, &[], "1")).await,
        Origin::start(Handler::fixed(200, &[], "2")).await,
    ];
    let addrs: Vec<String> = origins.iter().map(|o| o.authority()).collect();
    let (_u, c) = build(config(&addrs, |c| {
        c.load_balancing = LoadBalancing::ConsistentHash;
        c.hash_on = Some("header:x-user".to_string().try_into().unwrap());
        c.passive.consecutive_failures = 1;
        c.passive.max_ejection_percent = 100;
        c.passive.base_ejection_time = Duration::from_secs(600);
    }));
    let who = |user: String| {
        let c = c.clone();
        async move {
            let req = Request::get("/")
                .header("x-user", user)
                .body(empty())
                .unwrap();
            let res = c.send(req, SendOptions::default()).await?;
            let b = res.into_body().collect().await.unwrap().to_bytes();
            Ok::<usize, UpstreamError>(std::str::from_utf8(&b).unwrap().parse().unwrap())
        }
    };
    let mut before = HashMap::new();
    for u in 0..60 {
        let t = who(format!("user-{u}")).await.unwrap();
        assert_eq!(who(format!("user-{u}")).await.unwrap(), t, "sticky");
        before.insert(u, t);
    }
    assert!(
        (0..3).all(|t| before.values().any(|v| *v == t)),
        "keys spread: {before:?}"
    );

    // An explicit key in SendOptions wins over the header.
    let req = Request::get("/")
        .header("x-user", "user-0")
        .body(empty())
        .unwrap();
    let res = c
        .send(req, SendOptions::default().with_hash_key("user-1"))
        .await
        .unwrap();
    let b = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        std::str::from_utf8(&b).unwrap().parse::<usize>().unwrap(),
        before[&1]
    );

    let [o0, o1, o2] = origins;
    let gone = before[&0];
    let mut alive = Vec::new();
    for (i, o) in [o0, o1, o2].into_iter().enumerate() {
        if i == gone {
            o.stop().await;
        } else {
            alive.push(o);
        }
    }
    assert!(who("user-0".into()).await.is_err());
    assert_eq!(c.targets_status()[gone].state, TargetState::Ejected);
    for u in 0..60 {
        let t = who(format!("user-{u}")).await.unwrap();
        if before[&u] == gone {
            assert_ne!(t, gone);
        } else {
            assert_eq!(t, before[&u], "user-{u} moved although its target is fine");
        }
    }
}

// === retries ===

#[tokio::test]
async fn idempotent_requests_are_retried_on_listed_statuses_and_resets_but_post_with_body_is_not() {
    let failing = Origin::start(Handler::status(503)).await;
    let (_u, c) = build(config(&[failing.authority()], |c| {
        c.retry.attempts = 3;
        c.retry.on = vec![503];
    }));
    let (status, _) = get(&c, "/").await.unwrap();
    assert_eq!(status, 503, "the last response is passed through");
    assert_eq!(failing.requests(), 3);
    let (status, _) = send(&c, Method::POST, "/", full("payload")).await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(
        failing.requests(),
        4,
        "POST is not retried after it reached the origin"
    );

    let closer = Origin::start(Handler::close()).await;
    let echo = Origin::start(Handler::echo()).await;
    let (_u2, c2) = build(config(&[closer.authority(), echo.authority()], |c| {
        c.retry.attempts = 2
    }));
    for _ in 0..4 {
        assert_eq!(
            get(&c2, "/").await.unwrap().0,
            200,
            "reset retried on the other target"
        );
    }
    // Retries do not advance round robin, so first attempts still alternate.
    assert_eq!(closer.requests(), 2);
    let before = closer.requests();
    let mut reset = 0;
    for _ in 0..4 {
        match send(&c2, Method::POST, "/", full("x")).await {
            Ok((s, _)) => assert_eq!(s, 200),
            Err(e) => {
                assert_eq!(e.kind(), UpstreamErrorKind::Reset, "{e}");
                reset += 1;
            }
        }
    }
    assert_eq!(
        reset,
        closer.requests() - before,
        "every POST that hit the closer failed"
    );
    assert!(reset > 0);
}

#[tokio::test]
async fn failed_statuses_are_not_retried_unless_listed_in_retry_on() {
    let failing = Origin::start(Handler::status(503)).await;
    let (_u, c) = build(config(&[failing.authority()], |c| c.retry.attempts = 3));
    assert_eq!(get(&c, "/").await.unwrap().0, 503);
    assert_eq!(failing.requests(), 1, "the origin sees a failing GET once");

    failing.set_handler(Handler::status(502));
    let (_u2, c2) = build(config(&[failing.authority()], |c| {
        c.retry.attempts = 3;
        c.retry.on = vec![503, 504];
    }));
    assert_eq!(get(&c2, "/").await.unwrap().0, 502);
    assert_eq!(failing.requests(), 2, "502 is not in retry.on");
}

#[tokio::test]
async fn connect_failures_are_retried_elsewhere_even_for_post_but_streams_are_not() {
    let dead = dead_addr().await;
    let live = Origin::start(Handler::echo()).await;
    let (_u, c) = build(config(&[dead, live.authority()], |c| c.retry.attempts = 2));
    for _ in 0..4 {
        let (status, body) = send(&c, Method::POST, "/", full("abc")).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(json(&body)["body_len"], 3);
    }
    assert_eq!(live.requests(), 4);

    // A streamed body of unknown length cannot be replayed: one attempt only.
    let mut failures = 0;
    for _ in 0..2 {
        let body = boxed(Chunked(Some(Bytes::from_static(b"streamed"))));
        match send(&c, Method::POST, "/", body).await {
            Ok((_, b)) => assert_eq!(json(&b)["body_len"], 8),
            Err(e) => {
                assert_eq!(e.kind(), UpstreamErrorKind::ConnectFailed);
                failures += 1;
            }
        }
    }
    assert_eq!(
        failures, 1,
        "round robin sent one of two to the dead target"
    );
}

#[tokio::test]
async fn a_retry_names_the_target_it_goes_to_and_carries_the_same_headers() {
    // The native client encodes each attempt from the cluster's parts;
    // hyper's gets a copy for every attempt but the last, which takes them.
    for engine in [ClientEngine::Native, ClientEngine::Hyper] {
        retry_names_its_target(engine).await;
    }
}

async fn retry_names_its_target(engine: ClientEngine) {
    let dead = dead_addr().await;
    let live = Origin::start(Handler::echo()).await;
    let (_u, c) = build(config(&[dead.clone(), live.authority()], |c| {
        c.retry.attempts = 2;
        c.client_engine = engine;
    }));
    let opts = || SendOptions {
        preserve_host: false,
        ..SendOptions::for_method(&Method::GET)
    };
    // Round robin starts on either target: four requests retry at least once.
    for _ in 0..4 {
        let mut req = request(Method::GET, "/", empty());
        req.headers_mut()
            .insert("x-custom", "kept".parse().unwrap());
        let res = c.send(req, opts()).await.unwrap();
        let v = json(&res.into_body().collect().await.unwrap().to_bytes());
        assert_eq!(v["headers"]["host"], live.authority(), "not {dead}");
        assert_eq!(v["headers"]["x-custom"], "kept");
    }
    assert_eq!(live.requests(), 4);

    // Without a client `Host` to keep, each attempt names its own target.
    for _ in 0..4 {
        let req = Request::get("/").body(empty()).unwrap();
        let res = c.send(req, SendOptions::default()).await.unwrap();
        let v = json(&res.into_body().collect().await.unwrap().to_bytes());
        assert_eq!(v["headers"]["host"], live.authority());
    }
}

#[tokio::test]
async fn retry_budget_caps_retries_when_every_request_fails() {
    let failing = Origin::start(Handler::status(503)).await;
    let (_u, c) = build(config(&[failing.authority()], |c| {
        c.retry.attempts = 5;
        c.retry.on = vec![503];
        c.retry.budget_ratio = 0.1;
        c.retry.min_per_second = 0;
    }));
    for _ in 0..100 {
        assert_eq!(get(&c, "/").await.unwrap().0, 503);
    }
    let total = failing.requests();
    // Without the budget this would be 500.
    assert!((101..=110).contains(&total), "origin saw {total} requests");
}

// === circuit breaker and limits ===

#[tokio::test]
async fn circuit_opens_rejects_fast_half_opens_and_closes_on_success() {
    let origin = Origin::start(Handler::status(503)).await;
    let (_u, c) = build(config(&[origin.authority()], |c| {
        c.circuit_breaker.consecutive_failures = 3;
        c.circuit_breaker.open_for = Duration::from_millis(100);
        c.circuit_breaker.half_open_probes = 1;
    }));
    for _ in 0..3 {
        assert_eq!(get(&c, "/").await.unwrap().0, 503);
    }
    assert_eq!(c.circuit_state(), CircuitState::Open);
    let err = get(&c, "/").await.unwrap_err();
    assert_eq!(err.kind(), UpstreamErrorKind::CircuitOpen);
    assert_eq!(err.to_problem().code(), "circuit_open");
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(origin.requests(), 3, "rejected without reaching the origin");

    // Still failing after the cool-down: the probe re-opens the circuit.
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(c.circuit_state(), CircuitState::HalfOpen);
    assert_eq!(get(&c, "/").await.unwrap().0, 503);
    assert_eq!(c.circuit_state(), CircuitState::Open);

    // Retries stop once the circuit opens, even with attempts left.
    let (_u2, c2) = build(config(&[origin.authority()], |c| {
        c.circuit_breaker.consecutive_failures = 2;
        c.circuit_breaker.open_for = Duration::from_secs(60);
        c.retry.attempts = 5;
        c.retry.on = vec![503];
    }));
    let before = origin.requests();
    assert_eq!(get(&c2, "/").await.unwrap().0, 503);
    assert_eq!(origin.requests() - before, 2);
    assert_eq!(c2.circuit_state(), CircuitState::Open);

    origin.set_handler(Handler::status(200));
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(get(&c, "/").await.unwrap().0, 200);
    assert_eq!(c.circuit_state(), CircuitState::Closed);
    assert_eq!(get(&c, "/").await.unwrap().0, 200);
    assert_eq!(origin.requests(), 8);
}

#[tokio::test]
async fn max_concurrent_and_max_pending_give_503_overloaded() {
    let origin = Origin::start(Handler::status(200).delay(Duration::from_millis(300))).await;
    let (_u, c) = build(config(&[origin.authority()], |c| {
        c.circuit_breaker.max_concurrent = 2;
        c.circuit_breaker.max_pending = 1;
    }));
    let mut running = Vec::new();
    for _ in 0..2 {
        let c = c.clone();
        running.push(tokio::spawn(async move { get(&c, "/").await.map(|r| r.0) }));
    }
    eventually("two requests in flight", || c.in_flight() == 2).await;
    let queued = {
        let c = c.clone();
        tokio::spawn(async move { get(&c, "/").await.map(|r| r.0) })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let err = get(&c, "/").await.unwrap_err();
    assert_eq!(err.kind(), UpstreamErrorKind::Overloaded);
    assert_eq!(err.to_problem().code(), "overloaded");
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    for r in running {
        assert_eq!(r.await.unwrap().unwrap(), 200);
    }
    assert_eq!(
        queued.await.unwrap().unwrap(),
        200,
        "the queued request ran once a slot freed"
    );
    assert_eq!(origin.requests(), 3);
}

// === reconfigure ===

#[tokio::test]
async fn reconfigure_keeps_unchanged_targets_state_and_swaps_atomically() {
    let dead = dead_addr().await;
    let live = Origin::start(Handler::status(200)).await;
    let base = config(&[dead.clone(), live.authority()], |c| {
        c.passive.consecutive_failures = 1;
        c.passive.base_ejection_time = Duration::from_secs(600);
    });
    let u = Upstreams::new(BTreeMap::from([("api".to_string(), base.clone())])).unwrap();
    let c = u.get("api").unwrap();
    for _ in 0..2 {
        let _ = get(&c, "/").await;
    }
    assert_eq!(c.targets_status()[0].state, TargetState::Ejected);

    // Same config: the very same cluster is kept.
    u.reconfigure(BTreeMap::from([("api".to_string(), base.clone())]))
        .unwrap();
    assert!(Arc::ptr_eq(&c, &u.get("api").unwrap()));

    // Changed config (new target, more retries): new cluster, same target state.
    let extra = Origin::start(Handler::status(200)).await;
    let mut changed = base.clone();
    changed.retry.attempts = 2;
    changed
        .targets
        .push(gateway_upstream::config::TargetConfig {
            address: extra.authority(),
            weight: 1,
        });
    u.reconfigure(BTreeMap::from([("api".to_string(), changed.clone())]))
        .unwrap();
    let c2 = u.get("api").unwrap();
    assert!(!Arc::ptr_eq(&c, &c2));
    let st = c2.targets_status();
    assert_eq!(st.len(), 3);
    assert_eq!(st[0].state, TargetState::Ejected);
    assert_eq!(st[0].times_ejected, 1);
    assert_eq!(st[2].state, TargetState::Healthy);
    let json = serde_json::to_value(u.status()).unwrap();
    assert_eq!(json["api"]["circuit"], "closed");
    assert_eq!(json["api"]["targets"][0]["state"], "ejected");
    assert_eq!(
        json["api"]["targets"][0]["address"],
        format!("http://{dead}")
    );
    assert!(json["api"]["targets"][0]["ejected_for"]
        .as_str()
        .unwrap()
        .ends_with('s'));
    // The old cluster still serves requests that already hold it.
    assert_eq!(get(&c, "/").await.unwrap().0, 200);

    // Invalid config: nothing changes, every issue is reported with its path.
    let mut bad = changed.clone();
    bad.targets[1].address = "nope".into();
    let err = u
        .reconfigure(BTreeMap::from([
            ("api".to_string(), bad),
            (
                "other".to_string(),
                ClusterConfig::with_targets(Vec::<String>::new()),
            ),
        ]))
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("clusters.api.targets[1]"), "{text}");
    assert!(text.contains("clusters.other.targets"), "{text}");
    assert!(Arc::ptr_eq(&c2, &u.get("api").unwrap()));
    assert!(u.get("other").is_none());

    // Removal.
    u.reconfigure(BTreeMap::new()).unwrap();
    assert!(u.get("api").is_none());
    let err = u
        .send(
            "api",
            request(Method::GET, "/", empty()),
            SendOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), UpstreamErrorKind::UnknownCluster);
    u.shutdown();
}

#[tokio::test]
async fn keep_alive_connections_are_reused_and_survive_a_reconfigure() {
    let origin = Origin::start(Handler::status(200)).await;
    let cfg = config(&[origin.authority()], |_| {});
    let u = Upstreams::new(BTreeMap::from([("api".to_string(), cfg.clone())])).unwrap();
    for _ in 0..5 {
        assert_eq!(get(&u.get("api").unwrap(), "/").await.unwrap().0, 200);
    }
    assert_eq!(origin.connections(), 1);

    let mut retuned = cfg.clone();
    retuned.retry.attempts = 3;
    u.reconfigure(BTreeMap::from([("api".to_string(), retuned.clone())]))
        .unwrap();
    for _ in 0..5 {
        get(&u.get("api").unwrap(), "/").await.unwrap();
    }
    assert_eq!(origin.connections(), 1, "the target kept its pool");
    assert_eq!(
        u.get("api").unwrap().targets_status()[0].open_connections,
        1
    );

    // A setting baked into the client (here the pool) means a fresh pool.
    let mut repooled = retuned;
    repooled.pool.max_idle_per_target = 4;
    u.reconfigure(BTreeMap::from([("api".to_string(), repooled)]))
        .unwrap();
    get(&u.get("api").unwrap(), "/").await.unwrap();
    assert_eq!(origin.connections(), 2);
}

#[tokio::test]
async fn pool_settings_apply_idle_timeout_and_max_idle() {
    let origin = Origin::start(Handler::status(200)).await;
    let (_u, c) = build(config(&[origin.authority()], |c| {
        c.pool.idle_timeout = Duration::from_millis(50);
    }));
    get(&c, "/").await.unwrap();
    get(&c, "/").await.unwrap();
    assert_eq!(origin.connections(), 1);
    eventually("idle connection closed", || {
        c.targets_status()[0].open_connections == 0
    })
    .await;
    get(&c, "/").await.unwrap();
    assert_eq!(
        origin.connections(),
        2,
        "a new connection after the idle timeout"
    );

    let other = Origin::start(Handler::status(200)).await;
    let (_u2, c2) = build(config(&[other.authority()], |c| {
        c.pool.max_idle_per_target = 0
    }));
    for _ in 0..3 {
        get(&c2, "/").await.unwrap();
    }
    assert_eq!(
        other.connections(),
        3,
        "no reuse with max_idle_per_target = 0"
    );
}

// === streaming ===

/// A response body fed from a channel, so the test controls when the
/// origin produces the rest of it.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

#[tokio::test]
async fn a_50_mb_response_streams_through_without_being_buffered() {
    const TOTAL: usize = 50 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    let gate = Arc::new(tokio::sync::Notify::new());
    let origin_gate = gate.clone();
    let origin = Origin::start(Handler::new(move |_req| {
        let gate = origin_gate.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
            tokio::spawn(async move {
                let chunk = Bytes::from(vec![b'x'; CHUNK]);
                let _ = tx.send(chunk.clone()).await;
                // The rest is produced only after the client saw the first chunk.
                gate.notified().await;
                for _ in 1..TOTAL / CHUNK {
                    if tx.send(chunk.clone()).await.is_err() {
                        return;
                    }
                }
            });
            let mut res = http::Response::new(BodyExt::boxed(ChannelBody(rx)) as OriginBody);
            res.headers_mut().insert("content-length", TOTAL.into());
            Reply::Response(res)
        }
    }))
    .await;
    let (_u, c) = build(config(&[origin.authority()], |_| {}));

    let res = tokio::time::timeout(
        Duration::from_secs(10),
        c.send(
            request(Method::GET, "/big", empty()),
            SendOptions::default(),
        ),
    )
    .await
    .expect("send returned before the origin finished the body")
    .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("first chunk arrives while the origin is still holding the rest")
        .unwrap()
        .unwrap();
    let mut received = first.into_data().unwrap().len();
    assert!(received <= CHUNK);
    gate.notify_one();
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        if let Ok(data) = frame.into_data() {
            assert!(data.len() <= 1024 * 1024, "frames stay small");
            received += data.len();
        }
    }
    assert_eq!(received, TOTAL);
    assert_eq!(c.in_flight(), 0, "slot released when the body ended");
}
