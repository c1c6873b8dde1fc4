//! The fx API's OpenAPI 3.1 document, generated from the handlers'
//! `#[utoipa::path]` attributes and the answers' types, served at
//! `/openapi.json` (open, like `/healthz`).

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use gateway_core::Problem;
use http::header;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse fx API",
        description = "Exchange rates, conversions and quotes. Every amount and rate is a JSON \
            string holding an exact decimal; errors are problem+json (RFC 9457) naming the \
            parameter at fault. Unknown or repeated query parameters are refused."
    ),
    paths(
        openapi_json,
        super::providers::healthz,
        super::rates::currencies,
        super::rates::rates_latest,
        super::rates::rates_on_date,
        super::rates::rates_series,
        super::convert::convert,
        super::quotes::create_quote,
        super::quotes::get_quote,
        super::quotes::convert_quote,
        super::providers::providers,
        super::providers::raw_rates,
        crate::admin::quarantine,
        crate::admin::corrections,
        crate::admin::correct,
    ),
    components(schemas(Problem), responses(Problem)),
    modifiers(&AdminToken),
    tags(
        (name = "rates", description = "Rates by day, series and raw published values."),
        (name = "convert", description = "Conversions at a day's rates."),
        (name = "quotes", description = "Rates held until they expire."),
        (name = "service", description = "Health, providers and this document."),
        (name = "admin", description = "Review and correction of stored values (`admin_token`)."),
    )
)]
struct FxApi;

/// The bearer token of the admin endpoints (`admin_token`).
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "fx_admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`admin_token` of the fx config (GATEHOUSE_FX_ADMIN_TOKEN); without one \
                         configured the admin endpoints answer 403 `admin_disabled`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    FxApi::openapi()
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| document().to_json().unwrap_or_default());

#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "This document (OpenAPI 3.1).",
        content_type = "application/json", body = Object)))]
pub(super) async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}
