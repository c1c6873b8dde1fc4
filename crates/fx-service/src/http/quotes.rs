//! Quotes: `POST /v1/quotes` (a rate held until it expires),
//! `GET /v1/quotes/{id}` and `POST /v1/quotes/{id}/convert`.

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use fx::money::parse_amount;
use fx::{FxError, RoundingMode};
use gateway_core::{errors, Problem};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error;

use super::answers::{Priced, Quote, QuoteConversion, QuoteCustomer};
use super::params::{currency, param_for, parse_json, path_param, tier, PathParam};
use super::respond::no_store;
use super::state::AppState;

/// `POST /v1/quotes`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct QuoteBody {
    from: String,
    to: String,
    #[serde(default)]
    tier: Option<String>,
}

pub(super) fn quote_json(q: &fx::store::QuoteRecord, now: DateTime<Utc>) -> Quote {
    Quote {
        id: q.id.clone(),
        from: q.from,
        to: q.to,
        mid_rate: q.mid_rate.to_string(),
        customer_rate: q.customer_rate.to_string(),
        spread_bps: q.spread_bps,
        tier: (!q.tier.is_empty()).then(|| q.tier.clone()),
        fixing_date: q.fixing_date.to_string(),
        providers: q
            .providers
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
        created_at: q.created_at.to_rfc3339(),
        expires_at: q.expires_at.to_rfc3339(),
        expired: now >= q.expires_at,
    }
}

#[utoipa::path(post, path = "/v1/quotes", tag = "quotes",
    params(("x-gatehouse-tier" = Option<String>, Header, description = "The client's tier, as a gateway sets it from its API key.")),
    request_body = QuoteBody,
    responses(
        (status = 201, description = "The quote; `Location` names it.", body = Quote,
            headers(("location" = String, description = "`/v1/quotes/{id}`"))),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
        (status = 503, response = Problem),
    ))]
pub(super) async fn create_quote(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
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
            error::fx(e, Some(param))
        })?;
    let mut res = no_store(StatusCode::CREATED, &quote_json(&q, s.now()));
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/quotes/{}", q.id)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

pub(super) fn check_quote_id(id: &str) -> Result<(), Problem> {
    if id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(error::param(
            &errors::MALFORMED_QUOTE_ID,
            "id",
            "quote ids are letters, digits and `_`",
        ));
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/quotes/{id}", tag = "quotes",
    params(("id" = String, Path, description = "Quote id: letters, digits and `_`, at most 64.")),
    responses(
        (status = 200, description = "The quote.", body = Quote),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
    ))]
pub(super) async fn get_quote(
    State(s): State<AppState>,
    id: PathParam,
) -> Result<Response, Problem> {
    let id = path_param(id, "id")?;
    check_quote_id(&id)?;
    let q = s
        .engine()
        .store()
        .get_quote(&id)
        .await
        .map_err(|e| error::fx(e, None))?
        .ok_or_else(|| error::fx(FxError::QuoteNotFound(id.clone()), Some("id")))?;
    Ok(no_store(StatusCode::OK, &quote_json(&q, s.now())))
}

/// `POST /v1/quotes/{id}/convert`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct QuoteConvertBody {
    /// A positive decimal, as a JSON string or number (read from its text,
    /// never through a float).
    #[schema(schema_with = amount_schema)]
    amount: Box<serde_json::value::RawValue>,
    /// Rounding of the converted amount (default half_even).
    #[serde(default)]
    #[schema(value_type = Option<fx::RoundingMode>)]
    rounding: Option<String>,
}

fn amount_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .into()
}

#[utoipa::path(post, path = "/v1/quotes/{id}/convert", tag = "quotes",
    params(("id" = String, Path, description = "Quote id: letters, digits and `_`, at most 64.")),
    request_body = QuoteConvertBody,
    responses(
        (status = 200, description = "The amount converted at the quote's rates (audited).", body = QuoteConversion),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 410, response = Problem),
        (status = 422, response = Problem),
    ))]
pub(super) async fn convert_quote(
    State(s): State<AppState>,
    id: PathParam,
    body: Bytes,
) -> Result<Response, Problem> {
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
        Some(r) => r
            .parse()
            .map_err(|e: String| error::param(&errors::UNKNOWN_ROUNDING, "rounding", e))?,
    };
    let quote = s
        .engine()
        .store()
        .get_quote(&id)
        .await
        .map_err(|e| error::fx(e, None))?
        .ok_or_else(|| error::fx(FxError::QuoteNotFound(id.clone()), Some("id")))?;
    let amount = parse_amount(&text, quote.from, &s.limits())
        .map_err(|e| error::fx(e.into(), Some("amount")))?;
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
            error::fx(e, Some(param))
        })?;
    let body = QuoteConversion {
        quote_id: c.quote.id.clone(),
        from: c.quote.from,
        to: c.quote.to,
        amount: c.amount.to_string(),
        mid: Priced {
            rate: c.quote.mid_rate.to_string(),
            amount: c.mid_amount.to_string(),
        },
        customer: QuoteCustomer {
            rate: c.quote.customer_rate.to_string(),
            amount: c.customer_amount.to_string(),
            spread_bps: c.quote.spread_bps,
        },
        rounding: c.rounding,
        fixing_date: c.quote.fixing_date.to_string(),
        expires_at: c.quote.expires_at.to_rfc3339(),
        audit_seq: c.audit_seq,
    };
    Ok(no_store(StatusCode::OK, &body))
}
