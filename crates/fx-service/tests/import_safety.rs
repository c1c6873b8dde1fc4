//! `gatehouse fx import` against a real SQLite file, then conversions
//! through the HTTP API over the same database: impossible rates and
//! fixing dates are refused with their line, implausible moves are
//! quarantined, conflicting values are refused until corrected, and
//! corrections are audited and republished. Every step runs on an injected
//! clock.

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use chrono::{DateTime, TimeZone, Utc};
use clap::Parser;
use fx::RateStore;
use fx_service::cli::{run_with_clock, FxCommand};
use fx_service::{router, FxService, FxServiceConfig};
use gateway_core::ManualClock;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: FxCommand,
}

/// Monday 2026-11-02 10:00 UTC: the 2026-10-30 fixing is current.
fn monday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap()
}

/// A temporary SQLite database and a config file naming it.
struct Db {
    dir: tempfile::TempDir,
    url: String,
    config: String,
    clock: Arc<ManualClock>,
}

impl Db {
    /// A database seeded, through the CLI, with the ECB's fixing of
    /// 2026-10-30 for USD and JPY (no bundled history: quick to open).
    async fn seeded() -> Db {
        let db = Db::new(false, monday());
        db.import(
            "seed.csv",
            "Date,USD,JPY,\n2026-10-30,1.1172,175.68,\n",
            &[],
        )
        .await
        .unwrap();
        db
    }

    fn new(bundled: bool, now: DateTime<Utc>) -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("data/fx.db").display());
        let config = dir.path().join("fx.toml").display().to_string();
        std::fs::write(
            &config,
            format!("database_url = \"{url}\"\nimport_bundled = {bundled}\nadmin_token = \"s3cret-admin\"\n"),
        )
        .unwrap();
        Db {
            dir,
            url,
            config,
            clock: Arc::new(ManualClock::new(now)),
        }
    }

    /// `gatehouse fx import --config ... FILE [extra]`, the file holding `bytes`.
    async fn import(&self, name: &str, bytes: &str, extra: &[&str]) -> anyhow::Result<()> {
        let file = self.dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let file = file.display().to_string();
        let mut args = vec!["fx", "import", "--config", &self.config];
        args.extend_from_slice(extra);
        args.push(&file);
        let cmd = Cli::try_parse_from(args).unwrap().cmd;
        run_with_clock(cmd, self.clock.clone()).await
    }

    /// The service over this database, as started now (a fresh table).
    async fn service(&self) -> Router {
        let cfg = FxServiceConfig::from_toml_file(std::path::Path::new(&self.config)).unwrap();
        let (state, _) = FxService::build(cfg, self.clock.clone()).await.unwrap();
        router(state)
    }

    async fn store(&self) -> fx::SqlStore {
        fx::SqlStore::connect(&self.url, None).await.unwrap()
    }
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = auth {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    call(app, Method::GET, uri, None, "").await
}

/// `100 USD` in JPY at the mid rate (status, amount, fixing date).
async fn usd_jpy(app: &Router, date: Option<&str>) -> (StatusCode, Value) {
    let uri = match date {
        Some(d) => format!("/v1/convert?from=USD&to=JPY&amount=100&date={d}"),
        None => "/v1/convert?from=USD&to=JPY&amount=100".to_string(),
    };
    get(app, &uri).await
}

/// Finding 2, exact bytes: a rate of 1e-20 is refused outright with its
/// line; nothing is stored and conversions keep the genuine rate.
#[tokio::test]
async fn an_absurd_rate_is_refused_with_its_line_and_never_converts() {
    let db = Db::seeded().await;
    let err = db
        .import(
            "absurd.csv",
            "Date,USD,JPY,\n2026-11-02,0.00000000000000000001,175.10,\n",
            &[],
        )
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("absurd.csv was not imported"), "{msg}");
    assert!(msg.contains("line 2, field USD"), "{msg}");
    assert!(msg.contains("implausibly small"), "{msg}");
    assert_eq!(db.store().await.count_rows("ecb").await.unwrap(), 2);

    let app = db.service().await;
    let (status, body) = usd_jpy(&app, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["date"], "2026-10-30");
    // 100 × 175.68 / 1.1172, not 1,751,000,000,000,000,000,000,000.
    assert_eq!(body["mid"]["amount"], "15725");
    // Zero and negative values are refused the same way.
    for (value, why) in [("0", "not positive"), ("-1.1", "not positive")] {
        let err = db
            .import("bad.csv", &format!("Date,USD,\n2026-11-02,{value},\n"), &[])
            .await
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("line 2, field USD") && msg.contains(why),
            "{msg}"
        );
    }
}

/// Finding 2: a plausible-looking magnitude that moves 99.99% against the
/// previous fixing is quarantined (named, exit non-zero, never converted),
/// the rest of the row is published, and a correction releases it.
#[tokio::test]
async fn an_implausible_move_is_quarantined_until_corrected() {
    let db = Db::seeded().await;
    let err = db
        .import(
            "move.csv",
            "Date,USD,JPY,\n2026-11-02,0.0001,175.10,\n",
            &[],
        )
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("1 value(s) quarantined"), "{msg}");
    assert!(msg.contains("move.csv:2: 2026-11-02 USD 0.0001"), "{msg}");
    assert!(
        msg.contains("previous fixing (1.1172 on 2026-10-30)"),
        "{msg}"
    );
    assert!(!msg.contains("JPY"), "JPY is plausible: {msg}");

    let app = db.service().await;
    // JPY of the 2nd is published; USD of the 2nd is not, so no conversion
    // through USD uses that day.
    let (status, body) = get(&app, "/v1/rates/2026-11-02?symbols=JPY").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["rates"]["JPY"], "175.1");
    let (status, body) = usd_jpy(&app, Some("2026-11-02")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "currency_not_quoted");
    let (status, body) = call(
        &app,
        Method::GET,
        "/v1/admin/quarantine",
        Some("s3cret-admin"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let held = body["quarantined"].as_array().unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["currency"], "USD");
    assert_eq!(held[0]["rate"], "0.0001");

    // The same file again: still quarantined, still reported.
    let err = db
        .import(
            "move.csv",
            "Date,USD,JPY,\n2026-11-02,0.0001,175.10,\n",
            &[],
        )
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("awaiting review"), "{err:#}");

    // The corrected value is published through an audited correction.
    db.import(
        "fixed.csv",
        "Date,USD,JPY,\n2026-11-02,1.1180,175.10,\n",
        &[
            "--correct",
            "--reason",
            "ECB value re-keyed",
            "--actor",
            "ops",
        ],
    )
    .await
    .unwrap();
    let app = db.service().await;
    let (status, body) = usd_jpy(&app, Some("2026-11-02")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mid"]["amount"], "15662");
    let history = db
        .store()
        .await
        .corrections(Some("ecb"), None, None)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].old_rate.to_string(), "0.0001");
    assert_eq!(history[0].old_state, fx::review::StoredState::Quarantined);
    assert_eq!(history[0].new_rate.to_string(), "1.118");
    assert_eq!(
        (history[0].actor.as_str(), history[0].via.as_str()),
        ("ops", "cli")
    );
    assert_eq!(history[0].reason, "ECB value re-keyed");
    assert_eq!(history[0].at, monday());
}

/// Finding 2: importing the same day again with a different value is a
/// conflict naming the row, the stored and the new value; nothing changes
/// until `--correct`, which keeps the old value as history.
#[tokio::test]
async fn a_conflicting_reimport_changes_nothing_until_corrected() {
    let db = Db::seeded().await;
    let wrong = "Date,USD,JPY,\n2026-11-02,1.3,175.10,\n";
    db.import("wrong.csv", wrong, &[]).await.unwrap();
    // An identical re-import is idempotent.
    db.import("wrong.csv", wrong, &[]).await.unwrap();

    let right = "Date,USD,JPY,\n2026-11-02,1.1180,175.10,\n";
    let err = db.import("right.csv", right, &[]).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("1 value(s) differ from the stored ones"),
        "{msg}"
    );
    assert!(
        msg.contains("right.csv:2: 2026-11-02 USD: stored 1.3 (published), new 1.118"),
        "{msg}"
    );
    let app = db.service().await;
    let (_, body) = usd_jpy(&app, Some("2026-11-02")).await;
    assert_eq!(
        body["mid"]["amount"], "13469",
        "unchanged: 100 × 175.10 / 1.3"
    );

    // --correct needs a reason.
    assert!(Cli::try_parse_from(["fx", "import", "--correct", "x.csv"]).is_err());
    db.import("right.csv", right, &["--correct", "--reason", "typo"])
        .await
        .unwrap();
    let app = db.service().await;
    let (_, body) = usd_jpy(&app, Some("2026-11-02")).await;
    assert_eq!(body["mid"]["amount"], "15662");
    // The old value is history, not overwritten: raw row and audit.
    let store = db.store().await;
    let raw: String = sqlx::query_scalar(
        "SELECT rate FROM fx_raw_rates WHERE provider = 'ecb' AND currency = 'USD' AND fixing_date = '2026-11-02'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(raw, "1.3");
    let history = store.corrections(None, None, None).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].old_rate.to_string(), "1.3");
    assert_eq!(history[0].new_rate.to_string(), "1.118");
    // Correcting again with the same file changes nothing.
    db.import("right.csv", right, &["--correct", "--reason", "typo"])
        .await
        .unwrap();
    assert_eq!(store.corrections(None, None, None).await.unwrap().len(), 1);
}

/// The admin API corrects a value on a running service: authenticated,
/// audited, and served at once (no restart).
#[tokio::test]
async fn the_admin_api_corrects_and_republishes_without_restart() {
    let db = Db::seeded().await;
    db.import("wrong.csv", "Date,USD,JPY,\n2026-11-02,1.3,175.10,\n", &[])
        .await
        .unwrap();
    let app = db.service().await;
    let (_, body) = usd_jpy(&app, Some("2026-11-02")).await;
    assert_eq!(body["mid"]["amount"], "13469");

    let fix = r#"{"provider":"ecb","date":"2026-11-02","currency":"USD","rate":"1.1180","actor":"alice","reason":"typo in the import"}"#;
    let (status, body) = call(&app, Method::POST, "/v1/admin/corrections", None, fix).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "admin_unauthorized");
    let (status, _) = call(
        &app,
        Method::POST,
        "/v1/admin/corrections",
        Some("wrong"),
        fix,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = call(
        &app,
        Method::POST,
        "/v1/admin/corrections",
        Some("s3cret-admin"),
        fix,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["correction"]["old_rate"], "1.3");
    assert_eq!(body["correction"]["new_rate"], "1.118");
    assert_eq!(body["correction"]["actor"], "alice");
    assert_eq!(body["correction"]["via"], "api");
    let (_, body) = usd_jpy(&app, Some("2026-11-02")).await;
    assert_eq!(body["mid"]["amount"], "15662", "served at once");
    let (_, body) = get(&app, "/v1/raw-rates?date=2026-11-02&currency=USD").await;
    assert_eq!(body["values"][0]["rate"], "1.118");

    // The same value again: nothing to change.
    let (status, body) = call(
        &app,
        Method::POST,
        "/v1/admin/corrections",
        Some("s3cret-admin"),
        fix,
    )
    .await;
    assert_eq!(
        (status, body["changed"].clone()),
        (StatusCode::OK, Value::Bool(false))
    );
    // Nothing stored for that key; an impossible rate; a missing reason.
    let missing = fix.replace("2026-11-02", "2026-11-03");
    let (status, body) = call(
        &app,
        Method::POST,
        "/v1/admin/corrections",
        Some("s3cret-admin"),
        &missing,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("fixing_not_found"))
    );
    let zero = fix.replace("1.1180", "0");
    let (status, body) = call(
        &app,
        Method::POST,
        "/v1/admin/corrections",
        Some("s3cret-admin"),
        &zero,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_rate"))
    );
    assert_eq!(body["parameter"], "rate");
    let no_reason = fix.replace("typo in the import", " ");
    let (status, body) = call(
        &app,
        Method::POST,
        "/v1/admin/corrections",
        Some("s3cret-admin"),
        &no_reason,
    )
    .await;
    assert_eq!(
        (status, body["parameter"].as_str()),
        (StatusCode::BAD_REQUEST, Some("reason"))
    );
    let (status, body) = call(
        &app,
        Method::GET,
        "/v1/admin/corrections?date=2026-11-02",
        Some("s3cret-admin"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["corrections"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn admin_endpoints_are_disabled_without_a_token() {
    let cfg =
        FxServiceConfig::from_toml("database_url = \"sqlite::memory:\"\nimport_bundled = false\n")
            .unwrap();
    let (state, _) = FxService::build(cfg, Arc::new(ManualClock::new(monday())))
        .await
        .unwrap();
    let app = router(state);
    let (status, body) = call(
        &app,
        Method::GET,
        "/v1/admin/quarantine",
        Some("anything"),
        "",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("admin_disabled"))
    );
}

/// Finding 3: on a fresh store (bundled history to 2026-10-30) a
/// conversion on 2026-12-05 is refused as too stale; a row dated 2099 or
/// 1970 is refused with its line, and staleness stays as it was.
#[tokio::test]
async fn future_and_ancient_fixings_are_refused_and_staleness_holds() {
    let now = Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap();
    let db = Db::new(true, now);
    let app = db.service().await;
    let (status, body) = usd_jpy(&app, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "rates_too_stale");

    let err = db
        .import("future.csv", "Date,USD,JPY,\n2099-01-01,1.1,175.1,\n", &[])
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("future.csv was not imported"), "{msg}");
    assert!(msg.contains("line 2: 2099-01-01: dated in the future (the latest acceptable fixing date is 2026-12-06)"), "{msg}");
    let err = db
        .import(
            "ancient.csv",
            "Date,USD,\n1970-01-01,1.1,\n1999-01-04,1.1789,\n",
            &[],
        )
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("line 2: 1970-01-01: before the provider's first fixing (1999-01-04)"),
        "{msg}"
    );

    let app = db.service().await;
    let (status, body) = usd_jpy(&app, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "rates_too_stale");
}

/// Finding 3, defence in depth: a future row already in a store (stored
/// before dates were checked) does not make old rates look fresh.
#[tokio::test]
async fn a_stored_future_fixing_does_not_turn_off_staleness() {
    let now = Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap();
    let db = Db::new(false, now);
    db.import(
        "seed.csv",
        "Date,USD,JPY,\n2026-10-30,1.1172,175.68,\n",
        &[],
    )
    .await
    .unwrap();
    let future = fx::Batch {
        base: fx::CurrencyCode::EUR,
        fixings: vec![fx::Fixing {
            date: chrono::NaiveDate::from_ymd_opt(2099, 1, 1).unwrap(),
            rates: vec![(fx::CurrencyCode::USD, rust_decimal::Decimal::new(11, 1))],
        }],
    };
    // The store's own path, below the engine's checks.
    db.store()
        .await
        .ingest("ecb", fx::Format::EcbCsv, &future, now)
        .await
        .unwrap();
    let app = db.service().await;
    let (status, body) = usd_jpy(&app, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "rates_too_stale");
    let (status, body) = get(&app, "/v1/rates/latest?symbols=JPY").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["date"].as_str(), body["stale"].as_bool()),
        (Some("2026-10-30"), Some(true))
    );
}
