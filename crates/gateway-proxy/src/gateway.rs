//! The running gateway: the current config snapshot, the upstream clusters,
//! and reloading.
//!
//! Readers never lock: each request loads the current [`Snapshot`] once
//! (an `ArcSwap`) and keeps it to the end, so a reload swaps in a new
//! snapshot without touching requests already in flight.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use gateway_cache::HttpCache;
use gateway_config::LoadedConfig;
use gateway_keys::auth::Authenticator;
use gateway_keys::service::{KeyService, ScopeCatalog};
use gateway_mirror::MirrorEngine;
use gateway_upstream::Upstreams;

use crate::router::RouteTable;
use crate::telemetry::AccessLog;

/// One consistent view of the config: what a request sees from start to end.
#[derive(Debug)]
pub struct Snapshot {
    /// The validated config and its source text.
    pub config: LoadedConfig,
    /// Compiled routes.
    pub routes: RouteTable,
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file is not a valid config; the old one keeps serving.
    #[error("{0}")]
    Config(#[from] gateway_config::ConfigError),
    /// The clusters could not be rebuilt; the old config keeps serving.
    #[error("cannot apply clusters: {0}")]
    Upstreams(String),
    /// A route's authentication settings could not be loaded (e.g. a JWT
    /// key file); the old config keeps serving.
    #[error("{0}")]
    Auth(String),
    /// There is no file to reload from.
    #[error("this gateway was not started from a config file")]
    NoFile,
}

/// The gateway. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    snapshot: ArcSwap<Snapshot>,
    cache: HttpCache,
    auth: Authenticator,
    /// Set once at start: the engine needs the clusters, which live here.
    mirror: std::sync::OnceLock<Arc<MirrorEngine>>,
    upstreams: Upstreams,
    access_log: AccessLog,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    draining: AtomicBool,
    config_path: Option<PathBuf>,
    reload_lock: tokio::sync::Mutex<()>,
}

/// A gateway reference that does not keep it alive (for parts the gateway
/// owns that need to call back into it, such as the shadow client).
#[derive(Clone)]
pub(crate) struct WeakGateway(std::sync::Weak<Inner>);

impl WeakGateway {
    pub(crate) fn upgrade(&self) -> Option<Gateway> {
        self.0.upgrade().map(|inner| Gateway { inner })
    }
}

/// A slot in the in-flight count, released on drop.
pub struct InFlight(Gateway);

impl Drop for InFlight {
    fn drop(&mut self) {
        let n = self.0.inner.in_flight.fetch_sub(1, Ordering::AcqRel) - 1;
        crate::telemetry::set_in_flight(n);
    }
}

impl Gateway {
    /// Builds a gateway from a validated config. `config_path` is where
    /// reloads read from.
    pub fn new(
        config: LoadedConfig,
        config_path: Option<PathBuf>,
        keys: KeyService,
    ) -> anyhow::Result<Self> {
        let auth = Authenticator::new(keys);
        prepare_auth(&auth, &config).map_err(|e| anyhow::anyhow!("{e}"))?;
        let access_log = AccessLog::open(&config.config.telemetry.access_log).map_err(|e| {
            anyhow::anyhow!(
                "cannot open access log `{}`: {e}",
                config.config.telemetry.access_log
            )
        })?;
        let upstreams = Upstreams::new(config.config.clusters.clone())
            .map_err(|e| anyhow::anyhow!("cannot build clusters: {e}"))?;
        let routes = RouteTable::new(&config.config.routes);
        let cache = HttpCache::new(config.config.cache.clone(), gateway_core::clock::system());
        let max_in_flight = config.config.gateway.max_in_flight;
        Ok(Self {
            inner: Arc::new(Inner {
                snapshot: ArcSwap::from_pointee(Snapshot { config, routes }),
                cache,
                auth,
                mirror: std::sync::OnceLock::new(),
                upstreams,
                access_log,
                in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(max_in_flight),
                draining: AtomicBool::new(false),
                config_path,
                reload_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.load_full()
    }

    /// The upstream clusters.
    pub fn upstreams(&self) -> &Upstreams {
        &self.inner.upstreams
    }

    /// The response cache shared by every route that enables caching.
    pub fn cache(&self) -> &HttpCache {
        &self.inner.cache
    }

    /// The authentication stage.
    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }

    /// The dark-launch engine, once started.
    pub fn mirror(&self) -> Option<&Arc<MirrorEngine>> {
        self.inner.mirror.get()
    }

    pub(crate) fn downgrade(&self) -> WeakGateway {
        WeakGateway(Arc::downgrade(&self.inner))
    }

    pub(crate) fn set_mirror(&self, engine: Arc<MirrorEngine>) {
        let _ = self.inner.mirror.set(engine);
    }

    /// The API key service.
    pub fn keys(&self) -> &KeyService {
        self.inner.auth.service()
    }

    pub(crate) fn access_log(&self) -> &AccessLog {
        &self.inner.access_log
    }

    /// Takes an in-flight slot, or `None` when the gateway must shed load.
    pub(crate) fn admit(&self) -> Option<InFlight> {
        let max = self.inner.max_in_flight.load(Ordering::Relaxed);
        let prev = self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(self.clone());
        if prev >= max {
            return None; // the guard's drop gives the slot back
        }
        crate::telemetry::set_in_flight(prev + 1);
        Some(guard)
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Marks the gateway as draining: `/readyz` fails so load balancers stop
    /// sending new traffic.
    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    /// Whether the gateway is draining.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// The file reloads read from.
    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.inner.config_path.as_deref()
    }

    /// Re-reads the config file and applies it; on any error the running
    /// config stays in place.
    pub async fn reload_from_file(&self) -> Result<(), ReloadError> {
        let path = self.inner.config_path.clone().ok_or(ReloadError::NoFile)?;
        let result = match gateway_config::load_file(&path) {
            Ok(loaded) => self.apply(loaded).await,
            Err(e) => Err(ReloadError::Config(e)),
        };
        match &result {
            Ok(()) => {
                metrics::counter!("gatehouse_config_reloads_total", "result" => "ok").increment(1);
                tracing::info!(file = %path.display(), "config reloaded");
            }
            Err(e) => {
                metrics::counter!("gatehouse_config_reloads_total", "result" => "rejected")
                    .increment(1);
                tracing::error!(file = %path.display(), error = %e, "config reload rejected; the running config stays");
            }
        }
        result
    }

    /// Applies a validated config: clusters first (so new routes find their
    /// clusters), then the route snapshot.
    pub async fn apply(&self, loaded: LoadedConfig) -> Result<(), ReloadError> {
        let _one_at_a_time = self.inner.reload_lock.lock().await;
        prepare_auth(&self.inner.auth, &loaded)?;
        let old = self.snapshot();
        if old.config.config.listeners != loaded.config.listeners
            || old.config.config.admin != loaded.config.admin
            || old.config.config.cache != loaded.config.cache
        {
            tracing::warn!("listener, admin and [cache] changes take effect at the next restart");
        }
        // Add and update clusters first but keep removed ones until the new
        // snapshot is in place, so no request ever sees a route whose
        // cluster is gone.
        let mut union = old.config.config.clusters.clone();
        union.extend(loaded.config.clusters.clone());
        self.inner
            .upstreams
            .reconfigure(union.clone())
            .map_err(|e| ReloadError::Upstreams(e.to_string()))?;
        self.inner
            .max_in_flight
            .store(loaded.config.gateway.max_in_flight, Ordering::Relaxed);
        let routes = RouteTable::new(&loaded.config.routes);
        let clusters = loaded.config.clusters.clone();
        self.inner.snapshot.store(Arc::new(Snapshot {
            config: loaded,
            routes,
        }));
        if union.len() != clusters.len() {
            self.inner
                .upstreams
                .reconfigure(clusters)
                .map_err(|e| ReloadError::Upstreams(e.to_string()))?;
        }
        Ok(())
    }
}

/// Loads every route's auth material (JWT keys) and tells the key service
/// the plans and the scopes that exist, so admin requests naming an unknown
/// scope or plan are refused.
fn prepare_auth(auth: &Authenticator, loaded: &LoadedConfig) -> Result<(), ReloadError> {
    let config = &loaded.config;
    let mut issues = Vec::new();
    for (i, route) in config.routes.iter().enumerate() {
        if let Some(cfg) = &route.auth {
            if let Err(errs) = auth.prepare_route(&route.name, cfg) {
                for e in errs {
                    issues.push(format!(
                        "{}: routes[{i}].auth.{}: {}",
                        loaded.origin, e.path, e.message
                    ));
                }
            }
        }
    }
    if !issues.is_empty() {
        return Err(ReloadError::Auth(issues.join("\n")));
    }
    let service = auth.service();
    service.set_plans(config.plans.clone());
    let mut catalog = ScopeCatalog::from_routes(
        config
            .routes
            .iter()
            .map(|r| (r.name.as_str(), r.auth.as_ref())),
    );
    catalog
        .tags
        .extend(config.routes.iter().flat_map(|r| r.tags.iter().cloned()));
    service.set_scope_catalog(catalog);
    Ok(())
}
