//! The cost of a first (uncached) 25-year daily series request, in process:
//! the router is called as a tower `Service` (no socket), with a fresh
//! `AppState` per request so the rendered-series cache is always empty.
//! Also times a repeated request (cache hit) and one conversion.
//!
//! `cargo bench -p fx-service --bench series_first`
//!
//! Environment: `FX_SERIES_RUNS` (default 15), `FX_SERIES_BASES`
//! (default `USD,GBP,JPY,EUR`). Prints the median and spread per base.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use fx_service::{AppState, FxService, FxServiceConfig, HealthRegistry};
use gateway_core::SystemClock;
use http_body_util::BodyExt;
use tower::ServiceExt;

fn main() {
    // `cargo test --benches` / clippy build this too; only run when asked.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let runs: usize = std::env::var("FX_SERIES_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let bases = std::env::var("FX_SERIES_BASES").unwrap_or_else(|_| "USD,GBP,JPY,EUR".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut cfg =
            FxServiceConfig::from_toml("database_url = \"sqlite::memory:\"\n").expect("config");
        cfg.staleness.convert.hard = None;
        let engine = FxService::open_engine(&cfg, Arc::new(SystemClock))
            .await
            .expect("engine");
        let health = Arc::new(HealthRegistry::default());
        let get = |state: AppState, uri: String| async move {
            let res = fx_service::router(state)
                .oneshot(http::Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.into_body().collect().await.unwrap().to_bytes()
        };
        let summary = |mut v: Vec<Duration>| {
            v.sort();
            format!(
                "median {:.2} ms (min {:.2}, max {:.2})",
                v[v.len() / 2].as_secs_f64() * 1e3,
                v[0].as_secs_f64() * 1e3,
                v[v.len() - 1].as_secs_f64() * 1e3
            )
        };
        for base in bases.split(',') {
            let uri = format!("/v1/rates?start=2001-01-01&end=2025-12-31&base={base}");
            let mut first = Vec::new();
            let mut bytes = 0;
            for _ in 0..runs {
                let state = AppState::new(engine.clone(), cfg.clone(), health.clone());
                let t = Instant::now();
                bytes = get(state, uri.clone()).await.len();
                first.push(t.elapsed());
            }
            let state = AppState::new(engine.clone(), cfg.clone(), health.clone());
            get(state.clone(), uri.clone()).await;
            let mut repeated = Vec::new();
            for _ in 0..runs {
                let t = Instant::now();
                get(state.clone(), uri.clone()).await;
                repeated.push(t.elapsed());
            }
            println!(
                "series base {base} ({:.1} MB): first {}; repeated {}",
                bytes as f64 / 1e6,
                summary(first),
                summary(repeated)
            );
        }
        let state = AppState::new(engine.clone(), cfg.clone(), health.clone());
        let mut conv = Vec::new();
        for i in 0..2000 {
            let uri = format!(
                "/v1/convert?from=USD&to=JPY&amount={}&date=2020-03-02",
                100 + i % 997
            );
            let t = Instant::now();
            get(state.clone(), uri).await;
            conv.push(t.elapsed());
        }
        println!("convert USD→JPY in process: {}", summary(conv));
    });
}
