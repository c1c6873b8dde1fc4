//! The [`HttpCache`] handle and the state its clones share: settings,
//! clock, storage, in-flight fetches, running refreshes, statistics and the
//! purge fan-out.
//!
//! Defined apart from the request flow so that every part of the flow
//! (lookup, coalescing, admission, revalidation, refresh, invalidation) can
//! extend `HttpCache` without the parts importing one another in a loop.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use gateway_core::Clock;
use http::HeaderName;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use super::purge::PurgeFanout;
use crate::config::CacheConfig;
use crate::key::{PrimaryKey, VariantKey};
use crate::stats::Stats;
use crate::storage::Storage;

/// The RFC 9111 shared cache. Cheap to clone: clones share storage.
#[derive(Clone)]
pub struct HttpCache {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for HttpCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCache")
            .field("config", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

pub(crate) type FlightKey = (PrimaryKey, Option<Arc<str>>);

pub(crate) struct Inner {
    pub(crate) cfg: CacheConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) tag_header: HeaderName,
    /// RFC 9213 target list: the configured own field, then
    /// `CDN-Cache-Control`.
    pub(crate) targeted: Vec<HeaderName>,
    pub(crate) flights: Mutex<HashMap<FlightKey, (u64, watch::Receiver<()>)>>,
    pub(crate) next_flight: AtomicU64,
    pub(crate) refreshing: Mutex<HashSet<VariantKey>>,
    pub(crate) refresh_done: Notify,
    pub(crate) stats: Arc<Stats>,
    pub(crate) fanout: std::sync::OnceLock<Arc<dyn PurgeFanout>>,
}
