//! The fx API's OpenAPI document, fetched from a running server: it is
//! OpenAPI 3.1, it describes exactly the routes the code serves, and real
//! answers have the documented status and shape.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use fx_service::{router, FxService, FxServiceConfig};
use gateway_core::ManualClock;
use serde_json::Value;
use test_support::openapi::{documented, routes_in};

const ADMIN_TOKEN: &str = "fx-admin-secret-token";

/// A service over two fixings, on a real socket; its base URL.
async fn serve() -> String {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 10, 30, 17, 0, 0).unwrap(),
    ));
    let cfg = FxServiceConfig::from_toml(&format!(
        "database_url = \"sqlite::memory:\"\nimport_bundled = false\nadmin_token = \"{ADMIN_TOKEN}\"\n"
    ))
    .unwrap();
    let (state, _) = FxService::build(cfg, clock).await.unwrap();
    state
        .engine()
        .ingest_bytes("ecb", None, b"Date,USD,JPY,GBP,\n2026-10-30,1.1172,175.68,0.8338,\n2026-10-29,1.113,175.92,0.83578,\n")
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    format!("http://{addr}")
}

async fn document(base: &str) -> Value {
    let res = reqwest::get(format!("{base}/openapi.json")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_describes_every_route_served() {
    let base = serve().await;
    let doc = document(&base).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let served = routes_in(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(served.len() >= 14, "routes read from the code: {served:?}");
    let described = documented(&doc);
    let undocumented: BTreeSet<_> = served.difference(&described).collect();
    let not_served: BTreeSet<_> = described.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in /openapi.json: {undocumented:?}"
    );
    assert!(
        not_served.is_empty(),
        "in /openapi.json but not served: {not_served:?}"
    );
    let scheme = &doc["components"]["securitySchemes"]["fx_admin_token"];
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(
        doc["paths"]["/v1/admin/corrections"]["post"]["security"][0]["fx_admin_token"],
        serde_json::json!([])
    );
}

/// The schema `s` with `$ref`s to components resolved.
fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    match s["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            let target = &doc["components"]["schemas"][name];
            assert!(target.is_object(), "`{r}` names no schema");
            resolve(doc, target)
        }
        None => s,
    }
}

/// `body` has every property the schema requires and none it does not
/// describe, recursively through objects.
fn conforms(doc: &Value, schema: &Value, body: &Value, at: &str) {
    let schema = resolve(doc, schema);
    let Some(props) = schema["properties"].as_object() else {
        return;
    };
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("{at}: expected an object, got {body}"));
    for req in schema["required"].as_array().into_iter().flatten() {
        let req = req.as_str().unwrap();
        assert!(obj.contains_key(req), "{at}: `{req}` is required: {body}");
    }
    for (k, v) in obj {
        let p = props
            .get(k)
            .unwrap_or_else(|| panic!("{at}: `{k}` is not in the schema"));
        conforms(doc, p, v, &format!("{at}.{k}"));
    }
}

/// Calls `method path` and checks the answer against the document.
async fn check(
    doc: &Value,
    base: &str,
    method: &str,
    template: &str,
    path: &str,
    body: Option<&str>,
    status: u16,
) -> Value {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), format!("{base}{path}"));
    if template.starts_with("/v1/admin/") {
        req = req.bearer_auth(ADMIN_TOKEN);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status().as_u16(), status, "{method} {path}");
    let op = &doc["paths"][template][method.to_lowercase()];
    let answer = &op["responses"][status.to_string()];
    assert!(
        answer.is_object(),
        "{method} {template}: status {status} is not documented"
    );
    let answer = resolve_response(doc, answer);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
    let json: Value = res.json().await.unwrap();
    let media = &answer["content"][&content_type];
    assert!(
        media.is_object(),
        "{method} {template} {status}: `{content_type}` is not documented"
    );
    conforms(doc, &media["schema"], &json, &format!("{method} {path}"));
    json
}

fn resolve_response<'a>(doc: &'a Value, r: &'a Value) -> &'a Value {
    match r["$ref"].as_str() {
        Some(name) => &doc["components"]["responses"][name.rsplit('/').next().unwrap()],
        None => r,
    }
}

#[tokio::test]
async fn real_answers_have_the_documented_status_and_shape() {
    let base = serve().await;
    let doc = document(&base).await;
    let d = &doc;
    let b = base.as_str();
    check(d, b, "GET", "/healthz", "/healthz", None, 200).await;
    check(d, b, "GET", "/v1/currencies", "/v1/currencies", None, 200).await;
    for path in ["/v1/rates/latest", "/v1/rates/latest?sources=true"] {
        check(d, b, "GET", "/v1/rates/latest", path, None, 200).await;
    }
    check(
        d,
        b,
        "GET",
        "/v1/rates/{date}",
        "/v1/rates/2026-10-29?base=USD",
        None,
        200,
    )
    .await;
    let c = check(
        d,
        b,
        "GET",
        "/v1/convert",
        "/v1/convert?from=USD&to=JPY&amount=100",
        None,
        200,
    )
    .await;
    assert_eq!(c["from"], "USD");
    let p = check(
        d,
        b,
        "GET",
        "/v1/convert",
        "/v1/convert?from=USD&to=XXY&amount=100",
        None,
        404,
    )
    .await;
    assert_eq!(p["parameter"], "to");
    check(d, b, "GET", "/v1/providers", "/v1/providers", None, 200).await;
    check(
        d,
        b,
        "GET",
        "/v1/raw-rates",
        "/v1/raw-rates?date=2026-10-30&currency=USD",
        None,
        200,
    )
    .await;
    let q = check(
        d,
        b,
        "POST",
        "/v1/quotes",
        "/v1/quotes",
        Some(r#"{"from":"USD","to":"GBP"}"#),
        201,
    )
    .await;
    let id = q["id"].as_str().unwrap();
    check(
        d,
        b,
        "GET",
        "/v1/quotes/{id}",
        &format!("/v1/quotes/{id}"),
        None,
        200,
    )
    .await;
    check(
        d,
        b,
        "POST",
        "/v1/quotes/{id}/convert",
        &format!("/v1/quotes/{id}/convert"),
        Some(r#"{"amount": 12.5}"#),
        200,
    )
    .await;
    check(
        d,
        b,
        "POST",
        "/v1/admin/corrections",
        "/v1/admin/corrections",
        Some(
            r#"{"provider":"ecb","date":"2026-10-30","currency":"USD","rate":"1.1173","actor":"ops","reason":"typo"}"#,
        ),
        201,
    )
    .await;
    let list = check(
        d,
        b,
        "GET",
        "/v1/admin/corrections",
        "/v1/admin/corrections?provider=ecb",
        None,
        200,
    )
    .await;
    assert_eq!(list["corrections"].as_array().unwrap().len(), 1);
    check(
        d,
        b,
        "GET",
        "/v1/admin/quarantine",
        "/v1/admin/quarantine",
        None,
        200,
    )
    .await;
}
