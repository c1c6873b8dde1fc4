//! The admin API's OpenAPI document, fetched from a running gateway: it
//! is OpenAPI 3.1, open like `/healthz`, it describes exactly the routes
//! the admin listener's routers serve (read from their code), every
//! protected operation names the tokens that open it, and real answers
//! match the schemas it declares for them.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use test_support::json_schema::{answer_schema, check};
use test_support::openapi::{documented, routes_in};
use test_support::origin::{Handler, Origin};

use crate::harness::{base, client, eventually, TestGateway, TOKEN};

/// The crates whose routers the admin listener mounts.
const ADMIN_CRATES: [&str; 5] = [
    "gateway-proxy",
    "gateway-console",
    "gateway-keys",
    "gateway-cache",
    "gateway-mirror",
];

#[tokio::test]
async fn the_admin_document_is_open_and_describes_every_route_served() {
    let gw = TestGateway::start(&base("")).await;
    let http = client();
    let res = http
        .get(gw.admin_url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "served without a token");
    assert_eq!(res.headers()["content-type"], "application/json");
    let doc: Value = res.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );

    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut served = BTreeSet::new();
    for c in ADMIN_CRATES {
        served.extend(routes_in(&crates.join(c).join("src")));
    }
    assert!(served.len() >= 35, "routes read from the code: {served:?}");
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

    // Every documented operation answers something other than "no such
    // endpoint" on the running listener.
    for (method, path) in &described {
        let concrete = path
            .replace("{id}", "nope")
            .replace("{name}", "nope")
            .replace("{path}", "v1/currencies");
        let res = http
            .request(
                method.to_uppercase().parse().unwrap(),
                gw.admin_url(&concrete),
            )
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        // A `{path}` names a file or an fx read that may not exist.
        let unrouted = status == 405 || body["code"] == "admin_not_found";
        assert!(
            !unrouted || path.contains("{path}"),
            "{method} {concrete}: {status} {body}"
        );
    }

    for (scheme, kind) in [
        ("admin_token", "http"),
        ("viewer_token", "http"),
        ("console_session", "apiKey"),
    ] {
        assert_eq!(
            doc["components"]["securitySchemes"][scheme]["type"], kind,
            "{scheme}"
        );
    }
    let security = |path: &str, method: &str| doc["paths"][path][method]["security"].clone();
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .flat_map(|r| r.as_object().unwrap().keys().cloned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        names(security("/v1/keys", "get")),
        ["admin_token", "viewer_token", "console_session"]
    );
    assert_eq!(
        names(security("/v1/keys", "post")),
        ["admin_token", "console_session"]
    );
    assert!(security("/healthz", "get").is_null());
    assert!(security("/openapi.json", "get").is_null());
    assert_eq!(
        doc["paths"]["/v1/cache/purge"]["post"]["responses"]["401"]["$ref"],
        "#/components/responses/Problem"
    );
    let codes = doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap();
    assert!(codes.iter().any(|c| c == "admin_unauthorized"));
}

/// JSON answers the document may leave untyped: the document itself and
/// the fx service's answers passed through (the fx document types them).
const FREE_FORM_ANSWERS: [&str; 2] = ["/openapi.json", "/v1/console/fx/{path}"];

#[tokio::test]
async fn every_json_answer_of_the_admin_api_has_a_schema() {
    let gw = TestGateway::start(&base("")).await;
    let doc = gw.admin_json("/openapi.json").await;
    let mut untyped = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                let schema = &response["content"]["application/json"]["schema"];
                let bare = schema.is_object()
                    && schema.get("$ref").is_none()
                    && schema.get("properties").is_none()
                    && schema.get("additionalProperties").is_none()
                    && schema.get("items").is_none()
                    && schema.get("allOf").is_none()
                    && schema.get("oneOf").is_none();
                if bare && !FREE_FORM_ANSWERS.contains(&path.as_str()) {
                    untyped.push(format!("{method} {path} {status}: {schema}"));
                }
            }
        }
    }
    assert!(untyped.is_empty(), "answers without a schema: {untyped:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_match_the_schemas_the_document_declares() {
    let primary = Origin::start(Handler::fixed(
        200,
        &[("content-type", "application/json")],
        r#"{"rate":"1.1122","base":"EUR"}"#,
    ))
    .await;
    let candidate = Origin::start(Handler::fixed(
        200,
        &[("content-type", "application/json")],
        r#"{"rate":"1.112","base":"EUR"}"#,
    ))
    .await;
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.fx]
targets = ["{primary}"]

[clusters.fx-next]
targets = ["{candidate}"]

[[routes]]
name = "fx"
path_prefix = "/fx"
cluster = "fx"

[[dark_launches]]
name = "fx-rounding"
routes = ["fx"]
candidate = "fx-next"
"#,
        primary = primary.authority(),
        candidate = candidate.authority(),
    )))
    .await;
    let http = client();
    // Traffic, so histories, upstream counters and the launch report
    // (with its examples of differences) have something in them.
    for i in 0..5 {
        let res = http
            .get(gw.url(&format!("/fx/rates/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let compared = eventually(Duration::from_secs(15), || async {
        let report = gw.admin_json("/v1/shadow/fx-rounding").await;
        report["examples"].as_array().is_some_and(|e| !e.is_empty())
    })
    .await;
    assert!(compared, "the launch report shows the difference");

    let doc = gw.admin_json("/openapi.json").await;
    let call = |method: &str, path: String, body: Option<Value>| {
        let mut req = http
            .request(method.to_uppercase().parse().unwrap(), gw.admin_url(&path))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let text = res.text().await.unwrap();
            let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (status, answer)
        }
    };

    let (status, created) = call(
        "post",
        "/v1/keys".into(),
        Some(json!({ "owner": "acme", "scopes": ["route:fx"], "metadata": { "team": "rates" } })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"]["id"].as_str().unwrap().to_string();
    let consumer = created["key"]["consumer_id"].as_str().unwrap().to_string();

    // (method, path as documented, concrete path, body, expected status)
    let cases: Vec<(&str, &str, String, Option<Value>, u16)> = vec![
        ("get", "/v1/keys", "/v1/keys".into(), None, 200),
        ("get", "/v1/keys/{id}", format!("/v1/keys/{key}"), None, 200),
        (
            "get",
            "/v1/keys/{id}/usage",
            format!("/v1/keys/{key}/usage"),
            None,
            200,
        ),
        (
            "patch",
            "/v1/keys/{id}",
            format!("/v1/keys/{key}"),
            Some(json!({ "name": "renamed" })),
            200,
        ),
        (
            "post",
            "/v1/keys/{id}/rotate",
            format!("/v1/keys/{key}/rotate"),
            None,
            201,
        ),
        (
            "get",
            "/v1/keys/{id}/audit",
            format!("/v1/keys/{key}/audit"),
            None,
            200,
        ),
        (
            "post",
            "/v1/keys/{id}/revoke",
            format!("/v1/keys/{key}/revoke"),
            Some(json!({ "reason": "test" })),
            200,
        ),
        ("get", "/v1/audit", "/v1/audit".into(), None, 200),
        (
            "post",
            "/v1/consumers",
            "/v1/consumers".into(),
            Some(json!({ "name": "globex", "plan": null })),
            201,
        ),
        ("get", "/v1/consumers", "/v1/consumers".into(), None, 200),
        (
            "get",
            "/v1/consumers/{id}",
            format!("/v1/consumers/{consumer}"),
            None,
            200,
        ),
        ("get", "/v1/shadow", "/v1/shadow".into(), None, 200),
        (
            "get",
            "/v1/shadow/{name}",
            "/v1/shadow/fx-rounding".into(),
            None,
            200,
        ),
        (
            "get",
            "/v1/shadow/{name}/config",
            "/v1/shadow/fx-rounding/config".into(),
            None,
            200,
        ),
        (
            "post",
            "/v1/shadow/{name}/pause",
            "/v1/shadow/fx-rounding/pause".into(),
            None,
            200,
        ),
        ("get", "/readyz", "/readyz".into(), None, 200),
        ("get", "/v1/config", "/v1/config".into(), None, 200),
        ("get", "/v1/upstreams", "/v1/upstreams".into(), None, 200),
        (
            "get",
            "/v1/console/overview",
            "/v1/console/overview".into(),
            None,
            200,
        ),
        (
            "get",
            "/v1/console/shadow/{name}/history",
            "/v1/console/shadow/fx-rounding/history".into(),
            None,
            200,
        ),
    ];
    let mut answers = vec![("post", "/v1/keys", 201, created)];
    for (method, documented, concrete, body, expected) in cases {
        let (status, answer) = call(method, concrete, body).await;
        assert_eq!(status, expected, "{method} {documented}: {answer}");
        answers.push((method, documented, status, answer));
    }

    let mut mismatches = Vec::new();
    for (method, path, status, answer) in &answers {
        let schema = answer_schema(&doc, method, path, *status);
        if let Err(errors) = check(&doc, schema, answer) {
            mismatches.push(format!("{method} {path} {status}: {errors:#?}\n{answer:#}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // The check bites: an answer with a field renamed, a value of the
    // wrong type or a state the schema does not know is refused.
    let answer_of = |path: &str| {
        let (_, _, _, answer) = answers.iter().find(|(_, p, _, _)| *p == path).unwrap();
        answer
    };
    let created = answer_of("/v1/keys");
    let list = &answers[1].3;
    let upstreams = answer_of("/v1/upstreams");
    let tampered = [
        (
            "post",
            "/v1/keys",
            201,
            rename(created, &["secret"], "token"),
        ),
        (
            "get",
            "/v1/keys",
            200,
            rename(list, &["keys", "0", "status"], "state"),
        ),
        (
            "get",
            "/v1/keys",
            200,
            rename(list, &["keys", "0", "created_at"], "created"),
        ),
        (
            "get",
            "/v1/upstreams",
            200,
            set(upstreams, &["fx", "targets", "0", "state"], json!("sleepy")),
        ),
        (
            "get",
            "/v1/upstreams",
            200,
            set(upstreams, &["fx", "in_flight"], json!("none")),
        ),
    ];
    for (method, path, status, answer) in tampered {
        let schema = answer_schema(&doc, method, path, status);
        assert!(
            check(&doc, schema, &answer).is_err(),
            "{method} {path}: a tampered answer passed: {answer}"
        );
    }
}

/// `value` with the field at `at` (its last element) renamed to `to`.
fn rename(value: &Value, at: &[&str], to: &str) -> Value {
    let mut out = value.clone();
    let (last, parent) = at.split_last().unwrap();
    let object = walk(&mut out, parent).as_object_mut().unwrap();
    let v = object
        .remove(*last)
        .unwrap_or_else(|| panic!("no `{last}` in {value}"));
    object.insert(to.to_string(), v);
    out
}

/// `value` with the value at `at` replaced by `new`.
fn set(value: &Value, at: &[&str], new: Value) -> Value {
    let mut out = value.clone();
    *walk(&mut out, at) = new;
    out
}

fn walk<'v>(mut value: &'v mut Value, at: &[&str]) -> &'v mut Value {
    for step in at {
        value = match step.parse::<usize>() {
            Ok(i) => &mut value[i],
            Err(_) => &mut value[*step],
        };
    }
    value
}
