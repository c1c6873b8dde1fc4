//! `/v1/currencies`, `/v1/rates/latest`, `/v1/rates/{date}` and the
//! series `/v1/rates`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use chrono::NaiveDate;
use fx::query::{self, Interval};
use fx::staleness::StalenessLimits;
use fx::{CurrencyCode, FxError};
use gateway_core::{errors, Problem};
use http::HeaderMap;
use std::collections::BTreeMap;

use crate::error;

use super::answers::{
    Consensus, Currencies, Currency, CurrencySources, Rates, Series, SourceValue,
};
use super::body::{rates_body, render_series};
use super::params::{date, path_param, rates_error, Params, PathParam, RawQuery};
use super::respond::{cacheable, cacheable_tagged, etag, json_body, max_age};
use super::state::AppState;

#[utoipa::path(get, path = "/v1/currencies", tag = "rates",
    responses(
        (status = 200, description = "Every currency held, with its coverage.", body = Currencies),
        (status = 304, description = "Not modified (`If-None-Match` / `If-Modified-Since`)."),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
        (status = 503, response = Problem),
    ))]
pub(super) async fn currencies(
    State(s): State<AppState>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
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
    .map_err(|e| error::fx(e, None))?;
    let latest = r.day.date;
    let currencies = t
        .currencies()
        .into_iter()
        .map(|(c, cov)| {
            let info = c.info();
            Currency {
                code: c,
                name: info.name,
                minor_units: info.minor_units,
                first_date: cov.first.to_string(),
                last_date: cov.last.to_string(),
                quoted: cov.last == latest,
            }
        })
        .collect();
    let body = json_body(&Currencies {
        latest_fixing: latest.to_string(),
        currencies,
    });
    Ok(cacheable(
        &headers,
        body,
        t.updated_at,
        max_age(&r, now),
        false,
    ))
}

#[utoipa::path(get, path = "/v1/rates/latest", tag = "rates",
    params(
        ("base" = Option<String>, Query, pattern = "^[A-Z]{3}$", description = "ISO 4217 code of the base (default EUR)."),
        ("symbols" = Option<String>, Query, pattern = "^[A-Z]{3}(,[A-Z]{3})*$", description = "Comma-separated ISO 4217 codes (default: all, at most 200)."),
        ("sources" = Option<bool>, Query, description = "Add each currency's values by provider and the consensus method."),
    ),
    responses(
        (status = 200, description = "The latest fixing's rates.", body = Rates),
        (status = 304, description = "Not modified (`If-None-Match` / `If-Modified-Since`)."),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
        (status = 503, response = Problem),
    ))]
pub(super) async fn rates_latest(
    State(s): State<AppState>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    rates(s, None, q, headers).await
}

#[utoipa::path(get, path = "/v1/rates/{date}", tag = "rates",
    params(
        ("date" = String, Path, format = Date, description = "`YYYY-MM-DD`; a day without a fixing answers the fixing before."),
        ("base" = Option<String>, Query, pattern = "^[A-Z]{3}$", description = "ISO 4217 code of the base (default EUR)."),
        ("symbols" = Option<String>, Query, pattern = "^[A-Z]{3}(,[A-Z]{3})*$", description = "Comma-separated ISO 4217 codes (default: all, at most 200)."),
        ("sources" = Option<bool>, Query, description = "Add each currency's values by provider and the consensus method."),
    ),
    responses(
        (status = 200, description = "The rates of the fixing on (or before) `date`.", body = Rates),
        (status = 304, description = "Not modified (`If-None-Match` / `If-Modified-Since`)."),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
        (status = 503, response = Problem),
    ))]
pub(super) async fn rates_on_date(
    State(s): State<AppState>,
    d: PathParam,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let d = date(&path_param(d, "date")?, "date")?;
    rates(s, Some(d), q, headers).await
}

pub(super) async fn rates(
    s: AppState,
    on: Option<NaiveDate>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let p = Params::new(q, &["base", "symbols", "sources"])?;
    let base = p.currency("base")?.unwrap_or(CurrencyCode::EUR);
    let symbols = p.symbols()?;
    let with_sources = p.flag("sources")?;
    let t = s.engine().table();
    let now = s.now();
    let limits = s.inner.cfg.staleness.rates.to_domain();
    let r = query::resolve(&t, on, now, &s.inner.calendar, &limits)
        .map_err(|e| error::fx(e, Some("date")))?;
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
    let mut sources = BTreeMap::new();
    for c in std::iter::once(base).chain(ans.rates.iter().map(|r| r.0)) {
        if let Some(dr) = r.day.get(c) {
            let values = dr
                .sources
                .iter()
                .map(|s| SourceValue {
                    provider: s.provider.to_string(),
                    per_eur: s.value.to_string(),
                    outlier: s.outlier,
                })
                .collect();
            sources.insert(
                c.to_string(),
                CurrencySources {
                    consensus_per_eur: dr.mid.to_string(),
                    disputed: dr.disputed,
                    values,
                },
            );
        }
    }
    let body = Rates {
        base,
        date: r.day.date.to_string(),
        requested_date: r.requested.to_string(),
        rates: ans
            .rates
            .iter()
            .map(|(c, v)| (c.to_string(), v.to_string()))
            .collect(),
        providers,
        stale: r.stale,
        next_fixing_expected: r.next_expected.map(|t| t.to_rfc3339()),
        sources: Some(sources),
        consensus: Some(Consensus {
            method: s.inner.cfg.consensus.method.as_str(),
            tolerance_bps: s.inner.cfg.consensus.tolerance_bps,
        }),
    };
    Ok(cacheable(
        &headers,
        json_body(&body),
        t.updated_at,
        max_age(&r, now),
        false,
    ))
}

#[utoipa::path(get, path = "/v1/rates", tag = "rates",
    params(
        ("start" = String, Query, format = Date, description = "First day, `YYYY-MM-DD`."),
        ("end" = Option<String>, Query, format = Date, description = "Last day (default today)."),
        ("base" = Option<String>, Query, pattern = "^[A-Z]{3}$", description = "ISO 4217 code of the base (default EUR)."),
        ("symbols" = Option<String>, Query, pattern = "^[A-Z]{3}(,[A-Z]{3})*$", description = "Comma-separated ISO 4217 codes (default: all, at most 200)."),
        ("interval" = Option<String>, Query, pattern = "^(day|week|month)$", description = "`day` (default), `week` or `month`."),
    ),
    responses(
        (status = 200, description = "A series of rates.", body = Series),
        (status = 304, description = "Not modified (`If-None-Match` / `If-Modified-Since`)."),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
        (status = 503, response = Problem),
    ))]
pub(super) async fn rates_series(
    State(s): State<AppState>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
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
            error::param(
                &errors::UNKNOWN_INTERVAL,
                "interval",
                "interval must be day, week or month",
            )
        })?,
    };
    if start > end {
        return Err(error::fx(
            FxError::StartAfterEnd { start, end },
            Some("start"),
        ));
    }
    if end > today {
        return Err(error::fx(
            FxError::FutureDate { date: end, today },
            Some("end"),
        ));
    }
    let days = (end - start).num_days() + 1;
    if days > s.inner.cfg.max_range_days {
        return Err(error::fx(
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
        .ok_or_else(|| error::fx(FxError::NoData, None))?;
    if start < first {
        return Err(error::fx(
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
