//! Admin endpoints of the fx service: review quarantined values and
//! correct stored ones.
//!
//! - `GET /v1/admin/quarantine`: values held back by a plausibility check
//!   and not released yet.
//! - `GET /v1/admin/corrections[?provider=&date=]`: the audit of
//!   corrections (who, when, old value, new value, why), oldest first.
//! - `POST /v1/admin/corrections` `{"provider","date","currency","rate",
//!   "actor","reason"}`: replaces the stored value (or releases the
//!   quarantined one: give its own value to approve it). The old value is
//!   kept, the correction audited, the rate table republished at once and,
//!   in a fleet, the other instances told.
//!
//! Authentication follows the gateway's admin API: `Authorization: Bearer
//! <token>` compared in constant time with `admin_token`
//! (`GATEHOUSE_FX_ADMIN_TOKEN`); 401 `admin_unauthorized` otherwise. With
//! no token configured every admin endpoint answers 403 `admin_disabled`.

use axum::extract::{Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use chrono::NaiveDate;
use fx::review::CorrectionMeta;
use fx::{CurrencyCode, FxError};
use gateway_core::{errors, Problem};
use http::{header, HeaderValue, StatusCode};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::{IntoParams, ToSchema};

use crate::error;
use crate::http::answers::{Corrected, Corrections, Quarantine};
use crate::http::{parse_json, AppState};

/// The admin routes, behind the token check (merged into the API router).
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/admin/quarantine", get(quarantine))
        .route("/v1/admin/corrections", get(corrections).post(correct))
        .layer(middleware::from_fn_with_state(state, require_token))
}

async fn require_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = s.config().admin_token.as_ref() else {
        return Problem::new(
            &errors::ADMIN_DISABLED,
            "the fx admin endpoints are disabled: set `admin_token` or GATEHOUSE_FX_ADMIN_TOKEN",
        )
        .into_response();
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok: bool = presented.as_bytes().ct_eq(token.0.as_bytes()).into();
    if !ok || presented.is_empty() {
        let mut res = Problem::new(
            &errors::ADMIN_UNAUTHORIZED,
            "the fx admin endpoints need `Authorization: Bearer <admin token>`",
        )
        .into_response();
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"gatehouse-fx-admin\""),
        );
        return res;
    }
    next.run(req).await
}

fn ok_json<T: Serialize>(status: StatusCode, v: &T) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        serde_json::to_string(v).unwrap_or_default(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/v1/admin/quarantine", tag = "admin",
    security(("fx_admin_token" = [])),
    responses(
        (status = 200, description = "Values held back by a plausibility check, not released yet.", body = Quarantine),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 500, response = Problem),
    ))]
pub(crate) async fn quarantine(State(s): State<AppState>) -> Result<Response, Problem> {
    let list = s
        .engine()
        .store()
        .open_quarantine()
        .await
        .map_err(|e| error::fx(e, None))?;
    Ok(ok_json(StatusCode::OK, &Quarantine { quarantined: list }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Only this provider's corrections.
    provider: Option<String>,
    /// Only corrections of this fixing date.
    date: Option<NaiveDate>,
}

#[utoipa::path(get, path = "/v1/admin/corrections", tag = "admin",
    security(("fx_admin_token" = [])),
    params(HistoryQuery),
    responses(
        (status = 200, description = "The audit of corrections, oldest first.", body = Corrections),
        (status = 400, response = Problem),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 500, response = Problem),
    ))]
pub(crate) async fn corrections(
    State(s): State<AppState>,
    q: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = q.map_err(|e| {
        error::param(
            &errors::INVALID_PARAMETER,
            "query",
            format!("expected provider= and date=YYYY-MM-DD: {e}"),
        )
    })?;
    let list = s
        .engine()
        .store()
        .corrections(q.provider.as_deref(), q.date, q.date)
        .await
        .map_err(|e| error::fx(e, None))?;
    Ok(ok_json(StatusCode::OK, &Corrections { corrections: list }))
}

/// `POST /v1/admin/corrections`: the value to publish for one provider,
/// date and currency, and who and why.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CorrectionBody {
    provider: String,
    date: NaiveDate,
    currency: String,
    /// An exact decimal.
    rate: String,
    actor: String,
    reason: String,
}

fn required(value: &str, field: &str) -> Result<(), Problem> {
    if value.trim().is_empty() {
        return Err(error::param(
            &errors::MISSING_FIELD,
            field,
            format!("`{field}` must not be empty"),
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/admin/corrections", tag = "admin",
    security(("fx_admin_token" = [])),
    request_body = CorrectionBody,
    responses(
        (status = 201, description = "The value was replaced (or released); the correction is audited.", body = Corrected),
        (status = 200, description = "That value is already published (`changed: false`).", body = Corrected),
        (status = 400, response = Problem),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
        (status = 500, response = Problem),
    ))]
pub(crate) async fn correct(State(s): State<AppState>, body: Bytes) -> Result<Response, Problem> {
    let b: CorrectionBody = parse_json(&body)?;
    required(&b.provider, "provider")?;
    required(&b.actor, "actor")?;
    required(&b.reason, "reason")?;
    let currency = CurrencyCode::parse(&b.currency)
        .map_err(|e| error::fx(FxError::Currency(e), Some("currency")))?;
    let rate: Decimal = b.rate.trim().parse().map_err(|_| {
        error::param(
            &errors::INVALID_RATE_SYNTAX,
            "rate",
            format!(
                "`{}` is not a decimal rate",
                b.rate.chars().take(32).collect::<String>()
            ),
        )
    })?;
    let meta = CorrectionMeta {
        actor: b.actor.trim().to_string(),
        reason: b.reason.trim().to_string(),
        via: "api".to_string(),
    };
    let engine = s.engine();
    let record = engine
        .correct_one(&b.provider, b.date, currency, rate, meta)
        .await
        .map_err(|e| {
            let field = match e {
                FxError::InvalidRate(_) => Some("rate"),
                _ => None,
            };
            error::fx(e, field)
        })?;
    let Some(record) = record else {
        return Ok(ok_json(
            StatusCode::OK,
            &Corrected {
                changed: false,
                correction: None,
                detail: Some("that value is already published"),
            },
        ));
    };
    if let Some(f) = s.fleet() {
        let _ = f
            .announce(&crate::fleet::RatesChanged {
                provider: record.provider.clone(),
                first_fixing: Some(record.date),
                last_fixing: record.date,
                rows: 1,
            })
            .await;
    }
    Ok(ok_json(
        StatusCode::CREATED,
        &Corrected {
            changed: true,
            correction: Some(record),
            detail: None,
        },
    ))
}
