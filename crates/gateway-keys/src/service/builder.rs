//! [`KeyServiceBuilder`] and [`KeyService::open`]: a service built,
//! checked and loaded from its store.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use gateway_core::config_issue::nested;
use gateway_core::Clock;
use parking_lot::Mutex;

use crate::config::{KeysConfig, PlanConfig};
use crate::feed::{ChangeFeed, InProcessFeed};
use crate::keyring::Keyring;
use crate::ratelimit::{GcraLimiter, Limits, QuotaBook, RateLimiter, SharedQuotas};
use crate::store::{KeyStore, SqlStore};

use super::catalog::ScopeCatalog;
use super::state::{Inner, KeyService};

/// Builds a [`KeyService`].
pub struct KeyServiceBuilder {
    store: Arc<dyn KeyStore>,
    config: KeysConfig,
    plans: BTreeMap<String, PlanConfig>,
    clock: Arc<dyn Clock>,
    feed: Arc<dyn ChangeFeed>,
    limiter: Arc<dyn RateLimiter>,
    shared_quotas: Option<Arc<dyn SharedQuotas>>,
    catalog: ScopeCatalog,
}

impl KeyServiceBuilder {
    /// Global key settings (default: [`KeysConfig::default`]).
    pub fn config(mut self, config: KeysConfig) -> Self {
        self.config = config;
        self
    }

    /// Plans by name.
    pub fn plans(mut self, plans: BTreeMap<String, PlanConfig>) -> Self {
        self.plans = plans;
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The change feed (default: in-process).
    pub fn feed(mut self, feed: Arc<dyn ChangeFeed>) -> Self {
        self.feed = feed;
        self
    }

    /// Fleet-wide quota counters (default: none, quotas count in memory and
    /// the store only).
    pub fn shared_quotas(mut self, shared: Arc<dyn SharedQuotas>) -> Self {
        self.shared_quotas = Some(shared);
        self
    }

    /// The rate limiter (default: in-memory GCRA).
    pub fn limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Known routes, tags and custom scopes.
    pub fn scope_catalog(mut self, catalog: ScopeCatalog) -> Self {
        self.catalog = catalog;
        self
    }

    /// Validates the configuration and loads the keyring from the store.
    pub async fn build(self) -> Result<KeyService, anyhow::Error> {
        let mut issues = self
            .config
            .validate_with_plans(&self.plans)
            .err()
            .unwrap_or_default();
        for (name, plan) in &self.plans {
            issues.extend(nested(&format!("plans.{name}"), plan.validate()));
        }
        if !issues.is_empty() {
            let list: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
            anyhow::bail!("invalid keys configuration: {}", list.join("; "));
        }
        let mut catalog = self.catalog;
        catalog
            .custom
            .extend(self.config.custom_scopes.iter().cloned());
        let mut limits = Limits::new(self.limiter, Arc::new(QuotaBook::new()), self.clock.clone());
        if let Some(shared) = self.shared_quotas {
            limits = limits.with_shared_quotas(shared);
        }
        let svc = KeyService {
            inner: Arc::new(Inner {
                store: self.store,
                keyring: Keyring::new(),
                clock: self.clock,
                config: ArcSwap::from_pointee(self.config),
                plans: ArcSwap::from_pointee(self.plans),
                feed: self.feed,
                limits,
                catalog: ArcSwap::from_pointee(catalog),
                uses: DashMap::new(),
                grace_audited: DashMap::new(),
                audit_queue: Mutex::new(Vec::new()),
                denials_seen: DashMap::new(),
                usage: Default::default(),
                grace_clients: Default::default(),
                blocked_ips: DashMap::new(),
                blocked_count: AtomicUsize::new(0),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_default(),
                background: Mutex::new(None),
            }),
        };
        svc.reload().await?;
        Ok(svc)
    }
}

impl KeyService {
    /// Starts building a service over `store`.
    pub fn builder(store: Arc<dyn KeyStore>) -> KeyServiceBuilder {
        KeyServiceBuilder {
            store,
            config: KeysConfig::default(),
            plans: BTreeMap::new(),
            clock: gateway_core::clock::system(),
            feed: Arc::new(InProcessFeed::default()),
            limiter: Arc::new(GcraLimiter::new()),
            shared_quotas: None,
            catalog: ScopeCatalog::default(),
        }
    }

    /// Opens the store named by `config.database` (or `default_database`,
    /// the gateway's shared database), builds a service with defaults and
    /// starts its background loop (batched writes, sweeps, reloads, change
    /// feed).
    pub async fn open(
        config: KeysConfig,
        plans: BTreeMap<String, PlanConfig>,
        default_database: &str,
    ) -> Result<KeyService, anyhow::Error> {
        let db = config
            .database
            .clone()
            .unwrap_or_else(|| default_database.to_string());
        let store = SqlStore::connect(&db).await?;
        let svc = KeyService::builder(Arc::new(store))
            .config(config)
            .plans(plans)
            .build()
            .await?;
        svc.start_background();
        Ok(svc)
    }
}
