//! Active health checking.
//!
//! Each cluster with a `health_check` runs one background task per target
//! that sends `GET <path>` (or, with `kind = "grpc"`, the `grpc.health.v1`
//! Check call built and judged by `grpc_health`) over the target's own
//! pooled client every `interval`. `unhealthy_threshold` consecutive
//! failures take the target out of rotation, `healthy_threshold`
//! consecutive passes put it back, and any pass lifts a passive ejection
//! early. Targets start healthy, so a freshly started gateway serves at
//! once rather than after a round of checks.
//!
//! Tasks hold the targets, not the cluster, and stop when the cluster's
//! cancellation token fires (cluster replaced or removed, or shutdown).

use std::sync::Arc;

use http::{header, Request, Uri};
use http_body_util::{BodyExt, Limited};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{HealthCheckConfig, HealthCheckKind};
use crate::grpc_health;
use crate::target::Target;

/// `User-Agent` of health check requests, so origins can tell them apart.
pub const HEALTH_CHECK_USER_AGENT: &str = "gatehouse-health-check";

pub(crate) fn spawn(
    cluster: Arc<str>,
    target: Arc<Target>,
    cfg: HealthCheckConfig,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(cfg.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                outcome = check(&target, &cfg) => outcome,
            };
            let passed = outcome.is_ok();
            let why = outcome.err();
            let changed = target.record_check(
                passed,
                why.as_deref(),
                cfg.healthy_threshold,
                cfg.unhealthy_threshold,
            );
            if changed {
                let now = tokio::time::Instant::now();
                let available = target.is_available(now);
                crate::metrics::healthy(&cluster, &target.display, available);
                if available {
                    tracing::info!(cluster = %cluster, target = %target.display, "upstream target healthy again");
                } else {
                    tracing::warn!(cluster = %cluster, target = %target.display, reason = why.as_deref().unwrap_or(""), "upstream target failed its health checks");
                }
            }
        }
    })
}

async fn check(target: &Target, cfg: &HealthCheckConfig) -> Result<(), String> {
    tokio::time::timeout(cfg.timeout, async {
        match cfg.kind {
            HealthCheckKind::Http => check_http(target, cfg).await,
            HealthCheckKind::Grpc => check_grpc(target, cfg).await,
        }
    })
    .await
    .map_err(|_| {
        format!(
            "health check timed out after {}",
            humantime::format_duration(cfg.timeout)
        )
    })?
}

/// `GET path`, passing on an expected status.
async fn check_http(target: &Target, cfg: &HealthCheckConfig) -> Result<(), String> {
    let uri: Uri = format!("{}{}", target.display, cfg.path)
        .parse()
        .map_err(|e| format!("bad health check URI: {e}"))?;
    let req = Request::get(uri)
        .header(header::USER_AGENT, HEALTH_CHECK_USER_AGENT)
        .body(gateway_core::body::empty())
        .map_err(|e| format!("bad health check request: {e}"))?;
    let res = target
        .client
        .request(req.map(crate::target::ClientBody))
        .await
        .map_err(request_failed)?;
    let status = res.status();
    // Drain so the connection goes back to the pool.
    let _ = res.into_body().collect().await;
    if cfg.accepts(status) {
        Ok(())
    } else {
        Err(format!("health check got status {}", status.as_u16()))
    }
}

/// `grpc.health.v1.Health/Check`, passing on SERVING.
async fn check_grpc(target: &Target, cfg: &HealthCheckConfig) -> Result<(), String> {
    let service = cfg.service.as_deref().unwrap_or_default();
    let req = grpc_health::request(&target.display, service, HEALTH_CHECK_USER_AGENT)?;
    let res = target
        .client
        .request(req.map(|b| crate::target::ClientBody(gateway_core::body::full(b))))
        .await
        .map_err(request_failed)?;
    let (parts, body) = res.into_parts();
    let body = Limited::new(body, MAX_GRPC_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("gRPC health check answer failed: {e}"))?;
    let trailers = body.trailers().cloned();
    grpc_health::verdict(
        parts.status,
        &parts.headers,
        body.to_bytes(),
        trailers.as_ref(),
    )
}

/// Largest gRPC health answer read (a real one is a dozen bytes).
const MAX_GRPC_ANSWER: usize = 64 * 1024;

/// The innermost cause of a failed request: the one that says what broke.
fn request_failed(e: hyper_util::client::legacy::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg = s.to_string();
        src = s.source();
    }
    format!("health check failed: {msg}")
}
