//! The admin console over real sockets: the page, sign-in and sessions,
//! CSRF and origin checks, the viewer token on every admin router, the
//! traffic history, and key edits (PATCH, audited).

use reqwest::header::{COOKIE, ORIGIN, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use test_support::origin::{Handler, Origin};

use crate::harness::{base, client, TestGateway, TOKEN};

const VIEWER: &str = "test-viewer-token";

async fn start() -> (TestGateway, Origin) {
    let origin = Origin::start(Handler::fixed(
        200,
        &[("content-type", "application/json")],
        "{\"ok\":true}",
    ))
    .await;
    let config = base(&format!(
        r#"
[clusters.svc]
targets = ["{}"]

[[routes]]
name = "svc"
path_prefix = "/svc"
cluster = "svc"

[[routes]]
name = "keyed"
path_prefix = "/keyed"
cluster = "svc"
auth = {{ methods = ["api_key"] }}
"#,
        origin.authority()
    ))
    .replace(
        "[admin]\nbind = \"127.0.0.1:0\"",
        &format!("[admin]\nbind = \"127.0.0.1:0\"\nviewer_token = \"{VIEWER}\""),
    );
    let gw = TestGateway::start(&config).await;
    (gw, origin)
}

/// A signed-in console session: its cookie and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
    set_cookie: String,
}

async fn sign_in(gw: &TestGateway, token: &str) -> Result<Session, (StatusCode, Value)> {
    let res = client()
        .post(gw.admin_url("/v1/console/session"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let set_cookie = res
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = res.json().await.unwrap();
    if status != StatusCode::CREATED {
        return Err((status, body));
    }
    let set_cookie = set_cookie.expect("a session cookie");
    Ok(Session {
        cookie: set_cookie.split(';').next().unwrap().to_string(),
        csrf: body["csrf"].as_str().unwrap().to_string(),
        set_cookie,
    })
}

/// Sends `method path` with the session's cookie; with its CSRF token when
/// `csrf`, and an `Origin` when given.
async fn call(
    gw: &TestGateway,
    s: &Session,
    method: Method,
    path: &str,
    body: Option<Value>,
    csrf: bool,
    origin: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = client()
        .request(method, gw.admin_url(path))
        .header(COOKIE, &s.cookie);
    if csrf {
        req = req.header("x-csrf-token", &s.csrf);
    }
    if let Some(o) = origin {
        req = req.header(ORIGIN, o);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_page_is_served_and_data_needs_a_session_or_token() {
    let (gw, _origin) = start().await;
    let http = client();
    let page = http.get(gw.admin_url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("/console/js/app.js"), "{html}");
    let js = http
        .get(gw.admin_url("/console/vendor/uplot/uPlot.esm.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(
        http.get(gw.admin_url("/console/nope.js"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    for path in [
        "/v1/console/overview",
        "/v1/history",
        "/v1/keys",
        "/v1/console/session",
        "/v1/cache/stats",
        "/v1/shadow",
    ] {
        let res = http.get(gw.admin_url(path)).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path} without a session or token");
        let res = http
            .get(gw.admin_url(path))
            .header(COOKIE, "gatehouse_session=forged")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{path} with a forged session");
    }
}

#[tokio::test]
async fn sign_in_gives_a_protected_cookie_and_sign_out_ends_it() {
    let (gw, _origin) = start().await;
    let (status, body) = sign_in(&gw, "wrong").await.err().unwrap();
    assert_eq!(status, 401);
    assert_eq!(body["code"], "console_sign_in_failed");

    let s = sign_in(&gw, TOKEN).await.unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Max-Age=", "Path=/"] {
        assert!(s.set_cookie.contains(attr), "{attr} in {}", s.set_cookie);
    }
    assert!(
        !s.set_cookie.contains("Secure"),
        "plain HTTP admin: no Secure"
    );
    let (status, me) = call(
        &gw,
        &s,
        Method::GET,
        "/v1/console/session",
        None,
        false,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(me["access"], "admin");
    assert_eq!(me["csrf"], s.csrf.as_str());
    let (status, _) = call(
        &gw,
        &s,
        Method::GET,
        "/v1/console/overview",
        None,
        false,
        None,
    )
    .await;
    assert_eq!(status, 200);

    // Behind a TLS proxy the cookie is Secure.
    let res = client()
        .post(gw.admin_url("/v1/console/session"))
        .header("x-forwarded-proto", "https")
        .json(&json!({ "token": TOKEN }))
        .send()
        .await
        .unwrap();
    assert!(res.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("; Secure"));

    let (status, _) = call(
        &gw,
        &s,
        Method::DELETE,
        "/v1/console/session",
        None,
        false,
        None,
    )
    .await;
    assert_eq!(status, 403, "signing out needs the CSRF token");
    let (status, _) = call(
        &gw,
        &s,
        Method::DELETE,
        "/v1/console/session",
        None,
        true,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &gw,
        &s,
        Method::GET,
        "/v1/console/overview",
        None,
        false,
        None,
    )
    .await;
    assert_eq!(status, 401, "the session is over");
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    let (gw, _origin) = start().await;
    let s = sign_in(&gw, TOKEN).await.unwrap();
    let create = || Some(json!({ "owner": "acme" }));
    // A form another site posts carries the cookie but not the CSRF token.
    let (status, body) = call(&gw, &s, Method::POST, "/v1/keys", create(), false, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("admin_csrf_rejected"))
    );
    // Even with a stolen token, another origin is refused.
    let (status, body) = call(
        &gw,
        &s,
        Method::POST,
        "/v1/keys",
        create(),
        true,
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("admin_csrf_rejected"))
    );
    let res = client()
        .post(gw.admin_url("/v1/cache/purge"))
        .header(COOKIE, &s.cookie)
        .header("x-csrf-token", &s.csrf)
        .header("sec-fetch-site", "cross-site")
        .json(&json!({ "prefix": "http://x/", "soft": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // A plain HTML form post (urlencoded, no token) to sign in from elsewhere.
    let res = client()
        .post(gw.admin_url("/v1/console/session"))
        .header(ORIGIN, "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.headers().get(SET_COOKIE).is_none());
    // From the console's own origin, with the token: allowed.
    let own = format!("http://{}", gw.admin);
    let (status, body) = call(
        &gw,
        &s,
        Method::POST,
        "/v1/keys",
        create(),
        true,
        Some(&own),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["secret"].as_str().is_some());
    let audit = gw.admin_json("/v1/audit?limit=5").await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "key.create" && e["actor"] == "console:admin"),
        "{audit}"
    );
}

#[tokio::test]
async fn the_viewer_reads_everything_and_changes_nothing() {
    let (gw, _origin) = start().await;
    let http = client();
    let issued: Value = http
        .post(gw.admin_url("/v1/keys"))
        .bearer_auth(TOKEN)
        .json(&json!({ "owner": "acme" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = issued["key"]["id"].as_str().unwrap().to_string();
    for path in [
        "/v1/keys".to_string(),
        format!("/v1/keys/{id}"),
        format!("/v1/keys/{id}/usage"),
        "/v1/audit".into(),
        "/v1/consumers".into(),
        "/v1/cache/stats".into(),
        "/v1/shadow".into(),
        "/v1/config".into(),
        "/v1/upstreams".into(),
        "/metrics".into(),
        "/v1/console/overview".into(),
        "/v1/history?series=total&window=day".into(),
    ] {
        let res = http
            .get(gw.admin_url(&path))
            .bearer_auth(VIEWER)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "viewer GET {path}");
    }
    let changes: Vec<(Method, String, Value)> = vec![
        (Method::POST, "/v1/keys".into(), json!({ "owner": "x" })),
        (
            Method::PATCH,
            format!("/v1/keys/{id}"),
            json!({ "name": "x" }),
        ),
        (Method::POST, format!("/v1/keys/{id}/rotate"), json!({})),
        (
            Method::POST,
            format!("/v1/keys/{id}/revoke"),
            json!({ "reason": "x" }),
        ),
        (Method::POST, "/v1/consumers".into(), json!({ "name": "y" })),
        (
            Method::POST,
            "/v1/cache/purge".into(),
            json!({ "prefix": "http://a/", "soft": true }),
        ),
        (Method::POST, "/v1/shadow/none/pause".into(), json!({})),
        (Method::POST, "/v1/config/reload".into(), json!({})),
    ];
    let viewer = sign_in(&gw, VIEWER).await.unwrap();
    for (method, path, body) in &changes {
        let res = http
            .request(method.clone(), gw.admin_url(path))
            .bearer_auth(VIEWER)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "viewer token {method} {path}");
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["code"], "admin_read_only");
        let (status, p) = call(
            &gw,
            &viewer,
            method.clone(),
            path,
            Some(body.clone()),
            true,
            None,
        )
        .await;
        assert_eq!(
            (status, p["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("admin_read_only")),
            "viewer session {method} {path}"
        );
    }
    // Nothing changed.
    let key: Value = gw.admin_json(&format!("/v1/keys/{id}")).await;
    assert_eq!(key["status"], "active");
    assert_eq!(
        gw.admin_json("/v1/keys").await["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A viewer may still sign out.
    let (status, _) = call(
        &gw,
        &viewer,
        Method::DELETE,
        "/v1/console/session",
        None,
        true,
        None,
    )
    .await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn patch_edits_a_key_and_the_audit_log_says_what_changed() {
    let (gw, _origin) = start().await;
    let http = client();
    let issued: Value = http
        .post(gw.admin_url("/v1/keys"))
        .bearer_auth(TOKEN)
        .json(&json!({ "owner": "acme", "name": "first", "scopes": ["route:svc"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = issued["key"]["id"].as_str().unwrap().to_string();
    let secret = issued["secret"].as_str().unwrap().to_string();
    // Outside its scopes at first.
    let res = http
        .get(gw.url("/keyed/x"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    let res = http
        .patch(gw.admin_url(&format!("/v1/keys/{id}")))
        .bearer_auth(TOKEN)
        .header("x-gatehouse-actor", "ops@example")
        .json(&json!({
            "name": "renamed",
            "scopes": ["route:svc", "route:keyed"],
            "expires_at": "2099-01-01T00:00:00Z",
            "metadata": { "team": "payments", "ticket": 42 }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let key: Value = res.json().await.unwrap();
    assert_eq!(key["name"], "renamed");
    assert_eq!(key["metadata"]["team"], "payments");
    // The new scopes hold at once.
    let res = http
        .get(gw.url("/keyed/x"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Read back from the store, with the consumer's name.
    let stored = gw.admin_json(&format!("/v1/keys/{id}")).await;
    assert_eq!(
        stored["metadata"],
        json!({ "team": "payments", "ticket": 42 })
    );
    assert_eq!(stored["expires_at"], "2099-01-01T00:00:00Z");
    assert_eq!(stored["consumer_name"], "acme");
    let audit = gw.admin_json(&format!("/v1/keys/{id}/audit")).await;
    let update = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "key.update")
        .expect("an audit entry for the update")
        .clone();
    assert_eq!(update["actor"], "ops@example");
    assert_eq!(
        update["detail"]["name"],
        json!({ "from": "first", "to": "renamed" })
    );
    assert!(update["detail"]["scopes"]["to"]
        .to_string()
        .contains("keyed"));

    // Bad edits are refused, naming the field; nothing changes.
    for (body, field) in [
        (
            json!({ "expires_at": "2001-01-01T00:00:00Z" }),
            "expires_at",
        ),
        (json!({ "scopes": ["route:nope"] }), "nope"),
        (json!({ "plan": "gold" }), "gold"),
        (json!({ "colour": "red" }), "colour"),
    ] {
        let res = http
            .patch(gw.admin_url(&format!("/v1/keys/{id}")))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{body}");
        let p: Value = res.json().await.unwrap();
        assert!(p["detail"].as_str().unwrap().contains(field), "{p}");
    }
    // Usage counts the requests the key made and its refusals.
    let usage = gw.admin_json(&format!("/v1/keys/{id}/usage")).await;
    let hours = usage["hours"].as_array().unwrap();
    let sum = |f: &dyn Fn(&Value) -> u64| hours.iter().map(f).sum::<u64>();
    // Two requests authenticated with the key; the first was then refused
    // for its scopes.
    assert_eq!(sum(&|h| h["requests"].as_u64().unwrap()), 2);
    assert_eq!(sum(&|h| h["refusals"]["scope"].as_u64().unwrap()), 1);
}

#[tokio::test]
async fn history_counts_traffic_by_route_and_upstream() {
    let (gw, _origin) = start().await;
    let http = client();
    for _ in 0..5 {
        assert_eq!(
            http.get(gw.url("/svc/a")).send().await.unwrap().status(),
            200
        );
    }
    assert_eq!(
        http.get(gw.url("/nowhere")).send().await.unwrap().status(),
        404
    );
    let sum = |v: &Value, f: &str| {
        v["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[f].as_u64().unwrap())
            .sum::<u64>()
    };
    // The log stage records when the body ends: wait for the last one.
    let mut total = Value::Null;
    for _ in 0..50 {
        total = gw.admin_json("/v1/history?series=total").await;
        if sum(&total, "requests") == 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(sum(&total, "requests"), 6, "{total}");
    assert_eq!(sum(&total, "client_errors"), 1);
    assert_eq!(total["points"].as_array().unwrap().len(), 60);
    let route = gw
        .admin_json("/v1/history?series=route:svc&window=day")
        .await;
    assert_eq!(sum(&route, "requests"), 5);
    assert_eq!(route["step"], 3600);
    let up = gw.admin_json("/v1/history?series=upstream:svc").await;
    assert_eq!(sum(&up, "requests"), 5);
    assert!(up["points"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["p99_ms"].is_number()));
    let res = client()
        .get(gw.admin_url("/v1/history?series=route:never"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let overview = gw.admin_json("/v1/console/overview").await;
    assert_eq!(overview["routes"][0]["name"], "svc");
    assert_eq!(overview["access"], "admin");
}
