//! The admin router through `tower::ServiceExt::oneshot`: status codes,
//! problem+json errors, and that a secret is shown once and never again.

use std::collections::BTreeMap;

use axum::body::Body;
use gateway_keys::admin::router;
use gateway_keys::config::KeysConfig;
use gateway_keys::key::ApiKey;
use gateway_keys::service::ScopeCatalog;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;
use common::*;

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, http::HeaderMap, Value) {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("x-gatehouse-actor", "ops@example");
    let body = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let res = app.clone().oneshot(b.body(body).unwrap()).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, headers, v)
}

#[tokio::test]
async fn create_list_show_rotate_revoke_audit_over_http() {
    let (svc, clock, _store) = service(KeysConfig::default(), BTreeMap::new()).await;
    let app = router(svc.clone());

    let (st, h, created) = call(
        &app,
        "POST",
        "/v1/keys",
        Some(json!({"owner": "acme", "name": "ci", "expires_in": "90d"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    assert_eq!(h["cache-control"], "no-store");
    let secret = created["secret"].as_str().unwrap().to_string();
    let key: ApiKey = secret.parse().unwrap();
    let id = created["key"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["key"]["status"], "active");
    assert_eq!(created["key"]["created_by"], "ops@example");
    assert!(svc.verify(&key).is_ok());

    let (st, _, list) = call(&app, "GET", "/v1/keys?consumer=acme", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);
    let (st, _, shown) = call(&app, "GET", &format!("/v1/keys/{id}"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(shown["name"], "ci");

    let (st, _, rotated) = call(
        &app,
        "POST",
        &format!("/v1/keys/{id}/rotate"),
        Some(json!({"grace": "1h"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{rotated}");
    assert_eq!(rotated["previous"]["status"], "retiring");
    assert_eq!(rotated["key"]["predecessor"], id.as_str());
    let new_id = rotated["key"]["id"].as_str().unwrap().to_string();
    let new_secret = rotated["secret"].as_str().unwrap().to_string();

    let (st, _, revoked) = call(
        &app,
        "POST",
        &format!("/v1/keys/{new_id}/revoke"),
        Some(json!({"reason": "leaked"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(revoked["status"], "revoked");
    assert!(svc.verify(&new_secret.parse().unwrap()).is_err());

    clock.advance(chrono::Duration::hours(2));
    let (_, _, shown) = call(&app, "GET", &format!("/v1/keys/{id}"), None).await;
    assert_eq!(shown["status"], "expired");

    let (st, _, trail) = call(&app, "GET", &format!("/v1/keys/{id}/audit"), None).await;
    assert_eq!(st, StatusCode::OK);
    let actions: Vec<&str> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["key.rotate", "key.create"]);
    let (_, _, all) = call(&app, "GET", "/v1/audit?limit=3", None).await;
    assert_eq!(all["entries"].as_array().unwrap().len(), 3);
    assert_eq!(all["entries"][0]["action"], "key.revoke");
    assert_eq!(all["entries"][0]["actor"], "ops@example");

    let (st, _, consumers) = call(&app, "GET", "/v1/consumers", None).await;
    assert_eq!(st, StatusCode::OK);
    let cid = consumers["consumers"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _, c) = call(&app, "GET", &format!("/v1/consumers/{cid}"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(c["keys"].as_array().unwrap().len(), 2);

    // After creation, no response shows either secret again.
    for uri in [
        "/v1/keys",
        &format!("/v1/keys/{id}"),
        &format!("/v1/keys/{new_id}"),
        "/v1/audit",
        &format!("/v1/consumers/{cid}"),
    ] {
        let (_, _, v) = call(&app, "GET", uri, None).await;
        let text = v.to_string();
        for s in [&secret, &new_secret] {
            assert!(!text.contains(&s[8..]), "secret leaked by {uri}");
        }
    }
}

#[tokio::test]
async fn bad_admin_requests_get_clear_problem_json() {
    let (svc, _clock, _store) = service(KeysConfig::default(), BTreeMap::new()).await;
    svc.set_scope_catalog(ScopeCatalog::from_routes([("orders", None)]));
    let app = router(svc.clone());
    let (_, _, created) = call(
        &app,
        "POST",
        "/v1/keys",
        Some(json!({"owner": "acme", "expires_in": "1h"})),
    )
    .await;
    let id = created["key"]["id"].as_str().unwrap().to_string();

    let cases: Vec<(&str, String, Option<Value>, StatusCode, &str)> = vec![
        (
            "GET",
            "/v1/keys/key_000000000000".into(),
            None,
            StatusCode::NOT_FOUND,
            "key_not_found",
        ),
        (
            "GET",
            "/v1/keys/not-an-id".into(),
            None,
            StatusCode::NOT_FOUND,
            "key_not_found",
        ),
        (
            "POST",
            "/v1/keys/key_000000000000/rotate".into(),
            None,
            StatusCode::NOT_FOUND,
            "key_not_found",
        ),
        (
            "POST",
            format!("/v1/keys/{id}/rotate"),
            Some(json!({"grace": "2h"})),
            StatusCode::BAD_REQUEST,
            "grace_exceeds_expiry",
        ),
        (
            "POST",
            format!("/v1/keys/{id}/rotate"),
            Some(json!({"grace": "soon"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/keys".into(),
            Some(json!({"owner": "acme", "scopes": ["route:nope"]})),
            StatusCode::BAD_REQUEST,
            "unknown_scope",
        ),
        (
            "POST",
            "/v1/keys".into(),
            Some(json!({"owner": "acme", "scopes": ["bad scope"]})),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            "POST",
            "/v1/keys".into(),
            Some(json!({"owner": "acme", "plan": "platinum"})),
            StatusCode::BAD_REQUEST,
            "unknown_plan",
        ),
        (
            "POST",
            "/v1/keys".into(),
            Some(json!({"owner": "acme", "scopez": []})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/keys".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/keys".into(),
            Some(json!({"owner": "con_000000000000"})),
            StatusCode::NOT_FOUND,
            "consumer_not_found",
        ),
        (
            "POST",
            "/v1/consumers".into(),
            Some(json!({"name": "acme"})),
            StatusCode::CONFLICT,
            "consumer_exists",
        ),
        (
            "GET",
            "/v1/keys?status=sleeping".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (method, uri, body, status, code) in cases {
        let (st, h, v) = call(&app, method, &uri, body).await;
        assert_eq!(
            (st, v["code"].as_str().unwrap_or("")),
            (status, code),
            "{method} {uri}: {v}"
        );
        assert_eq!(h["content-type"], "application/problem+json");
        assert!(!v["detail"].as_str().unwrap().is_empty());
    }
    // A body of the wrong shape names the field at fault.
    let (st, _, v) = call(
        &app,
        "POST",
        "/v1/keys",
        Some(json!({"owner": "acme", "scopes": ["route:orders", 7]})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("invalid JSON body: `scopes[1]`: invalid type: integer `7`"),
        "{detail}"
    );
    let (st, _, _) = call(&app, "POST", &format!("/v1/keys/{id}/revoke"), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, v) = call(&app, "POST", &format!("/v1/keys/{id}/revoke"), None).await;
    assert_eq!(
        (st, v["code"].as_str().unwrap()),
        (StatusCode::CONFLICT, "key_state_conflict")
    );
}
