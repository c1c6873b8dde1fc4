//! The admin API's OpenAPI document, fetched from a running gateway: it
//! is OpenAPI 3.1, open like `/healthz`, it describes exactly the routes
//! the admin listener's routers serve (read from their code), and every
//! protected operation names the tokens that open it.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use test_support::openapi::{documented, routes_in};

use crate::harness::{base, client, TestGateway, TOKEN};

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
