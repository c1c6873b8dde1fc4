//! Invalidation: purges by URL, prefix or tag (here, or here and on every
//! other node through the [`PurgeFanout`]), marking
//! everything stale after a change-feed gap, and the invalidation that
//! follows a successful unsafe method (RFC 9111 §4.4).

use std::sync::Arc;

use gateway_core::Body;
use http::{header, request, Request, Response};

use super::origin::Origin;
use super::purge::{Purge, PurgeError, PurgeFanout, PurgeResult, PurgeTarget};
use super::route::RouteCacheContext;
use super::state::HttpCache;
use crate::key;
use crate::stats::Stats;
use crate::status::{CacheDecision, CacheStatus, Fwd};
use crate::storage::PurgeSelector;

impl HttpCache {
    /// Sets where purges made through [`HttpCache::purge_everywhere`] are
    /// sent. Once per cache; later calls are ignored.
    pub fn set_fanout(&self, fanout: Arc<dyn PurgeFanout>) {
        let _ = self.inner.fanout.set(fanout);
    }

    /// Purges here and tells every other node (the admin API's purge). A
    /// purge that fails validation goes nowhere.
    pub fn purge_everywhere(&self, p: &Purge) -> Result<PurgeResult, PurgeError> {
        let result = self.purge(p)?;
        if let Some(fanout) = self.inner.fanout.get() {
            fanout.publish(p);
        }
        Ok(result)
    }

    /// Marks every stored response stale, so the next request for each
    /// revalidates (cheap with validators) while `stale-if-error` still
    /// covers an origin outage. A node does this when it may have missed
    /// purges (its change feed reconnected), which bounds how long a missed
    /// purge can leave an object served.
    pub fn mark_all_stale(&self) -> usize {
        let n = self
            .inner
            .storage
            .purge(&PurgeSelector::Prefix(String::new()), true);
        tracing::info!(
            marked = n,
            "cache: every object marked stale after a change-feed gap"
        );
        n
    }

    /// Purges stored responses here only; see [`Purge`] and
    /// [`HttpCache::purge_everywhere`].
    pub fn purge(&self, p: &Purge) -> Result<PurgeResult, PurgeError> {
        let selector = match &p.target {
            PurgeTarget::Url(u) => PurgeSelector::Url(
                key::normalize_absolute(u, &[&self.inner.cfg.ignore_query_params]).map_err(
                    |source| PurgeError::InvalidUrl {
                        field: "url",
                        source,
                    },
                )?,
            ),
            PurgeTarget::Prefix(u) => {
                PurgeSelector::Prefix(key::normalize_prefix(u).map_err(|source| {
                    PurgeError::InvalidUrl {
                        field: "prefix",
                        source,
                    }
                })?)
            }
            PurgeTarget::Tag(t) => {
                let t = t.trim();
                if t.is_empty() {
                    return Err(PurgeError::EmptyTag);
                }
                PurgeSelector::Tag(t.to_string())
            }
        };
        let purged = self.inner.storage.purge(&selector, p.soft);
        self.inner.stats.purged(purged);
        Stats::bytes_gauge(self.inner.storage.usage().bytes);
        tracing::info!(target = ?p.target, soft = p.soft, purged, "cache purge");
        Ok(PurgeResult {
            purged,
            soft: p.soft,
        })
    }

    pub(crate) async fn unsafe_method(
        &self,
        parts: request::Parts,
        req_body: Body,
        route: &RouteCacheContext,
        origin: &Arc<dyn Origin>,
    ) -> Response<Body> {
        let target = self.url_of(&parts, route).ok();
        let mut d = CacheDecision::new(CacheStatus::Bypass);
        d.fwd = Some(Fwd::Method);
        let res = match origin.fetch(Request::from_parts(parts, req_body)).await {
            Ok(res) => res,
            Err(e) => return self.origin_failed(route, d, e),
        };
        d.fwd_status = Some(res.status().as_u16());
        let status = res.status();
        if let Some(target) = target.filter(|_| status.is_success() || status.is_redirection()) {
            let mut urls = vec![target.clone()];
            for h in [header::LOCATION, header::CONTENT_LOCATION] {
                if let Some(u) = res.headers().get(&h).and_then(|v| v.to_str().ok()) {
                    if let Some(u) =
                        same_origin_url(&target, u, &self.inner.cfg.ignore_query_params)
                    {
                        urls.push(u);
                    }
                }
            }
            urls.dedup();
            let mut purged = 0;
            for u in urls {
                purged += self.inner.storage.purge(&PurgeSelector::Url(u), false);
            }
            if purged > 0 {
                tracing::debug!(route = %route.route, purged, "invalidated after unsafe method");
            }
        }
        self.finish(res, route, d)
    }
}

/// Resolves a `Location`/`Content-Location` value against `target` and
/// keeps it only when it is on the same scheme and host (RFC 9111 §4.4).
fn same_origin_url(target: &str, value: &str, ignore: &[String]) -> Option<String> {
    let origin_end = target.find("://").map(|i| i + 3)?;
    let host_end = target[origin_end..]
        .find('/')
        .map_or(target.len(), |i| origin_end + i);
    let origin = &target[..host_end];
    let abs = if value.starts_with('/') && !value.starts_with("//") {
        format!("{origin}{value}")
    } else if value.contains("://") {
        value.to_string()
    } else {
        return None;
    };
    let normalized = key::normalize_absolute(&abs, &[ignore]).ok()?;
    (normalized.starts_with(origin) && normalized[origin.len()..].starts_with('/'))
        .then_some(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_resolution_stays_on_origin() {
        let t = "https://h/items";
        assert_eq!(
            same_origin_url(t, "/items/7", &[]).as_deref(),
            Some("https://h/items/7")
        );
        assert_eq!(
            same_origin_url(t, "https://H:443/x", &[]).as_deref(),
            Some("https://h/x")
        );
        assert_eq!(same_origin_url(t, "https://other/x", &[]), None);
        assert_eq!(same_origin_url(t, "https://h.evil/x", &[]), None);
        assert_eq!(same_origin_url(t, "//other/x", &[]), None);
        assert_eq!(same_origin_url(t, "relative", &[]), None);
    }
}
