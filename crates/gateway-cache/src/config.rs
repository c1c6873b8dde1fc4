//! Cache configuration: the global `[cache]` table and per-route `routes[].cache`.
//!
//! Both are plain serde structs with `deny_unknown_fields`, named `DEFAULT_*`
//! constants and a `validate()` that reports every problem at once with the
//! key path it concerns, so `gatehouse check` can list them all.

use std::time::Duration;

use gateway_core::config_issue::{finish, nested, ConfigIssue};
use serde::{de, Deserialize, Deserializer, Serialize};

/// Default memory bound for all stored responses: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Default per-object limit: 8 MiB. Larger responses stream through uncached.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 8 * 1024 * 1024;
/// Default bound on stored variants (distinct `Vary` values) per URL.
pub const DEFAULT_MAX_VARIANTS: usize = 16;
/// Default response header carrying surrogate keys (tags).
pub const DEFAULT_TAG_HEADER: &str = "Surrogate-Key";
/// Default name of the targeted cache-control field (RFC 9213) meant for
/// this cache alone.
pub const DEFAULT_TARGETED_CACHE_CONTROL: &str = "Gatehouse-Cache-Control";
/// Default fraction of `Date - Last-Modified` used as heuristic freshness
/// (RFC 9111 §4.2.2 suggests 10%).
pub const DEFAULT_HEURISTIC_FRACTION: f64 = 0.1;
/// Default cap on heuristic freshness: one day.
pub const DEFAULT_HEURISTIC_MAX: Duration = Duration::from_secs(24 * 60 * 60);
/// Default time a coalesced request waits for the leader before going to
/// the origin on its own.
pub const DEFAULT_COALESCE_TIMEOUT: Duration = Duration::from_secs(10);

/// The global `[cache]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Memory bound for all stored responses (headers, bodies and keys),
    /// as bytes or a string like `"256MiB"`.
    #[serde(deserialize_with = "de_size")]
    pub max_bytes: u64,
    /// Responses larger than this are streamed through and never stored.
    #[serde(deserialize_with = "de_size")]
    pub max_object_bytes: u64,
    /// Most variants (distinct `Vary` header values) kept per URL; the
    /// oldest variant is dropped when a new one would exceed it.
    pub max_variants: usize,
    /// Query parameters left out of every cache key; globs with `*`,
    /// matched case-insensitively on the decoded name (e.g. `utm_*`).
    pub ignore_query_params: Vec<String>,
    /// Response header whose space- or comma-separated values are the
    /// response's tags for purge-by-tag. `Cache-Tag` is always read as well.
    pub tag_header: String,
    /// Whether `tag_header` and `Cache-Tag` reach clients. By default they
    /// are removed from every response on a cached route (they still
    /// select what a purge by tag removes): tags describe how the origin
    /// groups its content, which is nobody else's business.
    pub forward_tag_headers: bool,
    /// The targeted cache-control field (RFC 9213) meant for this cache
    /// alone. It comes first on the target list, then `CDN-Cache-Control`;
    /// the first valid one replaces `Cache-Control` and `Expires` for this
    /// cache.
    pub targeted_cache_control: String,
    /// Whether the targeted fields (`targeted_cache_control` and
    /// `CDN-Cache-Control`) reach clients. On by default: RFC 9213 §3 has
    /// caches forward them so caches further down can use them, and lets an
    /// operator remove them.
    pub forward_targeted_cache_control: bool,
    /// Fraction of `Date - Last-Modified` used as freshness when the origin
    /// gives none (RFC 9111 §4.2.2).
    pub heuristic_fraction: f64,
    /// Upper bound on heuristic freshness.
    #[serde(with = "humantime_serde")]
    pub heuristic_max: Duration,
    /// How long concurrent misses wait for the one request in flight
    /// before each goes to the origin itself.
    #[serde(with = "humantime_serde")]
    pub coalesce_timeout: Duration,
    /// The optional disk tier under the memory tier, so a restarted node
    /// serves hits at once (`disk = { path = "...", max_bytes = "1GiB" }`).
    pub disk: Option<DiskConfig>,
}

/// The `[cache] disk` table: where the disk tier keeps its entry files and
/// how many bytes of files it may hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// Directory of entry files, created when missing. A relative path is
    /// relative to the gateway's working directory. One gateway per
    /// directory.
    pub path: std::path::PathBuf,
    /// Bound on the bytes of entry files (headers, keys and bodies); the
    /// oldest entries are deleted to stay under it.
    #[serde(deserialize_with = "de_size")]
    pub max_bytes: u64,
}

impl DiskConfig {
    /// Checks the values serde cannot; paths are relative to the `disk`
    /// table. `max_object_bytes` is the cache's own per-object limit.
    pub fn validate(&self, max_object_bytes: u64) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if self.path.as_os_str().is_empty() {
            issues.push(ConfigIssue::new(
                "path",
                "must not be empty (a directory for the cache's entry files)",
            ));
        }
        if self.max_bytes == 0 {
            issues.push(ConfigIssue::new("max_bytes", "must be greater than 0"));
        } else if self.max_bytes < max_object_bytes {
            issues.push(ConfigIssue::new(
                "max_bytes",
                format!(
                    "must be at least cache.max_object_bytes ({} < {max_object_bytes})",
                    self.max_bytes
                ),
            ));
        }
        finish(issues)
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            max_variants: DEFAULT_MAX_VARIANTS,
            ignore_query_params: Vec::new(),
            tag_header: DEFAULT_TAG_HEADER.to_string(),
            forward_tag_headers: false,
            targeted_cache_control: DEFAULT_TARGETED_CACHE_CONTROL.to_string(),
            forward_targeted_cache_control: true,
            heuristic_fraction: DEFAULT_HEURISTIC_FRACTION,
            heuristic_max: DEFAULT_HEURISTIC_MAX,
            coalesce_timeout: DEFAULT_COALESCE_TIMEOUT,
            disk: None,
        }
    }
}

impl CacheConfig {
    /// Checks the values serde cannot; reports every issue with its path
    /// relative to the `[cache]` table.
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if self.max_bytes == 0 {
            issues.push(ConfigIssue::new("max_bytes", "must be greater than 0"));
        }
        if self.max_object_bytes == 0 {
            issues.push(ConfigIssue::new(
                "max_object_bytes",
                "must be greater than 0",
            ));
        } else if self.max_object_bytes > self.max_bytes {
            issues.push(ConfigIssue::new(
                "max_object_bytes",
                format!(
                    "must not exceed cache.max_bytes ({} > {})",
                    self.max_object_bytes, self.max_bytes
                ),
            ));
        } else if self.max_object_bytes > u64::from(u32::MAX) / 2 {
            issues.push(ConfigIssue::new("max_object_bytes", "must be below 2GiB"));
        }
        if self.max_variants == 0 {
            issues.push(ConfigIssue::new("max_variants", "must be at least 1"));
        }
        check_globs(
            "ignore_query_params",
            &self.ignore_query_params,
            &mut issues,
        );
        if http::HeaderName::from_bytes(self.tag_header.as_bytes()).is_err() {
            issues.push(ConfigIssue::new(
                "tag_header",
                format!("`{}` is not a valid header name", self.tag_header),
            ));
        }
        match http::HeaderName::from_bytes(self.targeted_cache_control.as_bytes()) {
            Err(_) => issues.push(ConfigIssue::new(
                "targeted_cache_control",
                format!(
                    "`{}` is not a valid header name",
                    self.targeted_cache_control
                ),
            )),
            Ok(name) if name == http::header::CACHE_CONTROL || name == "cdn-cache-control" => {
                issues.push(ConfigIssue::new(
                    "targeted_cache_control",
                    format!(
                        "must be a field of this cache's own, not `{}` (CDN-Cache-Control is always read after it)",
                        self.targeted_cache_control
                    ),
                ))
            }
            Ok(_) => {}
        }
        if !(self.heuristic_fraction.is_finite() && (0.0..=1.0).contains(&self.heuristic_fraction))
        {
            issues.push(ConfigIssue::new(
                "heuristic_fraction",
                "must be between 0.0 and 1.0",
            ));
        }
        if self.coalesce_timeout.is_zero() {
            issues.push(ConfigIssue::new(
                "coalesce_timeout",
                "must be greater than 0 (e.g. \"10s\")",
            ));
        }
        if let Some(disk) = &self.disk {
            issues.extend(nested("disk", disk.validate(self.max_object_bytes)));
        }
        finish(issues)
    }
}

/// The per-route `routes[].cache` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteCacheConfig {
    /// Whether responses on this route are looked up and stored at all.
    pub enabled: bool,
    /// Freshness lifetime used instead of the origin's for storable
    /// responses (like Varnish's `beresp.ttl`). `no-store`, `private` and
    /// `no-cache` still apply.
    #[serde(with = "humantime_serde")]
    pub ttl_override: Option<Duration>,
    /// Request headers whose values become part of the key on this route
    /// (e.g. `X-Tenant`), for responses that differ without saying `Vary`.
    pub key_headers: Vec<String>,
    /// Whether the authenticated consumer id is part of the key, so
    /// per-tenant responses are never served across tenants.
    pub key_consumer: bool,
    /// Extra query parameters left out of the key on this route (globs).
    pub ignore_query_params: Vec<String>,
    /// Stale-while-revalidate window used when the origin gives none.
    #[serde(with = "humantime_serde")]
    pub stale_while_revalidate: Option<Duration>,
    /// Stale-if-error window used when the origin gives none.
    #[serde(with = "humantime_serde")]
    pub stale_if_error: Option<Duration>,
}

impl Default for RouteCacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl_override: None,
            key_headers: Vec::new(),
            key_consumer: false,
            ignore_query_params: Vec::new(),
            stale_while_revalidate: None,
            stale_if_error: None,
        }
    }
}

impl RouteCacheConfig {
    /// Checks the values serde cannot; paths are relative to the route's
    /// `cache` table.
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        for (i, h) in self.key_headers.iter().enumerate() {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                issues.push(ConfigIssue::new(
                    format!("key_headers[{i}]"),
                    format!("`{h}` is not a valid header name"),
                ));
            }
        }
        check_globs(
            "ignore_query_params",
            &self.ignore_query_params,
            &mut issues,
        );
        finish(issues)
    }
}

fn check_globs(path: &str, globs: &[String], issues: &mut Vec<ConfigIssue>) {
    for (i, g) in globs.iter().enumerate() {
        if g.is_empty() {
            issues.push(ConfigIssue::new(
                format!("{path}[{i}]"),
                "must not be empty (use `*` to ignore every parameter)",
            ));
        }
    }
}

/// Parses a byte size: an integer, or a string like `"512KiB"`, `"256MiB"`,
/// `"1GiB"`. `KB`/`MB`/`GB` mean powers of 1024 too.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "invalid size `{s}`: expected a number with an optional unit, like `256MiB`"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size `{s}`: number too large"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size `{s}`: unknown unit `{other}` (use B, KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size `{s}`: too large"))
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Str(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) => Ok(n),
        Raw::Str(s) => parse_size(&s).map_err(de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_with_units() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1gb").unwrap(), 1 << 30);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(parse_size("MiB").unwrap_err().contains("expected a number"));
        assert!(parse_size("5 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
    }

    #[test]
    fn toml_round_trip_and_unknown_fields() {
        let cfg: CacheConfig = toml::from_str(
            r#"
            max_bytes = "64MiB"
            max_object_bytes = 1048576
            ignore_query_params = ["utm_*"]
            coalesce_timeout = "2s"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.max_bytes, 64 << 20);
        assert_eq!(cfg.max_object_bytes, 1 << 20);
        assert_eq!(cfg.coalesce_timeout, Duration::from_secs(2));
        assert_eq!(cfg.tag_header, DEFAULT_TAG_HEADER);
        assert!(cfg.validate().is_ok());

        let err = toml::from_str::<CacheConfig>("max_byte = 5").unwrap_err();
        assert!(err.to_string().contains("max_byte"), "{err}");

        let route: RouteCacheConfig = toml::from_str(
            r#"
            ttl_override = "30s"
            key_headers = ["X-Tenant"]
            key_consumer = true
            stale_while_revalidate = "1m"
            "#,
        )
        .unwrap();
        assert!(route.enabled);
        assert_eq!(route.ttl_override, Some(Duration::from_secs(30)));
        assert_eq!(route.stale_while_revalidate, Some(Duration::from_secs(60)));
    }

    #[test]
    fn the_disk_table_is_parsed_and_checked_with_its_paths() {
        let cfg: CacheConfig = toml::from_str(
            r#"
            max_object_bytes = "1MiB"
            disk = { path = "/var/cache/gatehouse", max_bytes = "1GiB" }
            "#,
        )
        .unwrap();
        let disk = cfg.disk.clone().unwrap();
        assert_eq!(disk.path, std::path::Path::new("/var/cache/gatehouse"));
        assert_eq!(disk.max_bytes, 1 << 30);
        assert!(cfg.validate().is_ok());

        let err = toml::from_str::<CacheConfig>(r#"disk = { path = "/x", max = 1 }"#).unwrap_err();
        assert!(err.to_string().contains("max"), "{err}");
        let err = toml::from_str::<CacheConfig>(r#"disk = { max_bytes = "1GiB" }"#).unwrap_err();
        assert!(err.to_string().contains("path"), "{err}");

        let cfg = CacheConfig {
            max_object_bytes: 2048,
            disk: Some(DiskConfig {
                path: "".into(),
                max_bytes: 1024,
            }),
            ..CacheConfig::default()
        };
        let issues = cfg.validate().unwrap_err();
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["disk.path", "disk.max_bytes"]);
        assert!(
            issues[1].message.contains("max_object_bytes"),
            "{}",
            issues[1].message
        );
    }

    #[test]
    fn validate_reports_every_issue_with_its_path() {
        let cfg = CacheConfig {
            max_bytes: 10,
            max_object_bytes: 20,
            max_variants: 0,
            tag_header: "bad header".into(),
            targeted_cache_control: "CDN-Cache-Control".into(),
            heuristic_fraction: 2.0,
            ..CacheConfig::default()
        };
        let issues = cfg.validate().unwrap_err();
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "max_object_bytes",
                "max_variants",
                "tag_header",
                "targeted_cache_control",
                "heuristic_fraction"
            ]
        );
        let route = RouteCacheConfig {
            key_headers: vec!["ok".into(), "not ok".into()],
            ..RouteCacheConfig::default()
        };
        let issues = route.validate().unwrap_err();
        assert_eq!(issues[0].path, "key_headers[1]");
    }
}
