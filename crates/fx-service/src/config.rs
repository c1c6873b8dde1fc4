//! Configuration of the currency service.
//!
//! Documented serde structs with defaults (`DEFAULT_*` constants),
//! `deny_unknown_fields` so a typo is an error rather than a silently
//! ignored setting, and [`FxServiceConfig::validate`] run after loading.
//! Durations are written the humantime way (`"10m"`, `"36h"`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use fx::consensus::ConsensusConfig;
use fx::plausibility::PlausibilityConfig;
use fx::spread::SpreadConfig;
use fx::Format;
use gateway_core::config_issue::{finish, nested, render, ConfigIssue};
use serde::{Deserialize, Serialize};

/// Default listen address of the standalone service.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8085";
/// Default database: an SQLite file under the data dir.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./gatehouse-data/gatehouse.db";
/// Default lifetime of a quote.
pub const DEFAULT_QUOTE_TTL: Duration = Duration::from_secs(10 * 60);
/// Default prefix of every Redis key and channel of a fleet (the fx
/// service adds `fx:` after it; see [`FxServiceConfig::redis_prefix`]).
pub const DEFAULT_REDIS_PREFIX: &str = "gatehouse:";
/// Default longest series, in days (a little over 27 years: the full ECB history).
pub const DEFAULT_MAX_RANGE_DAYS: i64 = 10_000;

/// The whole service configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FxServiceConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Path prefix the API is served under as well as at the root, e.g.
    /// `/fx` to answer `/fx/v1/convert` when a gateway forwards paths
    /// unchanged. Empty (default): root only.
    pub base_path: String,
    /// `sqlite://path` (embedded, default) or `postgres://...`.
    pub database_url: String,
    /// PostgreSQL schema to use (put first on `search_path`); none by default.
    pub database_schema: Option<String>,
    /// Import the bundled ECB history when the database has none.
    pub import_bundled: bool,
    /// How several providers are reconciled.
    pub consensus: ConsensusConfig,
    /// Bounds beyond which a new provider value is quarantined.
    pub plausibility: PlausibilityConfig,
    /// Bearer token of the admin endpoints (`/v1/admin/...`: quarantine,
    /// corrections). `GATEHOUSE_FX_ADMIN_TOKEN` overrides it. Without
    /// either the admin endpoints answer 403 `admin_disabled`.
    pub admin_token: Option<Secret>,
    /// Customer markups.
    pub spread: SpreadConfig,
    /// Soft and hard staleness limits per use.
    pub staleness: StalenessConfig,
    /// How long a quote's rate stays locked.
    #[serde(with = "humantime_serde")]
    pub quote_ttl: Duration,
    /// Longest time series accepted, in days.
    pub max_range_days: i64,
    /// Most integer digits accepted in an amount.
    pub max_amount_digits: u32,
    /// Providers fetched on a schedule.
    pub providers: Vec<ProviderConfig>,
    /// Redis shared by a fleet of fx services on one database
    /// (`redis://[user:password@]host[:port][/db]`, `rediss://` or
    /// `redis+unix://`). When set, an instance that stores new fixings tells
    /// the others, which reload their rates from the database, and a
    /// scheduled provider is fetched by one instance per interval. None
    /// (default): a single instance, nothing shared. The password never
    /// appears in logs or errors.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel of this fleet (default
    /// `gatehouse:`); the service uses `{redis_prefix}fx:...`, apart from
    /// the gateway's keys. One prefix per fleet sharing a Redis.
    pub redis_prefix: String,
    /// OpenTelemetry trace export (`[otlp]`, the gateway's
    /// `[telemetry.otlp]` table); none by default.
    pub otlp: Option<gateway_trace::OtlpConfig>,
}

impl Default for FxServiceConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8085))),
            base_path: String::new(),
            database_url: DEFAULT_DATABASE_URL.to_string(),
            database_schema: None,
            import_bundled: true,
            consensus: ConsensusConfig::default(),
            plausibility: PlausibilityConfig::default(),
            admin_token: None,
            spread: SpreadConfig::default(),
            staleness: StalenessConfig::default(),
            quote_ttl: DEFAULT_QUOTE_TTL,
            max_range_days: DEFAULT_MAX_RANGE_DAYS,
            max_amount_digits: fx::money::DEFAULT_MAX_INTEGER_DIGITS,
            providers: Vec::new(),
            redis_url: None,
            redis_prefix: DEFAULT_REDIS_PREFIX.to_string(),
            otlp: None,
        }
    }
}

/// A secret read from the config: never shown by `Debug` (so never in logs).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(\"***\")")
    }
}

/// Soft/hard limits for one use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Past this, answers carry `stale: true`.
    #[serde(with = "humantime_serde")]
    pub soft: Duration,
    /// Past this, the operation is refused (`rates_too_stale`); omit to never refuse.
    #[serde(default, with = "humantime_serde")]
    pub hard: Option<Duration>,
}

impl Limits {
    /// As the domain type.
    pub fn to_domain(&self) -> fx::staleness::StalenessLimits {
        fx::staleness::StalenessLimits {
            soft: chrono::Duration::from_std(self.soft).unwrap_or(chrono::Duration::MAX),
            hard: self
                .hard
                .map(|h| chrono::Duration::from_std(h).unwrap_or(chrono::Duration::MAX)),
        }
    }
}

/// Staleness limits per use: how old the newest fixing may be, measured
/// from when its successor was due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StalenessConfig {
    /// Rate listings: flagged after 6h, never refused.
    pub rates: Limits,
    /// Conversions: flagged after 6h, refused after 5 days (covers Easter).
    pub convert: Limits,
    /// Quotes (checkouts): flagged after 6h, refused after 3 days.
    pub quotes: Limits,
}

impl Default for StalenessConfig {
    fn default() -> Self {
        let h = |n: u64| Duration::from_secs(n * 3600);
        Self {
            rates: Limits {
                soft: h(6),
                hard: None,
            },
            convert: Limits {
                soft: h(6),
                hard: Some(h(120)),
            },
            quotes: Limits {
                soft: h(6),
                hard: Some(h(72)),
            },
        }
    }
}

/// One scheduled provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Name under which its raw rates are stored (e.g. `ecb`, `oxr`).
    pub name: String,
    /// File format served at `url`.
    pub format: Format,
    /// Where to fetch from (`{date}` is not expanded: give the exact URL).
    pub url: String,
    /// Time between fetches.
    #[serde(default = "d_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Timeout of one attempt.
    #[serde(default = "d_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries after a failed attempt (network error or 5xx).
    #[serde(default = "d_retries")]
    pub retries: u32,
    /// First retry delay; doubles per retry.
    #[serde(default = "d_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Longest retry delay.
    #[serde(default = "d_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
    /// The provider is marked stale when its newest fixing is overdue by more than this.
    #[serde(default = "d_stale_after", with = "humantime_serde")]
    pub stale_after: Duration,
    /// Set to false to keep the entry but not fetch.
    #[serde(default = "d_true")]
    pub enabled: bool,
}

fn d_interval() -> Duration {
    Duration::from_secs(3600)
}
fn d_timeout() -> Duration {
    Duration::from_secs(10)
}
fn d_retries() -> u32 {
    3
}
fn d_backoff() -> Duration {
    Duration::from_secs(1)
}
fn d_backoff_max() -> Duration {
    Duration::from_secs(60)
}
fn d_stale_after() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn d_true() -> bool {
    true
}

impl ProviderConfig {
    /// A provider with default timings.
    pub fn new(name: &str, format: Format, url: &str) -> Self {
        Self {
            name: name.to_string(),
            format,
            url: url.to_string(),
            interval: d_interval(),
            timeout: d_timeout(),
            retries: d_retries(),
            backoff: d_backoff(),
            backoff_max: d_backoff_max(),
            stale_after: d_stale_after(),
            enabled: true,
        }
    }
}

impl FxServiceConfig {
    /// Reads a TOML file and validates it.
    pub fn from_toml_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Parses TOML text and validates it.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        // Names the key as well as the line: `providers[1].interval: ...`.
        let cfg: FxServiceConfig = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                match path.as_str() {
                    "." => anyhow::anyhow!("{inner}"),
                    _ => anyhow::anyhow!("{path}: {inner}"),
                }
            })?;
        cfg.validate()
            .map_err(|issues| anyhow::anyhow!(render(&issues)))?;
        Ok(cfg)
    }

    /// Checks every setting and reports every problem, each with the key
    /// path it concerns.
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut bad = |path: &str, message: String| issues.push(ConfigIssue::new(path, message));
        if let Err(e) = fx::store::Backend::from_url(&self.database_url) {
            bad("database_url", e.to_string());
        }
        let path_ok = self.base_path.is_empty()
            || (self.base_path.starts_with('/')
                && !self.base_path.ends_with('/')
                && self.base_path[1..]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/')));
        if !path_ok {
            bad(
                "base_path",
                format!(
                    "must look like /fx (leading slash, no trailing slash), got `{}`",
                    self.base_path
                ),
            );
        }
        if self.admin_token.as_ref().is_some_and(|t| t.0.is_empty()) {
            bad(
                "admin_token",
                "must not be empty (leave it out to disable the admin endpoints)".into(),
            );
        }
        for (name, l) in [
            ("rates", self.staleness.rates),
            ("convert", self.staleness.convert),
            ("quotes", self.staleness.quotes),
        ] {
            if l.hard.is_some_and(|h| h < l.soft) {
                bad(
                    &format!("staleness.{name}"),
                    "hard limit is shorter than soft limit".into(),
                );
            }
        }
        if self.quote_ttl.is_zero() || self.quote_ttl > Duration::from_secs(7 * 24 * 3600) {
            bad("quote_ttl", "must be between 1s and 7 days".into());
        }
        if !(1..=100_000).contains(&self.max_range_days) {
            bad("max_range_days", "must be between 1 and 100000".into());
        }
        if !(1..=20).contains(&self.max_amount_digits) {
            bad("max_amount_digits", "must be between 1 and 20".into());
        }
        if let Some(url) = &self.redis_url {
            let redacted = gateway_redis::RedisConfig::new(url.as_str()).redacted_url();
            if !["redis://", "rediss://", "redis+unix://", "unix://"]
                .iter()
                .any(|s| url.starts_with(s))
                || url.trim() != url
            {
                bad(
                    "redis_url",
                    format!("must be a redis://, rediss:// or redis+unix:// URL, got `{redacted}`"),
                );
            } else if let Err(e) = redis::Client::open(url.as_str()) {
                bad("redis_url", format!("`{redacted}` is not usable: {e}"));
            }
        }
        if self.redis_prefix.is_empty()
            || self.redis_prefix.len() > 64
            || self
                .redis_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            bad(
                "redis_prefix",
                format!(
                    "must be 1 to 64 characters without spaces, got `{}`",
                    self.redis_prefix.escape_debug()
                ),
            );
        }
        if let Some(otlp) = &self.otlp {
            for issue in nested("otlp", otlp.validate()) {
                bad(&issue.path, issue.message);
            }
        }
        let mut names = BTreeSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let at = |key: &str| format!("providers[{i}].{key}");
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bad(&at("name"), "must be letters, digits, '-' or '_'".into());
            } else if !names.insert(p.name.clone()) {
                bad(&at("name"), format!("`{}` is used twice", p.name));
            }
            if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
                bad(&at("url"), "must be an http(s) URL".into());
            }
            if p.interval < Duration::from_secs(1) {
                bad(&at("interval"), "must be at least 1s".into());
            }
            if p.timeout.is_zero() {
                bad(&at("timeout"), "must be greater than zero".into());
            }
            if p.retries > 10 {
                bad(&at("retries"), "must be at most 10".into());
            }
        }
        issues.extend(nested("consensus", self.consensus.validate()));
        issues.extend(nested("spread", self.spread.validate()));
        finish(issues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_config_parses_and_validates() {
        let cfg = FxServiceConfig::from_toml(
            r#"
listen = "127.0.0.1:0"
database_url = "sqlite::memory:"
quote_ttl = "15m"
[consensus]
tolerance_bps = 150
method = { method = "trimmed_mean", trim_percent = 20 }
[spread]
default_bps = 40
pairs = { "EUR/USD" = 25 }
[spread.tiers.gold]
default_bps = 10
[staleness.convert]
soft = "12h"
hard = "4days"
[[providers]]
name = "ecb"
format = "ecb-xml"
url = "https://example.invalid/eurofxref-daily.xml"
interval = "30m"
"#,
        )
        .unwrap();
        assert_eq!(cfg.quote_ttl, Duration::from_secs(900));
        assert_eq!(cfg.providers[0].retries, 3);
        assert_eq!(
            cfg.spread
                .bps(fx::CurrencyCode::EUR, fx::CurrencyCode::USD, Some("gold")),
            10
        );
    }

    #[test]
    fn the_documented_sample_config_is_valid() {
        let doc = include_str!("../../../docs/fx.md");
        let section = doc
            .find("## Configuration")
            .expect("docs/fx.md has a configuration section");
        let start = section
            + doc[section..]
                .find("```toml\n")
                .expect("docs/fx.md has a toml sample")
            + 8;
        let len = doc[start..].find("```").expect("sample is closed");
        let cfg = FxServiceConfig::from_toml(&doc[start..start + len]).unwrap();
        assert_eq!(cfg.providers.len(), 2);
        assert_eq!(cfg.providers[1].format, Format::Oxr);
    }

    #[test]
    fn typos_and_bad_values_are_refused() {
        assert!(FxServiceConfig::from_toml("qoute_ttl = \"1m\"").is_err());
        assert!(FxServiceConfig::from_toml("database_url = \"mysql://x\"")
            .unwrap_err()
            .to_string()
            .contains("database_url"));
        let e = FxServiceConfig::from_toml(
            "[[providers]]\nname = \"a\"\nformat = \"oxr\"\nurl = \"ftp://x\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("providers[0].url"), "{e}");
        assert!(FxServiceConfig::from_toml("base_path = \"fx/\"")
            .unwrap_err()
            .to_string()
            .contains("base_path"));
        assert!(FxServiceConfig::from_toml("base_path = \"/fx\"").is_ok());
        // A value of the wrong type is named by its key as well as located.
        let e = FxServiceConfig::from_toml("max_range_days = 30\nimport_bundled = \"yes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("import_bundled: "), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn the_admin_token_is_never_shown_and_never_empty() {
        let cfg = FxServiceConfig::from_toml(
            "admin_token = \"s3cret\"\n[plausibility]\nmax_move_percent = 50\n",
        )
        .unwrap();
        assert_eq!(cfg.plausibility.max_move_percent, 50);
        assert_eq!(cfg.plausibility.lookback_days, 31);
        assert!(!format!("{cfg:?}").contains("s3cret"));
        assert!(FxServiceConfig::from_toml("admin_token = \"\"").is_err());
        assert!(FxServiceConfig::from_toml("[plausibility]\nmax_move = 5").is_err());
    }

    #[test]
    fn redis_settings_are_optional_and_checked() {
        let cfg = FxServiceConfig::from_toml("").unwrap();
        assert_eq!(cfg.redis_url, None);
        assert_eq!(cfg.redis_prefix, "gatehouse:");
        let cfg = FxServiceConfig::from_toml(
            "redis_url = \"redis://cache.internal:6379/2\"\nredis_prefix = \"eu1:\"\n",
        )
        .unwrap();
        assert_eq!(
            cfg.redis_url.as_deref(),
            Some("redis://cache.internal:6379/2")
        );
        assert_eq!(cfg.redis_prefix, "eu1:");
        for (toml, field) in [
            ("redis_url = \"http://u:secret@h:6379\"", "redis_url"),
            ("redis_url = \"\"", "redis_url"),
            ("redis_url = \" redis://h\"", "redis_url"),
            ("redis_prefix = \"\"", "redis_prefix"),
            ("redis_prefix = \"a b\"", "redis_prefix"),
            ("redis_urll = \"redis://h\"", "redis_urll"),
        ] {
            let e = FxServiceConfig::from_toml(toml).unwrap_err().to_string();
            assert!(e.contains(field), "{toml}: {e}");
            assert!(!e.contains("secret"), "{toml}: {e}");
        }
    }
}
