//! The HTTP API, called in-process as a tower service over the real ECB
//! history (shared, read-only) or a small engine with a manual clock.

use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::Router;
use chrono::{TimeZone, Utc};
use fx_service::{router, AppState, FxService, FxServiceConfig};
use gateway_core::ManualClock;
use http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
});

static SHARED: tokio::sync::OnceCell<AppState> = tokio::sync::OnceCell::const_new();

/// Monday 2026-11-02 10:00 UTC: the latest fixing (Friday 2026-10-30) is
/// current and the next one is due at 16:00.
fn monday() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap()
}

fn test_config() -> FxServiceConfig {
    FxServiceConfig::from_toml(
        r#"
database_url = "sqlite::memory:"
max_range_days = 9500
[spread]
default_bps = 50
[spread.tiers.gold]
default_bps = 10
"#,
    )
    .unwrap()
}

fn shared() -> Router {
    let state = RT.block_on(SHARED.get_or_init(|| async {
        let clock = Arc::new(ManualClock::new(monday()));
        FxService::build(test_config(), clock).await.unwrap().0
    }));
    router(state.clone())
}

async fn small(clock: Arc<ManualClock>, toml_extra: &str) -> Router {
    let mut cfg = FxServiceConfig::from_toml(&format!(
        "database_url = \"sqlite::memory:\"\nimport_bundled = false\n{toml_extra}"
    ))
    .unwrap();
    cfg.spread.default_bps = 100;
    let (state, _) = FxService::build(cfg, clock).await.unwrap();
    state
        .engine()
        .ingest_bytes("ecb", None, b"Date,USD,JPY,GBP,\n2026-10-30,1.1172,175.68,0.8338,\n2026-10-29,1.113,175.92,0.83578,\n")
        .await
        .unwrap();
    router(state)
}

struct Res {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

async fn call(app: Router, method: Method, uri: &str, headers: &[(&str, &str)], body: &str) -> Res {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if !body.is_empty() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let res = app
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    Res {
        status,
        headers,
        json,
    }
}

fn get(uri: &str) -> Res {
    get_with(uri, &[])
}

fn get_with(uri: &str, headers: &[(&str, &str)]) -> Res {
    RT.block_on(call(shared(), Method::GET, uri, headers, ""))
}

#[test]
fn currencies_show_coverage_and_whether_still_quoted() {
    let r = get("/v1/currencies");
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json["currencies"].as_array().unwrap();
    assert_eq!(list.len(), 42);
    let find = |c: &str| list.iter().find(|x| x["code"] == c).unwrap().clone();
    let cyp = find("CYP");
    assert_eq!(cyp["name"], "Cyprus Pound");
    assert_eq!(cyp["first_date"], "1999-01-04");
    assert_eq!(cyp["last_date"], "2007-12-31");
    assert_eq!(cyp["quoted"], false);
    let jpy = find("JPY");
    assert_eq!(jpy["minor_units"], 0);
    assert_eq!(jpy["quoted"], true);
    assert_eq!(find("EUR")["quoted"], true);
}

#[test]
fn latest_rates_with_any_base() {
    let r = get("/v1/rates/latest?base=USD&symbols=EUR,JPY");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["base"], "USD");
    assert_eq!(r.json["date"], "2026-10-30");
    assert_eq!(r.json["stale"], false);
    let jpy = rust_decimal::Decimal::from_str(r.json["rates"]["JPY"].as_str().unwrap()).unwrap();
    let expected = fx::table::round_rate(
        rust_decimal::Decimal::from_str("175.68").unwrap()
            / rust_decimal::Decimal::from_str("1.1172").unwrap(),
    );
    assert_eq!(jpy, expected);
    assert_eq!(r.json["providers"], serde_json::json!(["ecb"]));
    let all = get("/v1/rates/latest");
    assert_eq!(all.json["base"], "EUR");
    assert_eq!(all.json["rates"]["USD"], "1.1172");
    assert_eq!(all.json["rates"].as_object().unwrap().len(), 29);
}

#[test]
fn a_weekend_date_reports_the_fixing_actually_used() {
    let r = get("/v1/rates/2020-02-29?symbols=USD&sources=true");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["date"], "2020-02-28");
    assert_eq!(r.json["requested_date"], "2020-02-29");
    assert_eq!(r.json["rates"]["USD"], "1.0977");
    assert_eq!(r.json["sources"]["USD"]["values"][0]["provider"], "ecb");
    // A superseded fixing never changes: cache it for a day.
    assert_eq!(r.headers[header::CACHE_CONTROL], "public, max-age=86400");
}

#[test]
fn convert_usd_to_jpy_on_a_known_day() {
    let r = get("/v1/convert?from=USD&to=JPY&amount=1234.56&date=2020-03-02");
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let j = &r.json;
    assert_eq!(j["mid"]["rate"], "107.732422226218");
    assert_eq!(j["mid"]["amount"], "133002");
    assert_eq!(j["customer"]["spread_bps"], 50);
    assert_eq!(j["customer"]["rate"], "107.193760115087");
    assert_eq!(j["customer"]["amount"], "132337");
    assert_eq!(j["path"], serde_json::json!(["USD", "EUR", "JPY"]));
    assert_eq!(j["provenance"]["providers"], serde_json::json!(["ecb"]));
    assert_eq!(j["provenance"]["fixing_date"], "2020-03-02");
    assert_eq!(j["rounding"], "half_even");
    assert_eq!(j["stale"], false);
    let up = get("/v1/convert?from=USD&to=JPY&amount=1234.56&date=2020-03-02&rounding=ceiling");
    assert_eq!(up.json["mid"]["amount"], "133003");
    let gold = get_with(
        "/v1/convert?from=USD&to=JPY&amount=1234.56&date=2020-03-02",
        &[("x-gatehouse-tier", "gold")],
    );
    assert_eq!(gold.json["customer"]["spread_bps"], 10);
    assert_eq!(gold.json["customer"]["tier"], "gold");
    assert_eq!(gold.json["mid"]["rate"], "107.732422226218");
    assert_eq!(r.headers[header::VARY], "x-gatehouse-tier");
}

fn check(uri: &str, status: StatusCode, code: &str, parameter: &str) {
    let r = get(uri);
    assert_eq!(r.status, status, "{uri}: {}", r.json);
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "application/problem+json",
        "{uri}"
    );
    assert_eq!(r.json["code"], code, "{uri}: {}", r.json);
    assert_eq!(r.json["parameter"], parameter, "{uri}: {}", r.json);
    assert!(!r.json["detail"].as_str().unwrap().is_empty());
}

#[test]
fn bad_input_gets_a_problem_naming_the_parameter() {
    use StatusCode as S;
    check(
        "/v1/convert?from=XYZ&to=JPY&amount=1",
        S::NOT_FOUND,
        "unknown_currency",
        "from",
    );
    check(
        "/v1/convert?from=USD&to=J1Y&amount=1",
        S::BAD_REQUEST,
        "malformed_currency",
        "to",
    );
    check(
        "/v1/convert?from=EUR&to=CYP&amount=1&date=2008-01-02",
        S::UNPROCESSABLE_ENTITY,
        "currency_not_quoted",
        "to",
    );
    check(
        "/v1/convert?from=CYP&to=EUR&amount=1",
        S::UNPROCESSABLE_ENTITY,
        "currency_not_quoted",
        "from",
    );
    check(
        "/v1/convert?from=USD&to=JPY&amount=1&date=1998-12-31",
        S::UNPROCESSABLE_ENTITY,
        "date_before_first_fixing",
        "date",
    );
    check(
        "/v1/convert?from=USD&to=JPY&amount=1&date=2027-01-01",
        S::UNPROCESSABLE_ENTITY,
        "date_in_future",
        "date",
    );
    check(
        "/v1/convert?from=USD&to=JPY&amount=1&date=02/03/2020",
        S::BAD_REQUEST,
        "malformed_date",
        "date",
    );
    check(
        "/v1/convert?from=USD&to=JPY&amount=12,50",
        S::BAD_REQUEST,
        "malformed_amount",
        "amount",
    );
    check(
        "/v1/convert?from=USD&to=JPY&amount=1.234",
        S::UNPROCESSABLE_ENTITY,
        "too_many_decimals",
        "amount",
    );
    check(
        "/v1/convert?from=USD&to=JPY&amount=99999999999999999999",
        S::UNPROCESSABLE_ENTITY,
        "amount_too_large",
        "amount",
    );
    check(
        "/v1/convert?from=USD&to=JPY&amount=-3",
        S::UNPROCESSABLE_ENTITY,
        "amount_not_positive",
        "amount",
    );
    check(
        "/v1/convert?from=USD&to=JPY",
        S::BAD_REQUEST,
        "missing_parameter",
        "amount",
    );
    check(
        "/v1/convert?from=USD&to=JPY&amount=1&rounding=bankers",
        S::BAD_REQUEST,
        "unknown_rounding",
        "rounding",
    );
    check(
        "/v1/convert?from=USD&to=JPY&amount=1&tier=platinum",
        S::UNPROCESSABLE_ENTITY,
        "unknown_tier",
        "tier",
    );
    check(
        "/v1/convert?from=USD&to=JPY&amount=1&amount=2",
        S::BAD_REQUEST,
        "duplicate_parameter",
        "amount",
    );
    check(
        "/v1/rates/latest?symbol=USD",
        S::BAD_REQUEST,
        "unknown_parameter",
        "symbol",
    );
    check(
        "/v1/rates/latest?symbols=USD,NOPE",
        S::BAD_REQUEST,
        "malformed_currency",
        "symbols",
    );
    check(
        "/v1/rates/2008-06-02?symbols=CYP",
        S::UNPROCESSABLE_ENTITY,
        "currency_not_quoted",
        "symbols",
    );
    check(
        "/v1/rates/2008-06-02?base=CYP",
        S::UNPROCESSABLE_ENTITY,
        "currency_not_quoted",
        "base",
    );
    check(
        "/v1/rates/yesterday",
        S::BAD_REQUEST,
        "malformed_date",
        "date",
    );
    check(
        "/v1/rates?start=2020-03-01&end=2020-02-01",
        S::UNPROCESSABLE_ENTITY,
        "start_after_end",
        "start",
    );
    check(
        "/v1/rates?start=1999-01-04&end=2026-10-30",
        S::UNPROCESSABLE_ENTITY,
        "range_too_long",
        "end",
    );
    check(
        "/v1/rates?start=1990-01-01&end=1999-02-01",
        S::UNPROCESSABLE_ENTITY,
        "date_before_first_fixing",
        "start",
    );
    check(
        "/v1/rates?end=2020-01-01",
        S::BAD_REQUEST,
        "missing_parameter",
        "start",
    );
    check(
        "/v1/rates?start=2020-01-01&interval=year",
        S::BAD_REQUEST,
        "unknown_interval",
        "interval",
    );
    check("/v1/rates/%FF%FE", S::BAD_REQUEST, "malformed_path", "date");
    let r = get("/v1/nope");
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json["code"], "route_not_found");
}

#[test]
fn responses_are_cacheable_until_the_next_fixing() {
    let r = get("/v1/rates/latest?symbols=USD");
    // Monday 10:00 UTC, next fixing expected 16:00 UTC: six hours.
    assert_eq!(r.headers[header::CACHE_CONTROL], "public, max-age=21600");
    let etag = r.headers[header::ETAG].to_str().unwrap().to_string();
    let lm = r.headers[header::LAST_MODIFIED]
        .to_str()
        .unwrap()
        .to_string();
    assert!(lm.ends_with("GMT"), "{lm}");
    let again = get_with("/v1/rates/latest?symbols=USD", &[("if-none-match", &etag)]);
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers[header::ETAG].to_str().unwrap(), etag);
    let other = get_with("/v1/rates/latest?symbols=JPY", &[("if-none-match", &etag)]);
    assert_eq!(other.status, StatusCode::OK);
    let ims = get_with(
        "/v1/rates/latest?symbols=USD",
        &[("if-modified-since", &lm)],
    );
    assert_eq!(ims.status, StatusCode::NOT_MODIFIED);
    // Errors are never cached.
    let bad = get("/v1/convert?from=XYZ&to=JPY&amount=1");
    assert_eq!(bad.headers[header::CACHE_CONTROL], "no-store");
}

#[test]
fn time_series_daily_and_aggregated() {
    let r = get("/v1/rates?start=2020-02-27&end=2020-03-03&base=USD&symbols=JPY,GBP");
    assert_eq!(r.status, StatusCode::OK);
    let rates = r.json["rates"].as_object().unwrap();
    assert_eq!(
        rates.keys().cloned().collect::<Vec<_>>(),
        vec!["2020-02-27", "2020-02-28", "2020-03-02", "2020-03-03"]
    );
    assert_eq!(rates["2020-03-02"]["JPY"], "107.732422226218");
    let m = get("/v1/rates?start=2020-01-01&end=2020-03-31&symbols=USD&interval=month");
    let feb = &m.json["rates"]["2020-02-01"];
    assert_eq!(feb["USD"]["last"], "1.0977");
    assert_eq!(feb["_last_fixing"], "2020-02-28");
    assert!(feb["USD"]["mean"].as_str().unwrap().starts_with("1.09"));
    let w = get("/v1/rates?start=2020-02-03&end=2020-02-16&symbols=USD&interval=week");
    assert_eq!(w.json["rates"].as_object().unwrap().len(), 2);
    // 25 years, every currency quoted over the span.
    let long = get("/v1/rates?start=2001-01-01&end=2025-12-31&base=USD");
    assert_eq!(long.status, StatusCode::OK);
    assert!(long.json["rates"].as_object().unwrap().len() > 6300);
}

#[test]
fn quotes_lock_rates_until_expiry_and_are_audited() {
    RT.block_on(async {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 10, 30, 17, 0, 0).unwrap(),
        ));
        let app = small(clock.clone(), "quote_ttl = \"15m\"").await;
        let r = call(
            app.clone(),
            Method::POST,
            "/v1/quotes",
            &[],
            r#"{"from":"USD","to":"JPY"}"#,
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        let id = r.json["id"].as_str().unwrap().to_string();
        assert_eq!(r.headers[header::LOCATION], format!("/v1/quotes/{id}"));
        assert_eq!(r.json["spread_bps"], 100);
        assert_eq!(r.json["expires_at"], "2026-10-30T17:15:00+00:00");
        let mid = r.json["mid_rate"].as_str().unwrap().to_string();
        let cust = r.json["customer_rate"].as_str().unwrap().to_string();
        assert_ne!(mid, cust);

        clock.advance(chrono::Duration::minutes(14));
        let c = call(
            app.clone(),
            Method::POST,
            &format!("/v1/quotes/{id}/convert"),
            &[],
            r#"{"amount":"250.00"}"#,
        )
        .await;
        assert_eq!(c.status, StatusCode::OK, "{}", c.json);
        assert_eq!(c.json["mid"]["rate"], mid.as_str());
        assert_eq!(c.json["customer"]["rate"], cust.as_str());
        assert_eq!(c.json["mid"]["amount"], "39313");
        // A JSON number is read from its text, never through f64.
        let n = call(
            app.clone(),
            Method::POST,
            &format!("/v1/quotes/{id}/convert"),
            &[],
            r#"{"amount":250.00}"#,
        )
        .await;
        assert_eq!(n.json["mid"]["amount"], "39313");
        let bad = call(
            app.clone(),
            Method::POST,
            &format!("/v1/quotes/{id}/convert"),
            &[],
            r#"{"amount":"1.001"}"#,
        )
        .await;
        assert_eq!(bad.json["code"], "too_many_decimals");
        assert_eq!(bad.json["parameter"], "amount");

        clock.advance(chrono::Duration::minutes(1));
        let late = call(
            app.clone(),
            Method::POST,
            &format!("/v1/quotes/{id}/convert"),
            &[],
            r#"{"amount":"250.00"}"#,
        )
        .await;
        assert_eq!(late.status, StatusCode::GONE);
        assert_eq!(late.json["code"], "quote_expired");
        let g = call(
            app.clone(),
            Method::GET,
            &format!("/v1/quotes/{id}"),
            &[],
            "",
        )
        .await;
        assert_eq!(g.json["expired"], true);
        let unknown = call(
            app.clone(),
            Method::POST,
            "/v1/quotes/q_0000/convert",
            &[],
            r#"{"amount":"1"}"#,
        )
        .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_eq!(unknown.json["code"], "quote_not_found");
        let typo = call(
            app.clone(),
            Method::POST,
            "/v1/quotes",
            &[],
            r#"{"from":"USD","too":"JPY"}"#,
        )
        .await;
        assert_eq!(typo.status, StatusCode::BAD_REQUEST);
        assert_eq!(typo.json["code"], "malformed_body");
        let garbage = call(app.clone(), Method::POST, "/v1/quotes", &[], "not json").await;
        assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    });
}

#[test]
fn stale_rates_are_flagged_then_conversions_refused() {
    RT.block_on(async {
        // Friday's fixing, read the next Wednesday: two fixings overdue.
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 4, 18, 0, 0).unwrap(),
        ));
        let app = small(clock.clone(), "").await;
        let r = call(
            app.clone(),
            Method::GET,
            "/v1/convert?from=USD&to=JPY&amount=10",
            &[],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json["stale"], true);
        assert_eq!(r.headers[header::CACHE_CONTROL], "public, max-age=60");
        clock.advance(chrono::Duration::days(4));
        let r = call(
            app.clone(),
            Method::GET,
            "/v1/convert?from=USD&to=JPY&amount=10",
            &[],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.json["code"], "rates_too_stale");
        assert!(r.json.get("parameter").is_none());
        let q = call(
            app.clone(),
            Method::POST,
            "/v1/quotes",
            &[],
            r#"{"from":"USD","to":"JPY"}"#,
        )
        .await;
        assert_eq!(q.json["code"], "rates_too_stale");
        // Listings are still served, flagged.
        let l = call(app.clone(), Method::GET, "/v1/rates/latest", &[], "").await;
        assert_eq!(l.status, StatusCode::OK);
        assert_eq!(l.json["stale"], true);
        // A historical conversion is unaffected.
        let h = call(
            app,
            Method::GET,
            "/v1/convert?from=USD&to=JPY&amount=10&date=2026-10-29",
            &[],
            "",
        )
        .await;
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.json["stale"], false);
    });
}

#[test]
fn a_new_fixing_is_served_at_once_even_for_repeated_queries() {
    RT.block_on(async {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 2, 17, 0, 0).unwrap(),
        ));
        let cfg = FxServiceConfig::from_toml(
            "database_url = \"sqlite::memory:\"\nimport_bundled = false\nbase_path = \"/fx\"\n",
        )
        .unwrap();
        let (state, _) = FxService::build(cfg, clock).await.unwrap();
        let engine = state.engine().clone();
        engine
            .ingest_bytes("ecb", None, b"Date,USD,\n2026-10-30,1.1172,\n")
            .await
            .unwrap();
        let app = router(state);
        let uri = "/fx/v1/rates?start=2026-10-30&end=2026-11-02&symbols=USD";
        let first = call(app.clone(), Method::GET, uri, &[], "").await;
        assert_eq!(first.json["rates"].as_object().unwrap().len(), 1);
        let etag = first.headers[header::ETAG].to_str().unwrap().to_string();
        let again = call(
            app.clone(),
            Method::GET,
            uri,
            &[("if-none-match", &etag)],
            "",
        )
        .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
        engine
            .ingest_bytes("ecb", None, b"Date,USD,\n2026-11-02,1.12,\n")
            .await
            .unwrap();
        let after = call(
            app.clone(),
            Method::GET,
            uri,
            &[("if-none-match", &etag)],
            "",
        )
        .await;
        assert_eq!(after.status, StatusCode::OK);
        assert_eq!(after.json["rates"]["2026-11-02"]["USD"], "1.12");
        let latest = call(app, Method::GET, "/v1/rates/latest", &[], "").await;
        assert_eq!(latest.json["date"], "2026-11-02");
    });
}
