//! The admin API, on its own listener.
//!
//! `/healthz` and `/readyz` are open (load balancers and orchestrators probe
//! them), and so are the console's page and sign-in. Everything else sits
//! behind one check, [`gateway_console::access::authorize`]: the admin
//! token (or an admin's console session) may do everything, the viewer
//! token (or a viewer's session) may only read. Other systems (keys, cache,
//! dark launch, the console's history) add their routers through
//! [`AdminExtensions`], and so are behind the same check.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gateway_console::ConsoleState;
use gateway_core::{errors, Problem};

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
    for r in extensions.routers {
        protected = protected.merge(r);
    }
    let protected = protected.layer(middleware::from_fn_with_state(
        state.clone(),
        require_access,
    ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
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
