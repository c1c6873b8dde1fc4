//! The admin API: token, probes, running config, metrics; and the access log.

use std::time::Duration;

use test_support::origin::{Handler, Origin};

use crate::harness::{base, client, eventually, with_access_log, TestGateway};

#[tokio::test]
async fn admin_needs_the_token_except_for_probes() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let gw = TestGateway::start(&base(&format!(
        r#"
[storage]
redis_url = "redis://gh:hunter2@cache.internal:6379"

[clusters.svc]
targets = ["{}"]

[[routes]]
name = "svc"
cluster = "svc"
"#,
        origin.authority()
    )))
    .await;
    let http = client();
    assert_eq!(
        http.get(gw.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(gw.admin_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for path in ["/metrics", "/v1/config", "/v1/upstreams"] {
        let res = http.get(gw.admin_url(path)).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path} without a token");
        assert!(res.headers().contains_key("www-authenticate"));
        let res = http
            .get(gw.admin_url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{path} with a wrong token");
    }

    let cfg = gw.admin_json("/v1/config").await;
    let text = cfg.to_string();
    assert!(!text.contains("hunter2"), "secrets are redacted: {text}");
    assert_eq!(cfg["config"]["routes"][0]["name"], "svc");

    for _ in 0..3 {
        http.get(gw.url("/")).send().await.unwrap();
    }
    let metrics = gw.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("gatehouse_requests_total{")
                && l.contains("route=\"svc\"")
                && l.contains("status=\"200\"")),
        "{metrics}"
    );
    assert!(
        metrics.contains("gatehouse_request_duration_seconds_bucket{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gatehouse_upstream_"),
        "upstream metrics are exported"
    );
}

#[tokio::test]
async fn access_log_has_one_json_line_per_request() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let config = base(&format!(
        r#"
[clusters.svc]
targets = ["{}"]

[[routes]]
name = "svc"
path_prefix = "/svc"
cluster = "svc"
"#,
        origin.authority()
    ));
    let config = with_access_log(&config, &log);
    let gw = TestGateway::start(&config).await;
    let http = client();
    http.get(gw.url("/svc/a?q=1"))
        .header("x-request-id", "log-test-1")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    http.get(gw.url("/unrouted")).send().await.unwrap();

    let ok = eventually(Duration::from_secs(5), || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
    })
    .await;
    assert!(ok, "two lines are written");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let first = lines
        .iter()
        .find(|l| l["request_id"] == "log-test-1")
        .unwrap();
    assert_eq!(first["status"], 200);
    assert_eq!(first["route"], "svc");
    assert_eq!(first["upstream"], "svc");
    assert_eq!(first["path"], "/svc/a?q=1");
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(first["completed"], true);
    assert_eq!(first["bytes_out"], 2);
    let second = lines.iter().find(|l| l["path"] == "/unrouted").unwrap();
    assert_eq!(second["status"], 404);
    assert_eq!(second["error"], "route_not_found");
    assert!(second["route"].is_null());
}

/// While in-flight requests drain, the admin listener still answers and
/// `/readyz` says 503 `draining`, so load balancers take the node out
/// instead of seeing a refused connection.
#[tokio::test]
async fn readyz_answers_503_while_draining() {
    let origin =
        Origin::start(Handler::fixed(200, &[], "finished").delay(Duration::from_millis(1500)))
            .await;
    let mut gw = TestGateway::start(&base(&format!(
        r#"
[clusters.svc]
targets = ["{}"]

[[routes]]
name = "svc"
cluster = "svc"
"#,
        origin.authority()
    )))
    .await;
    let http = client();
    let in_flight = tokio::spawn({
        let http = http.clone();
        let url = gw.url("/");
        async move { http.get(url).send().await.unwrap().status() }
    });
    let started = eventually(Duration::from_secs(5), || async { origin.requests() == 1 }).await;
    assert!(started, "the slow request reached the origin");
    let running = gw.running.take().unwrap();
    let drain = tokio::spawn(async move { running.shutdown(Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let res = http
        .get(gw.admin_url("/readyz"))
        .send()
        .await
        .expect("the admin listener still answers during the drain");
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "draining", "{body}");
    assert_eq!(
        http.get(gw.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    assert_eq!(
        in_flight.await.unwrap(),
        200,
        "the drained request finished"
    );
    assert!(drain.await.unwrap(), "drained within the grace period");
    assert!(
        tokio::net::TcpStream::connect(gw.admin).await.is_err(),
        "the admin listener closes once the drain is over"
    );
}
