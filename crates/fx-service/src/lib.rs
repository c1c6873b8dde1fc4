//! The currency conversion service: HTTP adapter, ingestion scheduler and
//! CLI over the `fx` domain library.
//!
//! - [`FxService::start`] opens the store (importing the bundled ECB history
//!   on first start), starts the provider schedulers and serves the API on
//!   its own listener; `gatehouse up` puts the gateway in front of it.
//! - [`router`] builds the API for in-process use (tests, embedding).
//! - [`cli`] implements `gatehouse fx serve | import | convert`.
//! - [`fleet`]: with `redis_url`, several instances on one database keep
//!   their rate tables in step and fetch each provider once per interval.
//!
//! Architecture invariant: this crate knows nothing about the gateway; the
//! gateway treats it as an ordinary upstream (keys and cache apply there).

pub mod admin;
pub mod cli;
pub mod config;
pub mod error;
pub mod fleet;
pub mod health;
pub mod http;
pub mod ingest;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use fx::{EngineConfig, FxEngine, RateStore, SqlStore};
use gateway_core::config_issue::render;
use gateway_core::Clock;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{FxServiceConfig, ProviderConfig};
pub use fleet::Fleet;
pub use health::HealthRegistry;
pub use http::{router, AppState};
pub use ingest::Fetcher;

/// Entry points of the service.
#[derive(Debug)]
pub struct FxService;

/// Creates the directory of an SQLite database file if needed.
fn ensure_sqlite_dir(url: &str) -> anyhow::Result<()> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() || path.contains(":memory:") {
            return Ok(());
        }
        if let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        }
    }
    Ok(())
}

impl FxService {
    /// Opens the store and the engine described by `cfg`.
    pub async fn open_engine(
        cfg: &FxServiceConfig,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<FxEngine>> {
        cfg.validate()
            .map_err(|issues| anyhow::anyhow!("invalid fx configuration: {}", render(&issues)))?;
        ensure_sqlite_dir(&cfg.database_url)?;
        let store = SqlStore::connect(&cfg.database_url, cfg.database_schema.as_deref())
            .await
            .with_context(|| "cannot open the fx database")?;
        let store: Arc<dyn RateStore> = Arc::new(store);
        let engine = FxEngine::open(
            store,
            EngineConfig {
                consensus: cfg.consensus,
                import_bundled: cfg.import_bundled,
                plausibility: cfg.plausibility,
            },
            clock,
        )
        .await?;
        Ok(Arc::new(engine))
    }

    /// Builds the API state (engine opened, schedulers not started).
    pub async fn build(
        cfg: FxServiceConfig,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<(AppState, Arc<HealthRegistry>)> {
        let engine = Self::open_engine(&cfg, clock).await?;
        let health = Arc::new(HealthRegistry::default());
        for p in &cfg.providers {
            health.register(p);
        }
        Ok((AppState::new(engine, cfg, health.clone()), health))
    }

    /// Starts the whole service on `cfg.listen` with the system clock.
    pub async fn start(cfg: FxServiceConfig) -> anyhow::Result<RunningFx> {
        Self::start_with_clock(cfg, gateway_core::clock::system()).await
    }

    /// Starts the whole service with an injected clock.
    ///
    /// With `redis_url`, the instance joins its fleet first and subscribes
    /// to rate changes before loading the table, so nothing another
    /// instance stores meanwhile is missed.
    pub async fn start_with_clock(
        cfg: FxServiceConfig,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<RunningFx> {
        cfg.validate()
            .map_err(|issues| anyhow::anyhow!("invalid fx configuration: {}", render(&issues)))?;
        let providers = cfg.providers.clone();
        let listen = cfg.listen;
        let tracer = cfg
            .otlp
            .as_ref()
            .map(|otlp| gateway_trace::Tracer::start(otlp, "gatehouse-fx"))
            .transpose()
            .map_err(|e| anyhow::anyhow!("otlp: {e}"))?;
        let fleet = Fleet::connect(&cfg).await?;
        let events = fleet.as_ref().map(Fleet::subscribe);
        let built = Self::build(cfg, clock).await;
        let (state, health) = match built {
            Ok(v) => v,
            Err(e) => {
                if let Some(f) = &fleet {
                    f.shutdown();
                }
                return Err(e);
            }
        };
        let engine = state.engine().clone();
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                if let Some(f) = &fleet {
                    f.shutdown();
                }
                return Err(e).with_context(|| format!("cannot listen on {listen}"));
            }
        };
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(false);
        let mut schedulers = Vec::new();
        if let (Some(f), Some(events)) = (&fleet, events) {
            if let fx::engine::Bootstrap::ImportedBundled { rows, .. } = engine.bootstrap() {
                // Instances that started on the same empty database meanwhile
                // pick the bundled history up too.
                if let Some(last) = engine.table().latest().map(|d| d.date) {
                    let _ = f
                        .announce(&fleet::RatesChanged {
                            provider: fx::bundled::PROVIDER.to_string(),
                            // The whole history: peers reload everything.
                            first_fixing: None,
                            last_fixing: last,
                            rows: *rows,
                        })
                        .await;
                }
            }
            schedulers.push(f.spawn_follower(events, engine.clone(), health.clone(), rx.clone()));
        }
        if let Some(f) = &fleet {
            state.set_fleet(f.clone());
        }
        let fetcher = Fetcher::new(engine.clone(), health).with_fleet(fleet.clone());
        schedulers.extend(fetcher.spawn(&providers, rx.clone()));
        let app = match tracer {
            Some(tracer) => http::traced(router(state), tracer),
            None => router(state),
        };
        let mut stop = rx;
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|v| *v).await;
                })
                .await
        });
        tracing::info!(%addr, "fx service listening");
        Ok(RunningFx {
            addr,
            engine,
            fleet,
            shutdown: tx,
            server,
            schedulers,
        })
    }
}

/// A running service.
#[derive(Debug)]
pub struct RunningFx {
    addr: SocketAddr,
    engine: Arc<FxEngine>,
    fleet: Option<Fleet>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    schedulers: Vec<JoinHandle<()>>,
}

/// Triggers a graceful shutdown from elsewhere (e.g. a signal handler).
#[derive(Debug, Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    /// Asks the service to stop: the listener closes, in-flight requests finish.
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

impl RunningFx {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The engine (for in-process use).
    pub fn engine(&self) -> &Arc<FxEngine> {
        &self.engine
    }

    /// The fleet this instance belongs to (`redis_url` set).
    pub fn fleet(&self) -> Option<&Fleet> {
        self.fleet.as_ref()
    }

    /// Ingests a provider file into the shared store and this instance's
    /// table and, in a fleet, tells the other instances (as a scheduled
    /// fetch or `gatehouse fx import` does).
    pub async fn ingest_bytes(
        &self,
        provider: &str,
        format: Option<fx::Format>,
        bytes: &[u8],
    ) -> Result<fx::store::IngestReport, fx::engine::IngestError> {
        fleet::ingest_and_announce(&self.engine, self.fleet.as_ref(), provider, format, bytes).await
    }

    /// A handle that can stop the service.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Waits until the service stops (after a shutdown request).
    pub async fn wait(self) -> anyhow::Result<()> {
        let res = self.server.await;
        for s in self.schedulers {
            s.abort();
        }
        if let Some(f) = &self.fleet {
            f.shutdown();
        }
        res.context("fx server task failed")?
            .context("fx server failed")
    }

    /// Stops gracefully and waits for in-flight requests.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }
}
