//! The admin API, on its own listener.
//!
//! `/healthz` and `/readyz` are open (load balancers and orchestrators probe
//! them), and so are the console's page and sign-in. Everything else sits
//! behind one check, [`gateway_console::access::authorize`]: the admin
//! token (or an admin's console session) may do everything, the viewer
//! token (or a viewer's session) may only read. Other systems (keys, cache,
//! dark launch, the console's history) add their routers through
//! [`AdminExtensions`], and so are behind the same check.
//!
//! `/openapi.json` is open too: the OpenAPI 3.1 document of every route
//! here, merged from each router's own document (see `openapi.rs`), with
//! the bearer tokens as security schemes. It describes the API, never its
//! data.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use gateway_console::ConsoleState;
use gateway_core::{errors, Problem};
use gateway_upstream::ClusterStatus;
use utoipa::OpenApi;

use crate::gateway::Gateway;
use crate::stores::{Stores, StoresReport};

/// Routers mounted on the admin API behind the token check, each with
/// the OpenAPI document of its routes.
#[derive(Default)]
pub struct AdminExtensions {
    routers: Vec<Router>,
    docs: Vec<utoipa::openapi::OpenApi>,
}

impl AdminExtensions {
    /// Adds a router (its paths are absolute, e.g. `/v1/keys`) and the
    /// document that describes it (served in `/openapi.json`).
    pub fn mount(mut self, router: Router, doc: utoipa::openapi::OpenApi) -> Self {
        self.routers.push(router);
        self.docs.push(doc);
        self
    }
}

/// The open routes' document.
#[derive(OpenApi)]
#[openapi(
    paths(healthz, readyz, openapi_json),
    tags((name = "admin", description = "The admin listener: health, metrics, config, upstreams."))
)]
struct OpenAdminApi;

/// The document of the routes behind the access check that this module
/// routes itself.
#[derive(OpenApi)]
#[openapi(paths(metrics_text, running_config, reload, upstreams))]
struct ProtectedAdminApi;

#[derive(Clone)]
struct AdminState {
    gateway: Gateway,
    stores: Stores,
    console: ConsoleState,
}

/// Builds the admin router. `console` holds the tokens and the console's
/// sessions, which every protected endpoint is checked against.
pub fn router(
    gateway: Gateway,
    stores: Stores,
    console: ConsoleState,
    extensions: AdminExtensions,
) -> Router {
    let state = AdminState {
        gateway: gateway.clone(),
        stores,
        console: console.clone(),
    };
    let mut protected = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/v1/config", get(running_config))
        .route("/v1/config/reload", post(reload))
        .route("/v1/upstreams", get(upstreams))
        .with_state(state.clone())
        .merge(crate::console::router(gateway));
    let mut protected_docs = vec![
        ProtectedAdminApi::openapi(),
        crate::console::ConsoleApi::openapi(),
    ];
    protected_docs.extend(extensions.docs);
    let document = crate::openapi::document(
        vec![
            OpenAdminApi::openapi(),
            gateway_console::routes::PublicConsoleApi::openapi(),
        ],
        protected_docs,
    );
    for r in extensions.routers {
        protected = protected.merge(r);
    }
    let protected = protected.layer(middleware::from_fn_with_state(
        state.clone(),
        require_access,
    ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(move || openapi_json(document.clone())))
        .with_state(state)
        .merge(gateway_console::public_router(console))
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

/// The one access check of every protected endpoint. The caller's actor
/// name goes to the routers in `X-Gatehouse-Actor` (for the audit log):
/// a session's is always set here; a token's caller may name itself.
async fn require_access(State(state): State<AdminState>, mut req: Request, next: Next) -> Response {
    let c = &state.console;
    let caller = match gateway_console::access::authorize(
        req.method(),
        req.headers(),
        &c.tokens,
        &c.sessions,
    ) {
        Ok(caller) => caller,
        Err(p) => {
            let unauthorized = p.status() == StatusCode::UNAUTHORIZED;
            let mut res = problem(p);
            if unauthorized {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"gatehouse-admin\""),
                );
            }
            return res;
        }
    };
    let actor_header = header::HeaderName::from_static(gateway_keys::admin::ACTOR_HEADER);
    if caller.via == "session" || !req.headers().contains_key(&actor_header) {
        if let Ok(v) = header::HeaderValue::from_str(&caller.actor()) {
            req.headers_mut().insert(actor_header, v);
        }
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

#[utoipa::path(get, path = "/healthz", tag = "admin",
    responses((status = 200, description = "The process is up.", content_type = "text/plain", body = String)))]
async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/openapi.json", tag = "admin",
    responses((status = 200, description = "This document (OpenAPI 3.1).", content_type = "application/json", body = Object)))]
async fn openapi_json(document: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document).into_response()
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ReadyQuery {
    /// Fail (503) while a store is down, not only while draining.
    #[serde(default)]
    strict: bool,
}

/// 503 while draining. A store outage is reported (`"degraded"`) but keeps
/// the node in rotation: every node shares the same stores, so taking them
/// all out would turn a store outage into a full one, while the node can
/// still serve (see `docs/deployment.md`). `?strict=true` fails on it too.
#[utoipa::path(get, path = "/readyz", tag = "admin",
    params(ReadyQuery),
    responses(
        (status = 200, description = "`ready`, or `degraded` while a store is down.", body = Readiness),
        (status = 503, description = "`draining`, or `degraded` with `strict=true`.", body = Readiness),
    ))]
async fn readyz(
    State(state): State<AdminState>,
    axum::extract::Query(q): axum::extract::Query<ReadyQuery>,
) -> Response {
    let stores_up = state.stores.all_up();
    let (status, code) = if state.gateway.is_draining() {
        (ReadyStatus::Draining, StatusCode::SERVICE_UNAVAILABLE)
    } else if !stores_up && q.strict {
        (ReadyStatus::Degraded, StatusCode::SERVICE_UNAVAILABLE)
    } else if !stores_up {
        (ReadyStatus::Degraded, StatusCode::OK)
    } else {
        (ReadyStatus::Ready, StatusCode::OK)
    };
    let stores = state.stores.report();
    (code, Json(Readiness { status, stores })).into_response()
}

/// `GET /readyz`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Readiness {
    /// Whether the node takes traffic.
    status: ReadyStatus,
    /// The shared stores' last probes.
    stores: StoresReport,
}

/// A node's readiness.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum ReadyStatus {
    /// Serving, every store up.
    Ready,
    /// Serving, a store down (see `stores`).
    Degraded,
    /// Shutting down: finishing requests in flight, taking no new ones.
    Draining,
}

/// `GET /v1/config`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct RunningConfig {
    /// The config file it was read from.
    file: String,
    /// The running config: the TOML file's tables as JSON, with every
    /// secret (tokens, passwords, credentials) redacted. Free-form: its
    /// keys are the config reference's (docs/config.md).
    #[schema(value_type = Object)]
    config: serde_json::Value,
}

/// `POST /v1/config/reload`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Reloaded {
    /// Always true: a rejected config is a 422 problem.
    reloaded: bool,
}

#[utoipa::path(get, path = "/metrics", tag = "admin",
    responses((status = 200, description = "Prometheus metrics.", content_type = "text/plain; version=0.0.4", body = String)))]
async fn metrics_text() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::prometheus().render(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/v1/config", tag = "admin",
    responses((status = 200, description = "The running config, secrets redacted.", body = RunningConfig)))]
async fn running_config(State(state): State<AdminState>) -> Response {
    let snapshot = state.gateway.snapshot();
    Json(RunningConfig {
        file: snapshot.config.origin.clone(),
        config: snapshot.config.redacted_json(),
    })
    .into_response()
}

#[utoipa::path(post, path = "/v1/config/reload", tag = "admin",
    responses(
        (status = 200, description = "The config file was read again and applied.", body = Reloaded),
        (status = 422, response = Problem),
    ))]
async fn reload(State(state): State<AdminState>) -> Response {
    match state.gateway.reload_from_file().await {
        Ok(()) => Json(Reloaded { reloaded: true }).into_response(),
        Err(e) => problem(Problem::new(&errors::CONFIG_REJECTED, e.to_string())),
    }
}

#[utoipa::path(get, path = "/v1/upstreams", tag = "admin",
    responses((status = 200, description = "Every cluster's targets, health and circuit state, by cluster name.", body = BTreeMap<String, ClusterStatus>)))]
async fn upstreams(State(state): State<AdminState>) -> Response {
    Json(state.gateway.upstreams().status()).into_response()
}
