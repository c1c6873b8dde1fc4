//! Cost of what runs per request (`plan`), per sample (comparison) and per
//! report (scoring).
//!
//! `cargo bench -p gateway-mirror --bench hot_path`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use gateway_mirror::stats::{CandidateResult, LaunchStats, Sample};
use gateway_mirror::{
    Comparator, CompareConfig, DefaultComparator, EngineOptions, HttpShadowClient, LaunchConfig,
    MirrorEngine, Observation, Scorer, Thresholds,
};
use http::{HeaderMap, StatusCode};

fn plan(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cfg = LaunchConfig::new("bench", &["api"], "candidate");
    cfg.sample_percent = 1.0;
    cfg.max_rps = u32::MAX;
    let engine = rt
        .block_on(MirrorEngine::start(
            vec![cfg],
            Arc::new(HttpShadowClient::new()),
            None,
            EngineOptions::default(),
        ))
        .unwrap();
    let (parts, ()) = http::Request::get("/v1/orders/12345?expand=items")
        .header("authorization", "Bearer x")
        .header("accept", "application/json")
        .body(())
        .unwrap()
        .into_parts();
    let mut i = 0u64;
    c.bench_function("plan/1% sampled", |b| {
        b.iter(|| {
            i += 1;
            black_box(engine.plan("api", &parts, &format!("req-{i}"), None))
        })
    });
    c.bench_function("plan/other route", |b| {
        b.iter(|| black_box(engine.plan("other", &parts, "req", None)))
    });
}

fn body(n: usize, drift: bool) -> Bytes {
    let items: Vec<_> = (0..n)
        .map(|i| {
            serde_json::json!({
                "id": i, "sku": format!("SKU-{i:05}"), "qty": i % 7,
                "price": if drift && i == n / 2 { 10.5 } else { 10.0 },
                "tags": ["a", "b"],
            })
        })
        .collect();
    Bytes::from(serde_json::to_vec(&serde_json::json!({"items": items, "total": n * 10})).unwrap())
}

fn compare(c: &mut Criterion) {
    let cmp = DefaultComparator::new(&CompareConfig::default());
    let obs = |b: Bytes| Observation::response(StatusCode::OK, HeaderMap::new(), b, Duration::ZERO);
    let a = obs(body(50, false));
    let b = obs(body(50, true));
    c.bench_function("compare/json 50 items (~4 KiB), one diff", |bch| {
        bch.iter(|| black_box(cmp.compare(&a, &b)))
    });
}

fn score(c: &mut Criterion) {
    let mut s = LaunchStats::default();
    for i in 0..5000 {
        s.record(&Sample {
            endpoint: "api GET /v1/orders/{id}",
            primary_error: false,
            primary_ms: (i % 97) as f64,
            candidate_ms: (i % 89) as f64,
            timed: true,
            candidate: CandidateResult::Compared {
                diffs: &[],
                server_error: false,
            },
            noise: None,
        });
    }
    let scorer = Scorer::new(Thresholds::default());
    c.bench_function("assess/1 endpoint, 1000+1000 latency samples", |b| {
        b.iter(|| black_box(scorer.assess(&s)))
    });
}

criterion_group!(benches, plan, compare, score);
criterion_main!(benches);
