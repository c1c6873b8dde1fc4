//! CORS over real sockets: preflights answered by the gateway (the mock
//! origin counts every request it gets), CORS headers on actual responses
//! for allowed origins only, and the cache never handing one origin's CORS
//! answer to another.

use test_support::origin::{Handler, Origin, Reply};

use crate::harness::{base, client, TestGateway};

const APP: &str = "https://app.example.com";
const SHOP: &str = "https://eu.shop.test";

fn config(origin: &Origin) -> String {
    format!(
        r#"
[cache]
max_bytes = "16MiB"

[clusters.o]
targets = ["{}"]

[[routes]]
name = "orders"
path_prefix = "/orders"
methods = ["GET", "PUT"]
cluster = "o"
auth = {{ methods = ["api_key"] }}
cors = {{ allow_origins = ["{APP}", "https://*.shop.test"], allow_methods = ["GET", "PUT"], allow_headers = ["content-type", "authorization"], expose_headers = ["x-total"], allow_credentials = true, max_age = "1h" }}

[[routes]]
name = "catalog"
path_prefix = "/catalog"
cluster = "o"
cache = {{}}
cors = {{ allow_origins = ["{APP}", "https://*.shop.test"] }}

[[routes]]
name = "legacy"
path_prefix = "/legacy"
cluster = "o"
cache = {{}}
"#,
        origin.authority()
    )
}

fn preflight(
    http: &reqwest::Client,
    url: String,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut req = http
        .request(reqwest::Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", method);
    if let Some(h) = headers {
        req = req.header("access-control-request-headers", h);
    }
    req
}

#[tokio::test]
async fn preflights_are_answered_by_the_gateway_and_never_reach_the_upstream() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let gw = TestGateway::start(&base(&config(&origin))).await;
    let http = client();

    // Allowed: a wildcard origin, a method the route lists (PUT, routed
    // although the request itself is OPTIONS), listed headers; no API key.
    let res = preflight(
        &http,
        gw.url("/orders/7"),
        SHOP,
        "PUT",
        Some("Content-Type, Authorization"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 204);
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], SHOP);
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-allow-methods"], "GET, PUT");
    assert_eq!(
        h["access-control-allow-headers"],
        "content-type, authorization"
    );
    assert_eq!(h["access-control-max-age"], "3600");
    let vary = h["vary"].to_str().unwrap().to_ascii_lowercase();
    assert!(
        vary.contains("origin") && vary.contains("access-control-request-method"),
        "{vary}"
    );
    assert!(h.contains_key("x-request-id"));

    // Refused, each saying why.
    for (origin_header, method, headers, why) in [
        (
            "https://evil.test",
            "PUT",
            None,
            "origin `https://evil.test` is not allowed",
        ),
        (
            "https://shop.test",
            "GET",
            None,
            "origin `https://shop.test` is not allowed",
        ),
        (APP, "DELETE", None, "method DELETE is not allowed"),
        (
            APP,
            "GET",
            Some("x-debug"),
            "request header `x-debug` is not allowed",
        ),
    ] {
        let res = preflight(&http, gw.url("/orders/7"), origin_header, method, headers)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{origin_header} {method}");
        assert!(!res.headers().contains_key("access-control-allow-origin"));
        let problem: serde_json::Value = res.json().await.unwrap();
        assert_eq!(problem["code"], "cors_refused");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(why), "{detail}");
    }
    assert_eq!(origin.requests(), 0, "a preflight reached the upstream");

    // The actual request is authenticated as usual, and a refusal carries
    // the CORS headers so the page can read it.
    let res = http
        .put(gw.url("/orders/7"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["access-control-allow-origin"], APP);
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn actual_responses_carry_cors_headers_for_allowed_origins_only() {
    // The upstream sends its own, too-wide CORS headers: the route's
    // policy replaces them.
    let origin = Origin::start(Handler::fixed(
        200,
        &[
            ("access-control-allow-origin", "*"),
            ("x-total", "3"),
            ("vary", "accept-encoding"),
        ],
        "ok",
    ))
    .await;
    let gw = TestGateway::start(&base(&config(&origin))).await;
    let http = client();

    let res = http
        .get(gw.url("/catalog/items"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], APP);
    assert!(!res
        .headers()
        .contains_key("access-control-allow-credentials"));
    let vary: Vec<String> = res
        .headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .collect();
    assert!(vary.iter().any(|v| v.contains("origin")), "{vary:?}");
    assert!(
        vary.iter().any(|v| v.contains("accept-encoding")),
        "{vary:?}"
    );

    for other in ["https://evil.test", "null"] {
        let res = http
            .get(gw.url("/catalog/items"))
            .header("origin", other)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            200,
            "not a CORS refusal: the browser enforces it"
        );
        assert!(
            !res.headers().contains_key("access-control-allow-origin"),
            "{other} got {:?}",
            res.headers().get("access-control-allow-origin")
        );
    }
}

#[tokio::test]
async fn the_cache_never_serves_one_origins_cors_response_to_another() {
    let origin = Origin::start(Handler::new(|req| async move {
        // For the route without gateway CORS the upstream answers CORS
        // itself: it reflects the Origin and says so in Vary.
        let mut res = http::Response::builder()
            .header("cache-control", "max-age=60")
            .header(
                "x-served-to",
                req.headers()
                    .get("origin")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default(),
            );
        if req.uri().path().starts_with("/legacy") {
            if let Some(o) = req.headers().get("origin") {
                res = res
                    .header("access-control-allow-origin", o.clone())
                    .header("vary", "origin");
            }
        }
        Reply::Response(res.body(crate::harness::body("doc")).unwrap())
    }))
    .await;
    let gw = TestGateway::start(&base(&config(&origin))).await;
    let http = client();
    let get = |path: &'static str, from: Option<&'static str>| {
        let mut req = http.get(gw.url(path));
        if let Some(o) = from {
            req = req.header("origin", o);
        }
        req.send()
    };
    let acao = |res: &reqwest::Response| {
        res.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string())
    };

    // Gateway CORS: one stored copy, each origin gets its own header.
    let first = get("/catalog/x", Some(APP)).await.unwrap();
    assert_eq!(acao(&first).as_deref(), Some(APP));
    let second = get("/catalog/x", Some(SHOP)).await.unwrap();
    let status = second.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(status.contains("hit"), "{status}");
    assert_eq!(acao(&second).as_deref(), Some(SHOP));
    let evil = get("/catalog/x", Some("https://evil.test")).await.unwrap();
    assert!(evil.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("hit"));
    assert_eq!(acao(&evil), None);
    let plain = get("/catalog/x", None).await.unwrap();
    assert_eq!(acao(&plain), None);
    assert_eq!(origin.requests_to("/catalog/x"), 1);

    // Upstream CORS with `Vary: Origin`: a copy per origin, never mixed.
    let a = get("/legacy/x", Some(APP)).await.unwrap();
    assert_eq!(acao(&a).as_deref(), Some(APP));
    let b = get("/legacy/x", Some(SHOP)).await.unwrap();
    assert_eq!(acao(&b).as_deref(), Some(SHOP));
    let a_again = get("/legacy/x", Some(APP)).await.unwrap();
    assert!(a_again.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("hit"));
    assert_eq!(acao(&a_again).as_deref(), Some(APP));
    assert_eq!(origin.requests_to("/legacy/x"), 2);
}
