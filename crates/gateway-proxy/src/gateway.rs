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
use gateway_keys::service::KeyService;
use gateway_mirror::MirrorEngine;
use gateway_upstream::{ClusterMap, Upstreams};

use crate::build::{self, Built, Previous};
use crate::cidr::{ClientAddress, IpRules};
use crate::router::RouteTable;
use crate::telemetry::AccessLog;

/// One consistent view of the config: what a request sees from start to end.
#[derive(Debug)]
pub struct Snapshot {
    /// The validated config and its source text.
    pub config: LoadedConfig,
    /// Compiled routes.
    pub routes: RouteTable,
    /// The clusters the routes send to, swapped together with them.
    pub clusters: Arc<ClusterMap>,
    /// `[ip_rules]`, prepared; `None` when both lists are empty.
    pub ip_rules: Option<IpRules>,
    /// How the client address is found (`trusted_proxies`).
    pub client_address: ClientAddress,
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file is not a valid config, or something it points at (a
    /// TLS file, a JWT key) could not be loaded; the old one keeps serving.
    #[error("{0}")]
    Config(#[from] gateway_config::ConfigError),
    /// The dark-launch store could not record the new launches.
    #[error("dark launches could not be applied: {0}")]
    DarkLaunches(String),
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
    mirror: Arc<MirrorEngine>,
    /// Shared with the dark-launch engine's client, which sends candidates
    /// through the same clusters.
    upstreams: Arc<Upstreams>,
    access_log: AccessLog,
    /// OpenTelemetry tracing, when `[telemetry.otlp]` is set.
    tracer: Option<gateway_trace::Tracer>,
    /// The traffic history the console draws (fed by the log stage).
    history: gateway_console::History,
    /// Dark-launch scores over time (sampled by `console::sample_launches`).
    launch_history: gateway_console::launches::LaunchHistory,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    draining: AtomicBool,
    config_path: Option<PathBuf>,
    reload_lock: tokio::sync::Mutex<()>,
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
    /// Builds a gateway from a validated config (the same build step as a
    /// reload). `config_path` is where reloads read from; `upstreams` is
    /// the (empty) registry the dark-launch engine's client also sends to.
    pub fn new(
        config: LoadedConfig,
        config_path: Option<PathBuf>,
        keys: KeyService,
        upstreams: Arc<Upstreams>,
        mirror: Arc<MirrorEngine>,
    ) -> anyhow::Result<Self> {
        let auth = Authenticator::new(keys);
        let access_log = AccessLog::open(&config.config.telemetry.access_log).map_err(|e| {
            anyhow::anyhow!(
                "cannot open access log `{}`: {e}",
                config.config.telemetry.access_log
            )
        })?;
        let tracer = config
            .config
            .telemetry
            .otlp
            .as_ref()
            .map(|otlp| gateway_trace::Tracer::start(otlp, "gatehouse"))
            .transpose()
            .map_err(|e| anyhow::anyhow!("telemetry.otlp: {e}"))?;
        let built = build::build(
            config,
            Some(Previous {
                upstreams: &upstreams,
                auth: &auth,
                http1_engine: None,
            }),
        )?;
        let cache = HttpCache::open(
            built.loaded.config.cache.clone(),
            gateway_core::clock::system(),
        )?;
        let max_in_flight = built.loaded.config.gateway.max_in_flight;
        let gateway = Self {
            inner: Arc::new(Inner {
                snapshot: ArcSwap::from_pointee(Snapshot {
                    clusters: built.cluster_map(),
                    config: built.loaded.clone(),
                    routes: RouteTable::default(),
                    ip_rules: None,
                    client_address: ClientAddress::default(),
                }),
                cache,
                auth,
                mirror,
                upstreams,
                access_log,
                tracer,
                history: gateway_console::History::new(),
                launch_history: Default::default(),
                in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(max_in_flight),
                draining: AtomicBool::new(false),
                config_path,
                reload_lock: tokio::sync::Mutex::new(()),
            }),
        };
        gateway.swap(built);
        Ok(gateway)
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

    /// The dark-launch engine.
    pub fn mirror(&self) -> &Arc<MirrorEngine> {
        &self.inner.mirror
    }

    /// The API key service.
    pub fn keys(&self) -> &KeyService {
        self.inner.auth.service()
    }

    /// The traffic history of this gateway since it started.
    pub fn history(&self) -> &gateway_console::History {
        &self.inner.history
    }

    /// Dark-launch scores and verdicts over time.
    pub fn launch_history(&self) -> &gateway_console::launches::LaunchHistory {
        &self.inner.launch_history
    }

    /// The tracer, when requests are traced.
    pub(crate) fn tracer(&self) -> Option<&gateway_trace::Tracer> {
        self.inner.tracer.as_ref()
    }

    pub(crate) fn access_log(&self) -> &AccessLog {
        &self.inner.access_log
    }

    /// Reopens the access log file by its path (what `SIGUSR1` does, for
    /// log rotation): lines logged before go to the old file, lines after
    /// to the new one. Blocks until done; see [`AccessLog::reopen`].
    pub fn reopen_access_log(&self) -> std::io::Result<()> {
        self.inner.access_log.reopen()
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

    /// Applies a validated config: builds everything it needs, then, only
    /// if all of it built, swaps it in at once. On error nothing changed.
    pub async fn apply(&self, loaded: LoadedConfig) -> Result<(), ReloadError> {
        let _one_at_a_time = self.inner.reload_lock.lock().await;
        let built = build::build(
            loaded,
            Some(Previous {
                upstreams: &self.inner.upstreams,
                auth: &self.inner.auth,
                http1_engine: Some(self.snapshot().config.config.gateway.http1_engine),
            }),
        )?;
        let old = self.snapshot();
        let restart = build::needs_restart(&old.config, &built.loaded);
        // The one part of a reload that can fail after the build: the
        // dark-launch store refusing a write. It runs first, so a failure
        // still leaves the running config as it was.
        let launches = &built.loaded.config.dark_launches;
        if *launches != old.config.config.dark_launches {
            self.inner
                .mirror
                .reconfigure(launches.clone())
                .await
                .map_err(|e| ReloadError::DarkLaunches(e.to_string()))?;
        }
        self.swap(built);
        for section in restart {
            tracing::warn!(
                section,
                "{section} changed: needs a restart; the running value stays until then"
            );
        }
        Ok(())
    }

    /// Puts a built config in place. Nothing here can fail: whatever could
    /// was done by the build. Clusters are committed before the snapshot
    /// that names them, and each snapshot carries its own cluster map, so a
    /// request always sends to the clusters of the routes it matched.
    fn swap(&self, built: Built) {
        let Built {
            loaded,
            routes,
            auth,
            clusters,
            catalog,
            ip_rules,
            client_address,
        } = built;
        self.inner.auth.install_routes(auth);
        let service = self.inner.auth.service();
        service.set_config(loaded.config.keys.clone());
        service.set_plans(loaded.config.plans.clone());
        service.set_scope_catalog(catalog);
        self.inner
            .max_in_flight
            .store(loaded.config.gateway.max_in_flight, Ordering::Relaxed);
        let cluster_map = clusters.clusters().clone();
        self.inner.upstreams.commit(clusters);
        self.inner.snapshot.store(Arc::new(Snapshot {
            config: loaded,
            routes,
            clusters: cluster_map,
            ip_rules,
            client_address,
        }));
    }
}

/// Builds a config the way startup and a reload do, with nothing running
/// and nothing changed, and throws it away: for `gatehouse check`.
pub(crate) fn check(loaded: LoadedConfig) -> Result<(), gateway_config::ConfigError> {
    build::build(loaded, None).map(drop)
}
