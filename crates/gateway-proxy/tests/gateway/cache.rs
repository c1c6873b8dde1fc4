//! The response cache as a pipeline stage: hits never reach the upstream,
//! `Cache-Status` and `Age` are set, purges through the admin API work, and
//! routes without `cache` are untouched.

use test_support::origin::{Handler, Origin};

use crate::harness::{base, client, TestGateway, TOKEN};

#[tokio::test]
async fn cached_route_serves_hits_and_purges_through_the_admin_api() {
    let origin = Origin::start(Handler::fixed(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("surrogate-key", "rates latest"),
        ],
        "rates v1",
    ))
    .await;
    let gw = TestGateway::start(&base(&format!(
        r#"
[cache]
max_bytes = "16MiB"

[clusters.fx]
targets = ["{}"]

[[routes]]
name = "fx"
path_prefix = "/fx"
cluster = "fx"
cache = {{ ignore_query_params = ["utm_*"] }}

[[routes]]
name = "nocache"
path_prefix = "/live"
cluster = "fx"
"#,
        origin.authority()
    )))
    .await;
    let http = client();

    let first = http.get(gw.url("/fx/latest?b=2&a=1")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let status = first.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        status.contains("miss") && status.contains("stored"),
        "{status}"
    );
    assert_eq!(first.text().await.unwrap(), "rates v1");

    // Same resource: query order and utm_* do not matter.
    let hit = http
        .get(gw.url("/fx/latest?a=1&b=2&utm_source=mail"))
        .send()
        .await
        .unwrap();
    let status = hit.headers()["cache-status"].to_str().unwrap().to_string();
    assert!(status.contains("hit"), "{status}");
    assert!(hit.headers().contains_key("age"));
    assert!(
        hit.headers().contains_key("x-request-id"),
        "pipeline headers on hits too"
    );
    assert_eq!(hit.text().await.unwrap(), "rates v1");
    assert_eq!(origin.requests(), 1, "the hit never reached the upstream");

    // Uncached route: every request goes upstream, no Cache-Status.
    for _ in 0..2 {
        let res = http.get(gw.url("/live/x")).send().await.unwrap();
        assert!(!res.headers().contains_key("cache-status"));
    }
    assert_eq!(origin.requests(), 3);

    let res = http
        .post(gw.admin_url("/v1/cache/purge"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"tag": "rates"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let after = http.get(gw.url("/fx/latest?a=1&b=2")).send().await.unwrap();
    let status = after.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(status.contains("miss"), "purged by tag: {status}");
    assert_eq!(origin.requests(), 4);

    // Purges by the URL the client asked for, port and all, reach the
    // stored response: the key is the target URI's authority, not the host.
    for purge in [
        serde_json::json!({"url": gw.url("/fx/latest?a=1&b=2")}),
        serde_json::json!({"prefix": gw.url("/fx/")}),
    ] {
        let res = http
            .post(gw.admin_url("/v1/cache/purge"))
            .bearer_auth(TOKEN)
            .json(&purge)
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["purged"], 1, "{purge}: {body}");
        let again = http.get(gw.url("/fx/latest?a=1&b=2")).send().await.unwrap();
        let status = again.headers()["cache-status"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(status.contains("miss"), "{purge}: {status}");
    }
    assert_eq!(origin.requests(), 6);

    let stats = gw.admin_json("/v1/cache/stats").await;
    assert!(stats.is_object(), "{stats}");
}
