//! Background refresh (stale-while-revalidate, RFC 5861): at most one
//! refresh per stored variant runs at a time, off the request, and its
//! outcome (304 merged, new response admitted or dropped) is stored when
//! it completes. [`HttpCache::background_idle`] waits for them to finish.

use std::sync::Arc;

use gateway_core::body::read_capped;
use http::{request, Method, StatusCode};

use super::lookup::{key_primary, key_vary};
use super::origin::Origin;
use super::route::RouteCacheContext;
use super::state::{HttpCache, Inner};
use super::validators::conditional_request;
use crate::directives::RequestDirectives;
use crate::key::VariantKey;
use crate::storage::CachedResponse;

impl HttpCache {
    /// Resolves once no background refresh is running (for shutdown and tests).
    pub async fn background_idle(&self) {
        loop {
            let notified = self.inner.refresh_done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.refreshing.lock().is_empty() {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn spawn_refresh(
        &self,
        parts: &request::Parts,
        route: &RouteCacheContext,
        origin: Arc<dyn Origin>,
        key: VariantKey,
        obj: Arc<CachedResponse>,
    ) {
        if !self.inner.refreshing.lock().insert(key.clone()) {
            return;
        }
        let guard = RefreshGuard {
            inner: self.inner.clone(),
            key: key.clone(),
        };
        let this = self.clone();
        let route = route.clone();
        let mut parts = parts.clone();
        parts.method = Method::GET;
        tokio::spawn(async move {
            let _guard = guard;
            let request_time = this.inner.clock.now();
            let res = origin.fetch(conditional_request(&parts, &obj)).await;
            let response_time = this.inner.clock.now();
            let outcome = match res {
                Ok(res) if res.status() == StatusCode::NOT_MODIFIED => {
                    let merged =
                        this.merge_304(&obj, res.headers(), request_time, response_time, &route);
                    this.inner
                        .storage
                        .put(key, key_vary(&merged.headers), merged);
                    "not_modified"
                }
                Ok(res) => {
                    let rd = RequestDirectives::from_headers(&parts.headers);
                    let (res_parts, mut res_body) = res.into_parts();
                    match this.plan_store(
                        &parts,
                        &route,
                        key_primary(&key),
                        &rd,
                        &res_parts,
                        request_time,
                        response_time,
                    ) {
                        Ok(plan) => {
                            let limit = usize::try_from(this.inner.cfg.max_object_bytes)
                                .unwrap_or(usize::MAX);
                            let read = read_capped(&mut res_body, limit).await;
                            match read.ok().and_then(|r| r.into_bytes()) {
                                Some(bytes) => {
                                    let (key, vary, obj) = plan.into_object(bytes);
                                    this.inner.storage.put(key, vary, obj);
                                    this.inner.stats.stored(&route.route);
                                    "modified"
                                }
                                None => "error",
                            }
                        }
                        Err(reason) => {
                            this.inner.stats.not_stored(&route.route, reason);
                            this.inner.storage.remove(&key);
                            "uncacheable"
                        }
                    }
                }
                Err(_) => "error",
            };
            this.inner.stats.revalidation(&route.route, outcome);
            tracing::debug!(route = %route.route, outcome, "background refresh done");
        });
    }
}

/// Held by a background refresh; dropping it allows the next one.
struct RefreshGuard {
    inner: Arc<Inner>,
    key: VariantKey,
}

impl Drop for RefreshGuard {
    fn drop(&mut self) {
        self.inner.refreshing.lock().remove(&self.key);
        self.inner.refresh_done.notify_waiters();
    }
}
