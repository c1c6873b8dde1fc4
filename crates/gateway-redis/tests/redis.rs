//! Integration tests against a real Redis (`GATEHOUSE_TEST_REDIS_URL`).
//!
//! Every test uses its own random key prefix, so tests running in parallel
//! (and other engineers' runs on the same Redis) never collide. Outages are
//! simulated with a [`TcpProxy`] in front of Redis: the shared server itself
//! is never stopped. Waits are poll loops with generous deadlines, never
//! fixed sleeps that assume a fast machine.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use gateway_cache::cache::{Purge, PurgeTarget};
use gateway_keys::feed::{ChangeFeed, KeyEvent};
use gateway_keys::key::KeyId;
use gateway_keys::ratelimit::{gcra, Rate, RateLimiter};
use gateway_redis::{
    BusMessage, RedisBus, RedisConfig, RedisError, RedisKeyFeed, RedisRateLimiter, RedisState,
};
use test_support::TcpProxy;

// === helpers ===

fn redis_url() -> Option<String> {
    match std::env::var("GATEHOUSE_TEST_REDIS_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            eprintln!("skipping: GATEHOUSE_TEST_REDIS_URL not set");
            None
        }
    }
}

macro_rules! require_redis {
    () => {
        match redis_url() {
            Some(u) => u,
            None => return,
        }
    };
}

fn unique_prefix() -> String {
    format!("gatehouse-test:{}:", uuid::Uuid::new_v4().simple())
}

/// Test settings: fast heartbeats; a generous op timeout so a loaded CI
/// machine does not turn shared decisions into fallbacks by accident.
fn config(url: &str, prefix: &str) -> RedisConfig {
    RedisConfig {
        url: url.to_string(),
        prefix: prefix.to_string(),
        op_timeout: Duration::from_millis(500),
        heartbeat: Duration::from_millis(200),
        ..RedisConfig::default()
    }
}

async fn node(url: &str, prefix: &str) -> RedisState {
    let s = RedisState::connect(config(url, prefix)).await.unwrap();
    assert!(s.is_up(), "Redis at {url} should be reachable");
    s
}

/// The Redis server's socket address, for a proxy in front of it.
async fn redis_addr(url: &str) -> SocketAddr {
    let client = redis::Client::open(url).unwrap();
    let (host, port) = match &client.get_connection_info().addr {
        redis::ConnectionAddr::Tcp(h, p) => (h.clone(), *p),
        other => panic!("tests need a TCP Redis URL, got {other:?}"),
    };
    let mut addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap();
    addrs.next().unwrap()
}

/// A state reaching Redis through `proxy`.
fn proxied_config(proxy: &TcpProxy, prefix: &str) -> RedisConfig {
    config(&format!("redis://{}", proxy.addr()), prefix)
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Polls `cond` every 20 ms until it holds or `within` passes.
async fn eventually<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_subscribers(url: &str, channel: &str, n: i64) {
    let mut c = raw(url).await;
    eventually(
        &format!("{n} subscriber(s) on {channel}"),
        Duration::from_secs(10),
        || {
            let mut c = c.clone();
            async move {
                let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(channel)
                    .query_async(&mut c)
                    .await
                    .unwrap_or_default();
                counts.first().map(|(_, k)| *k) == Some(n)
            }
        },
    )
    .await;
    let _: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
}

async fn next_within<T>(
    s: &mut futures::stream::BoxStream<'static, T>,
    within: Duration,
    what: &str,
) -> T {
    tokio::time::timeout(within, s.next())
        .await
        .unwrap_or_else(|_| panic!("nothing within {within:?}: {what}"))
        .unwrap_or_else(|| panic!("stream ended: {what}"))
}

fn purge(url: &str) -> Purge {
    Purge {
        target: PurgeTarget::Url(url.into()),
        soft: false,
    }
}

// === rate limiter ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_bucket() {
    let url = require_redis!();
    let prefix = unique_prefix();
    let (a, b) = (node(&url, &prefix).await, node(&url, &prefix).await);
    let (la, lb) = (RedisRateLimiter::new(a), RedisRateLimiter::new(b));
    let rate = Rate {
        per_second: 1.0,
        burst: 10,
    };
    let now = Utc::now();
    let attempts = (0..20).map(|i| {
        let l = if i % 2 == 0 { &la } else { &lb };
        l.check("consumer:burst", rate, now)
    });
    let decisions = futures::future::join_all(attempts).await;
    let allowed = decisions.iter().filter(|d| d.allowed).count();
    assert_eq!(allowed, 10, "exactly the burst between both nodes");
    assert!(!la.is_fallback() && !lb.is_fallback());
    assert_eq!(la.fallback_decisions() + lb.fallback_decisions(), 0);

    // The refusal's numbers come from the same GCRA: the next slot opens
    // one emission interval (1 s) after the first admission, and the bucket
    // is full again ~10 s later.
    let (refused, server_now) = lb.check_shared("consumer:burst", rate).await.unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.remaining, 0);
    assert!(
        refused.retry_after_us > 0 && refused.retry_after_us <= 1_000_000,
        "{refused:?}"
    );
    assert!(refused.reset_us > 8_000_000 && refused.reset_us <= 10_000_000);
    assert_eq!(
        refused.reset_us - refused.retry_after_us,
        9_000_000,
        "reset - retry_after = tau - T"
    );
    assert!(server_now > 1_600_000_000_000_000, "server time in µs");
    // Peek agrees and does not count.
    let peeked = la.peek("consumer:burst", rate, now).await;
    assert!(!peeked.allowed);

    // The bucket key expires at its reset time.
    let mut c = raw(&url).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}rl:consumer:burst"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(pttl > 8_000 && pttl <= 10_000, "pttl {pttl}");
    assert_eq!(la.bucket_key("x"), format!("{prefix}rl:x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_match_gcra_for_a_sequence() {
    let url = require_redis!();
    let prefix = unique_prefix();
    let (a, b) = (node(&url, &prefix).await, node(&url, &prefix).await);
    let limiters = [RedisRateLimiter::new(a), RedisRateLimiter::new(b)];
    let rate = Rate {
        per_second: 5.0,
        burst: 3,
    };
    // (node, count?, pause before) — bursts, refusals, refills, peeks.
    let steps: &[(usize, bool, u64)] = &[
        (0, true, 0),
        (1, true, 0),
        (0, false, 0),
        (1, true, 0),
        (0, true, 0),
        (1, true, 0),
        (0, true, 120),
        (1, true, 130),
        (0, false, 0),
        (1, true, 0),
        (0, true, 450),
        (1, true, 0),
        (0, true, 0),
        (1, true, 0),
    ];
    let mut tat: Option<i64> = None;
    let (mut allowed, mut refused) = (0, 0);
    for (i, &(n, count, pause)) in steps.iter().enumerate() {
        if pause > 0 {
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        let l = &limiters[n];
        if count {
            let (got, now) = l.check_shared("seq", rate).await.unwrap();
            let (want, new_tat) = gcra(tat, now, rate);
            assert_eq!(got, want, "step {i}");
            tat = Some(new_tat);
            if got.allowed {
                allowed += 1;
            } else {
                refused += 1;
            }
        } else {
            let (got, now) = l.peek_shared("seq", rate).await.unwrap();
            assert_eq!(got, gcra(tat, now, rate).0, "peek at step {i}");
        }
    }
    assert!(
        allowed >= 3 && refused >= 1,
        "{allowed} allowed, {refused} refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_load_on_two_nodes_admits_the_configured_rate() {
    let url = require_redis!();
    let prefix = unique_prefix();
    let (a, b) = (node(&url, &prefix).await, node(&url, &prefix).await);
    let limiters = [
        std::sync::Arc::new(RedisRateLimiter::new(a)),
        std::sync::Arc::new(RedisRateLimiter::new(b)),
    ];
    let rate = Rate {
        per_second: 200.0,
        burst: 20,
    };
    let run_for = Duration::from_millis(1500);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let l = limiters[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let (mut allowed, mut first, mut last) = (0u64, i64::MAX, i64::MIN);
            while start.elapsed() < run_for {
                let (d, now) = l.check_shared("load", rate).await.unwrap();
                allowed += u64::from(d.allowed);
                first = first.min(now);
                last = last.max(now);
                // ~8 × 500 requests/s offered against 200/s admitted.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (allowed, first, last)
        }));
    }
    let (mut allowed, mut first, mut last) = (0u64, i64::MAX, i64::MIN);
    for t in tasks {
        let (a, f, l) = t.await.unwrap();
        allowed += a;
        first = first.min(f);
        last = last.max(l);
    }
    // Elapsed on the server's clock, which is the one the script uses.
    let elapsed = (last - first) as f64 / 1e6;
    let expected = f64::from(rate.burst) + rate.per_second * elapsed;
    let error = (allowed as f64 - expected).abs() / expected;
    assert!(
        elapsed > 1.0,
        "the load ran {elapsed:.3}s of server time (machine too slow?)"
    );
    assert!(
        error <= 0.05,
        "admitted {allowed}, expected {expected:.1} over {elapsed:.3}s ({:.1}% off)",
        error * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_redis_falls_back_to_the_local_share_then_recovers() {
    let url = require_redis!();
    let prefix = unique_prefix();
    let proxy = TcpProxy::start(redis_addr(&url).await).await;
    let a = node(&url, &prefix).await;
    let b = RedisState::connect(proxied_config(&proxy, &prefix))
        .await
        .unwrap();
    eventually("both nodes see 2 nodes", Duration::from_secs(5), || {
        let (a, b) = (a.clone(), b.clone());
        async move { a.node_count() == 2 && b.node_count() == 2 }
    })
    .await;
    let la = RedisRateLimiter::new(a.clone());
    let lb = RedisRateLimiter::new(b.clone());
    let rate = Rate {
        per_second: 10.0,
        burst: 10,
    };
    assert!(lb.check("warmup", rate, Utc::now()).await.allowed);
    assert!(!lb.is_fallback());

    proxy.cut();
    eventually("node B notices the outage", Duration::from_secs(5), || {
        let b = b.clone();
        async move { !b.is_up() }
    })
    .await;

    // Two known nodes: B alone enforces half the rate (5/s, burst 5). A
    // fixed `now` means no refill between calls, so the count is exact.
    let now = Utc::now();
    let mut decisions = Vec::new();
    for _ in 0..8 {
        let started = Instant::now();
        let d = lb.check("fallback", rate, now).await;
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "a fallback decision took {:?}",
            started.elapsed()
        );
        decisions.push(d);
    }
    assert_eq!(decisions.iter().filter(|d| d.allowed).count(), 5);
    let refusal = decisions.last().unwrap();
    assert!(!refusal.allowed);
    assert_eq!(refusal.retry_after_us, 200_000, "T of 5/s");
    assert!(lb.is_fallback(), "the fallback flag is set");
    assert!(lb.fallback_decisions() >= 8);
    assert_eq!(b.node_count(), 2, "the last known count is kept while down");
    // The peer on a healthy path is unaffected.
    assert!(la.check("other", rate, Utc::now()).await.allowed);
    assert!(!la.is_fallback());

    proxy.restore();
    eventually("B is shared again", Duration::from_secs(5), || {
        let lb = &lb;
        async move {
            lb.check("probe", rate, Utc::now()).await;
            !lb.is_fallback()
        }
    })
    .await;
    eventually("B's heartbeat sees Redis", Duration::from_secs(5), || {
        let b = b.clone();
        async move { b.is_up() }
    })
    .await;
    // Shared again: A drains a bucket, B is refused from it.
    let small = Rate {
        per_second: 1.0,
        burst: 2,
    };
    assert!(la.check("after", small, Utc::now()).await.allowed);
    assert!(la.check("after", small, Utc::now()).await.allowed);
    assert!(!lb.check("after", small, Utc::now()).await.allowed);
    assert!(!lb.is_fallback());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_during_an_outage_and_joins_later() {
    let url = require_redis!();
    let prefix = unique_prefix();
    let proxy = TcpProxy::start(redis_addr(&url).await).await;
    proxy.cut();
    let started = Instant::now();
    let b = RedisState::connect(proxied_config(&proxy, &prefix))
        .await
        .expect("connect does not fail when Redis is down");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!b.is_up());
    assert_eq!(b.node_count(), 1);
    assert!(b.ping().await.is_err());
    let lb = RedisRateLimiter::new(b.clone());
    let rate = Rate {
        per_second: 1.0,
        burst: 1,
    };
    assert!(lb.check("k", rate, Utc::now()).await.allowed);
    assert!(lb.is_fallback());

    proxy.restore();
    eventually("B comes up", Duration::from_secs(5), || {
        let b = b.clone();
        async move { b.is_up() }
    })
    .await;
    assert!(b.ping().await.is_ok());
    eventually(
        "B's limiter is shared again",
        Duration::from_secs(5),
        || {
            let lb = &lb;
            async move {
                lb.check("k2", rate, Utc::now()).await;
                !lb.is_fallback()
            }
        },
    )
    .await;
}

// === heartbeat ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_counts_live_nodes() {
    let url = require_redis!();
    let prefix = unique_prefix();
    let s1 = node(&url, &prefix).await;
    let s2 = node(&url, &prefix).await;
    let s3 = node(&url, &prefix).await;
    eventually("every node counts 3", Duration::from_secs(5), || {
        let all = [s1.clone(), s2.clone(), s3.clone()];
        async move { all.iter().all(|s| s.node_count() == 3) }
    })
    .await;
    assert!(s1.ping().await.unwrap() < Duration::from_millis(500));

    // A clean shutdown deregisters at once.
    s3.shutdown();
    assert!(s3.is_shut_down() && !s3.is_up());
    eventually("a shut-down node drops out", Duration::from_secs(5), || {
        let (s1, s2) = (s1.clone(), s2.clone());
        async move { s1.node_count() == 2 && s2.node_count() == 2 }
    })
    .await;

    // A node that just stops beating (dropped, as in a crash) expires
    // after 3 missed heartbeats.
    drop(s2);
    eventually(
        "a silent node expires from the set",
        Duration::from_secs(5),
        || {
            let s1 = s1.clone();
            async move { s1.node_count() == 1 }
        },
    )
    .await;
    let mut c = raw(&url).await;
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{prefix}nodes"))
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(members, [s1.node_id().to_string()]);
}

// === bus ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_delivers_events_between_nodes() {
    let url = require_redis!();
    let prefix = unique_prefix();
    let (a, b) = (node(&url, &prefix).await, node(&url, &prefix).await);
    let bus_a = RedisBus::<Purge>::new(a.clone(), "purges");
    let bus_b = RedisBus::<Purge>::new(b.clone(), "purges");
    assert_eq!(bus_a.channel(), format!("{prefix}purges"));
    let mut sub = bus_b.subscribe();
    wait_subscribers(&url, bus_b.channel(), 1).await;

    let p = purge("https://example.test/a");
    let sent = Instant::now();
    bus_a.publish(&p).await.unwrap();
    let got = next_within(&mut sub, Duration::from_secs(1), "A's purge at B").await;
    assert!(sent.elapsed() < Duration::from_secs(1));
    assert_eq!(
        got,
        BusMessage::Event {
            origin: a.node_id().to_string(),
            event: p
        }
    );

    // The key feed rides the same bus.
    let (fa, fb) = (RedisKeyFeed::new(a.clone()), RedisKeyFeed::new(b.clone()));
    let mut events = fb.subscribe();
    wait_subscribers(&url, &format!("{prefix}keys"), 1).await;
    let id = KeyId::generate();
    fa.publish(KeyEvent::KeyRevoked { id: id.clone() })
        .await
        .unwrap();
    assert_eq!(
        next_within(&mut events, Duration::from_secs(1), "revocation at B").await,
        KeyEvent::KeyRevoked { id }
    );

    // Subscriptions end when the state shuts down.
    b.shutdown();
    let end = tokio::time::timeout(Duration::from_secs(5), sub.next()).await;
    assert_eq!(end.expect("the stream ends promptly"), None);
    let end = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
    assert_eq!(end.expect("the feed ends promptly"), None);
    assert!(matches!(
        bus_b.publish(&purge("x")).await,
        Err(RedisError::ShutDown)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_is_retried_until_redis_answers() {
    let url = require_redis!();
    let prefix = unique_prefix();
    let proxy = TcpProxy::start(redis_addr(&url).await).await;
    let a = RedisState::connect(proxied_config(&proxy, &prefix))
        .await
        .unwrap();
    let b = node(&url, &prefix).await;
    let bus_a = RedisBus::<Purge>::new(a.clone(), "purges");
    let bus_b = RedisBus::<Purge>::new(b.clone(), "purges");
    let mut sub = bus_b.subscribe();
    wait_subscribers(&url, bus_b.channel(), 1).await;

    // Only the publisher loses Redis: B's subscription holds, so B gets no
    // resync, and an event published once would be lost to it.
    proxy.cut();
    let p = purge("https://example.test/retried");
    assert!(bus_a.publish(&p).await.is_err());
    let retry = tokio::spawn({
        let (bus_a, p) = (bus_a.clone(), p.clone());
        async move { bus_a.publish_retrying(&p, Duration::from_secs(20)).await }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!retry.is_finished(), "still trying while Redis is away");
    proxy.restore();
    retry.await.unwrap().expect("published once Redis answers");
    assert_eq!(
        next_within(&mut sub, Duration::from_secs(5), "the retried purge at B").await,
        BusMessage::Event {
            origin: a.node_id().to_string(),
            event: p.clone()
        }
    );

    // A publish that cannot succeed gives up after its window, with the error.
    proxy.cut();
    let started = Instant::now();
    assert!(bus_a
        .publish_retrying(&p, Duration::from_millis(300))
        .await
        .is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_resyncs_after_losing_its_subscription() {
    let url = require_redis!();
    let prefix = unique_prefix();
    let proxy = TcpProxy::start(redis_addr(&url).await).await;
    let a = node(&url, &prefix).await;
    let b = RedisState::connect(proxied_config(&proxy, &prefix))
        .await
        .unwrap();
    let bus_a = RedisBus::<Purge>::new(a.clone(), "purges");
    let bus_b = RedisBus::<Purge>::new(b.clone(), "purges");
    let mut sub = bus_b.subscribe();
    let mut keys = RedisKeyFeed::new(b.clone()).subscribe();
    wait_subscribers(&url, bus_b.channel(), 1).await;
    wait_subscribers(&url, &format!("{prefix}keys"), 1).await;

    proxy.cut();
    wait_subscribers(&url, bus_b.channel(), 0).await;
    // Published during the outage: lost for B (at most once).
    bus_a
        .publish(&purge("https://example.test/lost"))
        .await
        .unwrap();
    proxy.restore();

    assert_eq!(
        next_within(&mut sub, Duration::from_secs(10), "resync after restore").await,
        BusMessage::Resync
    );
    assert_eq!(
        next_within(&mut keys, Duration::from_secs(10), "key feed reload").await,
        KeyEvent::ReloadAll
    );
    // Resync is yielded after the re-subscription: new events flow.
    let p = purge("https://example.test/after");
    bus_a.publish(&p).await.unwrap();
    assert_eq!(
        next_within(&mut sub, Duration::from_secs(2), "event after resync").await,
        BusMessage::Event {
            origin: a.node_id().to_string(),
            event: p
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bus_messages_are_skipped() {
    let url = require_redis!();
    let prefix = unique_prefix();
    let a = node(&url, &prefix).await;
    let bus = RedisBus::<Purge>::new(a.clone(), "purges");
    let mut sub = bus.subscribe();
    wait_subscribers(&url, bus.channel(), 1).await;
    let mut c = raw(&url).await;
    for junk in [
        "not json",
        r#"{"origin":"x"}"#,
        r#"{"origin":"x","event":{"target":{"nope":1}}}"#,
        "",
    ] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(bus.channel())
            .arg(junk)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let p = purge("https://example.test/ok");
    bus.publish(&p).await.unwrap();
    assert_eq!(
        next_within(&mut sub, Duration::from_secs(2), "the valid event").await,
        BusMessage::Event {
            origin: a.node_id().to_string(),
            event: p
        }
    );
}

// === configuration ===

#[tokio::test]
async fn invalid_urls_are_clear_errors() {
    for (url, needle) in [
        ("not a url", "invalid Redis URL `not a url`"),
        ("http://127.0.0.1:6379", "invalid Redis URL"),
        (
            "redis://user:hunter2@127.0.0.1:notaport",
            "invalid Redis URL",
        ),
    ] {
        let err = RedisState::connect(RedisConfig::new(url))
            .await
            .expect_err(url);
        let msg = err.to_string();
        assert!(matches!(err, RedisError::InvalidUrl { .. }), "{msg}");
        assert!(msg.contains(needle), "{msg}");
        assert!(!msg.contains("hunter2"), "password leaked: {msg}");
    }
    let err = RedisState::connect(RedisConfig::new("")).await.unwrap_err();
    assert!(err.to_string().contains("redis.url"), "{err}");
}
