//! The cache's admin API, mounted by the gateway behind its admin-token
//! check:
//!
//! - `POST /v1/cache/purge` with `{"url": ".."}`, `{"prefix": ".."}` or
//!   `{"tag": ".."}` and optional `"soft": true`; answers
//!   `{"purged": N, "soft": bool}`.
//! - `GET /v1/cache/stats`: the [`CacheStats`](crate::CacheStats) snapshot.
//!
//! Errors are `application/problem+json` with stable codes.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use gateway_core::{errors, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::cache::{HttpCache, Purge, PurgeTarget};

/// The body of `POST /v1/cache/purge`: exactly one of `url`, `prefix`, `tag`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Purge one URL (every variant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Purge every URL with this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Purge every response with this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Mark stale instead of removing.
    #[serde(default)]
    pub soft: bool,
}

impl PurgeRequest {
    /// Converts to a [`Purge`], requiring exactly one target.
    pub fn into_purge(self) -> Result<Purge, &'static str> {
        let target = match (self.url, self.prefix, self.tag) {
            (Some(u), None, None) => PurgeTarget::Url(u),
            (None, Some(p), None) => PurgeTarget::Prefix(p),
            (None, None, Some(t)) => PurgeTarget::Tag(t),
            _ => return Err("the purge body needs exactly one of `url`, `prefix` or `tag`"),
        };
        Ok(Purge {
            target,
            soft: self.soft,
        })
    }
}

impl From<Purge> for PurgeRequest {
    fn from(p: Purge) -> Self {
        let mut r = PurgeRequest {
            soft: p.soft,
            ..Default::default()
        };
        match p.target {
            PurgeTarget::Url(u) => r.url = Some(u),
            PurgeTarget::Prefix(u) => r.prefix = Some(u),
            PurgeTarget::Tag(t) => r.tag = Some(t),
        }
        r
    }
}

/// The document of [`router`]'s routes.
#[derive(OpenApi)]
#[openapi(
    paths(purge, stats),
    tags((name = "cache", description = "The response cache: purges and statistics."))
)]
pub struct CacheApi;

/// The admin router; the caller adds authentication in front.
pub fn router(cache: HttpCache) -> Router {
    Router::new()
        .route("/v1/cache/purge", post(purge))
        .route("/v1/cache/stats", get(stats))
        .with_state(cache)
}

#[utoipa::path(post, path = "/v1/cache/purge", tag = "cache",
    request_body = PurgeRequest,
    responses(
        (status = 200, description = "How many stored variants were removed or marked stale.", body = crate::cache::PurgeResult),
        (status = 400, response = Problem),
    ))]
async fn purge(
    State(cache): State<HttpCache>,
    body: Result<Json<PurgeRequest>, JsonRejection>,
) -> Result<Json<crate::cache::PurgeResult>, Problem> {
    let invalid = |detail: String| Problem::new(&errors::CACHE_PURGE_INVALID, detail);
    let Json(req) = body.map_err(|e| invalid(format!("invalid purge body: {}", e.body_text())))?;
    let purge = req.into_purge().map_err(|msg| invalid(msg.to_string()))?;
    Ok(Json(cache.purge_everywhere(&purge)?))
}

#[utoipa::path(get, path = "/v1/cache/stats", tag = "cache",
    responses((status = 200, description = "The cache's counters and sizes, in total and per route.", body = crate::stats::CacheStats)))]
async fn stats(State(cache): State<HttpCache>) -> Json<crate::stats::CacheStats> {
    Json(cache.stats())
}
