//! Fleet-wide quotas against a real Redis: two nodes share each window,
//! a request counts in every window or none, and counters start from the
//! node's seed.

use gateway_keys::ratelimit::{QuotaCount, QuotaWindow, SharedQuotaOutcome, SharedQuotas};
use gateway_redis::{RedisConfig, RedisQuotas, RedisState};

async fn node(prefix: &str) -> Option<RedisState> {
    let Ok(url) = std::env::var("GATEHOUSE_TEST_REDIS_URL") else {
        eprintln!("skipping: GATEHOUSE_TEST_REDIS_URL not set");
        return None;
    };
    let cfg = RedisConfig {
        prefix: prefix.to_string(),
        op_timeout: std::time::Duration::from_secs(1),
        ..RedisConfig::new(url)
    };
    Some(RedisState::connect(cfg).await.unwrap())
}

fn windows(day_limit: u64, day_seed: i64, total_limit: u64) -> Vec<QuotaCount> {
    vec![
        QuotaCount {
            window: QuotaWindow::Day,
            limit: day_limit,
            period: "d:2026-11-23".into(),
            ttl_secs: Some(3600),
            seed: day_seed,
        },
        QuotaCount {
            window: QuotaWindow::Total,
            limit: total_limit,
            period: "total".into(),
            ttl_secs: None,
            seed: 0,
        },
    ]
}

#[tokio::test]
async fn two_nodes_share_every_window_and_count_all_or_nothing() {
    let prefix = format!("gh-quota-{}:", gateway_redis::random_node_id());
    let (Some(a), Some(b)) = (node(&prefix).await, node(&prefix).await) else {
        return;
    };
    let (qa, qb) = (RedisQuotas::new(a.clone()), RedisQuotas::new(b.clone()));
    // The day starts from what node A knew (2 used); the total from 0.
    assert_eq!(
        qa.consume_shared("consumer:x", &windows(5, 2, 4))
            .await
            .unwrap(),
        SharedQuotaOutcome::Counted(vec![3, 1])
    );
    // Node B's seed is ignored: the counter exists.
    assert_eq!(
        qb.consume_shared("consumer:x", &windows(5, 0, 4))
            .await
            .unwrap(),
        SharedQuotaOutcome::Counted(vec![4, 2])
    );
    assert_eq!(
        qb.consume("consumer:x", &windows(5, 0, 4)).await,
        Some(SharedQuotaOutcome::Counted(vec![5, 3]))
    );
    // The day is used up: refused, and the total is not counted.
    assert_eq!(
        qa.consume("consumer:x", &windows(5, 0, 4)).await,
        Some(SharedQuotaOutcome::Exhausted { index: 0, used: 5 })
    );
    // A larger day limit: now the total (4) is the one used up after one.
    assert_eq!(
        qa.consume("consumer:x", &windows(10, 0, 4)).await,
        Some(SharedQuotaOutcome::Counted(vec![6, 4]))
    );
    assert_eq!(
        qb.consume("consumer:x", &windows(10, 0, 4)).await,
        Some(SharedQuotaOutcome::Exhausted { index: 1, used: 4 })
    );
    // Another subject is independent.
    assert_eq!(
        qa.consume("consumer:y", &windows(10, 0, 4)).await,
        Some(SharedQuotaOutcome::Counted(vec![1, 1]))
    );
    a.shutdown();
    b.shutdown();
}

/// A plan with a rate and quotas is decided by one script: the same
/// outcome as the rate check and then the quota count, nothing counted in
/// the quotas when the rate refuses.
#[tokio::test]
async fn rate_and_quotas_decided_together_count_like_the_two_calls() {
    use gateway_keys::ratelimit::{Rate, RateLimiter};
    use gateway_redis::RedisRateLimiter;

    let prefix = format!("gh-joint-{}:", gateway_redis::random_node_id());
    let (Some(a), Some(b)) = (node(&prefix).await, node(&prefix).await) else {
        return;
    };
    let (la, lb) = (
        RedisRateLimiter::new(a.clone()),
        RedisRateLimiter::new(b.clone()),
    );
    let qa = RedisQuotas::new(a.clone());
    // Burst 3 at one a minute: the fourth event is refused by the rate.
    let rate = Rate {
        per_second: 1.0 / 60.0,
        burst: 3,
    };
    let w = windows(5, 0, 2);
    let first = la
        .check_with_quotas_shared("consumer:j", rate, "consumer:j", &w)
        .await
        .unwrap();
    assert!(first.rate.allowed);
    assert_eq!(first.rate.remaining, 2);
    assert_eq!(first.quotas, Some(SharedQuotaOutcome::Counted(vec![1, 1])));
    // Through the trait, from the other node: both limits are the fleet's.
    let second = lb
        .check_with_quotas("consumer:j", rate, "consumer:j", &w)
        .await
        .unwrap();
    assert_eq!(second.rate.remaining, 1);
    assert_eq!(second.quotas, Some(SharedQuotaOutcome::Counted(vec![2, 2])));
    // The rate admits the third; the total quota (2) is used up.
    let third = la
        .check_with_quotas("consumer:j", rate, "consumer:j", &w)
        .await
        .unwrap();
    assert!(third.rate.allowed);
    assert_eq!(
        third.quotas,
        Some(SharedQuotaOutcome::Exhausted { index: 1, used: 2 })
    );
    // The fourth is refused by the rate, and counts in no quota window: a
    // fresh quota subject still starts from its seed afterwards.
    let fourth = lb
        .check_with_quotas("consumer:j", rate, "consumer:fresh", &w)
        .await
        .unwrap();
    assert!(!fourth.rate.allowed);
    assert!(fourth.rate.retry_after_us > 0);
    assert_eq!(fourth.quotas, None);
    assert_eq!(
        qa.consume_shared("consumer:fresh", &w).await.unwrap(),
        SharedQuotaOutcome::Counted(vec![1, 1])
    );
    // Matches the rate limiter's own view of the bucket.
    assert!(!la.peek_shared("consumer:j", rate).await.unwrap().0.allowed);
    // Without Redis there is no joint decision: the caller decides apart
    // (and locally), as it does for a rate or a quota alone.
    a.shutdown();
    assert_eq!(
        la.check_with_quotas("consumer:j", rate, "consumer:j", &w)
            .await,
        None
    );
    b.shutdown();
}

/// The quota counters, counting the calls that reach them apart from the
/// rate limiter.
struct CountedQuotas {
    inner: RedisQuotas,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl SharedQuotas for CountedQuotas {
    async fn consume(&self, subject: &str, windows: &[QuotaCount]) -> Option<SharedQuotaOutcome> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.consume(subject, windows).await
    }
}

/// Through the key service's limits: a plan with a rate and a quota is
/// decided in one call to Redis (the quota counters are never called apart),
/// and each admitted request counts once in the shared quota.
#[tokio::test]
async fn limits_with_a_rate_and_a_quota_take_one_call_and_count_once() {
    use gateway_keys::config::PlanConfig;
    use gateway_keys::ratelimit::{LimitKind, LimitSubject, Limits, QuotaBook};
    use gateway_redis::RedisRateLimiter;
    use std::sync::Arc;

    let prefix = format!("gh-joint-{}:", gateway_redis::random_node_id());
    let (Some(a), Some(b)) = (node(&prefix).await, node(&prefix).await) else {
        return;
    };
    let quotas: Vec<Arc<CountedQuotas>> = [&a, &b]
        .iter()
        .map(|s| {
            Arc::new(CountedQuotas {
                inner: RedisQuotas::new((*s).clone()),
                calls: Default::default(),
            })
        })
        .collect();
    let node_limits = |s: &RedisState, q: &Arc<CountedQuotas>| {
        Limits::new(
            Arc::new(RedisRateLimiter::new(s.clone())),
            Arc::new(QuotaBook::new()),
            Arc::new(gateway_core::SystemClock),
        )
        .with_shared_quotas(q.clone())
    };
    let (na, nb) = (node_limits(&a, &quotas[0]), node_limits(&b, &quotas[1]));
    let plan = PlanConfig {
        rate_per_second: Some(1000.0),
        burst: Some(1000),
        quota_total: Some(3),
        ..PlanConfig::default()
    };
    let subject = LimitSubject {
        rate_key: "consumer:k".into(),
        quota_key: "consumer:k".into(),
    };
    for (i, n) in [&na, &nb, &na].into_iter().enumerate() {
        let info = n.check(&subject, &plan).await.unwrap();
        assert_eq!(info.remaining, 2 - i as u64, "request {}", i + 1);
    }
    let refused = nb.check(&subject, &plan).await.unwrap_err();
    assert_eq!(refused.kind, LimitKind::Quota);
    for q in &quotas {
        assert_eq!(q.calls.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
    // A plan with a quota and no rate still counts through them.
    let quota_only = PlanConfig {
        quota_total: Some(3),
        ..PlanConfig::default()
    };
    let other = LimitSubject {
        rate_key: "consumer:m".into(),
        quota_key: "consumer:m".into(),
    };
    assert_eq!(na.check(&other, &quota_only).await.unwrap().remaining, 2);
    assert_eq!(
        quotas[0].calls.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    a.shutdown();
    b.shutdown();
}
