//! Scheduled ingestion against recorded provider files served by a local
//! HTTP server on 127.0.0.1:0; nothing reaches the internet.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use chrono::{TimeZone, Utc};
use fx::{CurrencyCode, Format, FxEngine};
use fx_service::ingest::{FetchError, FetchOutcome, ProviderState};
use fx_service::{Fetcher, FxService, FxServiceConfig, HealthRegistry, ProviderConfig};
use gateway_core::ManualClock;

const DAILY_XML: &str = include_str!("data/eurofxref-daily.xml");
const HIST_90D_XML: &str = include_str!("data/eurofxref-hist-90d.xml");
const OXR: &str = include_str!("data/oxr-latest.json");
const FRANK_OUTLIER: &str = include_str!("data/frankfurter-latest-outlier.json");

#[derive(Default)]
struct Counters {
    daily: AtomicUsize,
    daily_conditional: AtomicUsize,
    flaky: AtomicUsize,
    down: AtomicUsize,
}

async fn serve() -> (String, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let app = Router::new()
        .route(
            "/ecb/daily.xml",
            get(|State(c): State<Arc<Counters>>, h: HeaderMap| async move {
                c.daily.fetch_add(1, Ordering::SeqCst);
                if h.get("if-none-match").is_some_and(|v| v == "\"v1\"") {
                    c.daily_conditional.fetch_add(1, Ordering::SeqCst);
                    return (
                        StatusCode::NOT_MODIFIED,
                        [("etag", "\"v1\"")],
                        String::new(),
                    )
                        .into_response();
                }
                (
                    [("etag", "\"v1\""), ("content-type", "text/xml")],
                    DAILY_XML,
                )
                    .into_response()
            }),
        )
        .route("/ecb/hist-90d.xml", get(|| async { HIST_90D_XML }))
        .route("/oxr/latest.json", get(|| async { OXR }))
        .route("/frankfurter/latest", get(|| async { FRANK_OUTLIER }))
        .route(
            "/fixer/latest",
            get(|| async { FRANK_OUTLIER.replace("\"JPY\":193.25", "\"JPY\":1756.8") }),
        )
        .route(
            "/flaky",
            get(|State(c): State<Arc<Counters>>| async move {
                if c.flaky.fetch_add(1, Ordering::SeqCst) < 2 {
                    (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response()
                } else {
                    OXR.into_response()
                }
            }),
        )
        .route(
            "/down",
            get(|State(c): State<Arc<Counters>>| async move {
                c.down.fetch_add(1, Ordering::SeqCst);
                (StatusCode::BAD_GATEWAY, "down")
            }),
        )
        .route(
            "/gone",
            get(|| async { (StatusCode::NOT_FOUND, "no such file") }),
        )
        .route(
            "/corrupt",
            get(|| async { &DAILY_XML[..DAILY_XML.len() / 2] }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                OXR
            }),
        )
        .with_state(counters.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), counters)
}

fn provider(name: &str, format: Format, url: String) -> ProviderConfig {
    let mut p = ProviderConfig::new(name, format, &url);
    p.backoff = Duration::from_millis(5);
    p.backoff_max = Duration::from_millis(20);
    p.timeout = Duration::from_millis(500);
    p.retries = 2;
    p
}

async fn engine(clock: Arc<ManualClock>) -> (Arc<FxEngine>, Fetcher) {
    let cfg =
        FxServiceConfig::from_toml("database_url = \"sqlite::memory:\"\nimport_bundled = false\n")
            .unwrap();
    let engine = FxService::open_engine(&cfg, clock).await.unwrap();
    let fetcher = Fetcher::new(engine.clone(), Arc::new(HealthRegistry::default()));
    (engine, fetcher)
}

fn friday_evening() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 10, 30, 17, 0, 0).unwrap(),
    ))
}

#[tokio::test]
async fn ecb_xml_is_fetched_then_conditional_get_returns_not_modified() {
    let (base, counters) = serve().await;
    let (engine, fetcher) = engine(friday_evening()).await;
    let p = provider("ecb", Format::EcbXml, format!("{base}/ecb/daily.xml"));
    let out = fetcher.fetch_once(&p).await.unwrap();
    assert_eq!(
        out,
        FetchOutcome::Ingested {
            inserted: 29,
            last_fixing: chrono::NaiveDate::from_ymd_opt(2026, 10, 30).unwrap()
        }
    );
    assert_eq!(
        fetcher.fetch_once(&p).await.unwrap(),
        FetchOutcome::NotModified
    );
    assert_eq!(counters.daily.load(Ordering::SeqCst), 2);
    assert_eq!(counters.daily_conditional.load(Ordering::SeqCst), 1);
    let t = engine.table();
    assert_eq!(
        t.latest()
            .unwrap()
            .mid(CurrencyCode::USD)
            .unwrap()
            .to_string(),
        "1.1172"
    );
    let h = fetcher.health().snapshot(
        Utc.with_ymd_and_hms(2026, 10, 30, 17, 0, 0).unwrap(),
        &Default::default(),
    );
    assert_eq!(h[0].state, ProviderState::Healthy);
}

#[tokio::test]
async fn three_providers_reach_consensus_and_the_outlier_is_flagged() {
    let (base, _) = serve().await;
    let (engine, fetcher) = engine(friday_evening()).await;
    fetcher
        .fetch_once(&provider(
            "ecb",
            Format::EcbXml,
            format!("{base}/ecb/hist-90d.xml"),
        ))
        .await
        .unwrap();
    fetcher
        .fetch_once(&provider(
            "oxr",
            Format::Oxr,
            format!("{base}/oxr/latest.json"),
        ))
        .await
        .unwrap();
    fetcher
        .fetch_once(&provider(
            "frankfurter",
            Format::Frankfurter,
            format!("{base}/frankfurter/latest"),
        ))
        .await
        .unwrap();
    let t = engine.table();
    let day = t.latest().unwrap();
    assert_eq!(day.date.to_string(), "2026-10-30");
    let jpy = day.get(CurrencyCode::parse("JPY").unwrap()).unwrap();
    let outliers: Vec<_> = jpy
        .sources
        .iter()
        .filter(|s| s.outlier)
        .map(|s| s.provider.to_string())
        .collect();
    assert_eq!(outliers, vec!["frankfurter"]);
    assert!(
        (jpy.mid - rust_decimal::Decimal::new(17568, 2)).abs() < rust_decimal::Decimal::new(5, 2),
        "{}",
        jpy.mid
    );
    // A currency only OXR quotes is served from OXR alone.
    let aed = day.get(CurrencyCode::parse("AED").unwrap()).unwrap();
    assert_eq!(aed.sources.len(), 1);
    // Earlier days come from the ECB's 90-day file.
    assert_eq!(t.days().len(), 64);
    // Every provider's value, exactly as published (in its own base), is visible.
    let app = fx_service::router(fx_service::AppState::new(
        engine.clone(),
        FxServiceConfig::default(),
        fetcher.health().clone(),
    ));
    use tower::ServiceExt;
    let res = app
        .oneshot(
            axum::http::Request::get("/v1/raw-rates?date=2026-10-30&currency=JPY")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let values = v["values"].as_array().unwrap();
    assert_eq!(values.len(), 3);
    assert_eq!(
        values[0],
        serde_json::json!({"provider": "ecb", "base": "EUR", "rate": "175.68"})
    );
    assert_eq!(
        values[1],
        serde_json::json!({"provider": "frankfurter", "base": "EUR", "rate": "193.25"})
    );
    assert_eq!(values[2]["base"], "USD");

    // A fourth provider with JPY off by a factor of ten: the fetch succeeds,
    // its other values are stored, and JPY is quarantined (counted, never a
    // source of the consensus).
    let fixer = provider("fixer", Format::Frankfurter, format!("{base}/fixer/latest"));
    assert!(matches!(
        fetcher.fetch_once(&fixer).await.unwrap(),
        FetchOutcome::Ingested { inserted: 28, .. }
    ));
    let h = fetcher
        .health()
        .get("fixer", clock_now(&friday_evening()), &Default::default())
        .unwrap();
    assert_eq!(h.state, ProviderState::Healthy);
    assert_eq!((h.rows_quarantined, h.rows_conflicting), (1, 0));
    let issue = h.last_review_issue.unwrap();
    assert!(
        issue.contains("2026-10-30 JPY 1756.8 quarantined"),
        "{issue}"
    );
    let t = engine.table();
    let jpy = t
        .latest()
        .unwrap()
        .get(CurrencyCode::parse("JPY").unwrap())
        .unwrap();
    assert_eq!(jpy.sources.len(), 3);
    assert!(jpy.sources.iter().all(|s| &*s.provider != "fixer"));
    let quarantined = engine.store().open_quarantine().await.unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].provider, "fixer");
}

#[tokio::test]
async fn transient_errors_are_retried_with_backoff() {
    let (base, counters) = serve().await;
    let (_, fetcher) = engine(friday_evening()).await;
    let out = fetcher
        .fetch_once(&provider("oxr", Format::Oxr, format!("{base}/flaky")))
        .await
        .unwrap();
    assert!(matches!(out, FetchOutcome::Ingested { .. }));
    assert_eq!(counters.flaky.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_outage_marks_the_provider_failing_and_others_carry_on() {
    let (base, counters) = serve().await;
    let (engine, fetcher) = engine(friday_evening()).await;
    fetcher
        .fetch_once(&provider(
            "ecb",
            Format::EcbXml,
            format!("{base}/ecb/daily.xml"),
        ))
        .await
        .unwrap();
    let before = engine.table().version;
    let err = fetcher
        .fetch_once(&provider("oxr", Format::Oxr, format!("{base}/down")))
        .await
        .unwrap_err();
    assert_eq!(err, FetchError::Status(502));
    assert_eq!(
        counters.down.load(Ordering::SeqCst),
        3,
        "one attempt plus two retries"
    );
    // A 404 is not retried.
    let err = fetcher
        .fetch_once(&provider(
            "frankfurter",
            Format::Frankfurter,
            format!("{base}/gone"),
        ))
        .await
        .unwrap_err();
    assert_eq!(err, FetchError::Status(404));
    let health = fetcher.health().snapshot(
        Utc.with_ymd_and_hms(2026, 10, 30, 17, 0, 0).unwrap(),
        &Default::default(),
    );
    let state = |n: &str| health.iter().find(|h| h.name == n).unwrap().clone();
    assert_eq!(state("ecb").state, ProviderState::Healthy);
    assert_eq!(state("oxr").state, ProviderState::Failing);
    assert_eq!(state("oxr").consecutive_failures, 1);
    assert!(state("oxr").last_error.unwrap().contains("502"));
    assert_eq!(engine.table().version, before);
    assert!(engine
        .table()
        .latest()
        .unwrap()
        .mid(CurrencyCode::USD)
        .is_some());
}

#[tokio::test]
async fn a_corrupt_file_is_rejected_whole_and_stores_nothing() {
    let (base, _) = serve().await;
    let (engine, fetcher) = engine(friday_evening()).await;
    let err = fetcher
        .fetch_once(&provider("ecb", Format::EcbXml, format!("{base}/corrupt")))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Rejected(_)), "{err:?}");
    assert_eq!(engine.store().count_rows("ecb").await.unwrap(), 0);
    assert!(engine.table().is_empty());
    let h = fetcher.health().snapshot(
        Utc.with_ymd_and_hms(2026, 10, 30, 17, 0, 0).unwrap(),
        &Default::default(),
    );
    assert_eq!(h[0].state, ProviderState::Failing);
}

#[tokio::test]
async fn a_slow_provider_times_out() {
    let (base, _) = serve().await;
    let (_, fetcher) = engine(friday_evening()).await;
    let mut p = provider("oxr", Format::Oxr, format!("{base}/slow"));
    p.timeout = Duration::from_millis(50);
    p.retries = 1;
    match fetcher.fetch_once(&p).await.unwrap_err() {
        FetchError::Unreachable { attempts, reason } => {
            assert_eq!(attempts, 2);
            assert!(reason.contains("timed out"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_provider_with_old_data_is_marked_stale() {
    let (base, _) = serve().await;
    let clock = friday_evening();
    let (_, fetcher) = engine(clock.clone()).await;
    let mut p = provider("ecb", Format::EcbXml, format!("{base}/ecb/daily.xml"));
    p.stale_after = Duration::from_secs(12 * 3600);
    fetcher.fetch_once(&p).await.unwrap();
    let cal = Default::default();
    assert_eq!(
        fetcher
            .health()
            .get("ecb", clock_now(&clock), &cal)
            .unwrap()
            .state,
        ProviderState::Healthy
    );
    // Tuesday 06:00 UTC: Monday's fixing is 14 hours overdue.
    clock.set(Utc.with_ymd_and_hms(2026, 11, 3, 6, 0, 0).unwrap());
    assert_eq!(
        fetcher
            .health()
            .get("ecb", clock_now(&clock), &cal)
            .unwrap()
            .state,
        ProviderState::Stale
    );
}

fn clock_now(c: &ManualClock) -> chrono::DateTime<Utc> {
    gateway_core::Clock::now(c)
}

#[tokio::test]
async fn the_service_starts_fetches_serves_and_shuts_down() {
    let (base, _) = serve().await;
    let mut cfg = FxServiceConfig::from_toml(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite::memory:\"\nimport_bundled = false\n",
    )
    .unwrap();
    cfg.providers.push(provider(
        "ecb",
        Format::EcbXml,
        format!("{base}/ecb/daily.xml"),
    ));
    let clock = friday_evening();
    let running = FxService::start_with_clock(cfg, clock).await.unwrap();
    let url = format!("http://{}", running.local_addr());
    let client = reqwest::Client::new();
    // The scheduler fetches immediately; wait for the fixing to appear.
    let mut body = serde_json::Value::Null;
    for _ in 0..100 {
        let res = client
            .get(format!("{url}/v1/convert?from=USD&to=JPY&amount=100"))
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            body = res.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(body["mid"]["amount"], "15725");
    let p: serde_json::Value = client
        .get(format!("{url}/v1/providers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p["providers"][0]["state"], "healthy");
    running.shutdown().await.unwrap();
    assert!(client.get(format!("{url}/healthz")).send().await.is_err());
}
