//! Upstream failures as clients see them: problem+json 502s, passive
//! ejection and recovery, retries only where safe, circuit breaking, load
//! shedding and body limits.

use std::time::Duration;

use test_support::origin::{Handler, Origin};

use crate::harness::{base, base_with, client, eventually, TestGateway};

#[tokio::test]
async fn dead_upstream_gives_502_problem_is_ejected_and_comes_back() {
    let origin = Origin::start(Handler::fixed(200, &[], "up")).await;
    let addr = origin.addr();
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.svc]
targets = ["{addr}"]
retry = {{ attempts = 1 }}
passive = {{ consecutive_failures = 1, base_ejection_time = "30s", trial_interval = "30s" }}
panic_threshold = 0
# The first check runs at start; the next one long after the request
# below has dialled the dead target, even on a loaded machine.
health_check = {{ path = "/healthz", interval = "10s", timeout = "2s", healthy_threshold = 1, unhealthy_threshold = 1 }}

[[routes]]
name = "svc"
cluster = "svc"
"#
    )))
    .await;
    let http = client();
    assert_eq!(http.get(gw.url("/")).send().await.unwrap().status(), 200);
    // The first health check has reached the origin (it and the request
    // above): a check still on its way when the origin stops would mark
    // the target down before the request below can dial it.
    let checked = eventually(Duration::from_secs(5), || async { origin.requests() >= 2 }).await;
    assert!(checked, "the first health check ran");

    origin.stop().await;
    let res = http.get(gw.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!(p["upstream"], "svc", "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains(&addr.to_string()),
        "{p}"
    );

    let ejected = eventually(Duration::from_secs(5), || async {
        let status = gw.admin_json("/v1/upstreams").await;
        status["svc"]["targets"][0]["state"] != "healthy"
    })
    .await;
    assert!(ejected, "the dead target is taken out of rotation");
    // With its only target out, the cluster answers 503 without dialling.
    let res = http.get(gw.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 503);

    let _back = Origin::builder(Handler::fixed(200, &[], "back"))
        .addr(addr)
        .start()
        .await;
    // Within two check intervals.
    let recovered = eventually(Duration::from_secs(25), || async {
        let res = http.get(gw.url("/")).send().await.unwrap();
        res.status() == 200
    })
    .await;
    assert!(recovered, "the target returns once its health check passes");
}

/// A short outage of a cluster's only target, with the default passive
/// ejection and circuit breaker: requests succeed again within a couple of
/// seconds of the origin coming back, not when a 30 s ejection ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_second_outage_of_the_only_target_recovers_within_seconds() {
    let origin = Origin::start(Handler::fixed(200, &[], "up")).await;
    let addr = origin.addr();
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.svc]
targets = ["{addr}"]

[[routes]]
name = "svc"
cluster = "svc"
"#
    )))
    .await;
    let http = client();
    assert_eq!(http.get(gw.url("/")).send().await.unwrap().status(), 200);

    // Steady traffic throughout, recording when each answer came.
    let stop = tokio_util::sync::CancellationToken::new();
    let traffic = tokio::spawn({
        let (http, url, stop) = (http.clone(), gw.url("/"), stop.clone());
        async move {
            let mut seen = Vec::new();
            while !stop.is_cancelled() {
                let status = http.get(&url).send().await.unwrap().status().as_u16();
                seen.push((tokio::time::Instant::now(), status));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        }
    });

    origin.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _back = Origin::builder(Handler::fixed(200, &[], "back"))
        .addr(addr)
        .start()
        .await;
    let back_at = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.cancel();
    let seen = traffic.await.unwrap();

    let failed = seen.iter().filter(|(_, s)| *s != 200).count();
    assert!(failed > 20, "the outage was seen: {failed} failures");
    let status = gw.admin_json("/v1/upstreams").await;
    assert!(
        status["svc"]["targets"][0]["times_ejected"].as_u64() >= Some(1),
        "the target was ejected during the outage: {status}"
    );
    let first_ok = seen
        .iter()
        .find(|(at, s)| *at >= back_at && *s == 200)
        .map(|(at, _)| at.duration_since(back_at))
        .expect("requests succeed again after the origin is back");
    assert!(
        first_ok <= Duration::from_millis(2500),
        "first success {first_ok:?} after the origin came back"
    );
    let late_failures: Vec<u16> = seen
        .iter()
        .filter(|(at, s)| *at >= back_at + Duration::from_millis(2500) && *s != 200)
        .map(|(_, s)| *s)
        .collect();
    assert!(
        late_failures.is_empty(),
        "failures after recovery: {late_failures:?}"
    );
    assert_eq!(status["svc"]["targets"][0]["state"], "healthy", "{status}");
}

#[tokio::test]
async fn failed_statuses_reach_the_origin_once_unless_retry_on_lists_them() {
    let origin = Origin::start(Handler::status(503)).await;
    let closer = Origin::start(Handler::close()).await;
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.svc]
targets = ["{}"]
retry = {{ attempts = 3, backoff_base = "1ms", backoff_max = "2ms" }}
passive = {{ consecutive_failures = 0 }}

[clusters.flaky]
targets = ["{}", "{}"]
retry = {{ attempts = 2, backoff_base = "1ms", backoff_max = "2ms" }}
passive = {{ consecutive_failures = 0 }}

[[routes]]
name = "svc"
path_prefix = "/svc"
cluster = "svc"

[[routes]]
name = "flaky"
path_prefix = "/flaky"
cluster = "flaky"
"#,
        origin.authority(),
        closer.authority(),
        origin.authority(),
    )))
    .await;
    let http = client();
    let res = http.get(gw.url("/svc/thing")).send().await.unwrap();
    assert_eq!(res.status(), 503, "the origin's answer is passed through");
    assert_eq!(origin.requests(), 1, "a failing GET is not sent twice");

    // A reset before any response byte is retried by default, on the
    // other target.
    origin.set_handler(Handler::fixed(200, &[], "ok"));
    for _ in 0..4 {
        let res = http.get(gw.url("/flaky/thing")).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert!(closer.requests() > 0, "round robin reached the closer");
}

#[tokio::test]
async fn retries_only_idempotent_requests() {
    let origin = Origin::start(Handler::status(503)).await;
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.svc]
targets = ["{}"]
retry = {{ attempts = 3, backoff_base = "1ms", backoff_max = "2ms", on = [503] }}
passive = {{ consecutive_failures = 0 }}

[[routes]]
name = "svc"
cluster = "svc"
"#,
        origin.authority()
    )))
    .await;
    let http = client();
    let res = http.get(gw.url("/thing")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(
        origin.requests(),
        3,
        "GET is retried up to the attempt limit"
    );

    let res = http
        .post(gw.url("/thing"))
        .body("order=1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(origin.requests(), 4, "POST is sent once");
}

#[tokio::test]
async fn circuit_opens_then_half_opens_and_closes() {
    let origin = Origin::start(Handler::status(502)).await;
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.svc]
targets = ["{}"]
retry = {{ attempts = 1 }}
passive = {{ consecutive_failures = 0 }}
circuit_breaker = {{ consecutive_failures = 3, open_for = "300ms", half_open_probes = 1 }}

[[routes]]
name = "svc"
cluster = "svc"
"#,
        origin.authority()
    )))
    .await;
    let http = client();
    for _ in 0..3 {
        assert_eq!(http.get(gw.url("/")).send().await.unwrap().status(), 502);
    }
    assert_eq!(origin.requests(), 3);
    let res = http.get(gw.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!(p["code"], "circuit_open", "{p}");
    assert_eq!(
        origin.requests(),
        3,
        "an open circuit does not reach the upstream"
    );

    origin.set_handler(Handler::fixed(200, &[], "healed"));
    tokio::time::sleep(Duration::from_millis(350)).await;
    let res = http.get(gw.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200, "the half-open probe goes through");
    assert_eq!(
        gw.admin_json("/v1/upstreams").await["svc"]["circuit"],
        "closed"
    );
    assert_eq!(http.get(gw.url("/")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn overload_is_shed_with_503_and_retry_after() {
    let origin =
        Origin::start(Handler::fixed(200, &[], "slow").delay(Duration::from_millis(600))).await;
    let gw = TestGateway::start(&base_with(
        "max_in_flight = 1",
        &format!(
            r#"
[clusters.svc]
targets = ["{}"]

[[routes]]
name = "svc"
cluster = "svc"
"#,
            origin.authority()
        ),
    ))
    .await;
    let http = client();
    let first = tokio::spawn({
        let http = http.clone();
        let url = gw.url("/");
        async move { http.get(url).send().await.unwrap().status() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = http.get(gw.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!(p["code"], "overloaded");
    assert_eq!(
        first.await.unwrap(),
        200,
        "the admitted request is unaffected"
    );
}

#[tokio::test]
async fn request_bodies_over_the_route_limit_get_413() {
    let origin = Origin::start(Handler::echo()).await;
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.svc]
targets = ["{}"]

[[routes]]
name = "svc"
cluster = "svc"
max_body = "1KiB"
"#,
        origin.authority()
    )))
    .await;
    let http = client();
    let res = http
        .post(gw.url("/"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413, "declared length over the limit");
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!(p["code"], "body_too_large");
    assert_eq!(
        origin.requests(),
        0,
        "rejected before reaching the upstream"
    );

    // No Content-Length: the limit trips while streaming.
    let chunks = futures_util::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 512]))),
    );
    let res = http
        .post(gw.url("/"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413, "streamed body over the limit");

    let res = http
        .post(gw.url("/"))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn route_timeout_gives_504_problem() {
    let origin =
        Origin::start(Handler::fixed(200, &[], "late").delay(Duration::from_secs(2))).await;
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.svc]
targets = ["{}"]
retry = {{ attempts = 1 }}

[[routes]]
name = "svc"
cluster = "svc"
timeout = "200ms"
"#,
        origin.authority()
    )))
    .await;
    let res = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 504);
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!(p["code"], "upstream_timeout", "{p}");
    assert_eq!(p["upstream"], "svc");
}
