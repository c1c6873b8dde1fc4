//! The response cache's protocol details as a client sees them through the
//! gateway, with a scripted origin per rule: what is stored and forwarded,
//! how `Age` is read, what stays inside the cache, and what the cache
//! answers from whole stored responses.

use test_support::origin::{Handler, Origin};

use crate::harness::{base, client, TestGateway};

/// A gateway with one cached route `/` in front of `origin`; `cache` adds
/// lines to the `[cache]` table.
async fn cached(origin: &Origin, cache: &str) -> TestGateway {
    TestGateway::start(&base(&format!(
        r#"
[cache]
max_bytes = "16MiB"
{cache}

[clusters.origin]
targets = ["{}"]

[[routes]]
name = "cached"
path_prefix = "/"
cluster = "origin"
cache = {{ }}
"#,
        origin.authority()
    )))
    .await
}

fn cache_status(res: &reqwest::Response) -> String {
    res.headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn fields_named_in_connection_are_neither_stored_nor_forwarded() {
    let origin = Origin::start(Handler::fixed(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("connection", "x-hop"),
            ("x-hop", "for the gateway only"),
            ("x-kept", "end to end"),
        ],
        "body",
    ))
    .await;
    let gw = cached(&origin, "").await;
    let http = client();
    for expected in ["miss", "hit"] {
        let res = http.get(gw.url("/item")).send().await.unwrap();
        assert!(cache_status(&res).contains(expected), "{res:?}");
        assert!(!res.headers().contains_key("x-hop"), "{expected}: {res:?}");
        assert_eq!(res.headers()["x-kept"], "end to end");
    }
    assert_eq!(origin.requests(), 1);
}
