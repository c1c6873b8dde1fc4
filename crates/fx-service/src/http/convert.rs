//! `/v1/convert`: an amount converted at a day's rates, mid and customer
//! (with the tier's spread).

use axum::extract::State;
use axum::response::Response;
use fx::money::parse_amount;
use fx::query::{self, ConvertRequest};
use gateway_core::Problem;
use http::HeaderMap;

use crate::error;

#[allow(unused_imports)] // named by the OpenAPI attribute
use super::answers::Conversion;
use super::body::convert_body;
use super::params::{currency, param_for, tier, Params, RawQuery};
use super::respond::{cacheable, max_age};
use super::state::AppState;

#[utoipa::path(get, path = "/v1/convert", tag = "convert",
    params(
        ("from" = String, Query, pattern = "^[A-Z]{3}$", description = "ISO 4217 code converted from."),
        ("to" = String, Query, pattern = "^[A-Z]{3}$", description = "ISO 4217 code converted to."),
        ("amount" = String, Query, pattern = "^[0-9]{1,9}(\\.[0-9]{1,2})?$", description = "A positive decimal, at most the `from` currency's minor units.", example = "100"),
        ("date" = Option<String>, Query, format = Date, description = "The fixing to use (default the latest)."),
        ("rounding" = Option<fx::RoundingMode>, Query, description = "Rounding of the converted amount (default half_even)."),
        ("tier" = Option<String>, Query, description = "A configured pricing tier (else `X-Gatehouse-Tier`)."),
        ("x-gatehouse-tier" = Option<String>, Header, description = "The client's tier, as a gateway sets it from its API key."),
    ),
    responses(
        (status = 200, description = "The amount at the mid rate and at the customer rate.", body = Conversion),
        (status = 304, description = "Not modified (`If-None-Match` / `If-Modified-Since`)."),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
        (status = 503, response = Problem),
    ))]
pub(super) async fn convert(
    State(s): State<AppState>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let p = Params::new(q, &["from", "to", "amount", "date", "rounding", "tier"])?;
    let from = currency(p.required("from")?, "from")?;
    let to = currency(p.required("to")?, "to")?;
    let amount = parse_amount(p.required("amount")?, from, &s.limits())
        .map_err(|e| error::fx(e.into(), Some("amount")))?;
    let on = p.date("date")?;
    let rounding = p.rounding()?;
    let tier = tier(&s, &headers, p.get("tier"))?;
    let spread_bps = s.inner.cfg.spread.bps(from, to, tier.as_deref());
    let t = s.engine().table();
    let now = s.now();
    let limits = s.inner.cfg.staleness.convert.to_domain();
    let r = query::resolve(&t, on, now, &s.inner.calendar, &limits)
        .map_err(|e| error::fx(e, Some("date")))?;
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
        error::fx(e, Some(param))
    })?;
    Ok(cacheable(
        &headers,
        convert_body(&conv, &r, tier.as_deref()),
        t.updated_at,
        max_age(&r, now),
        true,
    ))
}
