//! Persistence, admin API, CLI, record and replay.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use common::*;
use gateway_mirror::cli::{run_to, ShadowCommand};
use gateway_mirror::record::{replay, ReplayOptions};
use gateway_mirror::stats::LaunchStats;
use gateway_mirror::{
    admin, LaunchConfig, LaunchOrigin, LaunchState, MirrorEngine, RecordConfig, ShadowStore,
    SqlShadowStore, Verdict,
};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn order(p: &str) -> String {
    let id = p.rsplit('/').next().unwrap_or("0");
    format!(r#"{{"id":"{id}","status":"paid"}}"#)
}

async fn store_contract(store: &dyn ShadowStore) {
    assert!(store.load().await.unwrap().is_empty());
    let cfg = launch("contract");
    store
        .save_launch(&cfg, LaunchState::Active, LaunchOrigin::Config)
        .await
        .unwrap();
    let mut stats = LaunchStats::default();
    stats.count_skip("not_sampled");
    stats.record(&gateway_mirror::stats::Sample {
        endpoint: "api GET /x",
        primary_error: false,
        primary_ms: 3.0,
        candidate_ms: 4.0,
        timed: true,
        candidate: gateway_mirror::stats::CandidateResult::TimedOut,
        noise: None,
    });
    store.save_stats("contract", &stats).await.unwrap();
    store.save_stats("contract", &stats).await.unwrap();
    store
        .save_launch(&cfg, LaunchState::Paused, LaunchOrigin::Api)
        .await
        .unwrap();
    let got = store.load().await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].config, cfg);
    assert_eq!(got[0].state, LaunchState::Paused);
    assert_eq!(got[0].origin, LaunchOrigin::Api);
    assert_eq!(got[0].stats, stats);
}

#[tokio::test]
async fn store_contract_sqlite() {
    let s = SqlShadowStore::connect("sqlite::memory:").await.unwrap();
    store_contract(&s).await;
}

#[tokio::test]
async fn store_contract_postgres() {
    let Ok(url) = std::env::var("GATEHOUSE_TEST_POSTGRES_URL") else {
        eprintln!("skipping: GATEHOUSE_TEST_POSTGRES_URL is not set");
        return;
    };
    use sqlx::{ConnectOptions, Connection};
    use std::str::FromStr;
    let schema = format!(
        "gh_mirror_{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let opts = sqlx::postgres::PgConnectOptions::from_str(&url).unwrap();
    let mut admin = opts.connect().await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let store = SqlShadowStore::postgres(opts.clone().options([("search_path", schema.as_str())]))
        .await
        .unwrap();
    store_contract(&store).await;
    store.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_and_examples_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("gatehouse.db").display());
    let primary = upstream(Arc::new(|p, _, _| (200, order(p), 0))).await;
    let candidate = upstream(Arc::new(|p, _, _| {
        (200, order(p).replace("paid", "PAID"), 0)
    }))
    .await;
    let c = client(&primary, &candidate, None);

    let store: Arc<dyn ShadowStore> = Arc::new(SqlShadowStore::connect(&url).await.unwrap());
    let e = engine(vec![launch("durable")], c.clone(), Some(store)).await;
    for i in 0..5 {
        proxy(
            &e,
            &c,
            Method::GET,
            &format!("/v1/orders/{i}"),
            &format!("x{i}"),
            &[("cookie", "sid=1")],
        )
        .await;
    }
    e.idle().await;
    e.pause("durable").await.unwrap();
    let before = e.report("durable").unwrap();
    e.shutdown(Duration::from_secs(1)).await.unwrap();
    drop(e);

    let store: Arc<dyn ShadowStore> = Arc::new(SqlShadowStore::connect(&url).await.unwrap());
    let e = engine(vec![launch("durable")], c.clone(), Some(store)).await;
    let after = e.report("durable").unwrap();
    assert_eq!(after.state, LaunchState::Paused, "admin pause survives");
    // Counters are exact; latencies survive to within float text round-trip.
    let (a, b) = (
        &after.assessment.endpoints[0],
        &before.assessment.endpoints[0],
    );
    assert_eq!((a.attempts, a.compared, a.matches), (5, 5, 0));
    assert_eq!(
        (a.attempts, a.compared, a.matches),
        (b.attempts, b.compared, b.matches)
    );
    assert_eq!((a.score, a.verdict), (b.score, b.verdict));
    let (la, lb) = (a.latency.as_ref().unwrap(), b.latency.as_ref().unwrap());
    assert!((la.primary_p50_ms - lb.primary_p50_ms).abs() < 1e-9);
    assert_eq!(after.top_fields, before.top_fields);
    assert_eq!(after.top_fields[0].field, "$.status");
    let uris = |r: &gateway_mirror::Report| -> Vec<(String, String)> {
        r.examples
            .iter()
            .map(|x| (x.uri.clone(), x.field.clone()))
            .collect()
    };
    assert_eq!(uris(&after), uris(&before));
    assert_eq!(after.examples.len(), 3);
    assert_eq!(after.examples[0].request_headers["cookie"], "[redacted]");
}

async fn call(
    app: &axum::Router,
    method: Method,
    uri: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

async fn empty_engine() -> Arc<MirrorEngine> {
    engine(
        Vec::new(),
        client("http://127.0.0.1:9", "http://127.0.0.1:9", None),
        None,
    )
    .await
}

#[tokio::test]
async fn admin_api_lifecycle() {
    let e = empty_engine().await;
    let app = admin::router(e.clone());
    let (s, v) = call(
        &app,
        Method::POST,
        "/v1/shadow",
        r#"{"name":"Bad!","routes":[],"candidate":"c"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["code"], "shadow_invalid");
    assert_eq!(v["issues"][0]["path"], "name");
    assert_eq!(v["issues"][1]["path"], "routes");
    let (s, v) = call(&app, Method::POST, "/v1/shadow", "{not json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["code"], "shadow_bad_request");

    let def = r#"{"name":"rates-v2","routes":["api"],"candidate":"fx-v2","sample_percent":5}"#;
    let (s, v) = call(&app, Method::POST, "/v1/shadow", def).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["state"], "active");
    let (s, v) = call(&app, Method::POST, "/v1/shadow", def).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("shadow_exists"))
    );

    let (s, v) = call(&app, Method::GET, "/v1/shadow", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["launches"][0]["name"], "rates-v2");
    assert_eq!(v["launches"][0]["verdict"], "keep_observing");

    let (s, v) = call(&app, Method::GET, "/v1/shadow/rates-v2", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["assessment"]["verdict"], "keep_observing");
    let (_, v) = call(&app, Method::GET, "/v1/shadow/rates-v2/config", "").await;
    assert_eq!(v["sample_percent"], 5.0);

    for (action, state) in [
        ("pause", "paused"),
        ("resume", "active"),
        ("stop", "stopped"),
    ] {
        let (s, v) = call(
            &app,
            Method::POST,
            &format!("/v1/shadow/rates-v2/{action}"),
            "",
        )
        .await;
        assert_eq!((s, v["state"].as_str()), (StatusCode::OK, Some(state)));
    }
    let (s, v) = call(&app, Method::POST, "/v1/shadow/rates-v2/resume", "").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("shadow_state_conflict"))
    );
    let (s, v) = call(&app, Method::GET, "/v1/shadow/nope", "").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("shadow_not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_then_replay_offline_against_a_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rec.jsonl");
    let primary = upstream(Arc::new(|p, _, _| (200, order(p), 0))).await;
    let c = client(&primary, &primary, None);
    let mut cfg = launch("rec");
    cfg.record = Some(RecordConfig {
        file: file.clone(),
        sample_percent: 100.0,
        max_records: 15,
    });
    let e = engine(vec![cfg], c.clone(), None).await;
    for i in 0..20 {
        proxy(
            &e,
            &c,
            Method::GET,
            &format!("/v1/orders/{i}"),
            &format!("r{i}"),
            &[("authorization", "Bearer s3cret")],
        )
        .await;
    }
    e.idle().await;
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 15, "max_records caps the file");
    assert!(!text.contains("s3cret"), "credentials are redacted");

    // A candidate that changes one field on every order.
    let seen_auth = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s = seen_auth.clone();
    let bad = upstream(Arc::new(move |p, h, _| {
        s.lock().push(h.get("authorization").is_some());
        (200, order(p).replace("paid", "refunded"), 0)
    }))
    .await;
    let r = replay(&file, &ReplayOptions::new(&bad)).await.unwrap();
    assert_eq!(r.assessment.endpoints[0].compared, 15);
    assert_eq!(r.top_fields[0].field, "$.status");
    assert_eq!(r.top_fields[0].count, 15);
    assert!(
        seen_auth.lock().iter().all(|sent| !sent),
        "redacted values are never sent"
    );

    // Against the live primary as well, an identical candidate matches.
    let mut opts = ReplayOptions::new(&primary);
    opts.primary = Some(primary.clone());
    let r = replay(&file, &opts).await.unwrap();
    assert_eq!(r.assessment.endpoints[0].matches, 15);

    std::fs::write(dir.path().join("bad.jsonl"), "{}\n").unwrap();
    let err = replay(&dir.path().join("bad.jsonl"), &ReplayOptions::new(&bad))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bad.jsonl:1:"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_prints_tables_from_the_admin_api() {
    let primary = upstream(Arc::new(|p, _, _| (200, order(p), 0))).await;
    let c = client(&primary, &primary, None);
    let e = engine(vec![launch("cli")], c.clone(), None).await;
    for i in 0..3 {
        proxy(
            &e,
            &c,
            Method::GET,
            &format!("/v1/orders/{i}"),
            &format!("c{i}"),
            &[],
        )
        .await;
    }
    e.idle().await;
    let url = serve(admin::router(e.clone())).await;
    let run = |cmd: ShadowCommand| {
        let url = url.clone();
        async move {
            let mut out = Vec::new();
            let r = run_to(cmd, &url, Some("t"), &mut out).await;
            (r, String::from_utf8(out).unwrap())
        }
    };
    let (r, out) = run(ShadowCommand::List { json: false }).await;
    r.unwrap();
    assert!(
        out.contains("cli") && out.contains("keep_observing"),
        "{out}"
    );
    let (r, out) = run(ShadowCommand::Report {
        name: "cli".into(),
        json: false,
    })
    .await;
    r.unwrap();
    assert!(out.contains("Verdict: KEEP OBSERVING"), "{out}");
    assert!(out.contains("api GET /v1/orders/{id}"), "{out}");
    assert!(out.contains("3 of 300 minimum samples"), "{out}");
    let (r, out) = run(ShadowCommand::Pause { name: "cli".into() }).await;
    r.unwrap();
    assert_eq!(out, "cli: paused\n");
    let (r, _) = run(ShadowCommand::Report {
        name: "missing".into(),
        json: true,
    })
    .await;
    assert!(r.unwrap_err().to_string().contains("shadow_not_found"));

    let dir = tempfile::tempdir().unwrap();
    let def = dir.path().join("l.toml");
    std::fs::write(
        &def,
        "name = \"from-file\"\nroutes = [\"api\"]\ncandidate = \"c2\"\n",
    )
    .unwrap();
    let (r, out) = run(ShadowCommand::Create { file: def }).await;
    r.unwrap();
    assert_eq!(out, "created from-file (active)\n");
    assert_eq!(e.list().len(), 2);
    assert_eq!(e.list()[1].verdict, Verdict::KeepObserving);
}

#[test]
fn shadow_command_parses_like_the_binary_will() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: ShadowCommand,
    }
    let c = Cli::try_parse_from([
        "shadow",
        "replay",
        "rec.jsonl",
        "--candidate",
        "http://127.0.0.1:1",
        "--timeout",
        "500ms",
    ])
    .unwrap();
    assert_eq!(
        c.cmd,
        ShadowCommand::Replay {
            file: "rec.jsonl".into(),
            candidate: "http://127.0.0.1:1".into(),
            primary: None,
            config: None,
            timeout: Duration::from_millis(500),
            json: false,
        }
    );
    assert!(Cli::try_parse_from(["shadow", "replay", "f"]).is_err());
    let _ = LaunchConfig::new("x", &["r"], "c");
}

#[tokio::test]
async fn restart_restores_api_launches_and_stops_launches_removed_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("g.db").display());
    let c = || client("http://127.0.0.1:9", "http://127.0.0.1:9", None);
    let store: Arc<dyn ShadowStore> = Arc::new(SqlShadowStore::connect(&url).await.unwrap());
    let e = engine(vec![launch("from-config")], c(), Some(store)).await;
    e.create(launch("from-api")).await.unwrap();
    e.shutdown(Duration::from_secs(1)).await.unwrap();
    drop(e);

    let store: Arc<dyn ShadowStore> = Arc::new(SqlShadowStore::connect(&url).await.unwrap());
    let e = engine(Vec::new(), c(), Some(store)).await;
    let states: Vec<_> = e.list().into_iter().map(|l| (l.name, l.state)).collect();
    assert_eq!(
        states,
        vec![
            ("from-api".to_string(), LaunchState::Active),
            ("from-config".to_string(), LaunchState::Stopped),
        ]
    );
}
