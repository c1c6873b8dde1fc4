//! The JSON-over-HTTP API (axum).
//!
//! Routes (all under `/v1`): `currencies`, `rates/latest`, `rates/{date}`,
//! `rates` (series), `convert`, `quotes`, `quotes/{id}`,
//! `quotes/{id}/convert`, `providers`, `raw-rates` (every provider's value
//! exactly as published, for audit); plus `/healthz`.
//!
//! Every amount and rate is a JSON *string* holding an exact decimal.
//! Cacheable answers carry a strong `ETag` (hash of the body),
//! `Last-Modified` (when the rate table last changed) and a `Cache-Control`
//! max-age that runs to the next expected fixing, and honour
//! `If-None-Match` / `If-Modified-Since` with 304. Errors are problem+json
//! naming the parameter at fault; unknown or repeated parameters are refused
//! so a typo (`symbol=`) is not silently ignored.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use fx::exact::{write_decimal, write_decimal_bytes};
use fx::money::{parse_amount, AmountLimits};
use fx::query::{self, ConvertRequest, Interval, Resolved};
use fx::staleness::{FixingCalendar, StalenessLimits};
use fx::{CurrencyCode, FxEngine, FxError, RoundingMode};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::config::FxServiceConfig;
use crate::error::ApiError;
use crate::health::HealthRegistry;

/// Header a gateway may set with the client's tier (from its API key).
pub const TIER_HEADER: &str = "x-gatehouse-tier";

/// Shared state of the HTTP API.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Arc<FxEngine>,
    cfg: FxServiceConfig,
    calendar: FixingCalendar,
    health: Arc<HealthRegistry>,
    /// Rendered series bodies keyed by table version and normalised query:
    /// long histories are the expensive answers and are asked for again
    /// and again (charts); a new fixing bumps the version, so entries never
    /// go stale, they just stop being hit and age out.
    /// The ETag is kept with the body: hashing 5 MB costs more than
    /// serving it.
    series_cache: moka::sync::Cache<String, (Bytes, Arc<str>)>,
    /// The fleet told about corrections made through the admin API.
    fleet: std::sync::OnceLock<crate::fleet::Fleet>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Bytes of rendered series kept in memory.
pub const SERIES_CACHE_BYTES: u64 = 64 * 1024 * 1024;

impl AppState {
    /// State over an opened engine.
    pub fn new(engine: Arc<FxEngine>, cfg: FxServiceConfig, health: Arc<HealthRegistry>) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                cfg,
                calendar: FixingCalendar::default(),
                health,
                series_cache: moka::sync::Cache::builder()
                    .weigher(|k: &String, v: &(Bytes, Arc<str>)| {
                        (k.len() + v.0.len()).try_into().unwrap_or(u32::MAX)
                    })
                    .max_capacity(SERIES_CACHE_BYTES)
                    .build(),
                fleet: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<FxEngine> {
        &self.inner.engine
    }

    /// The configuration.
    pub fn config(&self) -> &FxServiceConfig {
        &self.inner.cfg
    }

    /// Tells `fleet` about changes made through this API (set once).
    pub fn set_fleet(&self, fleet: crate::fleet::Fleet) {
        let _ = self.inner.fleet.set(fleet);
    }

    /// The fleet, if this instance is in one.
    pub(crate) fn fleet(&self) -> Option<&crate::fleet::Fleet> {
        self.inner.fleet.get()
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.engine.clock().now()
    }

    fn limits(&self) -> AmountLimits {
        AmountLimits {
            max_integer_digits: self.inner.cfg.max_amount_digits,
            ..AmountLimits::default()
        }
    }
}

/// The API router over `state`, also nested under the configured
/// `base_path` when one is set.
pub fn router(state: AppState) -> Router {
    let prefix = state.inner.cfg.base_path.clone();
    let api = api_router(state);
    if prefix.is_empty() {
        api
    } else {
        Router::new().nest(&prefix, api.clone()).merge(api)
    }
}

fn api_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/currencies", get(currencies))
        .route("/v1/rates/latest", get(rates_latest))
        .route("/v1/rates/{date}", get(rates_on_date))
        .route("/v1/rates", get(rates_series))
        .route("/v1/convert", get(convert))
        .route("/v1/quotes", post(create_quote))
        .route("/v1/quotes/{id}", get(get_quote))
        .route("/v1/quotes/{id}/convert", post(convert_quote))
        .route("/v1/providers", get(providers))
        .route("/v1/raw-rates", get(raw_rates))
        .merge(crate::admin::router(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(16 * 1024))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError(gateway_core::Problem::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        "no such endpoint; see /v1/currencies, /v1/rates, /v1/convert, /v1/quotes",
    ))
}

async fn method_not_allowed() -> ApiError {
    ApiError(gateway_core::Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    ))
}

// === query parameters ===

struct Params(Vec<(String, String)>);

type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

type PathParam = Result<Path<String>, PathRejection>;

fn path_param(p: PathParam, name: &str) -> Result<String, ApiError> {
    p.map(|Path(v)| v).map_err(|e| {
        ApiError::param(
            StatusCode::BAD_REQUEST,
            "malformed_path",
            name,
            format!("the `{name}` path segment cannot be decoded: {e}"),
        )
    })
}

impl Params {
    fn new(q: RawQuery, allowed: &[&str]) -> Result<Params, ApiError> {
        let Query(pairs) = q.map_err(|e| {
            ApiError(gateway_core::Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_query",
                format!("the query string cannot be decoded: {e}"),
            ))
        })?;
        for (i, (k, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::param(
                    StatusCode::BAD_REQUEST,
                    "unknown_parameter",
                    k,
                    format!(
                        "unknown parameter `{}`; accepted: {}",
                        k.chars().take(40).collect::<String>(),
                        allowed.join(", ")
                    ),
                ));
            }
            if pairs[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(ApiError::param(
                    StatusCode::BAD_REQUEST,
                    "duplicate_parameter",
                    k,
                    format!("parameter `{k}` is given more than once"),
                ));
            }
        }
        Ok(Params(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, ApiError> {
        match self.get(name) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(ApiError::param(
                StatusCode::BAD_REQUEST,
                "missing_parameter",
                name,
                format!("parameter `{name}` is required"),
            )),
        }
    }

    fn currency(&self, name: &str) -> Result<Option<CurrencyCode>, ApiError> {
        self.get(name).map(|v| currency(v, name)).transpose()
    }

    fn symbols(&self) -> Result<Vec<CurrencyCode>, ApiError> {
        let Some(v) = self.get("symbols") else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            out.push(currency(s, "symbols")?);
            if out.len() > 200 {
                return Err(ApiError::param(
                    StatusCode::BAD_REQUEST,
                    "too_many_symbols",
                    "symbols",
                    "at most 200 symbols",
                ));
            }
        }
        Ok(out)
    }

    fn date(&self, name: &str) -> Result<Option<NaiveDate>, ApiError> {
        self.get(name).map(|v| date(v, name)).transpose()
    }

    fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some("true" | "1" | "") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(_) => Err(ApiError::param(
                StatusCode::BAD_REQUEST,
                "malformed_flag",
                name,
                format!("`{name}` must be true or false"),
            )),
        }
    }

    fn rounding(&self) -> Result<RoundingMode, ApiError> {
        match self.get("rounding") {
            None => Ok(RoundingMode::default()),
            Some(v) => v.parse().map_err(|e: String| {
                ApiError::param(StatusCode::BAD_REQUEST, "unknown_rounding", "rounding", e)
            }),
        }
    }
}

fn currency(v: &str, name: &str) -> Result<CurrencyCode, ApiError> {
    CurrencyCode::parse(v).map_err(|e| ApiError::fx(e.into(), Some(name)))
}

/// `YYYY-MM-DD` read directly; chrono's `parse_from_str` re-parses its
/// format string on every call. Anything else (other digit counts, signs,
/// invalid dates) goes to chrono, which decides as before.
fn iso_date(v: &str) -> Option<NaiveDate> {
    let b = v.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

fn date(v: &str, name: &str) -> Result<NaiveDate, ApiError> {
    if let Some(d) = iso_date(v.trim()) {
        return Ok(d);
    }
    NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d").map_err(|_| {
        ApiError::param(
            StatusCode::BAD_REQUEST,
            "malformed_date",
            name,
            format!(
                "`{}` is not a date; use YYYY-MM-DD",
                v.chars().take(32).collect::<String>()
            ),
        )
    })
}

fn tier(
    state: &AppState,
    headers: &HeaderMap,
    given: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let from_header = headers.get(TIER_HEADER).and_then(|v| v.to_str().ok());
    let (t, name) = match (given, from_header) {
        (Some(t), _) => (t, "tier"),
        (None, Some(t)) => (t, TIER_HEADER),
        (None, None) => return Ok(None),
    };
    if !state.inner.cfg.spread.has_tier(t) {
        return Err(ApiError::param(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_tier",
            name,
            format!(
                "tier `{}` is not configured",
                t.chars().take(40).collect::<String>()
            ),
        ));
    }
    Ok(Some(t.to_string()))
}

/// Which parameter a not-quoted currency came from.
fn param_for(
    e: &FxError,
    pairs: &[(CurrencyCode, &'static str)],
    default: &'static str,
) -> &'static str {
    if let FxError::NotQuoted { currency, .. } = e {
        if let Some((_, p)) = pairs.iter().find(|(c, _)| c == currency) {
            return p;
        }
    }
    default
}

/// A rates query's error, naming `base` or `symbols` as the parameter at
/// fault.
fn rates_error(e: FxError, base: CurrencyCode, symbols: &[CurrencyCode]) -> ApiError {
    let pairs: Vec<_> = std::iter::once((base, "base"))
        .chain(symbols.iter().map(|c| (*c, "symbols")))
        .collect();
    let param = param_for(&e, &pairs, "symbols");
    ApiError::fx(e, Some(param))
}

// === caching ===

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), written directly: it is
/// on every cacheable answer and chrono's strftime re-parses its format
/// string on each call.
fn http_date(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if !(0..=9999).contains(&t.year()) {
        return t.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    }
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().num_days_from_monday() as usize],
        t.day(),
        MONTHS[t.month0() as usize],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Seconds a cache may keep an answer built on `r`.
fn max_age(r: &Resolved, now: DateTime<Utc>) -> i64 {
    match r.next_expected {
        Some(next) if next > now => (next - now).num_seconds().max(60),
        // The next fixing is overdue: check again soon.
        Some(_) => 60,
        // A superseded fixing will not change.
        None => 86_400,
    }
}

/// The strong ETag of a body: the first 128 bits of its SHA-256, quoted.
fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for b in &digest[..16] {
        let _ = write!(tag, "{b:02x}");
    }
    tag.push('"');
    tag
}

fn cacheable(
    req: &HeaderMap,
    body: Vec<u8>,
    last_modified: Option<DateTime<Utc>>,
    max_age: i64,
    vary_tier: bool,
) -> Response {
    let tag = etag(&body);
    cacheable_tagged(req, body.into(), &tag, last_modified, max_age, vary_tier)
}

/// [`cacheable`] for a body whose ETag is already known.
fn cacheable_tagged(
    req: &HeaderMap,
    body: Bytes,
    tag: &str,
    last_modified: Option<DateTime<Utc>>,
    max_age: i64,
    vary_tier: bool,
) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(tag) {
        headers.insert(header::ETAG, v);
    }
    if let Some(lm) = last_modified.and_then(|t| HeaderValue::from_str(&http_date(t)).ok()) {
        headers.insert(header::LAST_MODIFIED, lm);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    if vary_tier {
        headers.insert(header::VARY, HeaderValue::from_static(TIER_HEADER));
    }
    let not_modified = match req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        Some(inm) => inm
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.trim_start_matches("W/") == tag),
        None => match (
            req.get(header::IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok()),
            last_modified,
        ) {
            (Some(ims), Some(lm)) => {
                DateTime::parse_from_rfc2822(ims).is_ok_and(|ims| lm.timestamp() <= ims.timestamp())
            }
            _ => false,
        },
    };
    if not_modified {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (StatusCode::OK, headers, body).into_response()
}

fn json_body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn no_store(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json_body(v),
    )
        .into_response()
}

// === handlers ===

async fn healthz(State(s): State<AppState>) -> Response {
    let t = s.engine().table();
    no_store(
        StatusCode::OK,
        &json!({"status": "ok", "latest_fixing": t.latest().map(|d| d.date.to_string()), "days": t.days().len()}),
    )
}

async fn currencies(
    State(s): State<AppState>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Params::new(q, &[])?;
    let t = s.engine().table();
    let now = s.now();
    let r = query::resolve(
        &t,
        None,
        now,
        &s.inner.calendar,
        &StalenessLimits {
            soft: chrono::Duration::MAX,
            hard: None,
        },
    )
    .map_err(|e| ApiError::fx(e, None))?;
    let latest = r.day.date;
    let list: Vec<Value> = t
        .currencies()
        .into_iter()
        .map(|(c, cov)| {
            let info = c.info();
            json!({
                "code": c, "name": info.name, "minor_units": info.minor_units,
                "first_date": cov.first.to_string(), "last_date": cov.last.to_string(),
                "quoted": cov.last == latest,
            })
        })
        .collect();
    let body = json_body(&json!({"latest_fixing": latest.to_string(), "currencies": list}));
    Ok(cacheable(
        &headers,
        body,
        t.updated_at,
        max_age(&r, now),
        false,
    ))
}

async fn rates_latest(
    State(s): State<AppState>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    rates(s, None, q, headers).await
}

async fn rates_on_date(
    State(s): State<AppState>,
    d: PathParam,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let d = date(&path_param(d, "date")?, "date")?;
    rates(s, Some(d), q, headers).await
}

fn staleness_json(r: &Resolved) -> (bool, Value) {
    (
        r.stale,
        r.next_expected
            .map(|t| Value::String(t.to_rfc3339()))
            .unwrap_or(Value::Null),
    )
}

// The two hottest bodies are written directly instead of through a
// `serde_json::Value` tree (a map allocation per key, then serialisation).
// Keys are in the order serde_json's sorted maps produced, so the bytes are
// the same; tests compare them with the `json!` construction they replace.

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it
/// (quote, backslash and control characters; nothing else).
fn push_str(out: &mut String, s: &str) {
    if s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

/// Appends an exact decimal as a JSON string.
fn push_decimal(out: &mut String, d: rust_decimal::Decimal) {
    out.push('"');
    write_decimal(out, d);
    out.push('"');
}

/// Appends something whose `Display` is plain ASCII (codes, dates) as a
/// JSON string.
fn push_plain(out: &mut String, v: impl std::fmt::Display) {
    let _ = write!(out, "\"{v}\"");
}

fn push_staleness(out: &mut String, r: &Resolved) {
    out.push_str(r#","next_fixing_expected":"#);
    match r.next_expected {
        Some(t) => push_plain(out, t.to_rfc3339()),
        None => out.push_str("null"),
    }
}

/// The `/v1/convert` body.
fn convert_body(conv: &query::Conversion, r: &Resolved, tier: Option<&str>) -> Vec<u8> {
    let mut out = String::with_capacity(640);
    out.push_str(r#"{"amount":"#);
    push_decimal(&mut out, conv.amount);
    out.push_str(r#","customer":{"amount":"#);
    push_decimal(&mut out, conv.customer_amount);
    out.push_str(r#","rate":"#);
    push_decimal(&mut out, conv.customer_rate);
    let _ = write!(out, r#","spread_bps":{},"tier":"#, conv.spread_bps);
    match tier {
        Some(t) => push_str(&mut out, t),
        None => out.push_str("null"),
    }
    out.push_str(r#"},"date":"#);
    push_plain(&mut out, r.day.date);
    out.push_str(r#","from":"#);
    push_plain(&mut out, conv.from);
    out.push_str(r#","mid":{"amount":"#);
    push_decimal(&mut out, conv.mid_amount);
    out.push_str(r#","rate":"#);
    push_decimal(&mut out, conv.mid_rate);
    out.push('}');
    push_staleness(&mut out, r);
    out.push_str(r#","path":["#);
    for (i, c) in conv.path.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_plain(&mut out, c);
    }
    out.push_str(r#"],"precision":"#);
    push_str(&mut out, query::PRECISION_NOTE);
    let _ = write!(
        out,
        r#","provenance":{{"disputed":{},"fixing_date":"{}","providers":["#,
        conv.disputed, r.day.date
    );
    for (i, p) in conv.providers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, p);
    }
    out.push_str(r#"]},"requested_date":"#);
    push_plain(&mut out, r.requested);
    out.push_str(r#","rounding":"#);
    push_str(&mut out, conv.rounding.as_str());
    let _ = write!(out, r#","stale":{},"to":"#, r.stale);
    push_plain(&mut out, conv.to);
    out.push('}');
    out.into_bytes()
}

/// The `/v1/rates/latest` and `/v1/rates/{date}` body without `sources`.
fn rates_body(
    base: CurrencyCode,
    r: &Resolved,
    rates: &[(CurrencyCode, rust_decimal::Decimal)],
    providers: &[String],
) -> Vec<u8> {
    let mut out = String::with_capacity(160 + rates.len() * 28);
    out.push_str(r#"{"base":"#);
    push_plain(&mut out, base);
    out.push_str(r#","date":"#);
    push_plain(&mut out, r.day.date);
    push_staleness(&mut out, r);
    out.push_str(r#","providers":["#);
    for (i, p) in providers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, p);
    }
    out.push_str(r#"],"rates":{"#);
    // `rates_on` sorts and dedups by code, the order of a sorted map.
    for (i, (c, v)) in rates.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_plain(&mut out, c);
        out.push(':');
        push_decimal(&mut out, *v);
    }
    out.push_str(r#"},"requested_date":"#);
    push_plain(&mut out, r.requested);
    let _ = write!(out, r#","stale":{}}}"#, r.stale);
    out.into_bytes()
}

async fn rates(
    s: AppState,
    on: Option<NaiveDate>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = Params::new(q, &["base", "symbols", "sources"])?;
    let base = p.currency("base")?.unwrap_or(CurrencyCode::EUR);
    let symbols = p.symbols()?;
    let with_sources = p.flag("sources")?;
    let t = s.engine().table();
    let now = s.now();
    let limits = s.inner.cfg.staleness.rates.to_domain();
    let r = query::resolve(&t, on, now, &s.inner.calendar, &limits)
        .map_err(|e| ApiError::fx(e, Some("date")))?;
    let ans =
        query::rates_on(&t, &r.day, base, &symbols).map_err(|e| rates_error(e, base, &symbols))?;
    // `Day::providers_of` without its Vec per currency.
    let mut providers: Vec<String> = Vec::new();
    for c in std::iter::once(base).chain(ans.rates.iter().map(|r| r.0)) {
        let Some(dr) = r.day.get(c) else { continue };
        for p in dr.sources.iter().filter(|s| !s.outlier) {
            if !providers.iter().any(|x| **x == *p.provider) {
                providers.push(p.provider.to_string());
            }
        }
    }
    providers.sort();
    if !with_sources {
        return Ok(cacheable(
            &headers,
            rates_body(base, &r, &ans.rates, &providers),
            t.updated_at,
            max_age(&r, now),
            false,
        ));
    }
    let mut rates = Map::new();
    for (c, v) in &ans.rates {
        rates.insert(c.to_string(), Value::String(v.to_string()));
    }
    let (stale, next) = staleness_json(&r);
    let mut body = json!({
        "base": base, "date": r.day.date.to_string(), "requested_date": r.requested.to_string(),
        "rates": rates, "providers": providers, "stale": stale, "next_fixing_expected": next,
    });
    let mut src = Map::new();
    for c in std::iter::once(base).chain(ans.rates.iter().map(|r| r.0)) {
        if let Some(dr) = r.day.get(c) {
            let list: Vec<Value> = dr
                .sources
                .iter()
                .map(|s| json!({"provider": &*s.provider, "per_eur": s.value.to_string(), "outlier": s.outlier}))
                .collect();
            src.insert(c.to_string(), json!({"consensus_per_eur": dr.mid.to_string(), "disputed": dr.disputed, "values": list}));
        }
    }
    body["sources"] = Value::Object(src);
    body["consensus"] = json!({"method": s.inner.cfg.consensus.method.as_str(), "tolerance_bps": s.inner.cfg.consensus.tolerance_bps});
    Ok(cacheable(
        &headers,
        json_body(&body),
        t.updated_at,
        max_age(&r, now),
        false,
    ))
}

async fn rates_series(
    State(s): State<AppState>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = Params::new(q, &["start", "end", "base", "symbols", "interval"])?;
    let start = date(p.required("start")?, "start")?;
    let now = s.now();
    let today = now.date_naive();
    let end = p.date("end")?.unwrap_or(today);
    let base = p.currency("base")?.unwrap_or(CurrencyCode::EUR);
    let symbols = p.symbols()?;
    let interval = match p.get("interval") {
        None => Interval::Day,
        Some(v) => Interval::parse(v).ok_or_else(|| {
            ApiError::param(
                StatusCode::BAD_REQUEST,
                "unknown_interval",
                "interval",
                "interval must be day, week or month",
            )
        })?,
    };
    if start > end {
        return Err(ApiError::fx(
            FxError::StartAfterEnd { start, end },
            Some("start"),
        ));
    }
    if end > today {
        return Err(ApiError::fx(
            FxError::FutureDate { date: end, today },
            Some("end"),
        ));
    }
    let days = (end - start).num_days() + 1;
    if days > s.inner.cfg.max_range_days {
        return Err(ApiError::fx(
            FxError::RangeTooLong {
                days,
                max: s.inner.cfg.max_range_days,
            },
            Some("end"),
        ));
    }
    let t = s.engine().table();
    let first = t
        .first_date()
        .ok_or_else(|| ApiError::fx(FxError::NoData, None))?;
    if start < first {
        return Err(ApiError::fx(
            FxError::BeforeFirstFixing { date: start, first },
            Some("start"),
        ));
    }
    let sym_key: Vec<&str> = symbols.iter().map(|c| c.as_str()).collect();
    let key = format!(
        "{}|{base}|{}|{start}|{end}|{}",
        t.version,
        sym_key.join(","),
        interval.as_str()
    );
    let (rendered, tag) = match s.inner.series_cache.get(&key) {
        Some(hit) => hit,
        None => {
            let b = render_series(&t, base, &symbols, start, end, interval)?;
            let tag = Arc::from(etag(&b));
            let entry = (b, tag);
            s.inner.series_cache.insert(key, entry.clone());
            entry
        }
    };
    let latest = t.latest().map(|d| d.date);
    let age = if latest.is_some_and(|l| end >= l) {
        match t.latest().map(|d| s.inner.calendar.freshness(d.date, now)) {
            Some(f) if f.next_expected > now => (f.next_expected - now).num_seconds().max(60),
            _ => 60,
        }
    } else {
        86_400
    };
    Ok(cacheable_tagged(
        &headers,
        rendered,
        &tag,
        t.updated_at,
        age,
        false,
    ))
}

fn render_series(
    t: &fx::RateTable,
    base: CurrencyCode,
    symbols: &[CurrencyCode],
    start: NaiveDate,
    end: NaiveDate,
    interval: Interval,
) -> Result<Bytes, ApiError> {
    // Written by hand, as each point comes (no intermediate series): a
    // 25-year daily series is ~200k values, and every key and value here is
    // plain ASCII needing no escaping. Decimals go through
    // `write_decimal_bytes` (same text as `Display`, a fraction of the
    // cost).
    let span = (end - start).num_days().clamp(0, 1 << 20) as usize;
    // ~5 fixings a week, ~30 currencies of ~25 bytes each.
    let mut out: Vec<u8> = Vec::with_capacity(128 + span * 5 / 7 * (16 + 30 * 25));
    let _ = write!(
        out,
        r#"{{"base":"{base}","start":"{start}","end":"{end}","interval":"{}","rates":{{"#,
        interval.as_str()
    );
    let mut first = true;
    query::series_each(t, base, symbols, start, end, interval, |pt| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        push_date(&mut out, pt.start);
        out.extend_from_slice(br#"":{"#);
        for (j, (c, last, mean)) in pt.rates.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(c.as_bytes());
            if interval == Interval::Day {
                out.extend_from_slice(br#"":""#);
                write_decimal_bytes(&mut out, *last);
                out.push(b'"');
            } else {
                out.extend_from_slice(br#"":{"last":""#);
                write_decimal_bytes(&mut out, *last);
                out.extend_from_slice(br#"","mean":""#);
                write_decimal_bytes(&mut out, *mean);
                out.extend_from_slice(br#""}"#);
            }
        }
        if interval != Interval::Day {
            out.extend_from_slice(br#","_last_fixing":""#);
            push_date(&mut out, pt.last_fixing);
            out.push(b'"');
        }
        out.push(b'}');
    })
    .map_err(|e| rates_error(e, base, symbols))?;
    out.extend_from_slice(b"}}");
    Ok(Bytes::from(out))
}

/// Appends `YYYY-MM-DD` (what `NaiveDate`'s `Display` writes for years
/// 0..=9999; others go through it).
fn push_date(out: &mut Vec<u8>, d: NaiveDate) {
    use chrono::Datelike;
    let (y, m, day) = (d.year(), d.month(), d.day());
    if !(0..=9999).contains(&y) {
        let _ = write!(out, "{d}");
        return;
    }
    let y = y as u32;
    out.extend_from_slice(&[
        b'0' + (y / 1000) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
        b'-',
        b'0' + (m / 10) as u8,
        b'0' + (m % 10) as u8,
        b'-',
        b'0' + (day / 10) as u8,
        b'0' + (day % 10) as u8,
    ]);
}

async fn convert(
    State(s): State<AppState>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = Params::new(q, &["from", "to", "amount", "date", "rounding", "tier"])?;
    let from = currency(p.required("from")?, "from")?;
    let to = currency(p.required("to")?, "to")?;
    let amount = parse_amount(p.required("amount")?, from, &s.limits())
        .map_err(|e| ApiError::fx(e.into(), Some("amount")))?;
    let on = p.date("date")?;
    let rounding = p.rounding()?;
    let tier = tier(&s, &headers, p.get("tier"))?;
    let spread_bps = s.inner.cfg.spread.bps(from, to, tier.as_deref());
    let t = s.engine().table();
    let now = s.now();
    let limits = s.inner.cfg.staleness.convert.to_domain();
    let r = query::resolve(&t, on, now, &s.inner.calendar, &limits)
        .map_err(|e| ApiError::fx(e, Some("date")))?;
    let conv = query::convert_on(
        &t,
        &r.day,
        &ConvertRequest {
            from,
            to,
            amount,
            date: on,
            rounding,
            spread_bps,
        },
    )
    .map_err(|e| {
        let param = param_for(&e, &[(from, "from"), (to, "to")], "amount");
        ApiError::fx(e, Some(param))
    })?;
    Ok(cacheable(
        &headers,
        convert_body(&conv, &r, tier.as_deref()),
        t.updated_at,
        max_age(&r, now),
        true,
    ))
}

pub(crate) fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    gateway_core::json::from_slice(body).map_err(|e| {
        ApiError(
            gateway_core::Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                format!("request body is not valid: {e}"),
            )
            .with("parameter", "body"),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuoteBody {
    from: String,
    to: String,
    #[serde(default)]
    tier: Option<String>,
}

fn quote_json(q: &fx::store::QuoteRecord, now: DateTime<Utc>) -> Value {
    json!({
        "id": q.id, "from": q.from, "to": q.to,
        "mid_rate": q.mid_rate.to_string(), "customer_rate": q.customer_rate.to_string(),
        "spread_bps": q.spread_bps, "tier": if q.tier.is_empty() { Value::Null } else { Value::String(q.tier.clone()) },
        "fixing_date": q.fixing_date.to_string(),
        "providers": q.providers.split(',').filter(|p| !p.is_empty()).collect::<Vec<_>>(),
        "created_at": q.created_at.to_rfc3339(), "expires_at": q.expires_at.to_rfc3339(),
        "expired": now >= q.expires_at,
    })
}

async fn create_quote(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: QuoteBody = parse_json(&body)?;
    let from = currency(&b.from, "from")?;
    let to = currency(&b.to, "to")?;
    let tier = tier(&s, &headers, b.tier.as_deref())?;
    let spread_bps = s.inner.cfg.spread.bps(from, to, tier.as_deref());
    let ttl =
        chrono::Duration::from_std(s.inner.cfg.quote_ttl).unwrap_or(chrono::Duration::minutes(10));
    let limits = s.inner.cfg.staleness.quotes.to_domain();
    let q = s
        .engine()
        .create_quote(
            from,
            to,
            spread_bps,
            tier.as_deref(),
            ttl,
            &s.inner.calendar,
            &limits,
        )
        .await
        .map_err(|e| {
            let param = param_for(&e, &[(from, "from"), (to, "to")], "from");
            ApiError::fx(e, Some(param))
        })?;
    let mut res = no_store(StatusCode::CREATED, &quote_json(&q, s.now()));
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/quotes/{}", q.id)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

fn check_quote_id(id: &str) -> Result<(), ApiError> {
    if id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ApiError::param(
            StatusCode::BAD_REQUEST,
            "malformed_quote_id",
            "id",
            "quote ids are letters, digits and `_`",
        ));
    }
    Ok(())
}

async fn get_quote(State(s): State<AppState>, id: PathParam) -> Result<Response, ApiError> {
    let id = path_param(id, "id")?;
    check_quote_id(&id)?;
    let q = s
        .engine()
        .store()
        .get_quote(&id)
        .await
        .map_err(|e| ApiError::fx(e, None))?
        .ok_or_else(|| ApiError::fx(FxError::QuoteNotFound(id.clone()), Some("id")))?;
    Ok(no_store(StatusCode::OK, &quote_json(&q, s.now())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuoteConvertBody {
    amount: Box<serde_json::value::RawValue>,
    #[serde(default)]
    rounding: Option<String>,
}

async fn convert_quote(
    State(s): State<AppState>,
    id: PathParam,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_param(id, "id")?;
    check_quote_id(&id)?;
    let b: QuoteConvertBody = parse_json(&body)?;
    // Amounts are read from their JSON text, string or number, never via f64.
    let raw = b.amount.get();
    let text = match serde_json::from_str::<String>(raw) {
        Ok(s) => s,
        Err(_) => raw.to_string(),
    };
    let rounding = match b.rounding.as_deref() {
        None => RoundingMode::default(),
        Some(r) => r.parse().map_err(|e: String| {
            ApiError::param(StatusCode::BAD_REQUEST, "unknown_rounding", "rounding", e)
        })?,
    };
    let quote = s
        .engine()
        .store()
        .get_quote(&id)
        .await
        .map_err(|e| ApiError::fx(e, None))?
        .ok_or_else(|| ApiError::fx(FxError::QuoteNotFound(id.clone()), Some("id")))?;
    let amount = parse_amount(&text, quote.from, &s.limits())
        .map_err(|e| ApiError::fx(e.into(), Some("amount")))?;
    let c = s
        .engine()
        .convert_quote(&id, amount, rounding)
        .await
        .map_err(|e| {
            let param = if matches!(e, FxError::Overflow) {
                "amount"
            } else {
                "id"
            };
            ApiError::fx(e, Some(param))
        })?;
    let body = json!({
        "quote_id": c.quote.id, "from": c.quote.from, "to": c.quote.to, "amount": c.amount.to_string(),
        "mid": {"rate": c.quote.mid_rate.to_string(), "amount": c.mid_amount.to_string()},
        "customer": {"rate": c.quote.customer_rate.to_string(), "amount": c.customer_amount.to_string(), "spread_bps": c.quote.spread_bps},
        "rounding": c.rounding.as_str(), "fixing_date": c.quote.fixing_date.to_string(),
        "expires_at": c.quote.expires_at.to_rfc3339(), "audit_seq": c.audit_seq,
    });
    Ok(no_store(StatusCode::OK, &body))
}

async fn providers(State(s): State<AppState>, q: RawQuery) -> Result<Response, ApiError> {
    Params::new(q, &[])?;
    let list = s.inner.health.snapshot(s.now(), &s.inner.calendar);
    let t = s.engine().table();
    let mut stored: Vec<String> = Vec::new();
    if let Some(day) = t.latest() {
        for r in &day.rates {
            for src in r.sources.iter() {
                if !stored.iter().any(|p| **p == *src.provider) {
                    stored.push(src.provider.to_string());
                }
            }
        }
    }
    let body = json!({
        "providers": list,
        "latest_fixing_providers": stored,
        "consensus": {"method": s.inner.cfg.consensus.method.as_str(), "tolerance_bps": s.inner.cfg.consensus.tolerance_bps},
    });
    Ok(no_store(StatusCode::OK, &body))
}

async fn raw_rates(
    State(s): State<AppState>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = Params::new(q, &["date", "currency"])?;
    let on = date(p.required("date")?, "date")?;
    let c = currency(p.required("currency")?, "currency")?;
    let values = s
        .engine()
        .store()
        .raw_values(on, c)
        .await
        .map_err(|e| ApiError::fx(e, None))?;
    let list: Vec<Value> = values
        .iter()
        .map(|v| json!({"provider": v.provider, "base": v.base, "rate": v.rate.to_string()}))
        .collect();
    let body = json!({"date": on.to_string(), "currency": c, "values": list});
    let t = s.engine().table();
    Ok(cacheable(
        &headers,
        json_body(&body),
        t.updated_at,
        60,
        false,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use fx::consensus::ConsensusConfig;
    use fx::table::RateBook;
    use fx::{Batch, Fixing};
    use rust_decimal::Decimal;

    /// The `json!` construction `convert_body` replaced.
    fn convert_reference(conv: &query::Conversion, r: &Resolved, tier: Option<&str>) -> Vec<u8> {
        let (stale, next) = staleness_json(r);
        json_body(&json!({
            "from": conv.from, "to": conv.to, "amount": conv.amount.to_string(),
            "date": r.day.date.to_string(), "requested_date": r.requested.to_string(),
            "mid": {"rate": conv.mid_rate.to_string(), "amount": conv.mid_amount.to_string()},
            "customer": {"rate": conv.customer_rate.to_string(), "amount": conv.customer_amount.to_string(), "spread_bps": conv.spread_bps, "tier": tier},
            "rounding": conv.rounding.as_str(),
            "path": conv.path,
            "provenance": {"providers": conv.providers, "fixing_date": r.day.date.to_string(), "disputed": conv.disputed},
            "stale": stale, "next_fixing_expected": next,
            "precision": query::precision_note(),
        }))
    }

    /// The `json!` construction `rates_body` replaced.
    fn rates_reference(
        base: CurrencyCode,
        r: &Resolved,
        ans: &[(CurrencyCode, Decimal)],
        providers: &[String],
    ) -> Vec<u8> {
        let mut rates = Map::new();
        for (c, v) in ans {
            rates.insert(c.to_string(), Value::String(v.to_string()));
        }
        let (stale, next) = staleness_json(r);
        json_body(&json!({
            "base": base, "date": r.day.date.to_string(), "requested_date": r.requested.to_string(),
            "rates": rates, "providers": providers, "stale": stale, "next_fixing_expected": next,
        }))
    }

    fn table() -> Arc<fx::RateTable> {
        let mut book = RateBook::new(ConsensusConfig::default());
        let history = fx::bundled::ecb_history().unwrap();
        book.apply("ecb", &history, Utc::now());
        // A second provider with a name that needs escaping, and a
        // disputed value, on the latest day.
        let latest = book.table().latest().unwrap().date;
        let odd = Batch {
            base: CurrencyCode::EUR,
            fixings: vec![Fixing {
                date: latest,
                rates: vec![
                    (CurrencyCode::USD, Decimal::new(15, 1)),
                    (CurrencyCode::parse("JPY").unwrap(), Decimal::new(1601, 1)),
                ],
            }],
        };
        book.apply("o\"dd\\é\u{1}", &odd, Utc::now()).0
    }

    /// The series body as it was written before it streamed: collected
    /// points, dates and decimals through `Display`.
    fn series_reference(
        t: &fx::RateTable,
        base: CurrencyCode,
        symbols: &[CurrencyCode],
        start: NaiveDate,
        end: NaiveDate,
        interval: Interval,
    ) -> String {
        let points = query::series(t, base, symbols, start, end, interval).unwrap();
        let mut out = format!(
            r#"{{"base":"{base}","start":"{start}","end":"{end}","interval":"{}","rates":{{"#,
            interval.as_str()
        );
        for (i, pt) in points.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, r#""{}":{{"#, pt.start);
            for (j, (c, last, mean)) in pt.rates.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                if interval == Interval::Day {
                    let _ = write!(out, r#""{c}":"{last}""#);
                } else {
                    let _ = write!(out, r#""{c}":{{"last":"{last}","mean":"{mean}"}}"#);
                }
            }
            if interval != Interval::Day {
                let _ = write!(out, r#","_last_fixing":"{}""#, pt.last_fixing);
            }
            out.push('}');
        }
        out.push_str("}}");
        out
    }

    #[test]
    fn streamed_series_equals_the_collected_rendering() {
        let t = table();
        let c = |s: &str| CurrencyCode::parse(s).unwrap();
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        let latest = t.latest().unwrap().date;
        let picked = [c("JPY"), c("EUR"), c("CYP"), c("USD"), c("JPY")];
        for (base, start, end) in [
            ("USD", d(2001, 1, 1), d(2025, 12, 31)),
            ("EUR", d(2005, 6, 1), d(2009, 2, 1)),
            ("JPY", d(2007, 12, 1), latest),
            ("CYP", d(2007, 11, 20), d(2008, 1, 10)),
        ] {
            for symbols in [&[][..], &picked[..]] {
                for interval in [Interval::Day, Interval::Week, Interval::Month] {
                    let Ok(want) = query::series(&t, c(base), symbols, start, end, interval) else {
                        continue;
                    };
                    assert!(!want.is_empty());
                    let got = render_series(&t, c(base), symbols, start, end, interval).unwrap();
                    let want = series_reference(&t, c(base), symbols, start, end, interval);
                    assert_eq!(
                        std::str::from_utf8(&got).unwrap(),
                        want,
                        "{base} {symbols:?} {start}..{end} {interval:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn written_bodies_equal_the_json_values_they_replace() {
        let t = table();
        let calendar = FixingCalendar::default();
        let latest = t.latest().unwrap().date;
        let c = |s: &str| CurrencyCode::parse(s).unwrap();
        let pairs = [
            ("USD", "JPY"),
            ("EUR", "USD"),
            ("JPY", "EUR"),
            ("EUR", "EUR"),
            ("GBP", "KRW"),
        ];
        let dates = [None, Some(latest), NaiveDate::from_ymd_opt(2020, 3, 2)];
        let nows = [
            Utc.from_utc_datetime(&latest.and_hms_opt(18, 0, 0).unwrap()),
            Utc.from_utc_datetime(
                &(latest + chrono::Duration::days(30))
                    .and_hms_opt(9, 0, 0)
                    .unwrap(),
            ),
        ];
        let limits = StalenessLimits {
            soft: chrono::Duration::hours(6),
            hard: None,
        };
        let mut checked = 0;
        for now in nows {
            for on in dates {
                let r = query::resolve(&t, on, now, &calendar, &limits).unwrap();
                for (from, to) in pairs {
                    for (amount, tier) in [
                        ("123.25", None),
                        ("0.01", Some("gold")),
                        ("1000000", Some("a\"b\\c\u{7}é")),
                    ] {
                        let conv = query::convert_on(
                            &t,
                            &r.day,
                            &ConvertRequest {
                                from: c(from),
                                to: c(to),
                                amount: amount.parse().unwrap(),
                                date: on,
                                rounding: RoundingMode::HalfUp,
                                spread_bps: 37,
                            },
                        )
                        .unwrap();
                        assert_eq!(
                            String::from_utf8(convert_body(&conv, &r, tier)).unwrap(),
                            String::from_utf8(convert_reference(&conv, &r, tier)).unwrap()
                        );
                        checked += 1;
                    }
                }
                for base in ["USD", "EUR", "JPY"] {
                    let ans = query::rates_on(&t, &r.day, c(base), &[]).unwrap();
                    for providers in [vec![], vec!["ecb".to_string(), "x\"\n".to_string()]] {
                        assert_eq!(
                            String::from_utf8(rates_body(c(base), &r, &ans.rates, &providers))
                                .unwrap(),
                            String::from_utf8(rates_reference(c(base), &r, &ans.rates, &providers))
                                .unwrap()
                        );
                    }
                }
            }
        }
        assert_eq!(checked, 90);
    }

    #[test]
    fn http_date_and_iso_date_match_chrono() {
        let mut t = Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 58).unwrap();
        for _ in 0..5_000 {
            assert_eq!(
                http_date(t),
                t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
            );
            let d = t.date_naive();
            let text = d.format("%Y-%m-%d").to_string();
            assert_eq!(iso_date(&text), Some(d));
            t += chrono::Duration::seconds(86_400 * 3 + 3_601);
        }
        for s in [
            "2020-02-30",
            "2021-02-29",
            "2020-13-01",
            "2020-00-10",
            "2020-1-2x",
            "+2020-01-01",
            "2020-01-1",
            "20200-01-01",
            "２020-01-01",
            "2020/01/01",
            "0000-01-01",
        ] {
            assert_eq!(
                iso_date(s).or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()),
                NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
                "{s}"
            );
        }
    }
}
