//! The admin HTTP API over [`KeyService`], as an axum router.
//!
//! Routes carry their full paths (`/v1/keys`, `/v1/keys/{id}`, ...,
//! `/v1/audit`, `/v1/consumers`), so the admin listener `merge`s the router
//! rather than nesting it. The listener puts its admin-token check in front
//! and may pass the authenticated actor name in `X-Gatehouse-Actor` (else
//! `admin` is recorded in the audit log).
//!
//! | Method | Path | Body | Success |
//! |---|---|---|---|
//! | POST | `/v1/keys` | [`CreateKey`] | 201, key + secret (once) |
//! | GET | `/v1/keys?consumer=&status=` | | 200 `{keys}` |
//! | GET | `/v1/keys/{id}` | | 200 key |
//! | PATCH | `/v1/keys/{id}` | [`UpdateKey`] | 200 key (audited as `key.update`) |
//! | GET | `/v1/keys/{id}/usage` | | 200 requests and refusals per hour, last 24 h (this node) |
//! | POST | `/v1/keys/{id}/rotate` | [`RotateKey`] (optional) | 201, successor + secret |
//! | POST | `/v1/keys/{id}/revoke` | `{"reason"}` (optional) | 200 key |
//! | GET | `/v1/keys/{id}/audit?limit=&before=` | | 200 `{entries}` |
//! | GET | `/v1/audit?limit=&before=` | | 200 `{entries}` |
//! | POST | `/v1/consumers` | [`CreateConsumer`] | 201 consumer |
//! | GET | `/v1/consumers` | | 200 `{consumers}` |
//! | GET | `/v1/consumers/{id}` | | 200 consumer + keys |
//!
//! Every error is problem+json with a stable `code`; a secret appears only
//! in the 201 of create and rotate.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use gateway_core::{errors, Problem};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::model::{AuditEntry, Consumer, KeyView};
use crate::service::{
    CreateConsumer, CreateKey, IssuedKey, KeyFilter, KeyService, RotateKey, UpdateKey,
};
use crate::usage::KeyUsageReport;

/// Header naming the admin actor for the audit log.
pub const ACTOR_HEADER: &str = "x-gatehouse-actor";

/// The document of [`router`]'s routes (mounted by the admin listener,
/// which adds its security).
#[derive(OpenApi)]
#[openapi(
    paths(
        create_key,
        list_keys,
        get_key,
        update_key,
        key_usage,
        rotate_key,
        revoke_key,
        key_audit,
        all_audit,
        create_consumer,
        list_consumers,
        get_consumer
    ),
    tags((name = "keys", description = "API keys, consumers and their audit log."))
)]
pub struct KeysApi;

/// The admin router. See the module docs for the routes.
pub fn router(service: KeyService) -> Router {
    Router::new()
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{id}", get(get_key).patch(update_key))
        .route("/v1/keys/{id}/usage", get(key_usage))
        .route("/v1/keys/{id}/rotate", post(rotate_key))
        .route("/v1/keys/{id}/revoke", post(revoke_key))
        .route("/v1/keys/{id}/audit", get(key_audit))
        .route("/v1/audit", get(all_audit))
        .route("/v1/consumers", post(create_consumer).get(list_consumers))
        .route("/v1/consumers/{id}", get(get_consumer))
        .with_state(service)
}

/// `GET /v1/keys`.
#[derive(Serialize, ToSchema)]
struct KeyList {
    /// The keys, newest first.
    keys: Vec<KeyView>,
}

/// `GET /v1/audit` and `GET /v1/keys/{id}/audit`.
#[derive(Serialize, ToSchema)]
struct AuditLog {
    /// The entries, newest first.
    entries: Vec<AuditEntry>,
}

/// `GET /v1/consumers`.
#[derive(Serialize, ToSchema)]
struct ConsumerList {
    /// Every consumer.
    consumers: Vec<Consumer>,
}

/// `GET /v1/consumers/{id}`.
#[derive(Serialize, ToSchema)]
struct ConsumerKeys {
    /// The consumer.
    consumer: Consumer,
    /// Its keys, newest first.
    keys: Vec<KeyView>,
}

/// Every handler's result: service errors convert with `?`.
type ApiResult = Result<Response, Problem>;

fn ok<T: Serialize>(status: StatusCode, value: &T) -> ApiResult {
    let body =
        serde_json::to_vec(value).map_err(|e| Problem::new(&errors::INTERNAL, e.to_string()))?;
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    // Responses may hold a one-time secret; never let a cache keep them.
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

fn bad_request(detail: String) -> Problem {
    Problem::new(&errors::INVALID_REQUEST, detail)
}

/// Parses a JSON body; an empty body means "all defaults" when allowed.
fn parse_body<T: DeserializeOwned + Default>(
    body: &Bytes,
    allow_empty: bool,
) -> Result<T, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if allow_empty {
            Ok(T::default())
        } else {
            Err(bad_request("a JSON body is required".into()))
        };
    }
    gateway_core::json::from_slice(body).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

fn parse_query<T>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, Problem> {
    q.map(|Query(v)| v)
        .map_err(|e| bad_request(format!("invalid query: {}", e.body_text())))
}

fn actor(headers: &HeaderMap) -> String {
    headers
        .get(ACTOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 100)
        .unwrap_or("admin")
        .to_string()
}

#[utoipa::path(post, path = "/v1/keys", tag = "keys",
    request_body = CreateKey,
    responses(
        (status = 201, description = "The key and its secret (shown once).", body = IssuedKey),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn create_key(State(svc): State<KeyService>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let req: CreateKey = parse_body(&body, false)?;
    let issued = svc.create(req, &actor(&headers)).await?;
    ok(StatusCode::CREATED, &issued)
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    params(KeyFilter),
    responses(
        (status = 200, description = "The keys, newest first.", body = KeyList),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn list_keys(
    State(svc): State<KeyService>,
    q: Result<Query<KeyFilter>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let filter = parse_query(q)?;
    let keys = svc.list(&filter).await?;
    ok(StatusCode::OK, &KeyList { keys })
}

#[utoipa::path(get, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id.")),
    responses(
        (status = 200, description = "The key (never its secret).", body = KeyView),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn get_key(State(svc): State<KeyService>, Path(id): Path<String>) -> ApiResult {
    ok(StatusCode::OK, &svc.get(&id).await?)
}

#[utoipa::path(patch, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id.")),
    request_body = UpdateKey,
    responses(
        (status = 200, description = "The key as updated (audited as `key.update`).", body = KeyView),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn update_key(
    State(svc): State<KeyService>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let req: UpdateKey = parse_body(&body, false)?;
    ok(
        StatusCode::OK,
        &svc.update(&id, req, &actor(&headers)).await?,
    )
}

#[utoipa::path(get, path = "/v1/keys/{id}/usage", tag = "keys",
    params(("id" = String, Path, description = "Key id.")),
    responses(
        (status = 200, description = "Requests and refusals per hour over the last 24 hours (this node).", body = KeyUsageReport),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn key_usage(State(svc): State<KeyService>, Path(id): Path<String>) -> ApiResult {
    ok(StatusCode::OK, &svc.usage(&id).await?)
}

#[utoipa::path(post, path = "/v1/keys/{id}/rotate", tag = "keys",
    params(("id" = String, Path, description = "Key id.")),
    request_body(content = Option<RotateKey>, description = "Optional; an empty body takes the defaults."),
    responses(
        (status = 201, description = "The successor and its secret (shown once); the old key retires.", body = IssuedKey),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn rotate_key(
    State(svc): State<KeyService>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let req: RotateKey = parse_body(&body, true)?;
    let issued = svc.rotate(&id, req, &actor(&headers)).await?;
    ok(StatusCode::CREATED, &issued)
}

/// `POST /v1/keys/{id}/revoke`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    /// Why (recorded in the audit log).
    #[serde(default)]
    reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/keys/{id}/revoke", tag = "keys",
    params(("id" = String, Path, description = "Key id.")),
    request_body(content = Option<RevokeBody>, description = "Optional."),
    responses(
        (status = 200, description = "The key, revoked.", body = KeyView),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn revoke_key(
    State(svc): State<KeyService>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let req: RevokeBody = parse_body(&body, true)?;
    ok(
        StatusCode::OK,
        &svc.revoke(&id, req.reason, &actor(&headers)).await?,
    )
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// At most this many entries (default 100).
    #[serde(default)]
    limit: Option<u32>,
    /// Only entries before this sequence number (paging).
    #[serde(default)]
    before: Option<i64>,
}

#[utoipa::path(get, path = "/v1/keys/{id}/audit", tag = "keys",
    params(("id" = String, Path, description = "Key id."), AuditParams),
    responses(
        (status = 200, description = "The key's audit entries, newest first.", body = AuditLog),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn key_audit(
    State(svc): State<KeyService>,
    Path(id): Path<String>,
    q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let p = parse_query(q)?;
    let entries = svc
        .audit(Some(&id), p.limit.unwrap_or(100), p.before)
        .await?;
    ok(StatusCode::OK, &AuditLog { entries })
}

#[utoipa::path(get, path = "/v1/audit", tag = "keys",
    params(AuditParams),
    responses(
        (status = 200, description = "Audit entries, newest first.", body = AuditLog),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn all_audit(
    State(svc): State<KeyService>,
    q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let p = parse_query(q)?;
    let entries = svc.audit(None, p.limit.unwrap_or(100), p.before).await?;
    ok(StatusCode::OK, &AuditLog { entries })
}

#[utoipa::path(post, path = "/v1/consumers", tag = "keys",
    request_body = CreateConsumer,
    responses(
        (status = 201, description = "The consumer.", body = Consumer),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn create_consumer(
    State(svc): State<KeyService>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let req: CreateConsumer = parse_body(&body, false)?;
    ok(
        StatusCode::CREATED,
        &svc.create_consumer(req, &actor(&headers)).await?,
    )
}

#[utoipa::path(get, path = "/v1/consumers", tag = "keys",
    responses(
        (status = 200, description = "Every consumer.", body = ConsumerList),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn list_consumers(State(svc): State<KeyService>) -> ApiResult {
    let consumers = svc.consumers().await?;
    ok(StatusCode::OK, &ConsumerList { consumers })
}

#[utoipa::path(get, path = "/v1/consumers/{id}", tag = "keys",
    params(("id" = String, Path, description = "Consumer id or name.")),
    responses(
        (status = 200, description = "The consumer and its keys.", body = ConsumerKeys),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn get_consumer(State(svc): State<KeyService>, Path(id): Path<String>) -> ApiResult {
    let consumer = svc.consumer(&id).await?;
    let keys = svc
        .list(&KeyFilter {
            consumer: Some(consumer.id.to_string()),
            status: None,
        })
        .await?;
    ok(StatusCode::OK, &ConsumerKeys { consumer, keys })
}
