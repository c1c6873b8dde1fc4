//! Service and provider status: `/healthz`, `/v1/providers` and the raw
//! published values of `/v1/raw-rates` (for audit).

use axum::extract::State;
use axum::response::Response;
use gateway_core::Problem;
use http::{HeaderMap, StatusCode};

use crate::error;

use super::answers::{Consensus, Health, Providers, RawRates, RawValue};
use super::params::{currency, date, Params, RawQuery};
use super::respond::{cacheable, json_body, no_store};
use super::state::AppState;

#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "The service is up.", body = Health)))]
pub(super) async fn healthz(State(s): State<AppState>) -> Response {
    let t = s.engine().table();
    no_store(
        StatusCode::OK,
        &Health {
            status: "ok",
            latest_fixing: t.latest().map(|d| d.date.to_string()),
            days: t.days().len(),
        },
    )
}

#[utoipa::path(get, path = "/v1/providers", tag = "service",
    responses(
        (status = 200, description = "Each provider's ingestion health.", body = Providers),
        (status = 400, response = Problem),
    ))]
pub(super) async fn providers(State(s): State<AppState>, q: RawQuery) -> Result<Response, Problem> {
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
    let body = Providers {
        providers: list,
        latest_fixing_providers: stored,
        consensus: Consensus {
            method: s.inner.cfg.consensus.method.as_str(),
            tolerance_bps: s.inner.cfg.consensus.tolerance_bps,
        },
    };
    Ok(no_store(StatusCode::OK, &body))
}

#[utoipa::path(get, path = "/v1/raw-rates", tag = "rates",
    params(
        ("date" = String, Query, format = Date, description = "Fixing date, `YYYY-MM-DD`."),
        ("currency" = String, Query, pattern = "^[A-Z]{3}$", description = "ISO 4217 code."),
    ),
    responses(
        (status = 200, description = "Every provider's value exactly as published.", body = RawRates),
        (status = 304, description = "Not modified (`If-None-Match` / `If-Modified-Since`)."),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
    ))]
pub(super) async fn raw_rates(
    State(s): State<AppState>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let p = Params::new(q, &["date", "currency"])?;
    let on = date(p.required("date")?, "date")?;
    let c = currency(p.required("currency")?, "currency")?;
    let values = s
        .engine()
        .store()
        .raw_values(on, c)
        .await
        .map_err(|e| error::fx(e, None))?;
    let body = RawRates {
        date: on.to_string(),
        currency: c,
        values: values
            .iter()
            .map(|v| RawValue {
                provider: v.provider.clone(),
                base: v.base,
                rate: v.rate.to_string(),
            })
            .collect(),
    };
    let t = s.engine().table();
    Ok(cacheable(
        &headers,
        json_body(&body),
        t.updated_at,
        60,
        false,
    ))
}
