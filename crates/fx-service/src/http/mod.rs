//! The JSON-over-HTTP API (axum).
//!
//! Routes (all under `/v1`): `currencies`, `rates/latest`, `rates/{date}`,
//! `rates` (series), `convert`, `quotes`, `quotes/{id}`,
//! `quotes/{id}/convert`, `providers`, `raw-rates` (every provider's value
//! exactly as published, for audit); plus `/healthz` and `/openapi.json`
//! (the OpenAPI 3.1 document, `openapi`).
//!
//! Every amount and rate is a JSON *string* holding an exact decimal.
//! Cacheable answers carry a strong `ETag` (hash of the body),
//! `Last-Modified` (when the rate table last changed) and a `Cache-Control`
//! max-age that runs to the next expected fixing, and honour
//! `If-None-Match` / `If-Modified-Since` with 304. Errors are problem+json
//! naming the parameter at fault; unknown or repeated parameters are refused
//! so a typo (`symbol=`) is not silently ignored.
//!
//! One job per module: `state` ([`AppState`]), `params` (reading a
//! request), `respond` (caching headers, 304s), `body` (the hand-written
//! JSON bodies), `answers` (the answers' types and schemas), `openapi`
//! (the document), and the handlers by endpoint group: `rates`, `convert`,
//! `quotes`, `providers`; the admin endpoints are [`crate::admin`];
//! `trace` wraps the routes in OpenTelemetry server spans. This module
//! only routes.

pub(crate) mod answers;
mod body;
mod convert;
mod openapi;
mod params;
mod providers;
mod quotes;
mod rates;
mod respond;
mod state;
mod trace;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use gateway_core::{errors, Problem};

pub use openapi::document as openapi;
pub(crate) use params::parse_json;
pub use params::TIER_HEADER;
pub use state::{AppState, SERIES_CACHE_BYTES};
pub use trace::traced;

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
        .route("/healthz", get(providers::healthz))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/v1/currencies", get(rates::currencies))
        .route("/v1/rates/latest", get(rates::rates_latest))
        .route("/v1/rates/{date}", get(rates::rates_on_date))
        .route("/v1/rates", get(rates::rates_series))
        .route("/v1/convert", get(convert::convert))
        .route("/v1/quotes", post(quotes::create_quote))
        .route("/v1/quotes/{id}", get(quotes::get_quote))
        .route("/v1/quotes/{id}/convert", post(quotes::convert_quote))
        .route("/v1/providers", get(providers::providers))
        .route("/v1/raw-rates", get(providers::raw_rates))
        .merge(crate::admin::router(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(16 * 1024))
        .with_state(state)
}

async fn not_found() -> Problem {
    Problem::new(
        &errors::ROUTE_NOT_FOUND,
        "no such endpoint; see /v1/currencies, /v1/rates, /v1/convert, /v1/quotes",
    )
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        &errors::METHOD_NOT_ALLOWED,
        "this endpoint does not accept that method",
    )
}
