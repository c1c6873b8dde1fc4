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

use crate::config::LaunchConfig;
use crate::engine::MirrorEngine;

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

async fn list(State(e): State<Arc<MirrorEngine>>) -> impl IntoResponse {
    Json(serde_json::json!({ "launches": e.list() }))
}

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

async fn report(
    State(e): State<Arc<MirrorEngine>>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(e.report(&name)?).into_response())
}

async fn config(
    State(e): State<Arc<MirrorEngine>>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(e.config(&name)?).into_response())
}

async fn pause(
    State(e): State<Arc<MirrorEngine>>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(e.pause(&name).await?).into_response())
}

async fn resume(
    State(e): State<Arc<MirrorEngine>>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(e.resume(&name).await?).into_response())
}

async fn stop(
    State(e): State<Arc<MirrorEngine>>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(e.stop(&name).await?).into_response())
}
