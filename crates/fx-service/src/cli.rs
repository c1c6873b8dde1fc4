//! `gatehouse fx ...`: serve, import a provider file, convert.
//!
//! The binary dispatches its `fx` subcommand to [`run`]. Every command uses
//! the same database as the service (`--database`, default the embedded
//! SQLite file), so an import is immediately visible to a running service
//! after its next restart, and `convert` works offline from the bundled
//! history.
//!
//! `import` exits non-zero, naming each row (file:line, date, currency),
//! when anything in the file was not published as given: a value
//! quarantined by a plausibility check (now or earlier) or one that differs
//! from the stored value. `import --correct` replaces stored (or
//! quarantined) values through audited corrections.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use fx::money::{parse_amount, AmountLimits};
use fx::query::{self, ConvertRequest};
use fx::{CurrencyCode, Format, RoundingMode};

use fx::review::{CorrectionMeta, ImportMode};
use fx::store::IngestReport;
use gateway_core::config_issue::render;
use gateway_core::Clock;

use crate::config::{FxServiceConfig, Secret, DEFAULT_DATABASE_URL};
use crate::FxService;

/// `gatehouse fx` subcommands.
#[derive(Debug, Subcommand)]
pub enum FxCommand {
    /// Run the currency service on its own listener.
    Serve(ServeArgs),
    /// Import a provider file (ECB CSV/zip/XML, OXR or Frankfurter JSON).
    Import(ImportArgs),
    /// Convert an amount, e.g. `gatehouse fx convert 100 USD JPY --date 2020-03-02`.
    Convert(ConvertArgs),
}

/// Options shared by every subcommand.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// Service configuration file (TOML).
    #[arg(long, env = "GATEHOUSE_FX_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL (overrides the config): sqlite://PATH or postgres://...
    #[arg(long, env = "GATEHOUSE_FX_DATABASE")]
    pub database: Option<String>,
    /// Redis shared by a fleet of fx services (overrides the config's
    /// `redis_url`): `serve` joins the fleet, `import` tells it.
    #[arg(long, env = "GATEHOUSE_FX_REDIS")]
    pub redis: Option<String>,
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Listen address (overrides the config).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

/// `import` options.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The file to import.
    pub file: PathBuf,
    /// Its format (detected from the content when omitted).
    #[arg(long)]
    pub format: Option<Format>,
    /// Provider name to store it under (default: from the format).
    #[arg(long)]
    pub provider: Option<String>,
    /// Replace stored (or quarantined) values that differ from the file's
    /// through audited corrections; the old values are kept as history. A
    /// quarantined value given unchanged is approved (published).
    #[arg(long, requires = "reason")]
    pub correct: bool,
    /// Why the values are corrected (stored with each correction).
    #[arg(long)]
    pub reason: Option<String>,
    /// Who corrects (default: the `USER` environment variable).
    #[arg(long)]
    pub actor: Option<String>,
}

/// `convert` options.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Amount in the source currency, e.g. 1234.56.
    pub amount: String,
    /// Source currency, e.g. USD.
    pub from: String,
    /// Target currency, e.g. JPY.
    pub to: String,
    /// Fixing date (YYYY-MM-DD); latest when omitted.
    #[arg(long)]
    pub date: Option<chrono::NaiveDate>,
    /// Rounding: half_even (default), half_up, ceiling, floor, truncate.
    #[arg(long, default_value = "half_even")]
    pub rounding: RoundingMode,
}

fn load_config(db: &DbArgs) -> anyhow::Result<FxServiceConfig> {
    let mut cfg = match &db.config {
        Some(p) => FxServiceConfig::from_toml_file(p)?,
        None => FxServiceConfig::default(),
    };
    if let Some(url) = &db.database {
        cfg.database_url = url.clone();
    }
    if cfg.database_url.is_empty() {
        cfg.database_url = DEFAULT_DATABASE_URL.to_string();
    }
    if let Some(url) = &db.redis {
        cfg.redis_url = Some(url.clone());
    }
    if let Some(t) = std::env::var("GATEHOUSE_FX_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        cfg.admin_token = Some(Secret(t));
    }
    cfg.validate()
        .map_err(|issues| anyhow::anyhow!("invalid fx configuration: {}", render(&issues)))?;
    Ok(cfg)
}

/// Default provider name for a format.
pub fn default_provider(format: Format) -> &'static str {
    match format {
        Format::EcbCsv | Format::EcbZip | Format::EcbXml => "ecb",
        Format::Oxr => "oxr",
        Format::Frankfurter => "frankfurter",
    }
}

/// Runs a subcommand to completion.
pub async fn run(cmd: FxCommand) -> anyhow::Result<()> {
    run_with_clock(cmd, gateway_core::clock::system()).await
}

/// Runs a subcommand with an injected clock (tests).
pub async fn run_with_clock(cmd: FxCommand, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    match cmd {
        FxCommand::Serve(a) => {
            let mut cfg = load_config(&a.db)?;
            if let Some(l) = a.listen {
                cfg.listen = l;
            }
            let running = FxService::start(cfg).await?;
            println!("fx service listening on http://{}", running.local_addr());
            let handle = running.shutdown_handle();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                handle.shutdown();
            });
            running.wait().await
        }
        FxCommand::Import(a) => {
            let cfg = load_config(&a.db)?;
            let bytes = std::fs::read(&a.file)
                .with_context(|| format!("cannot read {}", a.file.display()))?;
            let format = match a.format.or_else(|| Format::detect(&bytes)) {
                Some(f) => f,
                None => anyhow::bail!(
                    "cannot tell the format of {}; pass --format",
                    a.file.display()
                ),
            };
            let provider = a
                .provider
                .unwrap_or_else(|| default_provider(format).to_string());
            let mode = if a.correct {
                ImportMode::Correct(CorrectionMeta {
                    actor: a
                        .actor
                        .clone()
                        .or_else(|| std::env::var("USER").ok())
                        .filter(|s| !s.trim().is_empty())
                        .unwrap_or_else(|| "cli".to_string()),
                    reason: a.reason.clone().unwrap_or_default(),
                    via: "cli".to_string(),
                })
            } else {
                ImportMode::Import
            };
            if a.correct && a.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                anyhow::bail!("--correct needs a non-empty --reason");
            }
            let engine = FxService::open_engine(&cfg, clock).await?;
            let fleet = crate::fleet::Fleet::connect(&cfg).await?;
            let started = std::time::Instant::now();
            let report = engine
                .import_bytes(&provider, Some(format), &bytes, &mode)
                .await
                .with_context(|| {
                    format!("{} was not imported (nothing was stored)", a.file.display())
                })?;
            let changed = report.inserted + report.corrected.len() as u64;
            if let Some(f) = &fleet {
                if changed > 0 {
                    let event = crate::fleet::RatesChanged {
                        provider: provider.clone(),
                        first_fixing: Some(report.first_date),
                        last_fixing: report.last_date,
                        rows: changed,
                    };
                    match f.announce(&event).await {
                        Ok(()) => println!("told the fleet on {}", f.channel()),
                        Err(e) => eprintln!(
                            "warning: the fleet was not told ({e}); running instances see these rates at their next reload or restart"
                        ),
                    }
                }
                f.shutdown();
            }
            println!(
                "imported {} ({format}) as provider {provider}: {} new rows, {} already stored, {} quarantined, {} conflicting, {} corrected, fixings {}..{}, {} ms",
                a.file.display(),
                report.inserted,
                report.ignored,
                report.quarantined.len() + report.still_quarantined.len(),
                report.conflicts.len(),
                report.corrected.len(),
                report.first_date,
                report.last_date,
                started.elapsed().as_millis()
            );
            let file = a.file.display().to_string();
            for c in &report.corrected {
                println!(
                    "  corrected {}: {} -> {} (was {})",
                    row_at(&file, &c.row),
                    c.old,
                    c.new,
                    c.was.as_str()
                );
            }
            match review_problems(&file, &report) {
                Some(problems) => Err(anyhow::anyhow!(problems)),
                None => Ok(()),
            }
        }
        FxCommand::Convert(a) => {
            let clock: Arc<dyn Clock> = clock;
            let cfg = load_config(&a.db)?;
            let from = CurrencyCode::parse(&a.from).context("source currency")?;
            let to = CurrencyCode::parse(&a.to).context("target currency")?;
            let amount =
                parse_amount(&a.amount, from, &AmountLimits::default()).context("amount")?;
            let engine = FxService::open_engine(&cfg, clock.clone()).await?;
            let table = engine.table();
            let r = query::resolve(
                &table,
                a.date,
                clock.now(),
                &fx::staleness::FixingCalendar::default(),
                // A quick lookup warns about old rates rather than refusing.
                &fx::staleness::StalenessLimits {
                    hard: None,
                    ..cfg.staleness.convert.to_domain()
                },
            )?;
            let c = query::convert_on(
                &table,
                &r.day,
                &ConvertRequest {
                    from,
                    to,
                    amount,
                    date: a.date,
                    rounding: a.rounding,
                    spread_bps: 0,
                },
            )?;
            let path: Vec<String> = c.path.iter().map(|c| c.to_string()).collect();
            println!("{amount} {from} = {} {to}", c.mid_amount);
            println!(
                "  mid rate {} ({}), fixing {}{}, via {}, rounding {}",
                c.mid_rate,
                c.providers.join("+"),
                r.day.date,
                if r.stale {
                    format!(
                        " [STALE: next fixing was due {}]",
                        r.next_expected.map(|t| t.to_rfc3339()).unwrap_or_default()
                    )
                } else {
                    String::new()
                },
                path.join("→"),
                c.rounding
            );
            Ok(())
        }
    }
}

/// `file:line: date currency` (or `file: date currency` without a line).
fn row_at(file: &str, row: &fx::review::RowRef) -> String {
    match row.line {
        Some(l) => format!("{file}:{l}: {} {}", row.date, row.currency),
        None => format!("{file}: {} {}", row.date, row.currency),
    }
}

/// What an import did not publish as given, one row a line; `None` when
/// everything in the file is published.
fn review_problems(file: &str, report: &IngestReport) -> Option<String> {
    if report.is_clean() {
        return None;
    }
    let mut out = String::new();
    let quarantined: Vec<_> = report
        .quarantined
        .iter()
        .chain(&report.still_quarantined)
        .collect();
    if !quarantined.is_empty() {
        out.push_str(&format!(
            "{} value(s) quarantined, not published (approve or replace them with `gatehouse fx import --correct --reason ...` or POST /v1/admin/corrections):\n",
            quarantined.len()
        ));
        for q in quarantined {
            out.push_str(&format!(
                "  {} {}: {}\n",
                row_at(file, &q.row),
                q.rate,
                q.reason
            ));
        }
    }
    if !report.conflicts.is_empty() {
        out.push_str(&format!(
            "{} value(s) differ from the stored ones; nothing was changed for them (use --correct to replace them):\n",
            report.conflicts.len()
        ));
        for c in &report.conflicts {
            out.push_str(&format!(
                "  {}: stored {} ({}), new {}{}\n",
                row_at(file, &c.row),
                c.stored,
                c.state.as_str(),
                c.new,
                c.note
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ));
        }
    }
    Some(out.trim_end().to_string())
}
