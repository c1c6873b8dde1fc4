//! The console's view of the running gateway, mounted behind the admin
//! API's access check:
//!
//! - `GET /v1/console/overview`: what the overview page draws in one call
//!   (traffic history of the last hour and day, by route and upstream;
//!   cache; dark launches; load);
//! - `GET /v1/console/shadow/{name}/history`: a launch's score over time;
//! - `GET /v1/console/fx/{path}`: reads of the fx service's public API
//!   through its cluster, for the FX page.
//!
//! The page, sign-in and the history store itself are `gateway_console`'s.

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use gateway_cache::CacheStats;
use gateway_console::history::{SeriesId, SeriesView, Window};
use gateway_console::launches::ScorePoint;
use gateway_console::{Access, Caller};
use gateway_core::{errors, Problem, ToProblem as _};
use gateway_mirror::LaunchSummary;
use gateway_upstream::SendOptions;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::gateway::Gateway;

/// The document of [`router`]'s routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(overview, launch_history, fx_read))]
pub(crate) struct ConsoleApi;

/// The console's endpoints over the gateway's state.
pub(crate) fn router(gateway: Gateway) -> Router {
    Router::new()
        .route("/v1/console/overview", get(overview))
        .route("/v1/console/shadow/{name}/history", get(launch_history))
        .route("/v1/console/fx/{*path}", get(fx_read))
        .with_state(gateway)
}

/// `GET /v1/console/overview`: what the overview page draws.
#[derive(Serialize, ToSchema)]
struct Overview {
    /// The caller's access (absent when it signed in some other way).
    access: Option<Access>,
    /// All traffic.
    total: Windows,
    /// Traffic per route that has had any.
    routes: Vec<NamedWindows>,
    /// Traffic per upstream cluster that has had any.
    upstreams: Vec<NamedWindows>,
    /// The response cache's counters.
    cache: CacheStats,
    /// Every dark launch with its score and verdict.
    dark_launches: Vec<LaunchSummary>,
    /// Requests in flight on this node.
    in_flight: usize,
    /// Whether the node is shutting down.
    draining: bool,
    /// The config file the node runs.
    config_file: String,
    /// Routes in the running config.
    route_count: usize,
}

/// One series over the last hour (by minute) and the last day (by hour);
/// a window is null until it has traffic.
#[derive(Serialize, ToSchema)]
struct Windows {
    /// The last hour.
    hour: Option<SeriesView>,
    /// The last day.
    day: Option<SeriesView>,
}

/// The traffic of one route or upstream.
#[derive(Serialize, ToSchema)]
struct NamedWindows {
    /// Its name.
    name: String,
    /// Its traffic.
    history: Windows,
}

/// `GET /v1/console/shadow/{name}/history`.
#[derive(Serialize, ToSchema)]
struct LaunchScores {
    /// The launch.
    name: String,
    /// Its score over time, oldest first.
    points: Vec<ScorePoint>,
}

#[utoipa::path(get, path = "/v1/console/overview", tag = "console",
    responses((status = 200, description = "The console's overview: traffic by route and upstream, cache, dark launches, load.", body = Overview)))]
async fn overview(State(gateway): State<Gateway>, caller: Option<Extension<Caller>>) -> Response {
    let history = gateway.history();
    let windows = |id: SeriesId| Windows {
        hour: history.view(&id, Window::Hour),
        day: history.view(&id, Window::Day),
    };
    let routes = history
        .routes()
        .into_iter()
        .map(|name| NamedWindows {
            history: windows(SeriesId::Route(name.clone())),
            name,
        })
        .collect();
    let upstreams = history
        .upstreams()
        .into_iter()
        .map(|name| NamedWindows {
            history: windows(SeriesId::Upstream(name.clone())),
            name,
        })
        .collect();
    let snapshot = gateway.snapshot();
    Json(Overview {
        access: caller.map(|Extension(c)| c.access),
        total: windows(SeriesId::Total),
        routes,
        upstreams,
        cache: gateway.cache().stats(),
        dark_launches: gateway.mirror().list(),
        in_flight: gateway.in_flight(),
        draining: gateway.is_draining(),
        config_file: snapshot.config.origin.clone(),
        route_count: snapshot.config.config.routes.len(),
    })
    .into_response()
}

/// How often dark-launch scores are sampled for the console's chart.
const LAUNCH_SAMPLE_EVERY: Duration = Duration::from_secs(60);
/// Largest FX answer passed through to the console.
const FX_MAX_BODY: usize = 4 * 1024 * 1024;
/// The fx service's endpoints the console may read; nothing else (its
/// admin endpoints in particular) is reachable through the console.
const FX_READABLE: [&str; 5] = [
    "v1/rates",
    "v1/currencies",
    "v1/convert",
    "v1/providers",
    "v1/raw-rates",
];

/// Samples every dark launch's score until `stop`, for the score chart.
pub(crate) fn sample_launches(gateway: Gateway, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LAUNCH_SAMPLE_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => record_launches(&gateway),
            }
        }
    })
}

fn record_launches(gateway: &Gateway) {
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    for l in gateway.mirror().list() {
        gateway.launch_history().record(
            &l.name,
            ScorePoint {
                t: now,
                score: l.score,
                samples: l.samples,
                verdict: l.verdict.as_str().to_string(),
            },
        );
    }
}

#[utoipa::path(get, path = "/v1/console/shadow/{name}/history", tag = "console",
    params(("name" = String, Path, description = "The launch's name.")),
    responses(
        (status = 200, description = "The launch's score over time.", body = LaunchScores),
        (status = 404, response = Problem),
    ))]
async fn launch_history(State(gateway): State<Gateway>, Path(name): Path<String>) -> Response {
    if gateway.mirror().report(&name).is_err() {
        return Problem::new(
            &errors::SHADOW_NOT_FOUND,
            format!("no dark launch named `{name}`"),
        )
        .into_response();
    }
    // A point now, so a chart opened between samples is current.
    record_launches(&gateway);
    let points = gateway.launch_history().points(&name);
    Json(LaunchScores { name, points }).into_response()
}

/// `GET /v1/console/fx/{path}`: a read of the fx service's public API
/// through its cluster (balanced, health-checked like any route's).
#[utoipa::path(get, path = "/v1/console/fx/{path}", tag = "console",
    params(("path" = String, Path, description = "A read of the fx service's public API (e.g. `v1/rates/latest`), passed on with the query.")),
    responses(
        (status = 200, description = "The fx service's answer.", body = Object),
        (status = 404, response = Problem),
        (status = 502, response = Problem),
        (status = 503, response = Problem),
        (status = 504, response = Problem),
    ))]
async fn fx_read(
    State(gateway): State<Gateway>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let allowed = FX_READABLE
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    if !allowed || path.contains("..") {
        return Problem::new(
            &errors::ADMIN_NOT_FOUND,
            format!(
                "the console reads only {} of the fx service",
                FX_READABLE.join(", ")
            ),
        )
        .into_response();
    }
    let snapshot = gateway.snapshot();
    let admin = &snapshot.config.config.admin;
    let cluster = admin.fx_cluster.clone().unwrap_or_else(|| "fx".into());
    if !snapshot.clusters.contains_key(cluster.as_str()) {
        return Problem::new(
            &errors::UNKNOWN_UPSTREAM,
            format!("no cluster `{cluster}` for the console's FX page (set `[admin] fx_cluster`)"),
        )
        .into_response();
    }
    let uri = match query {
        Some(q) => format!("/{path}?{q}"),
        None => format!("/{path}"),
    };
    let req = match http::Request::get(uri).body(gateway_core::body::empty()) {
        Ok(r) => r,
        Err(e) => return Problem::new(&errors::INVALID_REQUEST, e.to_string()).into_response(),
    };
    let opts = SendOptions {
        timeout: Some(Duration::from_secs(10)),
        idempotent: true,
        preserve_host: false,
        ..Default::default()
    };
    let res = match gateway.upstreams().send(&cluster, req, opts).await {
        Ok(r) => r,
        Err(e) => return e.to_problem().into_response(),
    };
    let (parts, mut body) = res.into_parts();
    match gateway_core::body::read_capped(&mut body, FX_MAX_BODY)
        .await
        .map(|c| c.into_bytes())
    {
        Ok(Some(bytes)) => {
            let mut out = Response::new(axum::body::Body::from(bytes));
            *out.status_mut() = parts.status;
            if let Some(ct) = parts.headers.get(http::header::CONTENT_TYPE) {
                out.headers_mut()
                    .insert(http::header::CONTENT_TYPE, ct.clone());
            }
            out
        }
        Ok(None) => Problem::new(
            &errors::UPSTREAM_RESET,
            format!("fx answer over {FX_MAX_BODY} bytes: ask for a shorter range"),
        )
        .into_response(),
        Err(e) => Problem::new(
            &errors::UPSTREAM_RESET,
            format!("fx answer unreadable: {e}"),
        )
        .into_response(),
    }
}
