//! API keys as a pipeline stage: 401/403 with `WWW-Authenticate`, the key
//! stripped and the consumer forwarded, rotation with grace, revocation on
//! the next request, and plan limits with `RateLimit-*` and `Retry-After`.

use test_support::origin::{Handler, Origin};

use crate::harness::{base, client, TestGateway, TOKEN};

async fn create_key(gw: &TestGateway, body: serde_json::Value) -> (String, String) {
    let v = gw.create_key(body).await;
    (
        v["key"]["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    )
}

async fn get(gw: &TestGateway, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = client().get(gw.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

fn config(origin: &str) -> String {
    base(&format!(
        r#"
[plans.small]
rate_per_second = 1.0
burst = 3

[clusters.api]
targets = ["{origin}"]

[[routes]]
name = "orders"
path_prefix = "/orders"
cluster = "api"
auth = {{ methods = ["api_key"] }}

[[routes]]
name = "admin-only"
path_prefix = "/internal"
cluster = "api"
auth = {{ methods = ["api_key"] }}

[[routes]]
name = "open"
path_prefix = "/open"
cluster = "api"
"#
    ))
}

#[tokio::test]
async fn keys_authenticate_forward_identity_rotate_and_revoke() {
    let origin = Origin::start(Handler::echo()).await;
    let gw = TestGateway::start(&config(&origin.authority())).await;

    let res = get(&gw, "/orders/1", None).await;
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(
        get(&gw, "/open/x", None).await.status(),
        200,
        "open routes need no key"
    );

    let (id, secret) = create_key(
        &gw,
        serde_json::json!({"owner": "acme", "scopes": ["route:orders"]}),
    )
    .await;
    let res = get(&gw, "/orders/1", Some(&secret)).await;
    assert_eq!(res.status(), 200);
    let seen: serde_json::Value = res.json().await.unwrap();
    assert!(
        seen["headers"].get("authorization").is_none(),
        "the key is stripped: {seen}"
    );
    assert!(
        seen["headers"]["x-consumer-id"].as_str().unwrap().len() > 3,
        "the consumer is forwarded: {seen}"
    );
    assert!(
        !seen.to_string().contains(&secret),
        "the secret never reaches the upstream"
    );

    // Out of scope: 403.
    assert_eq!(get(&gw, "/internal/x", Some(&secret)).await.status(), 403);

    // One character off: rejected by the checksum, 401.
    let mut typo = secret.clone().into_bytes();
    let i = typo.len() - 3;
    typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let res = get(&gw, "/orders/1", Some(&typo)).await;
    assert_eq!(res.status(), 401);

    // Rotate with grace: both keys work.
    let res = client()
        .post(gw.admin_url(&format!("/v1/keys/{id}/rotate")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"grace": "1h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let rotated: serde_json::Value = res.json().await.unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    let new_id = rotated["key"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        get(&gw, "/orders/1", Some(&secret)).await.status(),
        200,
        "old key in grace"
    );
    assert_eq!(get(&gw, "/orders/1", Some(&new_secret)).await.status(), 200);

    // Revoke the new key: refused on the very next request.
    let res = client()
        .post(gw.admin_url(&format!("/v1/keys/{new_id}/revoke")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let res = get(&gw, "/orders/1", Some(&new_secret)).await;
    assert_eq!(res.status(), 401);
    let p: serde_json::Value = res.json().await.unwrap();
    assert!(p["code"].as_str().unwrap().contains("revoked"), "{p}");
}

#[tokio::test]
async fn plan_limits_answer_429_with_retry_after_and_ratelimit_headers() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let gw = TestGateway::start(&config(&origin.authority())).await;
    let (_, secret) = create_key(
        &gw,
        serde_json::json!({"owner": "limited", "plan": "small"}),
    )
    .await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..6 {
        let res = get(&gw, "/orders/1", Some(&secret)).await;
        statuses.push(res.status().as_u16());
        if res.status() == 200 {
            assert!(
                res.headers().contains_key("ratelimit-limit"),
                "{:?}",
                res.headers()
            );
            assert!(res.headers().contains_key("ratelimit-remaining"));
        }
        last = Some(res);
    }
    assert_eq!(
        &statuses[..3],
        &[200, 200, 200],
        "the burst is admitted: {statuses:?}"
    );
    assert!(statuses[3..].contains(&429), "then limited: {statuses:?}");
    let res = last.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!(p["status"], 429);
}

/// A client cannot have the identity and forwarding headers the gateway
/// sets removed by naming them in `Connection`: they reach the upstream.
#[tokio::test]
async fn headers_the_gateway_sets_survive_a_connection_header_naming_them() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let gw = TestGateway::start(&config(&origin.authority())).await;
    let (id, secret) = create_key(
        &gw,
        serde_json::json!({"owner": "acme", "scopes": ["route:orders"]}),
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let request = format!(
        "GET /orders/1 HTTP/1.1\r\nHost: api.example\r\nAuthorization: Bearer {secret}\r\n\
         Connection: x-consumer-id, x-key-id, x-forwarded-for, x-request-id, traceparent\r\n\r\n"
    );
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 4096];
    let n = stream.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let seen = &origin.recorded()[0].headers;
    assert_eq!(seen["x-key-id"], id.as_str(), "{seen:?}");
    assert!(seen["x-consumer-id"].len() > 3, "{seen:?}");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen:?}");
    assert!(seen.contains_key("x-request-id"), "{seen:?}");
    assert!(seen.contains_key("traceparent"), "{seen:?}");
    assert!(!seen.contains_key("connection"), "{seen:?}");
}
