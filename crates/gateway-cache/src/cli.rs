//! `gatehouse cache ...`: purge and inspect a running gateway's cache
//! through its admin API.
//!
//! The binary embeds [`CacheCommand`] as a subcommand and calls [`run`]
//! with the admin URL and token it resolved from its own flags or config.

use std::io::Write;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};

use crate::admin::PurgeRequest;
use crate::cache::PurgeResult;
use crate::stats::CacheStats;

/// `gatehouse cache <command>`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum CacheCommand {
    /// Remove (or with --soft mark stale) stored responses.
    Purge(PurgeArgs),
    /// Print hit/miss counters and memory use.
    Stats {
        /// Print the raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `gatehouse cache purge`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(false).args(["url", "prefix", "tag"])))]
pub struct PurgeArgs {
    /// Purge one URL, every variant (e.g. https://api.example.com/v1/items?id=1).
    #[arg(long)]
    pub url: Option<String>,
    /// Purge every URL starting with this prefix (e.g. https://api.example.com/v1/).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Purge every response carrying this surrogate key.
    #[arg(long)]
    pub tag: Option<String>,
    /// Mark stale instead of removing, so stale-while-revalidate still serves.
    #[arg(long)]
    pub soft: bool,
}

/// Runs `cmd` against the admin API at `admin_url`, printing to stdout.
pub async fn run(cmd: CacheCommand, admin_url: &str, token: Option<&str>) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    run_to(cmd, admin_url, token, &mut out).await
}

/// Like [`run`], writing the output to `out`.
pub async fn run_to(
    cmd: CacheCommand,
    admin_url: &str,
    token: Option<&str>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let base = admin_url.trim_end_matches('/');
    let client = reqwest::Client::new();
    let auth = |rb: reqwest::RequestBuilder| match token {
        Some(t) => rb.bearer_auth(t),
        None => rb,
    };
    match cmd {
        CacheCommand::Purge(args) => {
            let body = PurgeRequest {
                url: args.url,
                prefix: args.prefix,
                tag: args.tag,
                soft: args.soft,
            };
            let res = auth(client.post(format!("{base}/v1/cache/purge")).json(&body))
                .send()
                .await
                .with_context(|| format!("cannot reach the admin API at {base}"))?;
            let res = check(res).await?;
            let result: PurgeResult = res.json().await.context("unexpected purge response")?;
            writeln!(
                out,
                "{} {} entr{}",
                if result.soft {
                    "marked stale"
                } else {
                    "purged"
                },
                result.purged,
                if result.purged == 1 { "y" } else { "ies" }
            )?;
        }
        CacheCommand::Stats { json } => {
            let res = auth(client.get(format!("{base}/v1/cache/stats")))
                .send()
                .await
                .with_context(|| format!("cannot reach the admin API at {base}"))?;
            let res = check(res).await?;
            let stats: CacheStats = res.json().await.context("unexpected stats response")?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&stats)?)?;
            } else {
                write_table(&stats, out)?;
            }
        }
    }
    Ok(())
}

async fn check(res: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    if res.status().is_success() {
        return Ok(res);
    }
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_string))
        .unwrap_or(text);
    bail!("admin API answered {status}: {detail}")
}

fn write_table(s: &CacheStats, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let pct = if s.max_bytes > 0 {
        s.bytes as f64 * 100.0 / s.max_bytes as f64
    } else {
        0.0
    };
    writeln!(
        out,
        "entries {}  bytes {} / {} ({pct:.1}%)  evictions {}  purged {}",
        s.entries, s.bytes, s.max_bytes, s.evictions, s.purged
    )?;
    let cols = ["hit", "stale", "miss", "revalidated", "expired", "bypass"];
    write!(out, "{:<24}", "route")?;
    for c in cols {
        write!(out, "{c:>12}")?;
    }
    writeln!(out, "{:>12}", "hit_ratio")?;
    for (name, r) in &s.routes {
        write!(out, "{name:<24}")?;
        for c in cols {
            write!(out, "{:>12}", r.requests.get(c).copied().unwrap_or(0))?;
        }
        let served = ["hit", "stale", "revalidated"]
            .iter()
            .map(|c| r.requests.get(*c).copied().unwrap_or(0))
            .sum::<u64>();
        let total: u64 = r.requests.values().sum();
        let ratio = if total > 0 {
            served as f64 / total as f64
        } else {
            0.0
        };
        writeln!(out, "{ratio:>12.3}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: CacheCommand,
    }

    #[test]
    fn purge_needs_exactly_one_target() {
        let ok = Cli::try_parse_from(["x", "purge", "--tag", "product-1", "--soft"]).unwrap();
        assert_eq!(
            ok.cmd,
            CacheCommand::Purge(PurgeArgs {
                url: None,
                prefix: None,
                tag: Some("product-1".into()),
                soft: true
            })
        );
        assert!(Cli::try_parse_from(["x", "purge"]).is_err());
        assert!(Cli::try_parse_from(["x", "purge", "--url", "a", "--tag", "b"]).is_err());
        assert!(Cli::try_parse_from(["x", "stats", "--json"]).is_ok());
    }
}
