//! Load benchmark through the HTTP API: conversions per second and latency
//! percentiles with concurrent clients, plus the time to serve a 25-year
//! daily series for every currency. Prints figures; run with
//! `cargo bench -p fx-service --bench http_load`.
//!
//! Environment: `FX_BENCH_SECONDS` (default 5), `FX_BENCH_CLIENTS` (default 32).

use std::time::{Duration, Instant};

use fx_service::{FxService, FxServiceConfig};

fn main() {
    // `cargo test --benches` / clippy build this too; only run when asked.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let seconds: u64 = std::env::var("FX_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let clients: usize = std::env::var("FX_BENCH_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut cfg = FxServiceConfig::from_toml("listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite::memory:\"\n").expect("config");
        // The bundled data ends on a fixed day; never refuse on age here.
        cfg.staleness.convert.hard = None;
        let started = Instant::now();
        let running = FxService::start(cfg).await.expect("start");
        println!("startup with bundled-history import: {} ms", started.elapsed().as_millis());
        let base = format!("http://{}", running.local_addr());
        let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build().expect("client");

        let url = format!("{base}/v1/rates?start=2001-01-01&end=2025-12-31&base=USD");
        let mut series = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            let body = client.get(&url).send().await.expect("send").bytes().await.expect("body");
            series.push(t.elapsed());
            assert!(body.len() > 1_000_000);
        }
        series.sort();
        println!("25-year daily series, all currencies, USD base: median {:?}, max {:?}", series[series.len() / 2], series[series.len() - 1]);

        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for i in 0..clients {
            let client = client.clone();
            let base = base.clone();
            tasks.push(tokio::spawn(async move {
                let pairs = [("USD", "JPY"), ("GBP", "CHF"), ("EUR", "USD"), ("JPY", "KRW")];
                let mut lat = Vec::new();
                let mut n = i;
                while Instant::now() < deadline {
                    let (f, t) = pairs[n % pairs.len()];
                    n += 1;
                    let u = format!("{base}/v1/convert?from={f}&to={t}&amount={}&date=2020-03-02", 100 + n % 997);
                    let s = Instant::now();
                    let res = client.get(&u).send().await.expect("send");
                    assert_eq!(res.status(), 200);
                    let _ = res.bytes().await.expect("body");
                    lat.push(s.elapsed());
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        all.sort();
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        println!(
            "convert: {} requests in {seconds}s with {clients} clients = {:.0} req/s; p50 {:?}, p99 {:?}, max {:?}",
            all.len(),
            all.len() as f64 / seconds as f64,
            pct(0.50),
            pct(0.99),
            all[all.len() - 1]
        );
        running.shutdown().await.expect("shutdown");
    });
}
