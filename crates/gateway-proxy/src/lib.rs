//! The Gatehouse data plane.
//!
//! - [`router`]: the route table and its precedence rules.
//! - [`cidr`]: address sets: IP rules and trusted proxies.
//! - [`cors`]: a route's CORS policy (preflights, response headers).
//! - [`client_cert`]: mutual TLS: verified client certificates, forwarded and required.
//! - [`pipeline`]: one request's trip through the stages, in order.
//! - [`headers`]: hop-by-hop, forwarding, request ids, trace context.
//! - [`server`]: listeners, TLS, HTTP/1.1 + HTTP/2, draining.
//! - `workers`: the data plane's threads, one runtime and one socket per
//!   listener each (`SO_REUSEPORT`).
//! - [`connection`]: connection limits and client deadlines.
//! - [`admin`]: the admin API.
//! - [`gateway`]: the config snapshot, clusters and reloads.
//!
//! [`start`] binds everything and returns a [`Running`] gateway; the binary
//! calls [`Running::run_until_signal`], tests call [`Running::shutdown`].

pub mod admin;
mod alarm;
mod authority;
mod body;
mod build;
pub mod cidr;
pub mod client_cert;
pub mod connection;
mod console;
pub mod cors;
pub mod gateway;
pub mod headers;
mod openapi;
pub mod pipeline;
mod reload;
pub mod router;
mod server;
mod shadow;
pub mod stores;
pub mod telemetry;
mod trace;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use gateway_config::LoadedConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::OpenApi as _;

pub use admin::AdminExtensions;
pub use gateway::{Gateway, ReloadError};
pub use stores::Stores;

/// How to start a gateway beyond what the config says.
#[derive(Default)]
pub struct StartOptions {
    /// The config file, for reloads (SIGHUP, file watching, admin API).
    pub config_path: Option<PathBuf>,
    /// The admin token (`GATEHOUSE_ADMIN_TOKEN` or `[admin] token`).
    pub admin_token: Option<String>,
    /// The read-only viewer token (`GATEHOUSE_VIEWER_TOKEN`; else
    /// `[admin] viewer_token`).
    pub viewer_token: Option<String>,
    /// Extra admin routers.
    pub admin_extensions: AdminExtensions,
}

/// A started gateway.
pub struct Running {
    /// The gateway.
    pub gateway: Gateway,
    /// Bound addresses of the public listeners, in config order.
    pub listeners: Vec<SocketAddr>,
    /// Bound address of the admin listener.
    pub admin: SocketAddr,
    /// The shared stores' health and fan-out.
    pub stores: Stores,
    stop: CancellationToken,
    connections: TaskTracker,
    workers: workers::Workers,
    admin_stop: CancellationToken,
    admin_task: JoinHandle<()>,
    watch_task: Option<JoinHandle<()>>,
}

/// Starts a gateway, step by step; each step needs the ones before it.
pub async fn start(config: LoadedConfig, opts: StartOptions) -> anyhow::Result<Running> {
    // Without a token the admin API would be open, so there is no start.
    let token = admin_token(&config, opts.admin_token.clone())?;
    // Before the first request, so no metric is lost.
    telemetry::prometheus();
    // Redis, when configured, shares limits, purges and key changes.
    let redis = stores::connect_redis(&config.config.storage).await?;
    // The keyring is loaded before any request is authenticated.
    let keys = open_keys(&config, redis.as_ref()).await?;
    // Store health for /readyz, and purges fanned out to the fleet.
    let stores = Stores::start(
        keys.store().clone(),
        config.config.storage.database_timeout,
        redis,
    );
    // One registry of clusters for primaries and dark-launch candidates.
    let upstreams = Arc::new(gateway_upstream::Upstreams::default());
    // Dark launches resume with their saved state and statistics.
    let mirror = start_dark_launches(&config, &upstreams).await?;
    // The config's build step (routes, authentication, clusters), then the swap.
    let gateway = Gateway::new(config, opts.config_path.clone(), keys, upstreams, mirror)?;
    // A purge on any node reaches this node's cache.
    stores.share_purges(gateway.cache());
    // Every socket is bound before any is served: a taken port fails the start.
    let (bound, admin_listener) = bind(&gateway, &opts).await?;
    // Serve.
    serve(gateway, stores, bound, admin_listener, token, opts)
}

/// Starts the dark-launch engine: its store, its own lower-priority
/// thread (shadow traffic never takes CPU live requests need; see
/// `gateway_mirror::runtime`), and the configured launches.
async fn start_dark_launches(
    config: &LoadedConfig,
    upstreams: &Arc<gateway_upstream::Upstreams>,
) -> anyhow::Result<Arc<gateway_mirror::MirrorEngine>> {
    let gw = &config.config.gateway;
    let store = gateway_mirror::SqlShadowStore::connect(&database_url(config))
        .await
        .with_context(|| "cannot open the dark-launch store")?;
    let runtime = gateway_mirror::ShadowRuntime::start(gw.shadow_nice, gw.shadow_idle)
        .with_context(|| "cannot start the dark-launch thread")?;
    gateway_mirror::MirrorEngine::start(
        config.config.dark_launches.clone(),
        Arc::new(shadow::UpstreamShadowClient::new(upstreams.clone())),
        Some(Arc::new(store)),
        gateway_mirror::EngineOptions {
            shadow_runtime: Some(Arc::new(runtime)),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot start dark launches: {e}"))
}

/// Binds the public listeners (with their TLS) and the admin listener.
async fn bind(
    gateway: &Gateway,
    opts: &StartOptions,
) -> anyhow::Result<(Vec<server::BoundListener>, tokio::net::TcpListener)> {
    let snapshot = gateway.snapshot();
    let config = &snapshot.config.config;
    let base_dir = opts
        .config_path
        .as_ref()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        .unwrap_or_default();
    let shared = workers::count(config.gateway.workers) > 1;
    let mut bound = Vec::new();
    for l in &config.listeners {
        bound.push(server::BoundListener::bind(l, &base_dir, shared)?);
    }
    let admin_bind = config.admin.bind;
    let admin = tokio::net::TcpListener::bind(admin_bind)
        .await
        .with_context(|| format!("admin: cannot bind {admin_bind}"))?;
    Ok((bound, admin))
}

/// Serves the bound listeners, the admin API and (when configured) the
/// config file watcher until [`Running::shutdown`].
fn serve(
    gateway: Gateway,
    stores: Stores,
    bound: Vec<server::BoundListener>,
    admin_listener: tokio::net::TcpListener,
    token: String,
    opts: StartOptions,
) -> anyhow::Result<Running> {
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    let nofile = connection::open_files_limit();
    let (max_connections, per_client) =
        connection::effective_limits(&gateway.snapshot().config.config.gateway, nofile);
    tracing::info!(
        max_connections,
        max_connections_per_client = per_client,
        open_files_limit = nofile,
        "client connection limits"
    );
    let serve_ctx = Arc::new(server::ServeContext {
        gateway: gateway.clone(),
        stop: stop.clone(),
        connections: connections.clone(),
        limits: connection::ConnLimits::new(max_connections, per_client),
    });
    let listeners: Vec<SocketAddr> = bound.iter().map(|b| b.local_addr()).collect();
    for (b, addr) in bound.iter().zip(&listeners) {
        tracing::info!(listener = b.name, addr = %addr, tls = b.tls.is_some(), "listening");
    }
    let count = workers::count(gateway.snapshot().config.config.gateway.workers);
    let workers = workers::Workers::start(count, bound, serve_ctx)?;
    tracing::info!(workers = count, "serving");

    let admin_addr = admin_listener
        .local_addr()
        .expect("a bound listener has an address");
    let extensions = opts
        .admin_extensions
        .mount(
            gateway_cache::admin::router(gateway.cache().clone()),
            gateway_cache::admin::CacheApi::openapi(),
        )
        .mount(
            gateway_keys::admin::router(gateway.keys().clone()),
            gateway_keys::admin::KeysApi::openapi(),
        )
        .mount(
            gateway_mirror::admin::router(gateway.mirror().clone()),
            gateway_mirror::admin::ShadowApi::openapi(),
        )
        .mount(
            gateway_console::history_router(gateway.history().clone()),
            gateway_console::routes::HistoryApi::openapi(),
        );
    let viewer = opts
        .viewer_token
        .clone()
        .filter(|t| !t.is_empty())
        .or_else(|| gateway.snapshot().config.config.admin.viewer_token.clone());
    let console = gateway_console::ConsoleState {
        tokens: gateway_console::Tokens::new(token, viewer),
        sessions: Arc::new(gateway_console::Sessions::default()),
        // The admin listener serves plain HTTP; behind a TLS proxy the
        // cookie still gets `Secure` (`X-Forwarded-Proto: https`).
        tls: false,
    };
    let app = admin::router(gateway.clone(), stores.clone(), console, extensions);
    // The admin listener has its own stop: it keeps answering through the
    // drain (`/readyz` says 503 `draining`) and stops after the listeners.
    let admin_stop = CancellationToken::new();
    // Dark-launch scores for the console's chart, until the admin stops.
    console::sample_launches(gateway.clone(), admin_stop.clone());
    let admin_stop_signal = admin_stop.clone();
    let admin_task = tokio::spawn(async move {
        let serve = axum::serve(admin_listener, app)
            .with_graceful_shutdown(async move { admin_stop_signal.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "admin listener failed");
        }
    });
    tracing::info!(addr = %admin_addr, "admin API listening");

    let watch = gateway.snapshot().config.config.gateway.watch_config;
    let watch_task = match (&opts.config_path, watch) {
        (Some(path), true) => Some(reload::watch_file(
            gateway.clone(),
            path.clone(),
            stop.clone(),
        )),
        _ => None,
    };
    Ok(Running {
        gateway,
        listeners,
        admin: admin_addr,
        stores,
        stop,
        connections,
        workers,
        admin_stop,
        admin_task,
        watch_task,
    })
}

impl Running {
    /// Stops accepting, lets in-flight requests finish for up to `grace`,
    /// then returns. Returns whether every connection finished in time.
    /// The admin API keeps serving until the drain is over, with `/readyz`
    /// answering 503 `draining`.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.gateway.set_draining();
        self.stop.cancel();
        let mut workers = self.workers;
        workers.stopped_accepting().await;
        if let Some(t) = self.watch_task {
            t.abort();
        }
        // Every connection was told to close gracefully when `stop` fired.
        self.connections.close();
        let drained = tokio::time::timeout(grace, self.connections.wait())
            .await
            .is_ok();
        self.admin_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.admin_task).await;
        self.gateway.upstreams().shutdown();
        if let Err(e) = self.gateway.mirror().shutdown(Duration::from_secs(2)).await {
            tracing::warn!(error = %e, "could not save dark-launch statistics on shutdown");
        }
        // Last-used times are written in batches; write the last batch.
        if let Err(e) = self.gateway.keys().flush().await {
            tracing::warn!(error = %e, "could not flush key usage on shutdown");
        }
        // Responses stored just before shutdown reach the cache's disk
        // tier, so the next start serves them.
        let cache = self.gateway.cache().clone();
        let _ = tokio::task::spawn_blocking(move || cache.flush()).await;
        // The last requests' spans reach the collector.
        if let Some(tracer) = self.gateway.tracer().cloned() {
            let flushed = tokio::task::spawn_blocking(move || tracer.flush(Duration::from_secs(5)));
            if !matches!(flushed.await, Ok(true)) {
                tracing::warn!("could not export the last spans on shutdown");
            }
        }
        self.stores.shutdown().await;
        drained
    }

    /// Serves until SIGTERM or SIGINT, reloading on SIGHUP and reopening
    /// the access log file on SIGUSR1; then drains within the configured
    /// grace period.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        reload::run_until_signal(self).await
    }

    pub(crate) fn grace(&self) -> Duration {
        self.gateway.snapshot().config.config.gateway.shutdown_grace
    }
}

/// The database shared by the systems that keep durable state: PostgreSQL
/// when `storage.database_url` is set, else SQLite in the data directory.
pub fn database_url(config: &LoadedConfig) -> String {
    let storage = &config.config.storage;
    match &storage.database_url {
        Some(url) => url.clone(),
        None => format!(
            "sqlite://{}?mode=rwc",
            storage.data_dir.join("gatehouse.db").display()
        ),
    }
}

/// Opens the key service. With Redis, rate limits are shared by the fleet
/// and key changes travel on its change feed; without, both stay in this
/// process.
async fn open_keys(
    config: &LoadedConfig,
    redis: Option<&gateway_redis::RedisState>,
) -> anyhow::Result<gateway_keys::service::KeyService> {
    use gateway_keys::service::KeyService;
    let keys = &config.config.keys;
    let db = keys
        .database
        .clone()
        .unwrap_or_else(|| database_url(config));
    let store = gateway_keys::store::SqlStore::connect_opts(
        &db,
        None,
        config.config.storage.database_timeout,
    )
    .await
    .with_context(|| "cannot open the key store")?;
    let mut builder = KeyService::builder(Arc::new(store))
        .config(keys.clone())
        .plans(config.config.plans.clone());
    if let Some(redis) = redis {
        builder = builder
            .feed(Arc::new(gateway_redis::RedisKeyFeed::new(redis.clone())))
            .limiter(Arc::new(gateway_redis::RedisRateLimiter::new(
                redis.clone(),
            )))
            .shared_quotas(Arc::new(gateway_redis::RedisQuotas::new(redis.clone())));
    }
    let svc = builder
        .build()
        .await
        .with_context(|| "cannot load the keyring")?;
    svc.start_background();
    Ok(svc)
}

/// The admin token `serve` would run with: `from_env`
/// (`GATEHOUSE_ADMIN_TOKEN`) when set, else `[admin] token`. Without a
/// non-empty one the gateway does not start, and `gatehouse check` says so
/// with the same message, located in the file.
pub fn admin_token(config: &LoadedConfig, from_env: Option<String>) -> anyhow::Result<String> {
    from_env
        .filter(|t| !t.is_empty())
        .or_else(|| config.config.admin.token.clone())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            config
                .issues_error(vec![gateway_core::ConfigIssue::new(
                    "admin.token",
                    "no admin token: set `[admin] token` or GATEHOUSE_ADMIN_TOKEN; the gateway does not start without one",
                )])
                .into()
        })
}

/// What `gatehouse check` runs beyond reading the config text: the checks
/// `serve` makes before it binds anything (an admin token, `from_env` being
/// `GATEHOUSE_ADMIN_TOKEN`), the build step of startup and reloads
/// (clusters with their TLS files, JWT keys, routes), and the listeners'
/// TLS files. Binds no socket, starts nothing.
pub fn preflight(
    config: LoadedConfig,
    config_path: &std::path::Path,
    admin_token_from_env: Option<String>,
) -> anyhow::Result<()> {
    admin_token(&config, admin_token_from_env)?;
    let base_dir = config_path.parent().unwrap_or(std::path::Path::new(""));
    for (i, l) in config.config.listeners.iter().enumerate() {
        if let Some(tls) = &l.tls {
            server::tls_acceptor(tls, base_dir)
                .with_context(|| format!("{}: listeners[{i}].tls (`{}`)", config.origin, l.name))?;
        }
    }
    gateway::check(config)?;
    Ok(())
}
