//! Service and provider status: `/healthz`, `/v1/providers` and the raw
//! published values of `/v1/raw-rates` (for audit).

use axum::extract::State;
use axum::response::Response;
use gateway_core::Problem;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::error;

use super::params::{currency, date, Params, RawQuery};
use super::respond::{cacheable, json_body, no_store};
use super::state::AppState;

pub(super) async fn healthz(State(s): State<AppState>) -> Response {
    let t = s.engine().table();
    no_store(
        StatusCode::OK,
        &json!({"status": "ok", "latest_fixing": t.latest().map(|d| d.date.to_string()), "days": t.days().len()}),
    )
}

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
    let body = json!({
        "providers": list,
        "latest_fixing_providers": stored,
        "consensus": {"method": s.inner.cfg.consensus.method.as_str(), "tolerance_bps": s.inner.cfg.consensus.tolerance_bps},
    });
    Ok(no_store(StatusCode::OK, &body))
}

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
