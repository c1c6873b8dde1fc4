//! Active health checking.
//!
//! Each cluster with a `health_check` runs one background task per target
//! that sends `GET <path>` over the target's own pooled client every
//! `interval`. `unhealthy_threshold` consecutive failures take the target
//! out of rotation, `healthy_threshold` consecutive passes put it back, and
//! any pass lifts a passive ejection early. Targets start healthy, so a
//! freshly started gateway serves at once rather than after a round of
//! checks.
//!
//! Tasks hold the targets, not the cluster, and stop when the cluster's
//! cancellation token fires (cluster replaced or removed, or shutdown).

use std::sync::Arc;

use http::{header, Request, Uri};
use http_body_util::BodyExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::HealthCheckConfig;
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
    let uri: Uri = format!("{}{}", target.display, cfg.path)
        .parse()
        .map_err(|e| format!("bad health check URI: {e}"))?;
    let req = Request::get(uri)
        .header(header::USER_AGENT, HEALTH_CHECK_USER_AGENT)
        .body(gateway_core::body::empty())
        .map_err(|e| format!("bad health check request: {e}"))?;
    let res = tokio::time::timeout(cfg.timeout, async {
        let res = target
            .client
            .request(req.map(crate::target::ClientBody))
            .await
            .map_err(|e| {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg = s.to_string();
                    src = s.source();
                }
                format!("health check failed: {msg}")
            })?;
        let status = res.status();
        // Drain so the connection goes back to the pool.
        let _ = res.into_body().collect().await;
        Ok::<_, String>(status)
    })
    .await
    .map_err(|_| {
        format!(
            "health check timed out after {}",
            humantime::format_duration(cfg.timeout)
        )
    })??;
    if cfg.accepts(res) {
        Ok(())
    } else {
        Err(format!("health check got status {}", res.as_u16()))
    }
}
