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
