//! The admin API, on its own listener.
//!
//! `/healthz` and `/readyz` are open (load balancers and orchestrators probe
//! them); everything else needs `Authorization: Bearer <admin token>`,
//! compared in constant time. Other systems (keys, cache, dark launch) add
//! their routers through [`AdminExtensions`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gateway_core::{errors, Problem};
use subtle::ConstantTimeEq;

use crate::gateway::Gateway;
use crate::stores::Stores;

/// Routers mounted on the admin API behind the token check.
#[derive(Default)]
pub struct AdminExtensions {
    routers: Vec<Router>,
}

impl AdminExtensions {
    /// Adds a router (its paths are absolute, e.g. `/v1/keys`).
    pub fn mount(mut self, router: Router) -> Self {
        self.routers.push(router);
        self
    }
}

#[derive(Clone)]
struct AdminState {
    gateway: Gateway,
    stores: Stores,
    token: Arc<str>,
}

/// Builds the admin router.
pub fn router(
    gateway: Gateway,
    stores: Stores,
    token: Arc<str>,
    extensions: AdminExtensions,
) -> Router {
    let state = AdminState {
        gateway,
        stores,
        token,
    };
    let mut protected = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/v1/config", get(running_config))
        .route("/v1/config/reload", post(reload))
        .route("/v1/upstreams", get(upstreams))
        .with_state(state.clone());
    for r in extensions.routers {
        protected = protected.merge(r);
    }
    let protected = protected.layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(protected)
        .fallback(|| async {
            problem(Problem::new(
                &errors::ADMIN_NOT_FOUND,
                "no such admin endpoint",
            ))
        })
}

fn problem(p: Problem) -> Response {
    let status = p.status();
    (
        status,
        [(header::CONTENT_TYPE, gateway_core::problem::CONTENT_TYPE)],
        p.body(),
    )
        .into_response()
}

async fn require_token(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok: bool = presented.as_bytes().ct_eq(state.token.as_bytes()).into();
    if !ok || presented.is_empty() {
        let mut res = problem(Problem::new(
            &errors::ADMIN_UNAUTHORIZED,
            "the admin API needs `Authorization: Bearer <admin token>`",
        ));
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"gatehouse-admin\""),
        );
        return res;
    }
    next.run(req).await
}

#[derive(serde::Deserialize)]
struct ReadyQuery {
    /// Fail (503) while a store is down, not only while draining.
    #[serde(default)]
    strict: bool,
}

/// 503 while draining. A store outage is reported (`"degraded"`) but keeps
/// the node in rotation: every node shares the same stores, so taking them
/// all out would turn a store outage into a full one, while the node can
/// still serve (see `docs/deployment.md`). `?strict=true` fails on it too.
async fn readyz(
    State(state): State<AdminState>,
    axum::extract::Query(q): axum::extract::Query<ReadyQuery>,
) -> Response {
    let stores_up = state.stores.all_up();
    let (status, code) = if state.gateway.is_draining() {
        ("draining", StatusCode::SERVICE_UNAVAILABLE)
    } else if !stores_up && q.strict {
        ("degraded", StatusCode::SERVICE_UNAVAILABLE)
    } else if !stores_up {
        ("degraded", StatusCode::OK)
    } else {
        ("ready", StatusCode::OK)
    };
    (
        code,
        Json(serde_json::json!({"status": status, "stores": state.stores.report()})),
    )
        .into_response()
}

async fn metrics_text() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::prometheus().render(),
    )
        .into_response()
}

async fn running_config(State(state): State<AdminState>) -> Response {
    let snapshot = state.gateway.snapshot();
    Json(serde_json::json!({
        "file": snapshot.config.origin,
        "config": snapshot.config.redacted_json(),
    }))
    .into_response()
}

async fn reload(State(state): State<AdminState>) -> Response {
    match state.gateway.reload_from_file().await {
        Ok(()) => Json(serde_json::json!({"reloaded": true})).into_response(),
        Err(e) => problem(Problem::new(&errors::CONFIG_REJECTED, e.to_string())),
    }
}

async fn upstreams(State(state): State<AdminState>) -> Response {
    Json(state.gateway.upstreams().status()).into_response()
}
