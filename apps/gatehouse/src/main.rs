//! `gatehouse`: the one binary. Each subcommand is a thin adapter over a
//! library crate; no business logic lives here.

mod up;

/// mimalloc instead of glibc malloc: the request path makes dozens of small,
/// short-lived allocations (headers, bodies, futures) and glibc's allocator
/// was the largest single item in gateway profiles (docs/performance.md).
/// `gateway-alloc` says why not through the `mimalloc` crate.
#[global_allocator]
static GLOBAL: gateway_alloc::MiMalloc = gateway_alloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "API gateway, keys, cache, dark launch and FX in one binary"
)]
struct Cli {
    /// Process log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "GATEHOUSE_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway from a config file (reloads on SIGHUP and on change).
    Serve {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and exit (nonzero when invalid).
    Check {
        /// The config file.
        file: PathBuf,
    },
    /// Start everything on this machine with no files to write first.
    Up(up::UpArgs),
    /// Apply database migrations (keys, dark launches, fx) and exit. Nodes
    /// also migrate at start; run this first when rolling out a release to
    /// a fleet so nodes never race on it.
    Migrate {
        /// Read `storage.database_url` (or the SQLite data dir) from this config.
        #[arg(long, short, conflicts_with = "database_url")]
        config: Option<PathBuf>,
        /// The database to migrate (`postgres://...` or `sqlite://...`).
        #[arg(long, env = "GATEHOUSE_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// The currency conversion service: serve, import rate files, convert.
    Fx {
        #[command(subcommand)]
        command: fx_service::cli::FxCommand,
    },
    /// Manage API keys: create, list, show, rotate, revoke, audit (via the admin API).
    Keys {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: gateway_keys::cli::KeysCommand,
    },
    /// Dark launches: list, report, create, pause, resume, stop (via the
    /// admin API), and replay a recorded capture against a candidate offline.
    Shadow {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: gateway_mirror::cli::ShadowCommand,
    },
    /// Purge the response cache or show its statistics (via the admin API).
    Cache {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: gateway_cache::cli::CacheCommand,
    },
}

/// How CLI commands reach a running gateway's admin API.
#[derive(clap::Args)]
struct AdminArgs {
    /// Base URL of the admin API.
    #[arg(
        long = "admin",
        global = true,
        default_value = "http://127.0.0.1:9090",
        env = "GATEHOUSE_ADMIN_URL"
    )]
    url: String,
    /// Admin token; defaults to `GATEHOUSE_ADMIN_TOKEN`, then to the token
    /// `gatehouse up` wrote in `./gatehouse-data/admin-token`.
    #[arg(
        long,
        global = true,
        env = "GATEHOUSE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

impl AdminArgs {
    fn token(&self) -> Option<String> {
        self.token.clone().or_else(|| {
            std::fs::read_to_string("gatehouse-data/admin-token")
                .ok()
                .map(|t| t.trim().to_string())
        })
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.compact().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { file } => check(&file),
        Command::Serve { config } => {
            let loaded = match gateway_config::load_file(&config) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(cli.log_format, &loaded.config.telemetry.log_level);
            run(async move {
                let token = std::env::var("GATEHOUSE_ADMIN_TOKEN").ok();
                let running = gateway_proxy::start(
                    loaded,
                    gateway_proxy::StartOptions {
                        config_path: Some(config),
                        admin_token: token,
                        viewer_token: std::env::var("GATEHOUSE_VIEWER_TOKEN").ok(),
                        ..Default::default()
                    },
                )
                .await?;
                running.run_until_signal().await
            })
        }
        Command::Fx { command } => {
            init_logging(cli.log_format, "info");
            run(fx_service::cli::run(command))
        }
        Command::Keys { admin, command } => run(async move {
            let token = admin.token();
            gateway_keys::cli::run(command, &admin.url, token.as_deref()).await
        }),
        Command::Shadow { admin, command } => run(async move {
            let token = admin.token();
            gateway_mirror::cli::run(command, &admin.url, token.as_deref()).await
        }),
        Command::Cache { admin, command } => run(async move {
            let token = admin.token();
            gateway_cache::cli::run(command, &admin.url, token.as_deref()).await
        }),
        Command::Up(args) => {
            init_logging(cli.log_format, "info");
            run(up::run(args))
        }
        Command::Migrate {
            config,
            database_url,
        } => {
            let url = match (config, database_url) {
                (_, Some(url)) => url,
                (Some(file), None) => match gateway_config::load_file(&file) {
                    Ok(loaded) => gateway_proxy::database_url(&loaded),
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                },
                (None, None) => {
                    eprintln!("error: give --config FILE or --database-url URL");
                    return ExitCode::from(2);
                }
            };
            init_logging(cli.log_format, "warn");
            run(migrate(url))
        }
    }
}

/// Every store migrates itself on connect; connecting to each is the
/// migration. Versions are disjoint per system (keys 1001+, fx 2001+,
/// dark launch 3001+), so they share one migrations table.
async fn migrate(url: String) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let shown = gateway_config::redact_url_credentials(&url);
    // Fail fast on an unreachable database (sqlx retries until the timeout).
    gateway_keys::store::SqlStore::connect_opts(&url, None, std::time::Duration::from_secs(3))
        .await
        .with_context(|| format!("keys: cannot migrate {shown}"))?;
    println!("keys: up to date");
    gateway_mirror::SqlShadowStore::connect(&url)
        .await
        .with_context(|| format!("dark launch: cannot migrate {shown}"))?;
    println!("dark launch: up to date");
    fx::SqlStore::connect(&url, None)
        .await
        .map_err(|e| anyhow::anyhow!("fx: cannot migrate {shown}: {e}"))?;
    println!("fx: up to date");
    println!("migrated {shown}");
    Ok(())
}

fn run(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(file: &std::path::Path) -> ExitCode {
    let loaded = match gateway_config::load_file(file) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let summary = format!(
        "{} routes, {} clusters, {} listeners",
        loaded.config.routes.len(),
        loaded.config.clusters.len(),
        loaded.config.listeners.len()
    );
    // Building clusters makes HTTP clients, which belong to a runtime.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _runtime = rt.enter();
    let token = std::env::var("GATEHOUSE_ADMIN_TOKEN").ok();
    match gateway_proxy::preflight(loaded, file, token) {
        Ok(()) => {
            println!("{}: ok ({summary})", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(2)
        }
    }
}
