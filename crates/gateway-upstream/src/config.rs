//! Configuration of one upstream cluster (`[clusters.NAME]` in the config file).
//!
//! The structs here are plain serde data: they parse, fill in documented
//! defaults (each a named `DEFAULT_*` constant) and [`ClusterConfig::validate`]
//! reports every problem at once, each naming its key path relative to the
//! cluster (`targets[1]`, `health_check.interval`), so the config loader can
//! prefix `clusters.NAME.` and show the operator all mistakes in one go.
//! Nothing here does IO; the runtime ([`crate::Upstreams`]) builds clients
//! from a validated config.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use gateway_core::config_issue::{finish, ConfigIssue};
use serde::{Deserialize, Serialize};

/// Default time allowed to set up a connection (TCP connect plus TLS handshake).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time an idle pooled connection is kept open.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Default number of idle connections kept per target.
pub const DEFAULT_POOL_MAX_IDLE_PER_TARGET: usize = 256;
/// Default weight of a target.
pub const DEFAULT_WEIGHT: u32 = 1;
/// Largest accepted weight; keeps the weighted schedule small.
pub const MAX_WEIGHT: u32 = 1000;
/// Default active health check path.
pub const DEFAULT_HEALTH_PATH: &str = "/healthz";
/// Default time between active health checks of a target.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Default time an active health check may take.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Default consecutive passing checks that mark a target healthy.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
/// Default consecutive failing checks that mark a target unhealthy.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
/// Default consecutive request failures that eject a target (0 disables).
pub const DEFAULT_PASSIVE_CONSECUTIVE_FAILURES: u32 = 5;
/// Default base ejection time (multiplied by the number of ejections).
pub const DEFAULT_BASE_EJECTION_TIME: Duration = Duration::from_secs(30);
/// Default cap on the share of a cluster's targets ejected at once.
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 50;
/// Default time after an ejection (and after each failed trial) at which
/// an ejected target gets one live request as a trial.
pub const DEFAULT_TRIAL_INTERVAL: Duration = Duration::from_secs(1);
/// Default panic threshold: below this percentage of available targets,
/// requests are balanced over every target, available or not.
pub const DEFAULT_PANIC_THRESHOLD: u32 = 50;
/// Default cap on requests in flight to a cluster.
pub const DEFAULT_MAX_CONCURRENT: usize = 1024;
/// Default cap on requests queued waiting for a concurrency slot.
pub const DEFAULT_MAX_PENDING: usize = 128;
/// Default consecutive failures that open the circuit (0 disables).
pub const DEFAULT_BREAKER_CONSECUTIVE_FAILURES: u32 = 20;
/// Default time the circuit stays open before half-opening: short, so that
/// once the upstream is back, traffic follows within about a second.
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(1);
/// Default number of probe requests let through while half-open.
pub const DEFAULT_HALF_OPEN_PROBES: u32 = 1;
/// Largest `retry.attempts` a cluster accepts.
pub const MAX_ATTEMPTS: u32 = 10;
/// Default total attempts per request (first try included).
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 2;
/// Default share of recent requests that may be retries.
pub const DEFAULT_RETRY_BUDGET_RATIO: f64 = 0.2;
/// Default retries per second always allowed, whatever the ratio.
pub const DEFAULT_RETRY_MIN_PER_SECOND: u32 = 10;
/// Default first backoff before a retry (full jitter below it).
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);
/// Default largest backoff before a retry.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_millis(250);
/// Default largest request body kept in memory so the request can be retried.
pub const DEFAULT_MAX_REPLAY_BODY_BYTES: usize = 64 * 1024;

/// One upstream cluster: a set of equivalent targets and how to talk to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The targets: `"host:port"` (plain HTTP), `"http://host:port"`,
    /// `"https://host:port"`, an SRV name (`"srv+http://_http._tcp.fx.service.consul"`,
    /// needs `dns_refresh`), or a table `{ address = "...", weight = 3 }`.
    pub targets: Vec<TargetConfig>,
    /// How a target is picked for each request.
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    /// What consistent hashing hashes: `"header:<name>"` or `"path"`.
    /// Required with `load_balancing = "consistent_hash"`, rejected otherwise.
    #[serde(default)]
    pub hash_on: Option<HashOn>,
    /// Time allowed to set up a connection: TCP connect plus TLS handshake.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Keep-alive connection pool settings.
    #[serde(default)]
    pub pool: PoolConfig,
    /// HTTP version spoken to the targets.
    #[serde(default)]
    pub protocol: Protocol,
    /// TLS settings for `https://` targets.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Active health checking; absent means targets are only judged passively.
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// Passive outlier detection (ejection after consecutive failures).
    #[serde(default)]
    pub passive: PassiveConfig,
    /// Percentage of targets (0-100) that must be available (not ejected,
    /// not failing active checks) for the balancer to skip the others;
    /// below it, requests are balanced over every target, as if all were
    /// healthy, so failures cannot take the whole cluster out of rotation.
    /// 0 disables the floor.
    #[serde(default = "default_panic_threshold")]
    pub panic_threshold: u32,
    /// Cluster-wide concurrency limits and circuit breaking.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The HTTP/1.1 client for cleartext targets: the gateway's
    /// `[gateway] http1_engine`, not a per-cluster setting.
    #[serde(skip)]
    pub client_engine: ClientEngine,
    /// Re-resolve targets given by host name or SRV name at most this
    /// often (between 1s and 1h); a shorter DNS TTL brings the next refresh
    /// forward. Each resolved address is a target of its own. Absent: a
    /// host name is resolved when a connection is opened, and the set of
    /// targets only changes on reload; SRV targets require it.
    #[serde(default, with = "humantime_serde")]
    pub dns_refresh: Option<Duration>,
    /// Where host names are resolved: the system's DNS unless a test
    /// injects its own answers.
    #[serde(skip)]
    pub resolver: crate::resolve::ResolverHandle,
}

/// Which HTTP/1.1 client talks to cleartext HTTP/1.1 targets. TLS and h2c
/// targets always use hyper's pooled client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientEngine {
    /// Gatehouse's own: the exchange runs in the request's task, idle
    /// connections wait in a pool per worker thread.
    #[default]
    Native,
    /// hyper-util's pooled client.
    Hyper,
}

fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}

fn default_panic_threshold() -> u32 {
    DEFAULT_PANIC_THRESHOLD
}

impl ClusterConfig {
    /// A cluster of plain targets with every other setting at its default.
    pub fn with_targets<I, S>(targets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            targets: targets
                .into_iter()
                .map(|address| TargetConfig {
                    address: address.into(),
                    weight: DEFAULT_WEIGHT,
                })
                .collect(),
            load_balancing: LoadBalancing::default(),
            hash_on: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            pool: PoolConfig::default(),
            protocol: Protocol::default(),
            tls: TlsConfig::default(),
            health_check: None,
            passive: PassiveConfig::default(),
            panic_threshold: DEFAULT_PANIC_THRESHOLD,
            circuit_breaker: CircuitBreakerConfig::default(),
            retry: RetryConfig::default(),
            client_engine: ClientEngine::default(),
            dns_refresh: None,
            resolver: Default::default(),
        }
    }

    /// Checks every setting, returning all problems found (never just the first).
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut issue = |path: String, message: String| issues.push(ConfigIssue { path, message });

        if self.targets.is_empty() {
            issue("targets".into(), "at least one target is required".into());
        }
        let mut seen = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            match TargetSpec::parse(&t.address) {
                Ok(spec) => {
                    if spec.scheme() == Scheme::Https && self.protocol == Protocol::H2c {
                        issue(
                            format!("targets[{i}]"),
                            format!(
                                "`{}` is https but protocol is `h2c` (cleartext HTTP/2); use `auto` to negotiate HTTP/2 over TLS",
                                t.address
                            ),
                        );
                    }
                    if seen.contains(&spec) {
                        issue(
                            format!("targets[{i}]"),
                            format!(
                                "`{}` is listed more than once; use `weight` instead",
                                t.address
                            ),
                        );
                    }
                    if let TargetSpec::Srv(srv) = &spec {
                        if t.weight != DEFAULT_WEIGHT {
                            issue(
                                format!("targets[{i}].weight"),
                                format!("`{srv}` takes its weights from its SRV records; remove `weight`"),
                            );
                        }
                        if self.dns_refresh.is_none() {
                            issue(
                                "dns_refresh".into(),
                                format!(
                                    "required by targets[{i}] `{srv}`: an SRV target's instances are found by looking up its records every `dns_refresh`"
                                ),
                            );
                        }
                    }
                    seen.push(spec);
                }
                Err(e) => issue(format!("targets[{i}]"), e),
            }
            if t.weight == 0 || t.weight > MAX_WEIGHT {
                issue(
                    format!("targets[{i}].weight"),
                    format!("must be between 1 and {MAX_WEIGHT}, got {}", t.weight),
                );
            }
        }

        match (self.load_balancing, &self.hash_on) {
            (LoadBalancing::ConsistentHash, None) => issue(
                "hash_on".into(),
                "required with load_balancing = \"consistent_hash\" (\"header:<name>\" or \"path\")"
                    .into(),
            ),
            (LoadBalancing::RoundRobin | LoadBalancing::LeastOutstanding, Some(_)) => issue(
                "hash_on".into(),
                format!(
                    "only used with load_balancing = \"consistent_hash\", not \"{}\"",
                    self.load_balancing.as_str()
                ),
            ),
            _ => {}
        }

        if let Some(every) = self.dns_refresh {
            use crate::resolve::{MAX_DNS_REFRESH, MIN_DNS_REFRESH};
            if !(MIN_DNS_REFRESH..=MAX_DNS_REFRESH).contains(&every) {
                issue(
                    "dns_refresh".into(),
                    format!(
                        "must be between {} and {}, got {}",
                        humantime::format_duration(MIN_DNS_REFRESH),
                        humantime::format_duration(MAX_DNS_REFRESH),
                        humantime::format_duration(every)
                    ),
                );
            }
        }

        if self.connect_timeout.is_zero() {
            issue("connect_timeout".into(), "must be greater than zero".into());
        }
        if self.pool.idle_timeout.is_zero() {
            issue(
                "pool.idle_timeout".into(),
                "must be greater than zero".into(),
            );
        }

        if let Some(name) = &self.tls.server_name {
            if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
                issue(
                    "tls.server_name".into(),
                    format!("`{name}` is not a valid DNS name or IP address"),
                );
            }
        }
        for (key, path) in [
            ("ca_file", &self.tls.ca_file),
            ("client_cert_file", &self.tls.client_cert_file),
            ("client_key_file", &self.tls.client_key_file),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                issue(format!("tls.{key}"), "must not be empty".into());
            }
        }
        match (&self.tls.client_cert_file, &self.tls.client_key_file) {
            (Some(_), None) => issue(
                "tls.client_cert_file".into(),
                "needs `client_key_file`, the certificate's private key".into(),
            ),
            (None, Some(_)) => issue(
                "tls.client_key_file".into(),
                "needs `client_cert_file`, the certificate it belongs to".into(),
            ),
            _ => {}
        }

        if let Some(hc) = &self.health_check {
            if !hc.path.starts_with('/') {
                issue(
                    "health_check.path".into(),
                    format!("must start with `/`, got `{}`", hc.path),
                );
            } else if http::uri::PathAndQuery::try_from(hc.path.as_str()).is_err() {
                issue(
                    "health_check.path".into(),
                    format!("`{}` is not a valid request path", hc.path),
                );
            }
            if hc.interval.is_zero() {
                issue(
                    "health_check.interval".into(),
                    "must be greater than zero".into(),
                );
            }
            if hc.timeout.is_zero() {
                issue(
                    "health_check.timeout".into(),
                    "must be greater than zero".into(),
                );
            } else if hc.timeout > hc.interval {
                issue(
                    "health_check.timeout".into(),
                    format!(
                        "must not exceed health_check.interval ({} > {})",
                        humantime::format_duration(hc.timeout),
                        humantime::format_duration(hc.interval)
                    ),
                );
            }
            if hc.healthy_threshold == 0 {
                issue(
                    "health_check.healthy_threshold".into(),
                    "must be at least 1".into(),
                );
            }
            if hc.unhealthy_threshold == 0 {
                issue(
                    "health_check.unhealthy_threshold".into(),
                    "must be at least 1".into(),
                );
            }
            for (i, s) in hc.expected_statuses.iter().enumerate() {
                if !(100..=599).contains(s) {
                    issue(
                        format!("health_check.expected_statuses[{i}]"),
                        format!("{s} is not an HTTP status code (100-599)"),
                    );
                }
            }
            match hc.kind {
                HealthCheckKind::Http => {
                    if hc.service.is_some() {
                        issue(
                            "health_check.service".into(),
                            "only used with kind = \"grpc\"".into(),
                        );
                    }
                }
                HealthCheckKind::Grpc => self.validate_grpc_check(hc, &mut issue),
            }
        }

        if self.passive.consecutive_failures > 0 && self.passive.base_ejection_time.is_zero() {
            issue(
                "passive.base_ejection_time".into(),
                "must be greater than zero when passive ejection is enabled".into(),
            );
        }
        if self.passive.consecutive_failures > 0 && self.passive.trial_interval.is_zero() {
            issue(
                "passive.trial_interval".into(),
                "must be greater than zero when passive ejection is enabled".into(),
            );
        }
        if self.panic_threshold > 100 {
            issue(
                "panic_threshold".into(),
                format!("must be between 0 and 100, got {}", self.panic_threshold),
            );
        }
        if self.passive.max_ejection_percent > 100 {
            issue(
                "passive.max_ejection_percent".into(),
                format!(
                    "must be between 0 and 100, got {}",
                    self.passive.max_ejection_percent
                ),
            );
        }

        let cb = &self.circuit_breaker;
        if cb.max_concurrent == 0 {
            issue(
                "circuit_breaker.max_concurrent".into(),
                "must be at least 1".into(),
            );
        }
        if cb.consecutive_failures > 0 {
            if cb.open_for.is_zero() {
                issue(
                    "circuit_breaker.open_for".into(),
                    "must be greater than zero".into(),
                );
            }
            if cb.half_open_probes == 0 {
                issue(
                    "circuit_breaker.half_open_probes".into(),
                    "must be at least 1".into(),
                );
            }
        }

        let r = &self.retry;
        if r.attempts == 0 || r.attempts > MAX_ATTEMPTS {
            issue(
                "retry.attempts".into(),
                format!(
                    "must be between 1 (no retries) and {MAX_ATTEMPTS}, got {}",
                    r.attempts
                ),
            );
        }
        if !(0.0..=1.0).contains(&r.budget_ratio) {
            issue(
                "retry.budget_ratio".into(),
                format!("must be between 0.0 and 1.0, got {}", r.budget_ratio),
            );
        }
        if r.backoff_base > r.backoff_max {
            issue(
                "retry.backoff_base".into(),
                "must not exceed retry.backoff_max".into(),
            );
        }
        for (i, status) in r.on.iter().enumerate() {
            if !RETRYABLE_STATUSES.contains(status) {
                issue(
                    format!("retry.on[{i}]"),
                    format!(
                        "{status} cannot be retried on: only 502, 503 and 504 (errors between servers) can; other statuses are the application's answer"
                    ),
                );
            } else if r.on[..i].contains(status) {
                issue(
                    format!("retry.on[{i}]"),
                    format!("{status} is listed twice"),
                );
            }
        }

        finish(issues)
    }
}

/// A target entry: an address (or SRV name) and a weight.
///
/// Deserializes from either a bare string (`"10.0.0.1:8080"`) or a table
/// (`{ address = "https://api.internal:443", weight = 3 }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetConfig {
    /// `host:port`, `http://host:port`, `https://host[:port]`, or
    /// `srv+http://_service._tcp.domain` / `srv+https://...`.
    pub address: String,
    /// Relative share of traffic (1-1000) under round robin and hashing.
    pub weight: u32,
}

impl<'de> Deserialize<'de> for TargetConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            address: String,
            #[serde(default = "default_weight")]
            weight: u32,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bare(String),
            Table(Table),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "a target is a string like \"host:port\" or a table { address = \"...\", weight = N }",
            )
        })? {
            Raw::Bare(address) => Ok(Self {
                address,
                weight: DEFAULT_WEIGHT,
            }),
            Raw::Table(t) => Ok(Self {
                address: t.address,
                weight: t.weight,
            }),
        }
    }
}

fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}

/// URL scheme of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// Cleartext.
    Http,
    /// TLS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A parsed target address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetAddr {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl TargetAddr {
    /// Parses `host:port`, `http://host[:port]` or `https://host[:port]`.
    /// Paths, queries and user info are rejected: a target is a socket, not a URL prefix.
    pub fn parse(input: &str) -> Result<Self, String> {
        let input = input.trim();
        if input.is_empty() {
            return Err("target address is empty".into());
        }
        let (scheme, rest, explicit) = if let Some(rest) = input.strip_prefix("http://") {
            (Scheme::Http, rest, true)
        } else if let Some(rest) = input.strip_prefix("https://") {
            (Scheme::Https, rest, true)
        } else if input.contains("://") {
            return Err(format!(
                "`{input}` has an unsupported scheme; use http:// or https://"
            ));
        } else {
            (Scheme::Http, input, false)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(format!(
                "`{input}` must not have a path or query; a target is host:port"
            ));
        }
        if rest.contains('@') {
            return Err(format!("`{input}` must not contain user info"));
        }
        let authority = http::uri::Authority::try_from(rest)
            .map_err(|e| format!("`{input}` is not a valid host:port ({e})"))?;
        let host = authority.host();
        if host.is_empty() {
            return Err(format!("`{input}` has no host"));
        }
        let port = match authority.port_u16() {
            Some(0) => return Err(format!("`{input}` has port 0")),
            Some(p) => p,
            None if explicit => match scheme {
                Scheme::Http => 80,
                Scheme::Https => 443,
            },
            None => {
                return Err(format!(
                    "`{input}` has no port; write host:port or a full http(s):// URL"
                ))
            }
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Self { scheme, host, port })
    }

    /// `host:port`, with IPv6 hosts bracketed; what goes in the URI authority.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.authority())
    }
}

/// A target entry as written: one socket, or an SRV name standing for the
/// instances its records list (found at run time, see `crate::discovery`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// `host:port` or `http(s)://host[:port]`.
    Addr(TargetAddr),
    /// `srv+http://_service._tcp.domain` or `srv+https://...`.
    Srv(SrvName),
}

impl TargetSpec {
    /// Parses a target address: [`SrvName::parse`] when it starts with
    /// `srv+`, [`TargetAddr::parse`] otherwise.
    pub fn parse(input: &str) -> Result<Self, String> {
        if input.trim_start().starts_with(SrvName::PREFIX) {
            SrvName::parse(input).map(Self::Srv)
        } else {
            TargetAddr::parse(input).map(Self::Addr)
        }
    }

    /// The scheme spoken to the target (or to every instance an SRV name lists).
    pub fn scheme(&self) -> Scheme {
        match self {
            Self::Addr(a) => a.scheme,
            Self::Srv(s) => s.scheme,
        }
    }
}

/// An SRV target: the scheme spoken to the instances, and the SRV name
/// (RFC 2782 `_service._tcp.domain`) whose records list them with their
/// ports, priorities and weights.
///
/// Written `srv+http://_http._tcp.fx.default.svc.cluster.local` or
/// `srv+https://_fx._tcp.service.consul`: the `srv+` prefix keeps it apart
/// from a host name, and the scheme says how to talk to what is found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SrvName {
    /// `http` or `https`, for every instance found.
    pub scheme: Scheme,
    /// The name looked up, as written (a trailing dot included).
    pub name: String,
}

impl SrvName {
    /// What every SRV target starts with.
    pub const PREFIX: &'static str = "srv+";

    /// Parses `srv+http://_service._tcp.domain` or `srv+https://...`. The
    /// name must have RFC 2782's form, with `_tcp` as the protocol; ports,
    /// paths, queries and user info are rejected: the records give the
    /// ports, and a target is a set of sockets, not a URL prefix.
    pub fn parse(input: &str) -> Result<Self, String> {
        let input = input.trim();
        let form = "an SRV target is `srv+http://_service._tcp.domain` or `srv+https://_service._tcp.domain`";
        let (scheme, rest) = if let Some(rest) = input.strip_prefix("srv+http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = input.strip_prefix("srv+https://") {
            (Scheme::Https, rest)
        } else {
            return Err(format!("`{input}` has an unsupported scheme; {form}"));
        };
        let name = rest.strip_suffix('/').unwrap_or(rest);
        if name.contains('/') || name.contains('?') || name.contains('#') {
            return Err(format!("`{input}` must not have a path or query; {form}"));
        }
        if name.contains('@') {
            return Err(format!("`{input}` must not contain user info"));
        }
        if name.starts_with('[') || name.parse::<std::net::IpAddr>().is_ok() {
            return Err(format!(
                "`{input}` names an address; an SRV target is a DNS name ({form})"
            ));
        }
        if let Some((_, port)) = name.rsplit_once(':') {
            return Err(format!(
                "`{input}` has a port (:{port}); the ports come from the SRV records, remove it"
            ));
        }
        check_srv_name(name).map_err(|why| format!("`{input}` {why}; {form} (RFC 2782)"))?;
        Ok(Self {
            scheme,
            name: name.to_string(),
        })
    }
}

impl fmt::Display for SrvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}://{}",
            Self::PREFIX,
            self.scheme.as_str(),
            self.name
        )
    }
}

/// Checks the shape of an SRV name: `_service._tcp.` then a domain of
/// valid DNS labels. Returns what is wrong, to follow the target.
fn check_srv_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Err("has no name".into());
    }
    if bare.len() > 253 {
        return Err("is longer than a DNS name may be (253 characters)".into());
    }
    let labels: Vec<&str> = bare.split('.').collect();
    if let Some(empty) = labels.iter().position(|l| l.is_empty()) {
        return Err(format!("has an empty label (label {})", empty + 1));
    }
    for label in &labels {
        let valid = label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(format!(
                "has an invalid DNS label `{label}` (letters, digits, `-` and `_`, at most 63)"
            ));
        }
    }
    let service = labels[0];
    if !service.starts_with('_') || service.len() < 2 {
        return Err(format!(
            "does not start with a service label such as `_http` (got `{service}`)"
        ));
    }
    match labels.get(1) {
        Some(proto) if proto.eq_ignore_ascii_case("_tcp") => {}
        Some(proto) => {
            return Err(format!(
                "has protocol label `{proto}`; HTTP runs over `_tcp`"
            ))
        }
        None => return Err("has no protocol label (`_tcp`)".into()),
    }
    if labels.len() < 3 {
        return Err("has no domain after `_service._tcp`".into());
    }
    Ok(())
}

/// Load balancing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    /// Weighted round robin (smooth interleaving of weights).
    #[default]
    RoundRobin,
    /// Power of two choices over in-flight request counts (divided by weight).
    LeastOutstanding,
    /// Hash ring with virtual nodes, keyed by `hash_on`.
    ConsistentHash,
}

impl LoadBalancing {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadBalancing::RoundRobin => "round_robin",
            LoadBalancing::LeastOutstanding => "least_outstanding",
            LoadBalancing::ConsistentHash => "consistent_hash",
        }
    }
}

/// What consistent hashing takes its key from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HashOn {
    /// The value of a request header (`"header:X-User"`); names are case-insensitive.
    Header(http::HeaderName),
    /// The request path (without the query).
    Path,
}

impl TryFrom<String> for HashOn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s == "path" {
            return Ok(HashOn::Path);
        }
        if let Some(name) = s.strip_prefix("header:") {
            let name = name.trim();
            return http::HeaderName::try_from(name)
                .map(HashOn::Header)
                .map_err(|_| format!("`{name}` is not a valid header name"));
        }
        Err(format!(
            "hash_on must be \"header:<name>\" or \"path\", got \"{s}\""
        ))
    }
}

impl From<HashOn> for String {
    fn from(h: HashOn) -> String {
        match h {
            HashOn::Header(name) => format!("header:{name}"),
            HashOn::Path => "path".into(),
        }
    }
}

/// Keep-alive pool settings, per target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// How long an idle connection is kept before closing it.
    #[serde(default = "default_pool_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most idle connections kept per target (0 disables keep-alive reuse).
    #[serde(default = "default_pool_max_idle")]
    pub max_idle_per_target: usize,
}

fn default_pool_idle() -> Duration {
    DEFAULT_POOL_IDLE_TIMEOUT
}
fn default_pool_max_idle() -> usize {
    DEFAULT_POOL_MAX_IDLE_PER_TARGET
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            max_idle_per_target: DEFAULT_POOL_MAX_IDLE_PER_TARGET,
        }
    }
}

impl ClusterConfig {
    /// A gRPC check: its own path and verdict, and HTTP/2 to every target.
    fn validate_grpc_check(&self, hc: &HealthCheckConfig, issue: &mut impl FnMut(String, String)) {
        if hc.path != DEFAULT_HEALTH_PATH {
            issue(
                "health_check.path".into(),
                "only used with kind = \"http\"; a gRPC check calls /grpc.health.v1.Health/Check"
                    .into(),
            );
        }
        if !hc.expected_statuses.is_empty() {
            issue(
                "health_check.expected_statuses".into(),
                "only used with kind = \"http\"; a gRPC check passes when the service answers SERVING"
                    .into(),
            );
        }
        if self.protocol == Protocol::Http1 {
            issue(
                "health_check.kind".into(),
                "a gRPC check needs HTTP/2, but protocol is \"http1\"; use \"h2c\" for http:// targets or \"auto\" for https:// ones".into(),
            );
            return;
        }
        for (i, t) in self.targets.iter().enumerate() {
            let cleartext = TargetSpec::parse(&t.address).is_ok_and(|a| a.scheme() == Scheme::Http);
            if cleartext && self.protocol == Protocol::Auto {
                issue(
                    "health_check.kind".into(),
                    format!(
                        "a gRPC check needs HTTP/2, but targets[{i}] `{}` is cleartext HTTP/1.1 under protocol = \"auto\"; set protocol = \"h2c\"",
                        t.address
                    ),
                );
                return;
            }
        }
    }
}

/// HTTP version spoken to targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1 only (TLS targets offer only `http/1.1` in ALPN).
    Http1,
    /// HTTP/2 with prior knowledge over cleartext; `http://` targets only.
    H2c,
    /// HTTP/1.1 on cleartext; TLS targets negotiate `h2` or `http/1.1` by ALPN.
    #[default]
    Auto,
}

impl Protocol {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2c => "h2c",
            Protocol::Auto => "auto",
        }
    }
}

/// TLS to `https://` targets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of extra CA certificates trusted besides the built-in web roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Name sent as SNI and verified in the certificate, instead of the target host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Accept any certificate. For tests only: it disables server authentication.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// PEM certificate chain presented to targets that ask for a client
    /// certificate (mutual TLS); needs `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

/// Active health checking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// What a check asks: `http` (GET `path`, passing on `expected_statuses`)
    /// or `grpc` (the `grpc.health.v1` Check call, passing on `SERVING`).
    #[serde(default)]
    pub kind: HealthCheckKind,
    /// Path requested with GET (`kind = "http"` only).
    #[serde(default = "default_health_path")]
    pub path: String,
    /// The service a gRPC check asks about (`kind = "grpc"` only); absent,
    /// the empty name: the server as a whole.
    #[serde(default)]
    pub service: Option<String>,
    /// Time between checks of each target.
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Time a check may take before it counts as failed.
    #[serde(default = "default_health_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive passes that mark an unhealthy target healthy again.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failures that mark a healthy target unhealthy.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// Statuses that count as passing; empty means any 2xx (`kind =
    /// "http"` only).
    #[serde(default)]
    pub expected_statuses: Vec<u16>,
}

/// What an active health check asks a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    /// `GET path`; passes on an expected status.
    #[default]
    Http,
    /// `grpc.health.v1.Health/Check` over HTTP/2; passes on `SERVING`.
    Grpc,
}

impl HealthCheckKind {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthCheckKind::Http => "http",
            HealthCheckKind::Grpc => "grpc",
        }
    }
}

fn default_health_path() -> String {
    DEFAULT_HEALTH_PATH.into()
}
fn default_health_interval() -> Duration {
    DEFAULT_HEALTH_INTERVAL
}
fn default_health_timeout() -> Duration {
    DEFAULT_HEALTH_TIMEOUT
}
fn default_healthy_threshold() -> u32 {
    DEFAULT_HEALTHY_THRESHOLD
}
fn default_unhealthy_threshold() -> u32 {
    DEFAULT_UNHEALTHY_THRESHOLD
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            kind: HealthCheckKind::default(),
            path: DEFAULT_HEALTH_PATH.into(),
            service: None,
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
            expected_statuses: Vec::new(),
        }
    }
}

impl HealthCheckConfig {
    /// Whether `status` counts as a passing check.
    pub fn accepts(&self, status: http::StatusCode) -> bool {
        if self.expected_statuses.is_empty() {
            status.is_success()
        } else {
            self.expected_statuses.contains(&status.as_u16())
        }
    }
}

/// Passive outlier detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveConfig {
    /// Consecutive failed requests (connect errors, resets, timeouts, 502/503/504)
    /// that eject a target; 0 disables passive ejection.
    #[serde(default = "default_passive_failures")]
    pub consecutive_failures: u32,
    /// Ejection time; the n-th ejection of a target lasts n × this.
    #[serde(default = "default_base_ejection", with = "humantime_serde")]
    pub base_ejection_time: Duration,
    /// Most targets ejected at once, as a percentage of the cluster
    /// (one target may always be ejected).
    #[serde(default = "default_max_ejection_percent")]
    pub max_ejection_percent: u32,
    /// An ejected target gets one live request as a trial this long after
    /// its ejection, and again this long after each failed trial; a request
    /// it answers ends the ejection early, so a target comes back about as
    /// soon as it works again.
    #[serde(default = "default_trial_interval", with = "humantime_serde")]
    pub trial_interval: Duration,
}

fn default_trial_interval() -> Duration {
    DEFAULT_TRIAL_INTERVAL
}

fn default_passive_failures() -> u32 {
    DEFAULT_PASSIVE_CONSECUTIVE_FAILURES
}
fn default_base_ejection() -> Duration {
    DEFAULT_BASE_EJECTION_TIME
}
fn default_max_ejection_percent() -> u32 {
    DEFAULT_MAX_EJECTION_PERCENT
}

impl Default for PassiveConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: DEFAULT_PASSIVE_CONSECUTIVE_FAILURES,
            base_ejection_time: DEFAULT_BASE_EJECTION_TIME,
            max_ejection_percent: DEFAULT_MAX_EJECTION_PERCENT,
            trial_interval: DEFAULT_TRIAL_INTERVAL,
        }
    }
}

/// Cluster-wide limits and the circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Most requests in flight to the cluster (until their response body ends).
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// Most requests waiting for a slot when `max_concurrent` is reached;
    /// beyond that requests fail at once with `overloaded`.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// Consecutive failed attempts that open the circuit; 0 disables it.
    #[serde(default = "default_breaker_failures")]
    pub consecutive_failures: u32,
    /// How long the circuit stays open before letting probes through.
    #[serde(default = "default_open_for", with = "humantime_serde")]
    pub open_for: Duration,
    /// Requests let through while half-open; one success closes the circuit.
    #[serde(default = "default_half_open_probes")]
    pub half_open_probes: u32,
}

fn default_max_concurrent() -> usize {
    DEFAULT_MAX_CONCURRENT
}
fn default_max_pending() -> usize {
    DEFAULT_MAX_PENDING
}
fn default_breaker_failures() -> u32 {
    DEFAULT_BREAKER_CONSECUTIVE_FAILURES
}
fn default_open_for() -> Duration {
    DEFAULT_OPEN_FOR
}
fn default_half_open_probes() -> u32 {
    DEFAULT_HALF_OPEN_PROBES
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            max_pending: DEFAULT_MAX_PENDING,
            consecutive_failures: DEFAULT_BREAKER_CONSECUTIVE_FAILURES,
            open_for: DEFAULT_OPEN_FOR,
            half_open_probes: DEFAULT_HALF_OPEN_PROBES,
        }
    }
}

/// Retry policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Total attempts per request, the first included (1 = never retry).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Retries allowed as a share of requests over the last 10 seconds.
    #[serde(default = "default_budget_ratio")]
    pub budget_ratio: f64,
    /// Retries per second allowed regardless of `budget_ratio`, so a quiet
    /// cluster can still retry.
    #[serde(default = "default_min_per_second")]
    pub min_per_second: u32,
    /// Backoff before the first retry; doubles each retry, full jitter.
    #[serde(default = "default_backoff_base", with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Cap on the backoff.
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Largest request body (with a known length) buffered so it can be replayed.
    #[serde(default = "default_max_replay_body")]
    pub max_replay_body_bytes: usize,
    /// Response statuses after which an idempotent request is tried again
    /// (on another target when there is one), like nginx's
    /// `proxy_next_upstream http_503`: a subset of [`RETRYABLE_STATUSES`].
    /// Empty by default: a target that answered has seen the request, and
    /// sending it again doubles the load on an origin that is already
    /// failing. Connection failures, and resets before any response byte,
    /// are retried whatever this says.
    #[serde(default)]
    pub on: Vec<u16>,
}

/// The statuses `retry.on` may name: the gateway errors, which say the
/// answering server could not get a response from further on, so another
/// attempt may succeed. Other statuses are the application's own answer.
pub const RETRYABLE_STATUSES: [u16; 3] = [502, 503, 504];

impl RetryConfig {
    /// Whether a response with `status` is tried again (within attempts and
    /// the budget, for idempotent requests).
    pub fn retries_status(&self, status: u16) -> bool {
        self.on.contains(&status)
    }
}

fn default_attempts() -> u32 {
    DEFAULT_RETRY_ATTEMPTS
}
fn default_budget_ratio() -> f64 {
    DEFAULT_RETRY_BUDGET_RATIO
}
fn default_min_per_second() -> u32 {
    DEFAULT_RETRY_MIN_PER_SECOND
}
fn default_backoff_base() -> Duration {
    DEFAULT_BACKOFF_BASE
}
fn default_backoff_max() -> Duration {
    DEFAULT_BACKOFF_MAX
}
fn default_max_replay_body() -> usize {
    DEFAULT_MAX_REPLAY_BODY_BYTES
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: DEFAULT_RETRY_ATTEMPTS,
            budget_ratio: DEFAULT_RETRY_BUDGET_RATIO,
            min_per_second: DEFAULT_RETRY_MIN_PER_SECOND,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            max_replay_body_bytes: DEFAULT_MAX_REPLAY_BODY_BYTES,
            on: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ClusterConfig {
        toml::from_str(s).unwrap()
    }

    fn issues(s: &str) -> Vec<String> {
        match parse(s).validate() {
            Ok(()) => Vec::new(),
            Err(v) => v.into_iter().map(|i| i.to_string()).collect(),
        }
    }

    #[test]
    fn minimal_cluster_gets_documented_defaults() {
        let c = parse(r#"targets = ["127.0.0.1:8080"]"#);
        assert_eq!(c, ClusterConfig::with_targets(["127.0.0.1:8080"]));
        assert_eq!(c.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(c.retry.attempts, DEFAULT_RETRY_ATTEMPTS);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn dns_refresh_parses_and_is_bounded() {
        let c = parse(
            r#"
            targets = ["orders.internal:8080"]
            dns_refresh = "30s"
            "#,
        );
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.dns_refresh, Some(Duration::from_secs(30)));
        assert_eq!(
            issues(
                r#"
                targets = ["orders.internal:8080"]
                dns_refresh = "100ms"
                "#
            ),
            ["dns_refresh: must be between 1s and 1h, got 100ms"]
        );
        assert_eq!(
            issues(
                r#"
                targets = ["orders.internal:8080"]
                dns_refresh = "2h"
                "#
            ),
            ["dns_refresh: must be between 1s and 1h, got 2h"]
        );
    }

    #[test]
    fn full_cluster_parses() {
        let c = parse(
            r#"
            targets = ["http://a:80", { address = "https://b.internal", weight = 3 }]
            load_balancing = "consistent_hash"
            hash_on = "header:X-User"
            connect_timeout = "250ms"
            protocol = "auto"
            pool = { idle_timeout = "30s", max_idle_per_target = 4 }
            tls = { server_name = "api.internal" }
            health_check = { path = "/ready", interval = "2s", timeout = "500ms", expected_statuses = [200, 204] }
            passive = { consecutive_failures = 3, base_ejection_time = "10s", max_ejection_percent = 30 }
            circuit_breaker = { max_concurrent = 10, max_pending = 2, consecutive_failures = 5, open_for = "1s", half_open_probes = 2 }
            retry = { attempts = 3, budget_ratio = 0.1, min_per_second = 5, backoff_base = "10ms", backoff_max = "100ms", on = [502, 503] }
            "#,
        );
        assert_eq!(c.validate(), Ok(()));
        assert!(c.retry.retries_status(503) && !c.retry.retries_status(504));
        assert_eq!(c.targets[1].weight, 3);
        assert_eq!(
            c.hash_on,
            Some(HashOn::Header(http::HeaderName::from_static("x-user")))
        );
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        let hc = c.health_check.unwrap();
        assert!(hc.accepts(http::StatusCode::NO_CONTENT));
        assert!(!hc.accepts(http::StatusCode::CREATED));
        assert_eq!(hc.healthy_threshold, DEFAULT_HEALTHY_THRESHOLD);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<ClusterConfig>("targets = [\"a:1\"]\nretry = { attempt = 3 }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("attempt"), "{err}");
        assert!(toml::from_str::<ClusterConfig>("targets = [\"a:1\"]\nfoo = 1").is_err());
    }

    #[test]
    fn bad_values_are_reported_with_their_key_paths() {
        let got = issues(
            r#"
            targets = ["a:1", "ftp://b:2", "c", { address = "d:4", weight = 0 }, "a:1", "http://x/y"]
            load_balancing = "consistent_hash"
            health_check = { path = "ready", interval = "1s", timeout = "2s", unhealthy_threshold = 0, expected_statuses = [42] }
            passive = { max_ejection_percent = 150, trial_interval = "0s" }
            panic_threshold = 101
            circuit_breaker = { max_concurrent = 0 }
            retry = { attempts = 0, budget_ratio = 1.5, backoff_base = "1s", backoff_max = "10ms", on = [503, 500, 503] }
            "#,
        );
        let paths: Vec<&str> = got.iter().map(|s| s.split(':').next().unwrap()).collect();
        for want in [
            "targets[1]",
            "targets[2]",
            "targets[3].weight",
            "targets[4]",
            "targets[5]",
            "hash_on",
            "health_check.path",
            "health_check.timeout",
            "health_check.unhealthy_threshold",
            "health_check.expected_statuses[0]",
            "passive.max_ejection_percent",
            "passive.trial_interval",
            "panic_threshold",
            "circuit_breaker.max_concurrent",
            "retry.attempts",
            "retry.budget_ratio",
            "retry.backoff_base",
            "retry.on[1]",
            "retry.on[2]",
        ] {
            assert!(paths.contains(&want), "missing {want} in {got:#?}");
        }
        assert!(got
            .iter()
            .any(|s| s.starts_with("retry.on[1]") && s.contains("500 cannot be retried on")));
        assert!(got
            .iter()
            .any(|s| s.starts_with("retry.on[2]") && s.contains("listed twice")));
        assert!(got
            .iter()
            .any(|s| s.contains("ftp://b:2") && s.contains("scheme")));
        assert!(got
            .iter()
            .any(|s| s.starts_with("targets[2]") && s.contains("no port")));
    }

    #[test]
    fn h2c_with_https_target_and_stray_hash_on_are_rejected() {
        let got = issues(
            r#"
            targets = ["https://a"]
            protocol = "h2c"
            hash_on = "path"
            "#,
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("targets[0]: ") && got[0].contains("h2c"));
        assert!(got[1].starts_with("hash_on: "));
    }

    #[test]
    fn grpc_health_checks_parse_and_need_http2() {
        let c = parse(
            r#"
            targets = ["http://a:50051"]
            protocol = "h2c"
            health_check = { kind = "grpc", service = "orders.v1.Orders" }
            "#,
        );
        assert_eq!(c.validate(), Ok(()));
        let hc = c.health_check.unwrap();
        assert_eq!(hc.kind, HealthCheckKind::Grpc);
        assert_eq!(hc.service.as_deref(), Some("orders.v1.Orders"));
        assert!(issues(
            r#"
            targets = ["https://a:443"]
            health_check = { kind = "grpc" }
            "#
        )
        .is_empty());

        let got = issues(
            r#"
            targets = ["http://a:50051"]
            health_check = { kind = "grpc", path = "/ready", expected_statuses = [200] }
            "#,
        );
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].starts_with("health_check.path: only used with kind = \"http\""));
        assert!(
            got[1].starts_with("health_check.expected_statuses: only used with kind = \"http\"")
        );
        assert!(
            got[2].starts_with("health_check.kind: ")
                && got[2].contains("targets[0] `http://a:50051`")
                && got[2].contains("protocol = \"h2c\""),
            "{got:?}"
        );

        let got = issues(
            r#"
            targets = ["https://a"]
            protocol = "http1"
            health_check = { kind = "grpc" }
            "#,
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("needs HTTP/2, but protocol is \"http1\""),
            "{got:?}"
        );

        let got = issues(
            r#"
            targets = ["a:1"]
            health_check = { service = "orders" }
            "#,
        );
        assert_eq!(
            got,
            ["health_check.service: only used with kind = \"grpc\""]
        );
        let err = toml::from_str::<ClusterConfig>(
            "targets = [\"a:1\"]\nhealth_check = { kind = \"tcp\" }",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("expected `http` or `grpc`"), "{err}");
    }

    #[test]
    fn bad_hash_on_and_target_shapes_fail_to_parse_with_a_message() {
        let err = toml::from_str::<ClusterConfig>(
            "targets = [\"a:1\"]\nload_balancing = \"consistent_hash\"\nhash_on = \"cookie:x\"",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("header:<name>"), "{err}");
        let err = toml::from_str::<ClusterConfig>("targets = [42]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("host:port"), "{err}");
    }

    #[test]
    fn target_addresses_parse() {
        let a = TargetAddr::parse("10.0.0.1:8080").unwrap();
        assert_eq!(
            (a.scheme, a.host.as_str(), a.port),
            (Scheme::Http, "10.0.0.1", 8080)
        );
        let a = TargetAddr::parse("https://api.internal/").unwrap();
        assert_eq!((a.scheme, a.port), (Scheme::Https, 443));
        assert_eq!(a.to_string(), "https://api.internal:443");
        let a = TargetAddr::parse("http://[::1]:9000").unwrap();
        assert_eq!(a.host, "::1");
        assert_eq!(a.authority(), "[::1]:9000");
        for bad in [
            "",
            "host",
            "http://a:0",
            "http://u@a:1",
            "a:99999",
            "http://a:1/p?q",
        ] {
            assert!(TargetAddr::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn srv_targets_parse() {
        for (input, scheme, name) in [
            (
                "srv+http://_http._tcp.fx.default.svc.cluster.local",
                Scheme::Http,
                "_http._tcp.fx.default.svc.cluster.local",
            ),
            (
                "srv+https://_fx._tcp.service.consul.",
                Scheme::Https,
                "_fx._tcp.service.consul.",
            ),
            ("srv+http://_a._TCP.b/", Scheme::Http, "_a._TCP.b"),
        ] {
            let srv = match TargetSpec::parse(input) {
                Ok(TargetSpec::Srv(srv)) => srv,
                other => panic!("{input}: {other:?}"),
            };
            assert_eq!((srv.scheme, srv.name.as_str()), (scheme, name), "{input}");
        }
        assert_eq!(
            SrvName::parse("srv+https://_fx._tcp.service.consul")
                .unwrap()
                .to_string(),
            "srv+https://_fx._tcp.service.consul"
        );
        assert!(matches!(
            TargetSpec::parse("http://fx.internal:80"),
            Ok(TargetSpec::Addr(_))
        ));
    }

    #[test]
    fn malformed_srv_targets_say_what_is_wrong() {
        for (input, says) in [
            ("srv+ftp://_a._tcp.b", "unsupported scheme"),
            ("srv+_http._tcp.fx.service.consul", "unsupported scheme"),
            (
                "srv+http://_http._tcp.fx.service.consul:8080",
                "has a port (:8080); the ports come from the SRV records",
            ),
            ("srv+http://_http._tcp.fx/path", "path or query"),
            ("srv+http://u@_http._tcp.fx", "user info"),
            ("srv+http://10.0.0.1", "names an address"),
            ("srv+http://[::1]", "names an address"),
            ("srv+http://", "has no name"),
            (
                "srv+http://fx.service.consul",
                "service label such as `_http`",
            ),
            (
                "srv+http://_fx._udp.service.consul",
                "protocol label `_udp`",
            ),
            ("srv+http://_fx.service.consul", "protocol label `service`"),
            ("srv+http://_fx._tcp", "no domain"),
            ("srv+http://_fx._tcp..consul", "empty label"),
            (
                "srv+http://_fx._tcp.bad!name",
                "invalid DNS label `bad!name`",
            ),
        ] {
            let err = TargetSpec::parse(input).unwrap_err();
            assert!(err.contains(says), "{input}: {err}");
        }
    }

    #[test]
    fn srv_targets_are_validated_with_their_key_paths() {
        assert_eq!(
            issues(
                r#"
                targets = ["srv+http://_http._tcp.fx.service.consul", "127.0.0.1:80"]
                dns_refresh = "10s"
                "#
            ),
            Vec::<String>::new()
        );
        let got = issues(
            r#"
            targets = [
              "srv+http://_http._tcp.fx.service.consul:80",
              { address = "srv+https://_fx._tcp.service.consul", weight = 5 },
              "srv+https://_fx._tcp.service.consul",
            ]
            protocol = "h2c"
            "#,
        );
        let expected_starts = [
            "targets[0]: `srv+http://_http._tcp.fx.service.consul:80` has a port",
            "targets[1]: `srv+https://_fx._tcp.service.consul` is https but protocol is `h2c`",
            "targets[1].weight: `srv+https://_fx._tcp.service.consul` takes its weights from its SRV records",
            "dns_refresh: required by targets[1] `srv+https://_fx._tcp.service.consul`",
            "targets[2]: `srv+https://_fx._tcp.service.consul` is https but protocol is `h2c`",
            "targets[2]: `srv+https://_fx._tcp.service.consul` is listed more than once",
            "dns_refresh: required by targets[2]",
        ];
        assert_eq!(got.len(), expected_starts.len(), "{got:#?}");
        for (got, want) in got.iter().zip(expected_starts) {
            assert!(got.starts_with(want), "{got} should start with {want}");
        }
    }
}
