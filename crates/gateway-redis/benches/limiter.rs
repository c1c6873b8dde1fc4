//! Latency of one rate-limit decision: the shared Redis limiter (one
//! EVALSHA round trip to a local Redis) against the in-memory GCRA.
//!
//! Redis is `GATEHOUSE_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`);
//! the Redis case is skipped with a message when it is unreachable.
//! Keys use a random prefix and expire by themselves.

use std::time::Duration;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion};
use gateway_keys::ratelimit::{GcraLimiter, Rate, RateLimiter};
use gateway_redis::{RedisConfig, RedisRateLimiter, RedisState};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Generous: the point is to measure, not to fall back.
    let rate = Rate {
        per_second: 1e9,
        burst: 1_000_000,
    };
    let mut group = c.benchmark_group("ratelimit_check");

    let memory = GcraLimiter::new();
    group.bench_function("in_memory", |b| {
        b.to_async(&rt)
            .iter(|| async { memory.check("consumer:bench", rate, Utc::now()).await })
    });

    let url = std::env::var("GATEHOUSE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let state = rt.block_on(RedisState::connect(RedisConfig {
        url,
        prefix: format!("gatehouse-bench:{}:", uuid::Uuid::new_v4().simple()),
        op_timeout: Duration::from_secs(1),
        ..RedisConfig::default()
    }));
    match state {
        Ok(state) if state.is_up() => {
            let redis = RedisRateLimiter::new(state.clone());
            group.bench_function("redis", |b| {
                b.to_async(&rt)
                    .iter(|| async { redis.check("consumer:bench", rate, Utc::now()).await })
            });
            assert_eq!(redis.fallback_decisions(), 0, "measured the fallback");
            state.shutdown();
        }
        _ => eprintln!("skipping the Redis case: Redis unreachable"),
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
