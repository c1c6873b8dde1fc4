//! The service's shared state, behind one `Arc`, and its plain accessors.
//!
//! Every other module of the service is an `impl KeyService` block over
//! this state; this module uses none of them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use gateway_core::Clock;
use parking_lot::Mutex;

use crate::config::{KeysConfig, PlanConfig};
use crate::feed::ChangeFeed;
use crate::key::KeyId;
use crate::keyring::Keyring;
use crate::model::NewAuditEntry;
use crate::ratelimit::Limits;
use crate::store::KeyStore;

use super::catalog::ScopeCatalog;

/// Actor recorded for changes made by the gateway itself.
pub const SYSTEM_ACTOR: &str = "system";

#[derive(Debug, Clone, Copy)]
pub(super) struct UseNote {
    pub(super) at: DateTime<Utc>,
    pub(super) retiring: bool,
}

pub(super) struct Inner {
    pub(super) store: Arc<dyn KeyStore>,
    pub(super) keyring: Keyring,
    pub(super) clock: Arc<dyn Clock>,
    /// Swapped whole on a config reload; `database` and the intervals keep
    /// the values the service started with (they need a restart).
    pub(super) config: ArcSwap<KeysConfig>,
    pub(super) plans: ArcSwap<BTreeMap<String, PlanConfig>>,
    pub(super) feed: Arc<dyn ChangeFeed>,
    pub(super) limits: Limits,
    pub(super) catalog: ArcSwap<ScopeCatalog>,
    pub(super) uses: DashMap<KeyId, UseNote>,
    pub(super) grace_audited: DashMap<KeyId, DateTime<Utc>>,
    pub(super) audit_queue: Mutex<Vec<NewAuditEntry>>,
    pub(super) denials_seen: DashMap<(KeyId, String), ()>,
    /// Per-key requests and refusals per hour (this node, memory only).
    pub(super) usage: crate::usage::UsageCounters,
    /// Who sends keys in their grace period (this node, memory only).
    pub(super) grace_clients: crate::grace_clients::GraceClients,
    pub(super) blocked_ips: DashMap<IpAddr, ()>,
    /// `blocked_ips.len()`, without visiting every shard.
    pub(super) blocked_count: AtomicUsize,
    pub(super) http: reqwest::Client,
    pub(super) background: Mutex<Option<BackgroundTasks>>,
}

/// The key system's facade. See the module docs.
#[derive(Clone)]
pub struct KeyService {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService")
            .field("keys", &self.inner.keyring.snapshot().len())
            .finish_non_exhaustive()
    }
}

impl KeyService {
    /// The global configuration.
    pub fn config(&self) -> Arc<KeysConfig> {
        self.inner.config.load_full()
    }

    /// Applies a new `[keys]` table (config reload): key environment,
    /// grace, rotation policy, per-address limits, default plan and custom
    /// scopes take effect for the next request or admin call. `database`
    /// and the background intervals keep their running values; the gateway
    /// names them as needing a restart. Call before
    /// [`Self::set_scope_catalog`], which reads the custom scopes.
    pub fn set_config(&self, mut config: KeysConfig) {
        let running = self.inner.config.load();
        config.database.clone_from(&running.database);
        config.reload_interval = running.reload_interval;
        config.flush_interval = running.flush_interval;
        config.sweep_interval = running.sweep_interval;
        self.inner.config.store(Arc::new(config));
    }

    /// The keyring (read-only use).
    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.inner.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Replaces the plans (config reload).
    pub fn set_plans(&self, plans: BTreeMap<String, PlanConfig>) {
        self.inner.plans.store(Arc::new(plans));
    }

    /// Replaces the scope catalog (config reload).
    pub fn set_scope_catalog(&self, mut catalog: ScopeCatalog) {
        catalog
            .custom
            .extend(self.inner.config.load().custom_scopes.iter().cloned());
        self.inner.catalog.store(Arc::new(catalog));
    }
}

/// Handle on the background loop.
#[derive(Debug)]
pub struct BackgroundTasks {
    pub(super) stop: tokio::sync::watch::Sender<bool>,
    pub(super) handle: tokio::task::JoinHandle<()>,
}

impl BackgroundTasks {
    /// Stops the loop after a final flush.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}
