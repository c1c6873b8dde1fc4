//! Admin API for dark launches, mounted by the gateway on its admin listener
//! (which owns authentication).
//!
//! | Method | Path                         | Does                               |
//! |--------|------------------------------|------------------------------------|
//! | GET    | `/v1/shadow`                 | list launches with score, verdict  |
//! | POST   | `/v1/shadow`                 | create (body: a `LaunchConfig`)    |
//! | GET    | `/v1/shadow/{name}`          | full report (JSON)                 |
//! | GET    | `/v1/shadow/{name}/config`   | the launch definition              |
//! | POST   | `/v1/shadow/{name}/pause`    | pause mirroring                    |
//! | POST   | `/v1/shadow/{name}/resume`   | resume                             |
//! | POST   | `/v1/shadow/{name}/stop`     | stop for good (report kept)        |
//!
//! Errors are problem+json with stable codes (`shadow_not_found`,
//! `shadow_exists`, `shadow_invalid`, `shadow_state_conflict`,
//! `shadow_store_unavailable`, `shadow_bad_request`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use gateway_core::{errors, Problem};
use utoipa::OpenApi;

use crate::config::LaunchConfig;
use crate::engine::{LaunchSummary, MirrorEngine};
use crate::report::Report;

/// The document of [`router`]'s routes.
#[derive(OpenApi)]
#[openapi(
    paths(list, create, report, config, pause, resume, stop),
    tags((name = "shadow", description = "Dark launches: mirrored traffic compared in the dark."))
)]
pub struct ShadowApi;

/// The admin routes, with the engine as state.
pub fn router(engine: Arc<MirrorEngine>) -> Router {
    Router::new()
        .route("/v1/shadow", get(list).post(create))
        .route("/v1/shadow/{name}", get(report))
        .route("/v1/shadow/{name}/config", get(config))
        .route("/v1/shadow/{name}/pause", post(pause))
        .route("/v1/shadow/{name}/resume", post(resume))
        .route("/v1/shadow/{name}/stop", post(stop))
        .with_state(engine)
}

/// `GET /v1/shadow`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct LaunchList {
    /// Every launch with its score and verdict.
    launches: Vec<LaunchSummary>,
}

#[utoipa::path(get, path = "/v1/shadow", tag = "shadow",
    responses((status = 200, description = "Every launch with its score and verdict.", body = LaunchList)))]
async fn list(State(e): State<Arc<MirrorEngine>>) -> impl IntoResponse {
    Json(LaunchList { launches: e.list() })
}

#[utoipa::path(post, path = "/v1/shadow", tag = "shadow",
    request_body(content = LaunchConfig, description = "A launch definition, as a `[[dark_launches]]` table of the config, in JSON."),
    responses(
        (status = 201, description = "The launch's summary.", body = LaunchSummary),
        (status = 400, response = Problem),
        (status = 409, response = Problem),
        (status = 422, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn create(State(e): State<Arc<MirrorEngine>>, body: Bytes) -> Result<Response, Problem> {
    let cfg: LaunchConfig = gateway_core::json::from_slice(&body).map_err(|err| {
        Problem::new(
            &errors::SHADOW_BAD_REQUEST,
            format!("request body is not a launch definition: {err}"),
        )
    })?;
    let summary = e.create(cfg).await?;
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

#[utoipa::path(get, path = "/v1/shadow/{name}", tag = "shadow",
    params(("name" = String, Path, description = "The launch's name.")),
    responses(
        (status = 200, description = "The full report.", body = Report),
        (status = 404, response = Problem),
    ))]
async fn report(
    State(e): State<Arc<MirrorEngine>>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(e.report(&name)?).into_response())
}

#[utoipa::path(get, path = "/v1/shadow/{name}/config", tag = "shadow",
    params(("name" = String, Path, description = "The launch's name.")),
    responses(
        (status = 200, description = "The launch definition.", body = LaunchConfig),
        (status = 404, response = Problem),
    ))]
async fn config(
    State(e): State<Arc<MirrorEngine>>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(e.config(&name)?).into_response())
}

#[utoipa::path(post, path = "/v1/shadow/{name}/pause", tag = "shadow",
    params(("name" = String, Path, description = "The launch's name.")),
    responses(
        (status = 200, description = "The launch's summary.", body = LaunchSummary),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn pause(
    State(e): State<Arc<MirrorEngine>>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(e.pause(&name).await?).into_response())
}

#[utoipa::path(post, path = "/v1/shadow/{name}/resume", tag = "shadow",
    params(("name" = String, Path, description = "The launch's name.")),
    responses(
        (status = 200, description = "The launch's summary.", body = LaunchSummary),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn resume(
    State(e): State<Arc<MirrorEngine>>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(e.resume(&name).await?).into_response())
}

#[utoipa::path(post, path = "/v1/shadow/{name}/stop", tag = "shadow",
    params(("name" = String, Path, description = "The launch's name.")),
    responses(
        (status = 200, description = "The launch's summary.", body = LaunchSummary),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn stop(
    State(e): State<Arc<MirrorEngine>>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(e.stop(&name).await?).into_response())
}
