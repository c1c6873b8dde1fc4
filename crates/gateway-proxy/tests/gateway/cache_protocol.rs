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

#[tokio::test]
async fn age_is_read_as_delta_seconds_and_an_invalid_one_is_ignored() {
    // Each path gets max-age=60 and its own Age from the origin.
    let origin = Origin::start(Handler::new(|req| async move {
        let age = match req.uri().path() {
            "/signed" => "+3600",
            "/suffixed" => "3600x",
            "/list" => "3600, 5",
            _ => "3600",
        };
        let res = http::Response::builder()
            .header("cache-control", "max-age=60")
            .header("age", age)
            .body(crate::harness::body("aged"))
            .unwrap();
        test_support::origin::Reply::Response(res)
    }))
    .await;
    let gw = cached(&origin, "").await;
    let http = client();
    // Valid and older than max-age: stale on arrival, so the second request
    // goes to the origin again. The first member of a list counts.
    // Invalid (`+3600`, `3600x`): ignored, so the response is fresh.
    for (path, reused) in [
        ("/plain", false),
        ("/list", false),
        ("/signed", true),
        ("/suffixed", true),
    ] {
        let before = origin.requests();
        http.get(gw.url(path)).send().await.unwrap();
        let again = http.get(gw.url(path)).send().await.unwrap();
        let status = cache_status(&again);
        assert_eq!(status.contains("hit"), reused, "{path}: {status}");
        assert_eq!(
            origin.requests() - before,
            if reused { 1 } else { 2 },
            "{path}"
        );
        if reused {
            let age: u64 = again.headers()["age"].to_str().unwrap().parse().unwrap();
            assert!(age < 60, "{path}: Age {age}");
        }
    }
}

#[tokio::test]
async fn surrogate_keys_stay_inside_but_still_select_purges() {
    let origin = Origin::start(Handler::fixed(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("surrogate-key", "product-42 listing"),
            ("cache-tag", "shelf-7"),
        ],
        "tagged",
    ))
    .await;
    let gw = cached(&origin, "").await;
    let http = client();
    for expected in ["miss", "hit"] {
        let res = http.get(gw.url("/p/42")).send().await.unwrap();
        assert!(cache_status(&res).contains(expected), "{res:?}");
        assert!(!res.headers().contains_key("surrogate-key"), "{res:?}");
        assert!(!res.headers().contains_key("cache-tag"), "{res:?}");
    }
    // Both headers still tag the stored response.
    for tag in ["product-42", "shelf-7"] {
        let purged: serde_json::Value = http
            .post(gw.admin_url("/v1/cache/purge"))
            .bearer_auth(crate::harness::TOKEN)
            .json(&serde_json::json!({ "tag": tag }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(purged["purged"], 1, "{tag}: {purged}");
        let res = http.get(gw.url("/p/42")).send().await.unwrap();
        assert!(cache_status(&res).contains("miss"), "{tag}: {res:?}");
    }

    // An operator who wants them downstream says so.
    let gw = cached(&origin, "forward_tag_headers = true").await;
    for _ in ["miss", "hit"] {
        let res = http.get(gw.url("/p/42")).send().await.unwrap();
        assert_eq!(res.headers()["surrogate-key"], "product-42 listing");
        assert_eq!(res.headers()["cache-tag"], "shelf-7");
    }
}

/// An origin answering `status` with the header fields `fields` gives
/// each path.
fn origin_by_path(
    status: u16,
    fields: fn(&str) -> Vec<(&'static str, &'static str)>,
) -> test_support::origin::Handler {
    Handler::new(move |req| async move {
        let mut res = http::Response::builder().status(status);
        for (name, value) in fields(req.uri().path()) {
            res = res.header(name, value);
        }
        let res = res.body(crate::harness::body("payload")).unwrap();
        test_support::origin::Reply::Response(res)
    })
}

#[tokio::test]
async fn targeted_cache_control_takes_precedence_for_this_cache() {
    let origin = Origin::start(origin_by_path(200, |path| match path {
        // Browsers must not store it; this cache may, for a minute.
        "/cdn" => vec![
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60"),
        ],
        // The cache's own field comes before CDN-Cache-Control.
        "/own" => vec![
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "max-age=60"),
            ("gatehouse-cache-control", "no-store"),
        ],
        // A field that is not a valid dictionary is ignored.
        "/invalid" => vec![
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "no-store,"),
        ],
        // Expires gives way to a targeted field that says nothing of
        // freshness: no-cache is honoured there.
        _ => vec![
            ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
            ("cdn-cache-control", "no-cache"),
            ("etag", "\"v1\""),
        ],
    }))
    .await;
    let gw = cached(&origin, "").await;
    let http = client();
    for (path, reused) in [
        ("/cdn", true),
        ("/own", false),
        ("/invalid", true),
        ("/no-cache", false),
    ] {
        let before = origin.requests();
        let first = http.get(gw.url(path)).send().await.unwrap();
        let again = http.get(gw.url(path)).send().await.unwrap();
        let status = cache_status(&again);
        assert_eq!(status.contains("hit"), reused, "{path}: {status}");
        assert_eq!(
            origin.requests() - before,
            if reused { 1 } else { 2 },
            "{path}"
        );
        // Passed on by default, as RFC 9213 expects of a CDN.
        assert!(first.headers().contains_key("cdn-cache-control"), "{path}");
        assert!(again.headers().contains_key("cdn-cache-control"), "{path}");
    }

    // Configured to keep them inside, and with a field name of its own.
    let gw = cached(
        &origin,
        "targeted_cache_control = \"Edge-Control\"\nforward_targeted_cache_control = false",
    )
    .await;
    for expected in ["miss", "hit"] {
        let res = http.get(gw.url("/cdn")).send().await.unwrap();
        assert!(cache_status(&res).contains(expected), "{res:?}");
        assert!(!res.headers().contains_key("cdn-cache-control"), "{res:?}");
        assert_eq!(res.headers()["cache-control"], "no-store");
    }
    // `Gatehouse-Cache-Control` is no longer this cache's field.
    let before = origin.requests();
    http.get(gw.url("/own")).send().await.unwrap();
    let res = http.get(gw.url("/own")).send().await.unwrap();
    assert!(cache_status(&res).contains("hit"), "{res:?}");
    assert_eq!(origin.requests() - before, 1);
}

#[tokio::test]
async fn a_head_response_updates_the_stored_get_when_validators_match() {
    // GET: validate before every use, version 1. HEAD: same ETag, fresh for
    // a minute, version 2.
    let origin = Origin::start(Handler::new(|req| async move {
        let head = req.method() == http::Method::HEAD;
        let res = http::Response::builder()
            .header("etag", "\"v1\"")
            .header(
                "cache-control",
                if head { "max-age=60" } else { "max-age=0" },
            )
            .header("x-version", if head { "2" } else { "1" })
            .body(crate::harness::body("the representation"))
            .unwrap();
        test_support::origin::Reply::Response(res)
    }))
    .await;
    let gw = cached(&origin, "").await;
    let http = client();

    http.get(gw.url("/same")).send().await.unwrap();
    let head = http.head(gw.url("/same")).send().await.unwrap();
    assert_eq!(head.headers()["x-version"], "2");
    assert!(cache_status(&head).contains("stored"), "{head:?}");
    assert_eq!(origin.requests(), 2, "the HEAD needed the origin");
    // The stored GET took the HEAD's fields and freshness.
    let get = http.get(gw.url("/same")).send().await.unwrap();
    assert!(cache_status(&get).contains("hit"), "{get:?}");
    assert_eq!(get.headers()["x-version"], "2");
    assert_eq!(get.text().await.unwrap(), "the representation");
    assert_eq!(origin.requests(), 2);

    // Validators differ: the stored GET is stale and not reused.
    origin.set_handler(Handler::new(|req| async move {
        let head = req.method() == http::Method::HEAD;
        let res = http::Response::builder()
            .header("etag", if head { "\"v2\"" } else { "\"v1\"" })
            .header("cache-control", "max-age=60")
            .body(crate::harness::body("the representation"))
            .unwrap();
        test_support::origin::Reply::Response(res)
    }));
    let before = origin.requests();
    http.get(gw.url("/changed")).send().await.unwrap();
    let hit = http.get(gw.url("/changed")).send().await.unwrap();
    assert!(cache_status(&hit).contains("hit"), "{hit:?}");
    // The client asks for validation, so the HEAD reaches the origin.
    http.head(gw.url("/changed"))
        .header("cache-control", "no-cache")
        .send()
        .await
        .unwrap();
    let after = http.get(gw.url("/changed")).send().await.unwrap();
    assert!(!cache_status(&after).contains("hit"), "{after:?}");
    assert_eq!(origin.requests() - before, 3);
}

#[tokio::test]
async fn an_error_status_with_explicit_freshness_is_stored_and_reused() {
    let origin = Origin::start(origin_by_path(502, |path| match path {
        "/explicit" => vec![("cache-control", "max-age=60")],
        _ => vec![("etag", "\"e\"")],
    }))
    .await;
    let gw = cached(&origin, "").await;
    let http = client();
    for expected in ["miss", "hit"] {
        let res = http.get(gw.url("/explicit")).send().await.unwrap();
        assert_eq!(res.status(), 502);
        assert!(cache_status(&res).contains(expected), "{res:?}");
    }
    assert_eq!(origin.requests(), 1, "the stored 502 answered the second");

    // Without explicit freshness a 502 is passed through, never stored.
    for _ in 0..2 {
        let res = http.get(gw.url("/validator-only")).send().await.unwrap();
        assert_eq!(res.status(), 502);
        assert!(cache_status(&res).contains("detail=status"), "{res:?}");
    }
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn ranges_are_answered_from_the_whole_stored_response() {
    let origin = Origin::start(Handler::fixed(
        200,
        &[("cache-control", "max-age=60"), ("etag", "\"r1\"")],
        "0123456789abcdef",
    ))
    .await;
    let gw = cached(&origin, "").await;
    let http = client();
    let get = |range: &str, if_range: Option<&str>| {
        let mut req = http.get(gw.url("/video")).header("range", range);
        if let Some(v) = if_range {
            req = req.header("if-range", v);
        }
        req.send()
    };

    // A miss fetches the whole object, stores it and answers the range.
    let res = get("bytes=2-5", None).await.unwrap();
    assert_eq!(res.status(), 206);
    assert!(cache_status(&res).contains("miss"), "{res:?}");
    assert_eq!(res.headers()["content-range"], "bytes 2-5/16");
    assert_eq!(res.text().await.unwrap(), "2345");
    assert!(
        !origin.recorded()[0].headers.contains_key("range"),
        "the origin was asked for the whole object"
    );

    for (range, status, content_range, body) in [
        ("bytes=-4", 206, "bytes 12-15/16", "cdef"),
        ("bytes=10-", 206, "bytes 10-15/16", "abcdef"),
        ("bytes=14-99", 206, "bytes 14-15/16", "ef"),
        ("bytes=16-20", 416, "bytes */16", ""),
    ] {
        let res = get(range, None).await.unwrap();
        assert_eq!(res.status(), status, "{range}");
        assert!(cache_status(&res).contains("hit"), "{range}: {res:?}");
        assert_eq!(res.headers()["content-range"], content_range, "{range}");
        assert_eq!(res.text().await.unwrap(), body, "{range}");
    }

    // If-Range: a matching strong validator gets the range, anything else
    // the whole representation.
    let res = get("bytes=0-0", Some("\"r1\"")).await.unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.text().await.unwrap(), "0");
    for stale in ["\"r0\"", "W/\"r1\""] {
        let res = get("bytes=0-0", Some(stale)).await.unwrap();
        assert_eq!(res.status(), 200, "{stale}");
        assert_eq!(res.text().await.unwrap(), "0123456789abcdef");
    }
    assert_eq!(origin.requests(), 1, "every range came from storage");

    // Several ranges are the origin's to answer.
    let res = get("bytes=0-1, 4-5", None).await.unwrap();
    assert!(cache_status(&res).contains("bypass"), "{res:?}");
    assert_eq!(origin.requests(), 2);
    assert_eq!(origin.recorded()[1].headers["range"], "bytes=0-1, 4-5");
}
