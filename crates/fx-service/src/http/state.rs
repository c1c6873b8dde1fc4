//! [`AppState`]: what every handler shares (engine, configuration, fixing
//! calendar, provider health, the rendered-series cache, the fleet).

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use fx::money::AmountLimits;
use fx::staleness::FixingCalendar;
use fx::FxEngine;

use crate::config::FxServiceConfig;
use crate::health::HealthRegistry;

/// Shared state of the HTTP API.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) engine: Arc<FxEngine>,
    pub(super) cfg: FxServiceConfig,
    pub(super) calendar: FixingCalendar,
    pub(super) health: Arc<HealthRegistry>,
    /// Rendered series bodies keyed by table version and normalised query:
    /// long histories are the expensive answers and are asked for again
    /// and again (charts); a new fixing bumps the version, so entries never
    /// go stale, they just stop being hit and age out.
    /// The ETag is kept with the body: hashing 5 MB costs more than
    /// serving it.
    pub(super) series_cache: moka::sync::Cache<String, (Bytes, Arc<str>)>,
    /// The fleet told about corrections made through the admin API.
    pub(super) fleet: std::sync::OnceLock<crate::fleet::Fleet>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Bytes of rendered series kept in memory.
pub const SERIES_CACHE_BYTES: u64 = 64 * 1024 * 1024;

impl AppState {
    /// State over an opened engine.
    pub fn new(engine: Arc<FxEngine>, cfg: FxServiceConfig, health: Arc<HealthRegistry>) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                cfg,
                calendar: FixingCalendar::default(),
                health,
                series_cache: moka::sync::Cache::builder()
                    .weigher(|k: &String, v: &(Bytes, Arc<str>)| {
                        (k.len() + v.0.len()).try_into().unwrap_or(u32::MAX)
                    })
                    .max_capacity(SERIES_CACHE_BYTES)
                    .build(),
                fleet: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<FxEngine> {
        &self.inner.engine
    }

    /// The configuration.
    pub fn config(&self) -> &FxServiceConfig {
        &self.inner.cfg
    }

    /// Tells `fleet` about changes made through this API (set once).
    pub fn set_fleet(&self, fleet: crate::fleet::Fleet) {
        let _ = self.inner.fleet.set(fleet);
    }

    /// The fleet, if this instance is in one.
    pub(crate) fn fleet(&self) -> Option<&crate::fleet::Fleet> {
        self.inner.fleet.get()
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        self.inner.engine.clock().now()
    }

    pub(super) fn limits(&self) -> AmountLimits {
        AmountLimits {
            max_integer_digits: self.inner.cfg.max_amount_digits,
            ..AmountLimits::default()
        }
    }
}
