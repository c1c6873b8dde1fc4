//! Counters for `gatehouse cache stats` and the metrics exporter.
//!
//! Every event is counted twice on purpose: in local atomics (so the admin
//! API can answer without a metrics backend) and through the `metrics`
//! facade (`gatehouse_cache_*`), both labelled with the same vocabulary as
//! `Cache-Status`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::status::{CacheStatus, NotStoredReason};
use crate::storage::{DiskUsage, StorageUsage};

const STATUSES: [CacheStatus; 7] = [
    CacheStatus::Hit,
    CacheStatus::Stale,
    CacheStatus::Miss,
    CacheStatus::Revalidated,
    CacheStatus::Expired,
    CacheStatus::Bypass,
    CacheStatus::Unavailable,
];

fn status_index(s: CacheStatus) -> usize {
    STATUSES.iter().position(|x| *x == s).unwrap_or(0)
}

#[derive(Default)]
struct RouteCounters {
    requests: [AtomicU64; 7],
    stored: AtomicU64,
    not_stored: AtomicU64,
    revalidations: AtomicU64,
    evictions: AtomicU64,
    served_bytes: AtomicU64,
}

/// Live counters, shared by the cache and its storage's eviction hook.
#[derive(Default)]
pub struct Stats {
    routes: RwLock<HashMap<Arc<str>, Arc<RouteCounters>>>,
    purged: AtomicU64,
}

impl Stats {
    fn route(&self, route: &Arc<str>) -> Arc<RouteCounters> {
        if let Some(c) = self.routes.read().get(route) {
            return c.clone();
        }
        self.routes
            .write()
            .entry(route.clone())
            .or_default()
            .clone()
    }

    pub(crate) fn request(&self, route: &Arc<str>, status: CacheStatus) {
        self.route(route).requests[status_index(status)].fetch_add(1, Ordering::Relaxed);
        metrics::counter!("gatehouse_cache_requests_total", "route" => route.to_string(), "status" => status.as_str())
            .increment(1);
    }

    pub(crate) fn stored(&self, route: &Arc<str>) {
        self.route(route).stored.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("gatehouse_cache_stored_total", "route" => route.to_string())
            .increment(1);
    }

    pub(crate) fn not_stored(&self, route: &Arc<str>, reason: NotStoredReason) {
        self.route(route).not_stored.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("gatehouse_cache_not_stored_total", "route" => route.to_string(), "reason" => reason.as_str())
            .increment(1);
    }

    pub(crate) fn revalidation(&self, route: &Arc<str>, outcome: &'static str) {
        self.route(route)
            .revalidations
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!("gatehouse_cache_revalidations_total", "route" => route.to_string(), "result" => outcome)
            .increment(1);
    }

    pub(crate) fn evicted(&self, route: &Arc<str>) {
        self.route(route).evictions.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("gatehouse_cache_evictions_total", "route" => route.to_string())
            .increment(1);
    }

    pub(crate) fn served_bytes(&self, route: &Arc<str>, n: u64) {
        self.route(route)
            .served_bytes
            .fetch_add(n, Ordering::Relaxed);
        metrics::counter!("gatehouse_cache_hit_bytes_total", "route" => route.to_string())
            .increment(n);
    }

    pub(crate) fn purged(&self, n: usize) {
        self.purged.fetch_add(n as u64, Ordering::Relaxed);
        metrics::counter!("gatehouse_cache_purged_total").increment(n as u64);
    }

    pub(crate) fn snapshot(&self, usage: StorageUsage) -> CacheStats {
        metrics::gauge!("gatehouse_cache_bytes").set(usage.bytes as f64);
        metrics::gauge!("gatehouse_cache_entries").set(usage.entries as f64);
        if let Some(disk) = usage.disk {
            metrics::gauge!("gatehouse_cache_disk_bytes").set(disk.bytes as f64);
            metrics::gauge!("gatehouse_cache_disk_entries").set(disk.entries as f64);
        }
        let mut routes = BTreeMap::new();
        for (name, c) in self.routes.read().iter() {
            let requests = STATUSES
                .iter()
                .map(|s| {
                    (
                        s.as_str().to_string(),
                        c.requests[status_index(*s)].load(Ordering::Relaxed),
                    )
                })
                .collect();
            routes.insert(
                name.to_string(),
                RouteStats {
                    requests,
                    stored: c.stored.load(Ordering::Relaxed),
                    not_stored: c.not_stored.load(Ordering::Relaxed),
                    revalidations: c.revalidations.load(Ordering::Relaxed),
                    evictions: c.evictions.load(Ordering::Relaxed),
                    served_bytes: c.served_bytes.load(Ordering::Relaxed),
                },
            );
        }
        let mut totals: BTreeMap<String, u64> = STATUSES
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        for r in routes.values() {
            for (k, v) in &r.requests {
                *totals.entry(k.clone()).or_default() += v;
            }
        }
        CacheStats {
            entries: usage.entries,
            bytes: usage.bytes,
            max_bytes: usage.max_bytes,
            evictions: usage.evictions,
            purged: self.purged.load(Ordering::Relaxed),
            requests: totals,
            routes,
            disk: usage.disk,
        }
    }

    /// Publishes the bytes gauge after a change in occupancy.
    pub(crate) fn bytes_gauge(bytes: u64) {
        metrics::gauge!("gatehouse_cache_bytes").set(bytes as f64);
    }
}

/// A snapshot of the cache's counters, as served by `GET /v1/cache/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CacheStats {
    /// Stored variants.
    pub entries: u64,
    /// Bytes charged against the bound.
    pub bytes: u64,
    /// The bound.
    pub max_bytes: u64,
    /// Entries evicted (or refused admission) to respect the bound.
    pub evictions: u64,
    /// Variants removed or marked stale by purges.
    pub purged: u64,
    /// Requests by cache status (`hit`, `miss`, `stale`, ...), all routes.
    pub requests: BTreeMap<String, u64>,
    /// Per-route counters.
    pub routes: BTreeMap<String, RouteStats>,
    /// The disk tier, when `cache.disk` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskUsage>,
}

impl CacheStats {
    /// Requests with `status` over all routes.
    pub fn count(&self, status: CacheStatus) -> u64 {
        self.requests.get(status.as_str()).copied().unwrap_or(0)
    }
}

/// Counters of one route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RouteStats {
    /// Requests by cache status.
    pub requests: BTreeMap<String, u64>,
    /// Responses stored.
    pub stored: u64,
    /// Responses not stored (any reason).
    pub not_stored: u64,
    /// Revalidations with the origin (foreground and background).
    pub revalidations: u64,
    /// Entries of this route evicted by the memory bound.
    pub evictions: u64,
    /// Body bytes served from the cache.
    pub served_bytes: u64,
}
