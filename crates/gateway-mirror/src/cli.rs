//! `gatehouse shadow …`: the operator's command line for dark launches.
//!
//! Every subcommand but `replay` talks to the admin API of a running gateway
//! (`--admin-url`, bearer token); `replay` runs offline against URLs. Output
//! is a readable table, or the API's JSON with `--json`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;

use crate::config::LaunchConfig;
use crate::engine::LaunchSummary;
use crate::record::{replay, ReplayOptions};
use crate::report::{render_text, Report};

/// `gatehouse shadow` subcommands.
#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum ShadowCommand {
    /// List dark launches with their score and verdict.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the report of a launch: score, verdict, worst endpoints, top
    /// differing fields with examples, latency comparison.
    Report {
        /// Launch name.
        name: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create a launch from a TOML or JSON file holding one launch definition.
    Create {
        /// The definition (`.toml` or `.json`).
        file: PathBuf,
    },
    /// Pause mirroring (statistics are kept).
    Pause {
        /// Launch name.
        name: String,
    },
    /// Resume a paused launch.
    Resume {
        /// Launch name.
        name: String,
    },
    /// Stop a launch for good (its report stays available).
    Stop {
        /// Launch name.
        name: String,
    },
    /// Replay a recording against a candidate (and optionally a live primary)
    /// and print the same report, before any live mirroring.
    Replay {
        /// JSON-lines recording written by a launch's `record` option.
        file: PathBuf,
        /// Base URL of the candidate, e.g. http://127.0.0.1:9000.
        #[arg(long)]
        candidate: String,
        /// Base URL of the primary; default: the recorded responses.
        #[arg(long)]
        primary: Option<String>,
        /// Launch definition (TOML or JSON) whose compare rules and
        /// thresholds apply; default: the defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Per-request deadline, e.g. 5s or 500ms.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `cmd`, printing to standard output.
pub async fn run(cmd: ShadowCommand, admin_url: &str, token: Option<&str>) -> anyhow::Result<()> {
    let mut out = Vec::new();
    let r = run_to(cmd, admin_url, token, &mut out).await;
    std::io::stdout().write_all(&out)?;
    r
}

/// Runs `cmd`, writing its output to `out`.
pub async fn run_to(
    cmd: ShadowCommand,
    admin_url: &str,
    token: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let api = Api::new(admin_url, token)?;
    match cmd {
        ShadowCommand::List { json } => {
            let v: serde_json::Value = api.call(reqwest::Method::GET, "/v1/shadow", None).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                let list: Vec<LaunchSummary> = serde_json::from_value(v["launches"].clone())
                    .context("unexpected list response")?;
                write!(out, "{}", render_list(&list))?;
            }
        }
        ShadowCommand::Report { name, json } => {
            let v: serde_json::Value = api
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/shadow/{}", enc(&name)),
                    None,
                )
                .await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                let r: Report = serde_json::from_value(v).context("unexpected report response")?;
                write!(out, "{}", render_text(&r))?;
            }
        }
        ShadowCommand::Create { file } => {
            let cfg = load_launch(&file)?;
            let v: serde_json::Value = api
                .call(
                    reqwest::Method::POST,
                    "/v1/shadow",
                    Some(serde_json::to_value(&cfg)?),
                )
                .await?;
            writeln!(
                out,
                "created {} ({})",
                cfg.name,
                v["state"].as_str().unwrap_or("?")
            )?;
        }
        ShadowCommand::Pause { name } => action(&api, out, &name, "pause").await?,
        ShadowCommand::Resume { name } => action(&api, out, &name, "resume").await?,
        ShadowCommand::Stop { name } => action(&api, out, &name, "stop").await?,
        ShadowCommand::Replay {
            file,
            candidate,
            primary,
            config,
            timeout,
            json,
        } => {
            let mut opts = ReplayOptions::new(&candidate);
            opts.primary = primary;
            opts.timeout = timeout;
            if let Some(c) = config {
                opts.launch = load_launch(&c)?;
            }
            let report = replay(&file, &opts).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                write!(out, "{}", render_text(&report))?;
            }
        }
    }
    Ok(())
}

async fn action(api: &Api, out: &mut dyn Write, name: &str, verb: &str) -> anyhow::Result<()> {
    let v: serde_json::Value = api
        .call(
            reqwest::Method::POST,
            &format!("/v1/shadow/{}/{verb}", enc(name)),
            None,
        )
        .await?;
    writeln!(out, "{name}: {}", v["state"].as_str().unwrap_or("?"))?;
    Ok(())
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Reads a launch definition from a `.toml` or `.json` file and validates it.
pub fn load_launch(path: &Path) -> anyhow::Result<LaunchConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let cfg: LaunchConfig = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?
    } else {
        toml::from_str(&text).with_context(|| format!("{}", path.display()))?
    };
    if let Err(issues) = cfg.validate() {
        let list: Vec<String> = issues.iter().map(|i| format!("  {i}")).collect();
        bail!(
            "{} is not a valid launch:\n{}",
            path.display(),
            list.join("\n")
        );
    }
    Ok(cfg)
}

/// Renders the launch list as a table.
pub fn render_list(list: &[LaunchSummary]) -> String {
    let mut o = format!(
        "{:<24} {:<8} {:>8} {:>5}  {:<15} {:<16} ROUTES\n",
        "NAME", "STATE", "SAMPLES", "SCORE", "VERDICT", "CANDIDATE"
    );
    for l in list {
        o.push_str(&format!(
            "{:<24} {:<8} {:>8} {:>5}  {:<15} {:<16} {}\n",
            l.name,
            l.state.as_str(),
            l.samples,
            l.score,
            l.verdict.as_str(),
            l.candidate,
            l.routes.join(",")
        ));
    }
    if list.is_empty() {
        o.push_str("(no dark launches)\n");
    }
    o
}

struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    fn new(base: &str, token: Option<&str>) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {url}"))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            let detail = v["detail"].as_str().unwrap_or(text.as_str());
            let code = v["code"].as_str().unwrap_or("error");
            let mut msg = format!("{status} {code}: {detail}");
            if let Some(issues) = v["issues"].as_array() {
                for i in issues {
                    msg.push_str(&format!(
                        "\n  {}: {}",
                        i["path"].as_str().unwrap_or(""),
                        i["message"].as_str().unwrap_or("")
                    ));
                }
            }
            bail!(msg);
        }
        Ok(v)
    }
}
