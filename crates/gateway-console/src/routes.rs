//! The console's HTTP endpoints on the admin listener.
//!
//! | Method | Path | Who | Answer |
//! |---|---|---|---|
//! | GET | `/`, `/console/...` | anyone | the console's page and files |
//! | POST | `/v1/console/session` | anyone with a token | `{"token"}` → session cookie, `{access, csrf}` |
//! | GET | `/v1/console/session` | a session | `{access, csrf}`, or 401 |
//! | DELETE | `/v1/console/session` | a session (with CSRF) | ends it |
//! | GET | `/v1/history?series=&window=` | signed in | [`SeriesView`](crate::history::SeriesView) |
//!
//! The page and its files are not secret (they hold no data); every data
//! endpoint sits behind [`authorize`](crate::access::authorize).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gateway_core::{errors, Problem};
use serde::Deserialize;
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::access::{self, Tokens};
use crate::assets::{self, Asset};
use crate::history::{History, SeriesId, Window};
use crate::role::Access;
use crate::session::{self, Sessions, SESSION_COOKIE};

/// What the console's public endpoints need.
#[derive(Clone)]
pub struct ConsoleState {
    /// The admin and viewer tokens.
    pub tokens: Tokens,
    /// The session table (shared with the admin API's check).
    pub sessions: Arc<Sessions>,
    /// Whether the admin address is served over TLS: cookies get `Secure`.
    pub tls: bool,
}

/// The document of [`public_router`]'s routes (open: no token).
#[derive(OpenApi)]
#[openapi(
    paths(index, asset, sign_in, current_session, sign_out),
    modifiers(&PageAliases),
    tags((name = "console", description = "The admin console: its page, files and sign-in."))
)]
pub struct PublicConsoleApi;

/// The document of [`history_router`]'s route.
#[derive(OpenApi)]
#[openapi(paths(history_view))]
pub struct HistoryApi;

/// `/console` and `/console/` serve the same page as `/`.
struct PageAliases;

impl Modify for PageAliases {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(page) = doc.paths.paths.get("/").cloned() {
            for (alias, id) in [
                ("/console", "console_page"),
                ("/console/", "console_dir_page"),
            ] {
                let mut item = page.clone();
                if let Some(op) = item.get.as_mut() {
                    op.operation_id = Some(id.to_string());
                }
                doc.paths.paths.insert(alias.to_string(), item);
            }
        }
    }
}

/// The page, its files and the session endpoints (outside the token check).
pub fn public_router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/{*path}", get(asset))
        .route(
            "/v1/console/session",
            get(current_session).post(sign_in).delete(sign_out),
        )
        .with_state(state)
}

/// `GET /v1/history`, to mount behind the token check.
pub fn history_router(history: History) -> Router {
    Router::new()
        .route("/v1/history", get(history_view))
        .with_state(history)
}

fn serve(a: &'static Asset) -> Response {
    let mut res = (
        [
            (header::CONTENT_TYPE, a.content_type),
            // Small files from a private address: always revalidate, so an
            // upgraded binary's console is what the browser runs.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        a.body,
    )
        .into_response();
    protect(res.headers_mut());
    res
}

/// Headers on every console file: nothing but this origin's scripts runs,
/// no other site may frame it, and no address leaks in `Referer`.
fn protect(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[utoipa::path(get, path = "/", tag = "console",
    responses((status = 200, description = "The console's page (also at `/console` and `/console/`).", content_type = "text/html; charset=utf-8", body = String)))]
async fn index() -> Response {
    serve(&assets::INDEX)
}

#[utoipa::path(get, path = "/console/{path}", tag = "console",
    params(("path" = String, Path, description = "A file of the console (scripts, styles, uPlot).")),
    responses(
        (status = 200, description = "The file.", body = String),
        (status = 404, response = Problem),
    ))]
async fn asset(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    match assets::find(&path) {
        Some(a) => serve(a),
        None => Problem::new(
            &errors::ADMIN_NOT_FOUND,
            format!("no console file `{path}`"),
        )
        .into_response(),
    }
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn secure(state: &ConsoleState, headers: &HeaderMap) -> bool {
    // Behind a TLS-terminating proxy the browser still talks HTTPS.
    state.tls
        || headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// `POST /v1/console/session`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// The admin token or the viewer token.
    token: String,
}

/// `POST /v1/console/session`.
#[derive(serde::Serialize, ToSchema)]
struct SignedIn {
    /// What the session may do.
    access: Access,
    /// The token state-changing calls must echo in `X-CSRF-Token`.
    csrf: String,
    /// Seconds until the session ends.
    expires_in: u64,
}

/// `GET /v1/console/session`.
#[derive(serde::Serialize, ToSchema)]
struct SessionInfo {
    /// What the caller may do.
    access: Access,
    /// The session's CSRF token; null for a caller with a token rather
    /// than a session.
    csrf: Option<String>,
}

#[utoipa::path(post, path = "/v1/console/session", tag = "console",
    request_body = SignIn,
    responses(
        (status = 201, description = "Signed in: the session and its cookie.", body = SignedIn,
            headers(("set-cookie" = String, description = "The session cookie."))),
        (status = 400, response = Problem),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
    ))]
async fn sign_in(State(state): State<ConsoleState>, headers: HeaderMap, body: Bytes) -> Response {
    // A sign-in another site posts would log the browser into the
    // attacker's session: refused like any cross-site call.
    if let Err(p) = access::same_site(&headers) {
        return p.into_response();
    }
    let req: SignIn = match gateway_core::json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return Problem::new(
                &errors::INVALID_REQUEST,
                format!("invalid sign-in body (expected {{\"token\": \"...\"}}): {e}"),
            )
            .into_response()
        }
    };
    let Some(access) = state.tokens.access_for(req.token.trim()) else {
        return Problem::new(
            &errors::CONSOLE_SIGN_IN_FAILED,
            "that is neither the admin token nor the viewer token",
        )
        .into_response();
    };
    let (id, csrf) = state.sessions.create(access);
    let cookie = session::start_cookie(&id, state.sessions.ttl(), secure(&state, &headers));
    let mut res = no_store(
        (
            StatusCode::CREATED,
            Json(SignedIn {
                access,
                csrf,
                expires_in: state.sessions.ttl().as_secs(),
            }),
        )
            .into_response(),
    );
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
    );
    res
}

#[utoipa::path(get, path = "/v1/console/session", tag = "console",
    responses(
        (status = 200, description = "The caller's access, and its session's CSRF token.", body = SessionInfo),
        (status = 401, response = Problem),
    ))]
async fn current_session(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    match access::authorize(&Method::GET, &headers, &state.tokens, &state.sessions) {
        Ok(caller) if caller.via == "session" => {
            let id = access::cookie(&headers, SESSION_COOKIE).unwrap_or("");
            let csrf = state.sessions.get(id).map(|s| s.csrf).unwrap_or_default();
            let info = SessionInfo {
                access: caller.access,
                csrf: Some(csrf),
            };
            no_store(Json(info).into_response())
        }
        Ok(caller) => {
            let info = SessionInfo {
                access: caller.access,
                csrf: None,
            };
            no_store(Json(info).into_response())
        }
        Err(p) => p.into_response(),
    }
}

#[utoipa::path(delete, path = "/v1/console/session", tag = "console",
    params(("x-csrf-token" = String, Header, description = "The session's CSRF token.")),
    responses(
        (status = 204, description = "Signed out; the cookie is cleared."),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
    ))]
async fn sign_out(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    match end_session(&state, &headers) {
        Ok(()) => {
            let mut res = StatusCode::NO_CONTENT.into_response();
            res.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_str(&session::end_cookie(secure(&state, &headers)))
                    .expect("cookie is ASCII"),
            );
            res
        }
        Err(p) => p.into_response(),
    }
}

/// Signing out is a change like any other (its own origin, the CSRF
/// token), except that a viewer may end its own session.
fn end_session(state: &ConsoleState, headers: &HeaderMap) -> Result<(), Problem> {
    let id = access::cookie(headers, SESSION_COOKIE).unwrap_or("");
    let s = state
        .sessions
        .get(id)
        .ok_or_else(|| Problem::new(&errors::ADMIN_UNAUTHORIZED, "no console session to end"))?;
    access::same_site(headers)?;
    let sent = headers
        .get(access::CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok: bool = subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), s.csrf.as_bytes()).into();
    if sent.is_empty() || !ok {
        return Err(Problem::new(
            &errors::ADMIN_CSRF_REJECTED,
            "signing out needs the session's `x-csrf-token` header",
        ));
    }
    state.sessions.remove(id);
    Ok(())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// Which series (default the request rate).
    #[serde(default)]
    series: Option<String>,
    /// `hour` (by minute, the default) or `day` (by hour).
    #[serde(default)]
    #[param(value_type = Option<String>)]
    window: Option<Window>,
}

#[utoipa::path(get, path = "/v1/history", tag = "console",
    params(HistoryQuery),
    responses(
        (status = 200, description = "A series of the traffic history.", body = crate::history::SeriesView),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn history_view(
    State(history): State<History>,
    q: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => {
            return Problem::new(
                &errors::INVALID_REQUEST,
                format!(
                    "invalid query (series=total|route:NAME|upstream:NAME, window=hour|day): {}",
                    e.body_text()
                ),
            )
            .into_response()
        }
    };
    let id: SeriesId = match q.series.as_deref().unwrap_or("total").parse() {
        Ok(id) => id,
        Err(e) => return Problem::new(&errors::INVALID_REQUEST, e).into_response(),
    };
    match history.view(&id, q.window.unwrap_or(Window::Hour)) {
        Some(v) => Json(v).into_response(),
        None => Problem::new(
            &errors::HISTORY_NOT_FOUND,
            format!(
                "no traffic recorded for `{}` since start",
                q.series.unwrap_or_default()
            ),
        )
        .into_response(),
    }
}
