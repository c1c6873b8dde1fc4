//! End-to-end behaviour of the cache stage against scripted origins.
//!
//! Socket-origin tests go through a real HTTP server on 127.0.0.1:0; time
//! moves only through the harness's `ManualClock`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::future::{self, FutureExt};
use gateway_cache::{
    CacheConfig, CacheStatus, HttpCache, Origin, Purge, PurgeTarget, RouteCacheConfig,
    RouteCacheContext,
};
use gateway_core::{body, Body, BoxError, ManualClock};
use http::{Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

fn script(f: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Script {
    Arc::new(f)
}

async fn socket(
    h: &Harness,
    f: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
) -> Arc<SocketOrigin> {
    SocketOrigin::start(h.clock.clone(), script(f)).await
}

// === freshness and Age ===

#[tokio::test]
async fn miss_then_hit_with_age_and_cache_status() {
    let h = Harness::new();
    let o = socket(&h, |_, n| Reply::ok(&format!("v{n}")).cc("max-age=60")).await;
    let r = h.get("/items", o.clone()).await;
    assert_eq!(r.text(), "v0");
    assert_eq!(
        r.cache_status(),
        "gatehouse; fwd=uri-miss; fwd-status=200; stored"
    );
    h.advance(10);
    let r = h.get("/items", o.clone()).await;
    assert_eq!(r.text(), "v0");
    assert_eq!(r.age(), Some(10));
    assert_eq!(r.cache_status(), "gatehouse; hit; ttl=50");
    assert_eq!(o.calls(), 1);
    h.advance(51);
    let r = h.get("/items", o.clone()).await;
    assert_eq!(r.text(), "v1", "expired entries are fetched again");
    assert_eq!(
        r.cache_status(),
        "gatehouse; fwd=stale; fwd-status=200; stored"
    );
    assert_eq!(o.calls(), 2);
}

#[tokio::test]
async fn age_includes_upstream_age_and_apparent_age() {
    let h = Harness::new();
    let o = socket(&h, |_, _| {
        Reply::ok("x").cc("max-age=60").header("age", "30")
    })
    .await;
    h.get("/a", o.clone()).await;
    h.advance(5);
    let r = h.get("/a", o.clone()).await;
    assert_eq!(r.age(), Some(35));
    assert_eq!(r.cache_status(), "gatehouse; hit; ttl=25");
    // A Date 20 s in the past means the response was already 20 s old.
    let start = h.now();
    let o2 = socket(&h, move |_, _| {
        Reply::ok("y")
            .cc("max-age=60")
            .header("date", &http_date(start - chrono::Duration::seconds(20)))
    })
    .await;
    h.get("/b", o2.clone()).await;
    let r = h.get("/b", o2.clone()).await;
    assert_eq!(r.age(), Some(20));
}

#[tokio::test]
async fn s_maxage_expires_and_heuristic_freshness() {
    let h = Harness::new();
    let now = h.now();
    let o = socket(&h, move |s, _| match s.uri.as_str() {
        "/s" => Reply::ok("s").cc("max-age=1, s-maxage=100"),
        "/e" => Reply::ok("e").header("expires", &http_date(now + chrono::Duration::seconds(100))),
        "/lm" => Reply::ok("lm").header(
            "last-modified",
            &http_date(now - chrono::Duration::seconds(1000)),
        ),
        _ => Reply::ok("none"),
    })
    .await;
    for p in ["/s", "/e", "/lm", "/none"] {
        h.get(p, o.clone()).await;
    }
    h.advance(50);
    assert!(h.get("/s", o.clone()).await.cache_status().contains("hit"));
    assert!(h.get("/e", o.clone()).await.cache_status().contains("hit"));
    // Heuristic: 10% of 1000 s = 100 s.
    assert!(h.get("/lm", o.clone()).await.cache_status().contains("hit"));
    let r = h.get("/none", o.clone()).await;
    assert!(
        r.cache_status().contains("fwd=uri-miss"),
        "{}",
        r.cache_status()
    );
    assert_eq!(o.calls(), 5);
}

#[tokio::test]
async fn malformed_freshness_means_stale_or_not_stored() {
    let h = Harness::new();
    let o = socket(&h, |s, _| match s.uri.as_str() {
        "/bad-max-age" => Reply::ok("a").cc("max-age=soon"),
        "/bad-expires" => Reply::ok("b")
            .header("expires", "tomorrow")
            .header("etag", "\"b\""),
        "/bad-vary" => Reply::ok("c")
            .cc("max-age=60")
            .header("vary", "accept, bad header"),
        _ => Reply::ok("d").cc("max-age=60, max-age=120"),
    })
    .await;
    let r = h.get("/bad-max-age", o.clone()).await;
    assert!(
        r.cache_status().ends_with("detail=no_freshness"),
        "{}",
        r.cache_status()
    );
    h.get("/bad-expires", o.clone()).await;
    let r = h.get("/bad-expires", o.clone()).await;
    assert!(
        r.cache_status().contains("fwd=stale"),
        "stored but stale: {}",
        r.cache_status()
    );
    assert_eq!(o.last_seen().headers["if-none-match"], "\"b\"");
    let r = h.get("/bad-vary", o.clone()).await;
    assert!(
        r.cache_status().ends_with("detail=vary_star"),
        "{}",
        r.cache_status()
    );
    h.get("/conflict", o.clone()).await;
    let r = h.get("/conflict", o.clone()).await;
    assert!(
        !r.cache_status().contains("hit"),
        "conflicting max-age is stale"
    );
}

// === storability ===

#[tokio::test]
async fn no_store_private_and_authorization_are_not_stored() {
    let h = Harness::new();
    let o = socket(&h, |s, _| match s.uri.as_str() {
        "/no-store" => Reply::ok("x").cc("no-store, max-age=60"),
        "/private" => Reply::ok("x").cc("private, max-age=60"),
        "/public" => Reply::ok("x").cc("public, max-age=60"),
        _ => Reply::ok("x").cc("max-age=60"),
    })
    .await;
    for (path, detail) in [("/no-store", "no_store"), ("/private", "private")] {
        for _ in 0..2 {
            let r = h.get(path, o.clone()).await;
            assert!(
                r.cache_status().ends_with(&format!("detail={detail}")),
                "{}",
                r.cache_status()
            );
        }
    }
    assert_eq!(o.calls(), 4);
    let authed = || {
        get("/auth")
            .header("authorization", "Bearer t")
            .body(body::empty())
            .unwrap()
    };
    let r = h.send(authed(), o.clone()).await;
    assert!(r.cache_status().ends_with("detail=authorization"));
    h.send(authed(), o.clone()).await;
    assert_eq!(o.calls(), 6);
    // `public` allows sharing a response to an authorized request.
    let r = h
        .send(
            get("/public")
                .header("authorization", "Bearer t")
                .body(body::empty())
                .unwrap(),
            o.clone(),
        )
        .await;
    assert!(r.cache_status().ends_with("stored"));
    assert!(h
        .get("/public", o.clone())
        .await
        .cache_status()
        .contains("hit"));
    // A request's own no-store keeps its response out of the cache.
    let r = h
        .send(
            get("/req-no-store")
                .header("cache-control", "no-store")
                .body(body::empty())
                .unwrap(),
            o.clone(),
        )
        .await;
    assert!(r.cache_status().ends_with("detail=no_store"));
}

// === Vary ===

#[tokio::test]
async fn vary_keeps_one_variant_per_normalised_value() {
    let h = Harness::new();
    let o = socket(&h, |s, n| {
        let enc = s
            .headers
            .get("accept-encoding")
            .map_or("none", |v| v.to_str().unwrap())
            .to_string();
        Reply::ok(&format!("{n}:{enc}"))
            .cc("max-age=60")
            .header("vary", "Accept-Encoding")
    })
    .await;
    let ae = |v: &str| {
        get("/v")
            .header("accept-encoding", v)
            .body(body::empty())
            .unwrap()
    };
    assert_eq!(h.send(ae("gzip, br"), o.clone()).await.text(), "0:gzip, br");
    let r = h.send(ae("identity"), o.clone()).await;
    assert_eq!(r.text(), "1:identity");
    assert!(
        r.cache_status().contains("fwd=vary-miss"),
        "{}",
        r.cache_status()
    );
    // Token order, case and whitespace do not matter.
    let r = h.send(ae("BR,gzip"), o.clone()).await;
    assert_eq!(r.text(), "0:gzip, br");
    assert!(r.cache_status().contains("hit"));
    assert_eq!(h.send(ae("identity"), o.clone()).await.text(), "1:identity");
    // An absent header is its own variant.
    assert_eq!(h.get("/v", o.clone()).await.text(), "2:none");
    assert_eq!(h.get("/v", o.clone()).await.text(), "2:none");
    assert_eq!(o.calls(), 3);
}

#[tokio::test]
async fn vary_star_is_not_stored_and_variants_are_bounded() {
    let cfg = CacheConfig {
        max_variants: 2,
        ..CacheConfig::default()
    };
    let h = Harness::with(cfg, RouteCacheConfig::default());
    let o = socket(&h, |s, n| {
        if s.uri == "/star" {
            Reply::ok("s").cc("max-age=60").header("vary", "*")
        } else {
            Reply::ok(&n.to_string())
                .cc("max-age=60")
                .header("vary", "accept-language")
        }
    })
    .await;
    let r = h.get("/star", o.clone()).await;
    assert!(r.cache_status().ends_with("detail=vary_star"));
    h.get("/star", o.clone()).await;
    assert_eq!(o.calls(), 2);

    let lang = |v: &str| {
        get("/l")
            .header("accept-language", v)
            .body(body::empty())
            .unwrap()
    };
    h.send(lang("en"), o.clone()).await; // call 2
    h.send(lang("fr"), o.clone()).await; // call 3
    h.send(lang("de"), o.clone()).await; // call 4: drops "en", the oldest
    assert!(h
        .send(lang("FR"), o.clone())
        .await
        .cache_status()
        .contains("hit"));
    assert!(h
        .send(lang("de"), o.clone())
        .await
        .cache_status()
        .contains("hit"));
    let r = h.send(lang("en"), o.clone()).await;
    assert!(
        r.cache_status().contains("fwd=vary-miss"),
        "{}",
        r.cache_status()
    );
    assert_eq!(o.calls(), 6);
}

// === revalidation ===

#[tokio::test]
async fn revalidation_304_merges_headers() {
    let h = Harness::new();
    let o = socket(&h, |s, n| {
        if n == 0 {
            Reply::ok("body-v1")
                .cc("max-age=10")
                .header("etag", "\"v1\"")
                .header("x-version", "a")
                .header("content-type", "text/plain")
        } else {
            assert_eq!(s.headers["if-none-match"], "\"v1\"");
            Reply::ok("")
                .status(304)
                .cc("max-age=100")
                .header("etag", "\"v1\"")
                .header("x-version", "b")
        }
    })
    .await;
    h.get("/r", o.clone()).await;
    h.advance(20);
    let r = h.get("/r", o.clone()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "body-v1");
    assert_eq!(r.header("x-version"), Some("b"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("cache-control"), Some("max-age=100"));
    assert_eq!(
        r.cache_status(),
        "gatehouse; fwd=stale; fwd-status=304; ttl=100; stored"
    );
    h.advance(50);
    let r = h.get("/r", o.clone()).await;
    assert_eq!(r.cache_status(), "gatehouse; hit; ttl=50");
    assert_eq!(r.header("x-version"), Some("b"));
    assert_eq!(o.calls(), 2);
}

#[tokio::test]
async fn last_modified_validator_and_client_conditionals() {
    let h = Harness::new();
    let lm = http_date(h.now() - chrono::Duration::seconds(3600));
    let lm2 = lm.clone();
    let o = socket(&h, move |s, n| {
        if n >= 1 {
            assert_eq!(s.headers["if-modified-since"].to_str().unwrap(), lm2);
            return Reply::ok("").status(304);
        }
        Reply::ok("doc")
            .cc("no-cache")
            .header("last-modified", &lm2)
            .header("etag", "W/\"7\"")
    })
    .await;
    h.get("/d", o.clone()).await;
    // no-cache: stored, but validated before every use.
    let r = h.get("/d", o.clone()).await;
    assert!(
        r.cache_status().contains("fwd-status=304"),
        "{}",
        r.cache_status()
    );
    assert_eq!(r.text(), "doc");
    // The client's own validators are answered from the cache after validation.
    let r = h
        .send(
            get("/d")
                .header("if-none-match", "\"7\"")
                .body(body::empty())
                .unwrap(),
            o.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    let _ = lm;
}

#[tokio::test]
async fn stale_while_revalidate_makes_exactly_one_background_request() {
    let h = Harness::new();
    let o = socket(&h, |_, n| {
        Reply::ok(&format!("v{n}"))
            .cc("max-age=10, stale-while-revalidate=60")
            .delay(if n == 1 {
                Duration::from_millis(300)
            } else {
                Duration::ZERO
            })
    })
    .await;
    h.get("/swr", o.clone()).await;
    h.advance(15);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let cache = h.cache.clone();
        let route = h.route.clone();
        let origin: Arc<dyn Origin> = o.clone();
        tasks.push(tokio::spawn(async move {
            let res = cache
                .handle(get("/swr").body(body::empty()).unwrap(), &route, origin)
                .await;
            let cs = res.headers()["cache-status"].to_str().unwrap().to_string();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (cs, body)
        }));
    }
    for t in tasks {
        let (cs, body) = t.await.unwrap();
        assert_eq!(body, "v0");
        assert_eq!(cs, "gatehouse; hit; ttl=-5; detail=stale-while-revalidate");
    }
    h.cache.background_idle().await;
    assert_eq!(o.calls(), 2, "one background refresh for 20 stale hits");
    let r = h.get("/swr", o.clone()).await;
    assert_eq!(r.text(), "v1");
    assert!(r.cache_status().contains("hit"));
    // Past the window the entry must be revalidated in the foreground.
    h.advance(100);
    let r = h.get("/swr", o.clone()).await;
    assert_eq!(r.text(), "v2");
    assert!(r.cache_status().contains("fwd=stale"));
}

#[tokio::test]
async fn must_revalidate_forbids_stale_serving() {
    let h = Harness::new();
    let o = socket(&h, |_, n| {
        if n == 0 {
            Reply::ok("v0")
                .cc("max-age=10, must-revalidate, stale-while-revalidate=60, stale-if-error=60")
        } else {
            Reply::ok("down").status(503)
        }
    })
    .await;
    h.get("/m", o.clone()).await;
    h.advance(15);
    let r = h.get("/m", o.clone()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let r = h
        .send(
            get("/m")
                .header("cache-control", "max-stale")
                .body(body::empty())
                .unwrap(),
            o.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_origin_fails() {
    let h = Harness::new();
    let o = socket(&h, |_, n| {
        if n == 0 {
            Reply::ok("good").cc("max-age=10, stale-if-error=60")
        } else {
            Reply::ok("broken").status(503)
        }
    })
    .await;
    h.get("/e", o.clone()).await;
    h.advance(20);
    let r = h.get("/e", o.clone()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "good");
    assert_eq!(
        r.cache_status(),
        "gatehouse; fwd=stale; fwd-status=503; ttl=-10; detail=stale-if-error"
    );
    assert_eq!(r.age(), Some(20));
    // Beyond the window the error reaches the client.
    h.advance(100);
    let r = h.get("/e", o.clone()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.text(), "broken");
}

#[tokio::test]
async fn stale_if_error_on_connection_failure_and_problem_otherwise() {
    let route = RouteCacheConfig {
        stale_if_error: Some(Duration::from_secs(30)),
        ..RouteCacheConfig::default()
    };
    let h = Harness::with(CacheConfig::default(), route);
    let o = FnOrigin::new(|n| {
        async move {
            if n == 0 {
                let mut res = Response::new(body::full("cached"));
                res.headers_mut()
                    .insert("cache-control", "max-age=5".parse().unwrap());
                Ok(res)
            } else {
                Err(origin_down())
            }
        }
        .boxed()
    });
    h.get("/c", o.clone()).await;
    h.advance(10);
    let r = h.get("/c", o.clone()).await;
    assert_eq!(r.text(), "cached");
    assert!(r.cache_status().ends_with("detail=stale-if-error"));
    // Nothing stored: the origin's problem goes to the client.
    let r = h.get("/other", o.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["code"], "upstream_connect_failed");
}

// === request directives ===

#[tokio::test]
async fn request_directives() {
    let h = Harness::new();
    let o = socket(&h, |_, n| {
        Reply::ok(&format!("v{n}"))
            .cc("max-age=60")
            .header("etag", "\"e\"")
    })
    .await;
    let with_cc = |v: &str| {
        get("/q")
            .header("cache-control", v)
            .body(body::empty())
            .unwrap()
    };
    // only-if-cached with nothing stored: 504, origin untouched.
    let r = h.send(with_cc("only-if-cached"), o.clone()).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(o.calls(), 0);
    h.get("/q", o.clone()).await;
    h.advance(30);
    assert_eq!(
        h.send(with_cc("only-if-cached"), o.clone()).await.text(),
        "v0"
    );
    // max-age stricter than the entry's age forces validation.
    let r = h.send(with_cc("max-age=10"), o.clone()).await;
    assert!(
        r.cache_status().contains("fwd=request"),
        "{}",
        r.cache_status()
    );
    assert_eq!(o.calls(), 2);
    // min-fresh beyond the remaining lifetime forces validation too.
    h.advance(30);
    let r = h.send(with_cc("min-fresh=40"), o.clone()).await;
    assert!(
        r.cache_status().contains("fwd=request"),
        "{}",
        r.cache_status()
    );
    // no-cache (and Pragma) always validate.
    h.send(with_cc("no-cache"), o.clone()).await;
    h.send(
        get("/q")
            .header("pragma", "no-cache")
            .body(body::empty())
            .unwrap(),
        o.clone(),
    )
    .await;
    assert_eq!(o.calls(), 5);
    // max-stale accepts a stale entry without going forward.
    h.advance(1000);
    let r = h.send(with_cc("max-stale"), o.clone()).await;
    assert!(
        r.cache_status().ends_with("detail=max-stale"),
        "{}",
        r.cache_status()
    );
    let r = h.send(with_cc("max-stale=10"), o.clone()).await;
    assert!(r.cache_status().contains("fwd=stale"));
}

#[tokio::test]
async fn head_is_served_from_a_cached_get() {
    let h = Harness::new();
    let o = socket(&h, |s, _| {
        assert_eq!(
            s.method,
            Method::GET,
            "HEAD must not reach the origin once GET is cached"
        );
        Reply::ok("hello world").cc("max-age=60")
    })
    .await;
    h.get("/h", o.clone()).await;
    let r = h
        .send(
            req(Method::HEAD, "/h").body(body::empty()).unwrap(),
            o.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("11"));
    assert!(r.cache_status().contains("hit"));
    assert_eq!(o.calls(), 1);
}

// === coalescing ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stampede_of_100_misses_makes_one_origin_request() {
    let h = Harness::new();
    let o = socket(&h, |_, n| {
        Reply::ok(&format!("payload-{n}"))
            .cc("max-age=60")
            .delay(Duration::from_millis(300))
    })
    .await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let cache = h.cache.clone();
        let route = h.route.clone();
        let origin: Arc<dyn Origin> = o.clone();
        tasks.push(tokio::spawn(async move {
            let res = cache
                .handle(get("/hot").body(body::empty()).unwrap(), &route, origin)
                .await;
            res.into_body().collect().await.unwrap().to_bytes()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), "payload-0");
    }
    assert_eq!(o.calls(), 1);
    let stats = h.cache.stats();
    assert_eq!(stats.count(CacheStatus::Miss), 1);
    assert_eq!(stats.count(CacheStatus::Hit), 99);
}

#[tokio::test]
async fn coalesced_waiters_give_up_on_a_hung_leader() {
    // Real time, kept short: the leader hangs forever, the waiter gives up.
    let cfg = CacheConfig {
        coalesce_timeout: Duration::from_millis(100),
        ..CacheConfig::default()
    };
    let h = Arc::new(Harness::with(cfg, RouteCacheConfig::default()));
    let o = FnOrigin::new(|n| {
        async move {
            if n == 0 {
                future::pending::<()>().await;
            }
            let mut res = Response::new(body::full("fresh"));
            res.headers_mut()
                .insert("cache-control", "max-age=60".parse().unwrap());
            Ok(res)
        }
        .boxed()
    });
    let leader = {
        let h = h.clone();
        let o = o.clone();
        tokio::spawn(async move { h.get("/slow", o).await })
    };
    tokio::task::yield_now().await;
    let r = h.get("/slow", o.clone()).await;
    assert_eq!(r.text(), "fresh");
    assert_eq!(o.calls(), 2);
    assert!(!leader.is_finished());
    leader.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_fetch_on_their_own_when_the_leader_is_uncacheable() {
    let h = Harness::new();
    let o = socket(&h, |_, n| {
        Reply::ok(&format!("u{n}"))
            .cc("no-store")
            .delay(Duration::from_millis(200))
    })
    .await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let cache = h.cache.clone();
        let route = h.route.clone();
        let origin: Arc<dyn Origin> = o.clone();
        tasks.push(tokio::spawn(async move {
            let res = cache
                .handle(get("/private").body(body::empty()).unwrap(), &route, origin)
                .await;
            res.into_body().collect().await.unwrap().to_bytes()
        }));
    }
    let mut bodies: Vec<Bytes> = Vec::new();
    for t in tasks {
        bodies.push(t.await.unwrap());
    }
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 5, "each request got its own response");
    assert_eq!(o.calls(), 5);
}

// === invalidation ===

#[tokio::test]
async fn purge_by_url_prefix_and_tag() {
    let h = Harness::new();
    let o = socket(&h, |s, n| {
        let tags = match s.uri.as_str() {
            "/p/1" => "product product-1",
            "/p/2" => "product product-2",
            _ => "other",
        };
        Reply::ok(&format!("{n}"))
            .cc("max-age=600")
            .header("vary", "accept")
            .header("surrogate-key", tags)
            .header("cache-tag", "all")
    })
    .await;
    let accept = |p: &str, v: &str| get(p).header("accept", v).body(body::empty()).unwrap();
    for p in ["/p/1", "/p/2", "/q/1"] {
        h.send(accept(p, "a/json"), o.clone()).await;
        h.send(accept(p, "a/xml"), o.clone()).await;
    }
    assert_eq!(o.calls(), 6);
    let purge = |t: PurgeTarget| {
        h.cache
            .purge(&Purge {
                target: t,
                soft: false,
            })
            .unwrap()
            .purged
    };
    // URL: every variant; the URL is normalised like keys.
    assert_eq!(
        purge(PurgeTarget::Url("HTTPS://api.example.com:443/p/1".into())),
        2
    );
    assert!(h
        .send(accept("/p/1", "a/xml"), o.clone())
        .await
        .cache_status()
        .contains("fwd=uri-miss"));
    assert!(h
        .send(accept("/p/2", "a/xml"), o.clone())
        .await
        .cache_status()
        .contains("hit"));
    // Tag from Surrogate-Key.
    assert_eq!(purge(PurgeTarget::Tag("product-2".into())), 2);
    assert!(h
        .send(accept("/p/2", "a/json"), o.clone())
        .await
        .cache_status()
        .contains("fwd=uri-miss"));
    // Prefix.
    assert_eq!(
        purge(PurgeTarget::Prefix("https://api.example.com/q/".into())),
        2
    );
    assert!(h
        .send(accept("/q/1", "a/json"), o.clone())
        .await
        .cache_status()
        .contains("fwd=uri-miss"));
    // Tag from Cache-Tag reaches everything.
    let n = purge(PurgeTarget::Tag("all".into()));
    assert_eq!(n, 3);
    assert_eq!(h.cache.stats().entries, 0);
    assert!(h
        .cache
        .purge(&Purge {
            target: PurgeTarget::Url("/relative".into()),
            soft: false
        })
        .is_err());
}

#[tokio::test]
async fn soft_purge_keeps_serving_stale_while_revalidating() {
    let h = Harness::new();
    let o = socket(&h, |_, n| {
        Reply::ok(&format!("v{n}"))
            .cc("max-age=600, stale-while-revalidate=30")
            .header("cache-tag", "t")
    })
    .await;
    h.get("/s", o.clone()).await;
    let r = h.cache.purge(&Purge {
        target: PurgeTarget::Tag("t".into()),
        soft: true,
    });
    assert_eq!(r.unwrap().purged, 1);
    let r = h.get("/s", o.clone()).await;
    assert_eq!(r.text(), "v0");
    assert!(
        r.cache_status().ends_with("detail=stale-while-revalidate"),
        "{}",
        r.cache_status()
    );
    h.cache.background_idle().await;
    let r = h.get("/s", o.clone()).await;
    assert_eq!(r.text(), "v1");
    assert!(r.cache_status().contains("hit"));
    assert_eq!(o.calls(), 2);
}

#[tokio::test]
async fn unsafe_methods_invalidate_target_and_locations() {
    let h = Harness::new();
    let o = socket(&h, |s, n| match s.method {
        Method::POST => Reply::ok("created")
            .status(201)
            .header("location", "/items/7")
            .header("content-location", "https://elsewhere.example/items"),
        Method::DELETE => Reply::ok("").status(500),
        _ => Reply::ok(&format!("{}#{n}", s.uri)).cc("max-age=600"),
    })
    .await;
    h.get("/items", o.clone()).await;
    h.get("/items/7", o.clone()).await;
    h.get("/items/8", o.clone()).await;
    // A failed unsafe request invalidates nothing.
    let r = h
        .send(
            req(Method::DELETE, "/items").body(body::empty()).unwrap(),
            o.clone(),
        )
        .await;
    assert_eq!(r.cache_status(), "gatehouse; fwd=method; fwd-status=500");
    assert!(h
        .get("/items", o.clone())
        .await
        .cache_status()
        .contains("hit"));
    let r = h
        .send(
            req(Method::POST, "/items").body(body::full("{}")).unwrap(),
            o.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(h
        .get("/items", o.clone())
        .await
        .cache_status()
        .contains("fwd=uri-miss"));
    assert!(h
        .get("/items/7", o.clone())
        .await
        .cache_status()
        .contains("fwd=uri-miss"));
    assert!(h
        .get("/items/8", o.clone())
        .await
        .cache_status()
        .contains("hit"));
}

// === keys ===

#[tokio::test]
async fn key_normalisation_and_ignored_params() {
    let cfg = CacheConfig {
        ignore_query_params: vec!["utm_*".into()],
        ..CacheConfig::default()
    };
    let route = RouteCacheConfig {
        ignore_query_params: vec!["session".into()],
        ..RouteCacheConfig::default()
    };
    let h = Harness::with(cfg, route);
    let o = socket(&h, |_, n| Reply::ok(&n.to_string()).cc("max-age=60")).await;
    h.get("/a/%7Euser?b=2&a=1&utm_source=mail", o.clone()).await;
    for p in [
        "/a/~user?a=1&b=2",
        "/a/%7euser?session=9&a=1&b=2",
        "/a/~user?utm_medium=x&b=2&a=1",
    ] {
        let r = h.get(p, o.clone()).await;
        assert!(
            r.cache_status().contains("hit"),
            "{p}: {}",
            r.cache_status()
        );
    }
    assert!(h
        .get("/a/~user?a=1&b=3", o.clone())
        .await
        .cache_status()
        .contains("miss"));
    // The same path on another host is another resource.
    let other = RouteCacheContext::new("api", Arc::new(RouteCacheConfig::default()))
        .with_authority("https", "API.example.com:443");
    let r = h
        .send_as(
            get("/a/~user?a=1&b=2").body(body::empty()).unwrap(),
            &other,
            o.clone(),
        )
        .await;
    assert!(
        r.cache_status().contains("hit"),
        "host case and default port are normalised"
    );
    let other = other.with_authority("http", "api.example.com");
    let r = h
        .send_as(
            get("/a/~user?a=1&b=2").body(body::empty()).unwrap(),
            &other,
            o.clone(),
        )
        .await;
    assert!(
        r.cache_status().contains("miss"),
        "scheme is part of the key"
    );
}

#[tokio::test]
async fn per_tenant_keys_from_consumer_and_headers() {
    let route = Arc::new(RouteCacheConfig {
        key_consumer: true,
        key_headers: vec!["x-region".into()],
        ..RouteCacheConfig::default()
    });
    let h = Harness::new();
    let o = socket(&h, |s, n| {
        let region = s
            .headers
            .get("x-region")
            .map_or("-", |v| v.to_str().unwrap())
            .to_string();
        Reply::ok(&format!("{n}:{region}")).cc("max-age=60")
    })
    .await;
    let ctx = |c: &str| {
        RouteCacheContext::new("tenant", route.clone())
            .with_authority("https", "h")
            .with_consumer(c)
    };
    let (a, b) = (ctx("alice"), ctx("bob"));
    let g = |region: &str| {
        get("/me")
            .header("x-region", region)
            .body(body::empty())
            .unwrap()
    };
    assert_eq!(h.send_as(g("eu"), &a, o.clone()).await.text(), "0:eu");
    assert_eq!(h.send_as(g("eu"), &b, o.clone()).await.text(), "1:eu");
    assert_eq!(h.send_as(g("us"), &a, o.clone()).await.text(), "2:us");
    assert_eq!(h.send_as(g("eu"), &a, o.clone()).await.text(), "0:eu");
    assert_eq!(h.send_as(g("eu"), &b, o.clone()).await.text(), "1:eu");
    // Purge by URL reaches every tenant.
    let n = h
        .cache
        .purge(&Purge {
            target: PurgeTarget::Url("https://h/me".into()),
            soft: false,
        })
        .unwrap();
    assert_eq!(n.purged, 3);
}

#[tokio::test]
async fn route_ttl_override_and_disabled_route() {
    let route = RouteCacheConfig {
        ttl_override: Some(Duration::from_secs(300)),
        ..RouteCacheConfig::default()
    };
    let h = Harness::with(CacheConfig::default(), route);
    let o = socket(&h, |_, n| Reply::ok(&n.to_string()).cc("max-age=1")).await;
    h.get("/t", o.clone()).await;
    h.advance(200);
    assert!(h
        .get("/t", o.clone())
        .await
        .cache_status()
        .contains("hit; ttl=100"));
    let off = RouteCacheContext::new(
        "off",
        Arc::new(RouteCacheConfig {
            enabled: false,
            ..RouteCacheConfig::default()
        }),
    );
    let r = h
        .send_as(get("/t").body(body::empty()).unwrap(), &off, o.clone())
        .await;
    assert_eq!(r.cache_status(), "gatehouse; fwd=bypass; fwd-status=200");
    assert_eq!(o.calls(), 2);
}

// === size limit and streaming ===

#[tokio::test]
async fn oversized_responses_stream_through_unbuffered_and_uncached() {
    let cfg = CacheConfig {
        max_object_bytes: 1024,
        ..CacheConfig::default()
    };
    let h = Harness::with(cfg, RouteCacheConfig::default());
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Frame<Bytes>, BoxError>>();
    let rx = Arc::new(parking_lot::Mutex::new(Some(rx)));
    let o = FnOrigin::new(move |_| {
        let rx = rx.lock().take();
        async move {
            let body: Body = match rx {
                Some(rx) => body::boxed(StreamBody::new(rx)),
                None => body::full(vec![b'x'; 4096]),
            };
            let mut res = Response::new(body);
            res.headers_mut()
                .insert("cache-control", "max-age=60".parse().unwrap());
            Ok(res)
        }
        .boxed()
    });
    let res = h
        .cache
        .handle(
            get("/big").body(body::empty()).unwrap(),
            &h.route,
            o.clone(),
        )
        .await;
    let mut b = res.into_body();
    tx.unbounded_send(Ok(Frame::data(Bytes::from(vec![b'a'; 800]))))
        .unwrap();
    // The first chunk reaches the client before the origin has sent the rest.
    let first = b.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first.len(), 800);
    tx.unbounded_send(Ok(Frame::data(Bytes::from(vec![b'b'; 800]))))
        .unwrap();
    tx.unbounded_send(Ok(Frame::data(Bytes::from(vec![b'c'; 800]))))
        .unwrap();
    drop(tx);
    let rest = b.collect().await.unwrap().to_bytes();
    assert_eq!(rest.len(), 1600);
    let r = h.get("/big", o.clone()).await;
    assert_eq!(r.body.len(), 4096);
    // Declared too large up front: not even buffered.
    assert!(
        r.cache_status().ends_with("detail=too_large"),
        "{}",
        r.cache_status()
    );
    assert_eq!(o.calls(), 2);
    assert_eq!(h.cache.stats().entries, 0);
}

// === admin API and CLI ===

#[tokio::test]
async fn admin_api_and_cli_purge_and_stats() {
    use tower::ServiceExt;
    let h = Harness::new();
    let o = socket(&h, |_, _| {
        Reply::ok("x")
            .cc("max-age=60")
            .header("surrogate-key", "k1 k2")
    })
    .await;
    h.get("/x", o.clone()).await;
    let app = gateway_cache::admin::router(h.cache.clone());
    let post = |json: &str| {
        http::Request::post("/v1/cache/purge")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(json.to_string()))
            .unwrap()
    };
    let res = app
        .clone()
        .oneshot(post(r#"{"url": "x", "tag": "y"}"#))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["code"], "cache_purge_invalid");
    let res = app
        .clone()
        .oneshot(post(r#"{"tag": "k2", "soft": true}"#))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let v: serde_json::Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v, serde_json::json!({"purged": 1, "soft": true}));

    // The CLI talks to the same router over a real socket.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = format!("http://{addr}");
    let mut out = Vec::new();
    let purge = gateway_cache::cli::CacheCommand::Purge(gateway_cache::cli::PurgeArgs {
        url: Some("https://api.example.com/x".into()),
        prefix: None,
        tag: None,
        soft: false,
    });
    gateway_cache::cli::run_to(purge, &url, Some("token"), &mut out)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out), "purged 1 entry\n");
    let mut out = Vec::new();
    gateway_cache::cli::run_to(
        gateway_cache::cli::CacheCommand::Stats { json: false },
        &url,
        None,
        &mut out,
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("entries 0"), "{text}");
    assert!(text.contains("api"), "{text}");
    let bad = gateway_cache::cli::CacheCommand::Purge(gateway_cache::cli::PurgeArgs {
        url: Some("not-a-url".into()),
        prefix: None,
        tag: None,
        soft: false,
    });
    let err = gateway_cache::cli::run_to(bad, &url, None, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
}

#[tokio::test]
async fn stats_count_per_route() {
    let h = Harness::new();
    let o = socket(&h, |_, _| Reply::ok("x").cc("max-age=60")).await;
    h.get("/s", o.clone()).await;
    h.get("/s", o.clone()).await;
    h.get("/s", o.clone()).await;
    let s = h.cache.stats();
    assert_eq!(s.count(CacheStatus::Hit), 2);
    assert_eq!(s.count(CacheStatus::Miss), 1);
    assert_eq!(s.routes["api"].stored, 1);
    assert_eq!(s.routes["api"].served_bytes, 2);
    assert_eq!(s.entries, 1);
    assert!(s.bytes > 0);
    let _ = (HttpCache::new(
        CacheConfig::default(),
        Arc::new(ManualClock::new(start_time())),
    ),);
}

#[test]
fn handle_future_is_send_so_it_can_run_in_a_hyper_service() {
    fn assert_send<T: Send>(_: &T) {}
    let h = Harness::new();
    let origin = gateway_cache::origin_fn(|_req| async { Err(origin_down()) }.boxed());
    let fut = h
        .cache
        .handle(get("/").body(body::empty()).unwrap(), &h.route, origin);
    assert_send(&fut);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_an_expired_entry_make_one_validation() {
    let h = Harness::new();
    let o = socket(&h, |_, n| {
        if n == 0 {
            Reply::ok("v0").cc("max-age=10").header("etag", "\"a\"")
        } else {
            Reply::ok("")
                .status(304)
                .cc("max-age=10")
                .delay(Duration::from_millis(300))
        }
    })
    .await;
    h.get("/x", o.clone()).await;
    h.advance(20);
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let cache = h.cache.clone();
        let route = h.route.clone();
        let origin: Arc<dyn Origin> = o.clone();
        tasks.push(tokio::spawn(async move {
            let res = cache
                .handle(get("/x").body(body::empty()).unwrap(), &route, origin)
                .await;
            res.into_body().collect().await.unwrap().to_bytes()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), "v0");
    }
    assert_eq!(o.calls(), 2);
    assert_eq!(h.cache.stats().count(CacheStatus::Revalidated), 1);
}

#[test]
fn documented_sample_config_parses_and_validates() {
    #[derive(serde::Deserialize)]
    struct Routes {
        cache: RouteCacheConfig,
    }
    #[derive(serde::Deserialize)]
    struct Doc {
        cache: CacheConfig,
        routes: Routes,
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cache.md");
    let md = std::fs::read_to_string(path).unwrap();
    let start = md.find("```toml\n").expect("a toml block in docs/cache.md") + 8;
    let len = md[start..].find("```").unwrap();
    let doc: Doc = toml::from_str(&md[start..start + len]).unwrap();
    doc.cache.validate().unwrap();
    doc.routes.cache.validate().unwrap();
    assert_eq!(doc.cache.max_bytes, 256 << 20);
    assert_eq!(doc.routes.cache.ttl_override, Some(Duration::from_secs(30)));
}

#[tokio::test]
async fn an_entry_replaced_by_an_uncacheable_response_is_dropped() {
    let h = Harness::new();
    let o = socket(&h, |_, n| match n {
        0 => Reply::ok("v0").cc("max-age=10"),
        _ => Reply::ok(&format!("v{n}")).cc("no-store"),
    })
    .await;
    h.get("/u", o.clone()).await;
    h.advance(20);
    let r = h.get("/u", o.clone()).await;
    assert_eq!(r.text(), "v1");
    assert!(
        r.cache_status().ends_with("detail=no_store"),
        "{}",
        r.cache_status()
    );
    assert_eq!(h.cache.stats().entries, 0);
    // Even a client accepting any staleness no longer gets the old body.
    let r = h
        .send(
            get("/u")
                .header("cache-control", "max-stale")
                .body(body::empty())
                .unwrap(),
            o.clone(),
        )
        .await;
    assert_eq!(r.text(), "v2");
}

#[tokio::test]
async fn validated_entry_without_date_in_304_is_fresh_again() {
    let h = Harness::new();
    let o = FnOrigin::new(|n| {
        async move {
            let mut res = if n == 0 {
                Response::new(body::full("kept"))
            } else {
                let mut r = Response::new(body::empty());
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                r
            };
            res.headers_mut()
                .insert("cache-control", "max-age=10".parse().unwrap());
            res.headers_mut().insert("etag", "\"e\"".parse().unwrap());
            Ok(res)
        }
        .boxed()
    });
    h.get("/nd", o.clone()).await;
    h.advance(100);
    let r = h.get("/nd", o.clone()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.cache_status().contains("fwd-status=304"));
    h.advance(5);
    let r = h.get("/nd", o.clone()).await;
    assert_eq!(r.cache_status(), "gatehouse; hit; ttl=5");
    assert_eq!(r.age(), Some(5));
    assert_eq!(o.calls(), 2);
}

mod metrics_recorder {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use metrics::{
        Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };
    use parking_lot::Mutex;

    pub type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

    pub struct Rec(pub Counts);

    struct C(String, Counts);

    impl CounterFn for C {
        fn increment(&self, v: u64) {
            *self.1.lock().entry(self.0.clone()).or_default() += v;
        }
        fn absolute(&self, v: u64) {
            self.1.lock().insert(self.0.clone(), v);
        }
    }

    impl Recorder for Rec {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            Counter::from_arc(Arc::new(C(name, self.0.clone())))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }
}

#[test]
fn metrics_are_labelled_by_route_and_status() {
    let counts: metrics_recorder::Counts = Default::default();
    let rec = metrics_recorder::Rec(counts.clone());
    metrics::with_local_recorder(&rec, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let h = Harness::new();
            let o = FnOrigin::new(|n| {
                async move {
                    let mut res = Response::new(body::full("abcd"));
                    let cc = if n == 0 {
                        "max-age=10, stale-while-revalidate=100"
                    } else {
                        "max-age=10"
                    };
                    res.headers_mut()
                        .insert("cache-control", cc.parse().unwrap());
                    Ok(res)
                }
                .boxed()
            });
            h.get("/m", o.clone()).await; // miss, stored
            h.get("/m", o.clone()).await; // hit
            h.advance(20);
            h.get("/m", o.clone()).await; // stale + background refresh
            h.cache.background_idle().await;
        });
    });
    let c = counts.lock();
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    assert_eq!(
        get("gatehouse_cache_requests_total{route=api,status=miss}"),
        1,
        "{c:#?}"
    );
    assert_eq!(
        get("gatehouse_cache_requests_total{route=api,status=hit}"),
        1
    );
    assert_eq!(
        get("gatehouse_cache_requests_total{route=api,status=stale}"),
        1
    );
    assert_eq!(
        get("gatehouse_cache_revalidations_total{result=modified,route=api}"),
        1
    );
    assert_eq!(get("gatehouse_cache_stored_total{route=api}"), 2);
    assert_eq!(get("gatehouse_cache_hit_bytes_total{route=api}"), 8);
}
