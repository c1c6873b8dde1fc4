//! Configuration of the key system, as embedded in the gateway config file.
//!
//! Three structs, each documented field by field, each with defaults and a
//! `validate()` that reports every problem with its key path:
//!
//! - [`KeysConfig`] is the global `[keys]` table: storage, grace periods,
//!   rotation policy, per-IP limits for unauthenticated traffic and failed
//!   verifications, background intervals.
//! - [`PlanConfig`] is one `[plans.NAME]` table: a rate limit and quotas.
//! - [`RouteAuthConfig`] is a route's `auth` table: which methods
//!   (`api_key`, `jwt`), where to read the credential, required scopes,
//!   headers forwarded upstream and JWT settings.
//!
//! Paths in [`ConfigIssue`]s are relative to the table validated (e.g.
//! `rotation.warn_before`); the gateway prefixes them with where it found
//! the table (`keys.`, `plans.gold.`, `routes[2].auth.`) using
//! [`gateway_core::config_issue::nested`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gateway_core::config_issue::{finish, nested, ConfigIssue};
use serde::{Deserialize, Serialize};

use crate::key::is_valid_environment;
use crate::scope::Scope;

/// Default grace period during which a rotated key keeps working.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
/// Longest grace period an admin may ask for.
pub const DEFAULT_MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default warning lead time before a key expires.
pub const DEFAULT_WARN_BEFORE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default header read for API keys (besides `Authorization: Bearer`).
pub const DEFAULT_KEY_HEADER: &str = "x-api-key";

/// The global `[keys]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Where keys live: a `postgres://` URL for scale-out, a `sqlite:` URL,
    /// or a file path (SQLite). When unset the gateway passes its shared
    /// database (by default `./gatehouse-data/gatehouse.db`).
    pub database: Option<String>,
    /// Environment segment of newly created keys (`gh_<environment>_...`),
    /// 1-16 characters of `a-z0-9`.
    pub environment: String,
    /// How long a rotated key keeps working next to its successor when the
    /// rotate request does not say. `0s` retires it immediately.
    #[serde(with = "humantime_serde")]
    pub default_grace: Duration,
    /// Longest grace an admin may request.
    #[serde(with = "humantime_serde")]
    pub max_grace: Duration,
    /// Rotation policy: key lifetime and expiry warnings.
    pub rotation: RotationPolicyConfig,
    /// Limit for verification failures per client IP (brute-force guard).
    /// Once exceeded, requests from that IP get 429 before any lookup.
    pub failed_auth_per_ip: IpLimitConfig,
    /// Limit per client IP for requests that carry no credential.
    pub unauthenticated_per_ip: IpLimitConfig,
    /// Plan applied to consumers and keys that name none. Must exist in
    /// `[plans]` when set.
    pub default_plan: Option<String>,
    /// Custom scope names admins may grant besides `route:`, `tag:` and
    /// `method:` scopes. Scopes outside this list are rejected with 400
    /// when the list is non-empty.
    pub custom_scopes: Vec<String>,
    /// Full reload of the keyring from the store, a safety net behind the
    /// change feed.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// How often last-used times, quota counts and queued audit entries are
    /// written to the store (batched; the hot path never writes).
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// How often the rotation-policy sweeper looks for expired and expiring
    /// keys.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            database: None,
            environment: "live".into(),
            default_grace: DEFAULT_GRACE,
            max_grace: DEFAULT_MAX_GRACE,
            rotation: RotationPolicyConfig::default(),
            failed_auth_per_ip: IpLimitConfig {
                enabled: true,
                rate_per_second: 1.0,
                burst: 20,
            },
            unauthenticated_per_ip: IpLimitConfig {
                enabled: true,
                rate_per_second: 10.0,
                burst: 50,
            },
            default_plan: None,
            custom_scopes: Vec::new(),
            reload_interval: Duration::from_secs(60),
            flush_interval: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(60),
        }
    }
}

impl KeysConfig {
    /// Checks the table on its own. Use [`KeysConfig::validate_with_plans`]
    /// to also check `default_plan`.
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if !is_valid_environment(&self.environment) {
            issues.push(ConfigIssue::new(
                "environment",
                format!(
                    "`{}` is not a valid key environment: use 1-16 characters of a-z and 0-9",
                    self.environment
                ),
            ));
        }
        if self.default_grace > self.max_grace {
            issues.push(ConfigIssue::new(
                "default_grace",
                "must not be longer than `max_grace`",
            ));
        }
        if let Some(db) = &self.database {
            if db.trim().is_empty() {
                issues.push(ConfigIssue::new("database", "must not be empty when set"));
            }
        }
        issues.extend(nested("rotation", self.rotation.validate()));
        for (name, lim) in [
            ("failed_auth_per_ip", &self.failed_auth_per_ip),
            ("unauthenticated_per_ip", &self.unauthenticated_per_ip),
        ] {
            issues.extend(nested(name, lim.validate()));
        }
        for (i, s) in self.custom_scopes.iter().enumerate() {
            if let Err(e) = s.parse::<Scope>() {
                issues.push(ConfigIssue::new(
                    format!("custom_scopes[{i}]"),
                    e.to_string(),
                ));
            }
        }
        for (name, d) in [
            ("reload_interval", self.reload_interval),
            ("flush_interval", self.flush_interval),
            ("sweep_interval", self.sweep_interval),
        ] {
            if d.is_zero() {
                issues.push(ConfigIssue::new(name, "must be greater than zero"));
            }
        }
        finish(issues)
    }

    /// Checks the table and that `default_plan` names a plan in `plans`.
    /// The plans are tables of their own: each checks itself with
    /// [`PlanConfig::validate`] (paths relative to `[plans.NAME]`).
    pub fn validate_with_plans(
        &self,
        plans: &BTreeMap<String, PlanConfig>,
    ) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = self.validate().err().unwrap_or_default();
        if let Some(p) = &self.default_plan {
            if !plans.contains_key(p) {
                issues.push(ConfigIssue::new(
                    "default_plan",
                    format!("plan `{p}` is not defined under [plans]"),
                ));
            }
        }
        finish(issues)
    }
}

/// Key lifetime and expiry warnings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotationPolicyConfig {
    /// Keys must be rotated at least this often: a key created without an
    /// explicit expiry expires this long after creation. Unset: keys without
    /// an expiry live until revoked.
    #[serde(with = "humantime_serde")]
    pub rotate_every: Option<Duration>,
    /// Emit a `key.expiring` event (log line, audit entry and optional
    /// webhook) this long before a key expires.
    #[serde(with = "humantime_serde")]
    pub warn_before: Duration,
    /// Optional URL that receives a JSON POST for each expiring key.
    pub webhook_url: Option<String>,
}

impl Default for RotationPolicyConfig {
    fn default() -> Self {
        Self {
            rotate_every: None,
            warn_before: DEFAULT_WARN_BEFORE,
            webhook_url: None,
        }
    }
}

impl RotationPolicyConfig {
    /// Checks the table.
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if let Some(every) = self.rotate_every {
            if every.is_zero() {
                issues.push(ConfigIssue::new(
                    "rotate_every",
                    "must be greater than zero",
                ));
            } else if self.warn_before >= every {
                issues.push(ConfigIssue::new(
                    "warn_before",
                    "must be shorter than `rotate_every`, or every key would be warned about at creation",
                ));
            }
        }
        if let Some(url) = &self.webhook_url {
            match url::Url::parse(url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => issues.push(ConfigIssue::new(
                    "webhook_url",
                    format!("`{url}` is not an http(s) URL"),
                )),
            }
        }
        finish(issues)
    }
}

/// A per-client-IP GCRA limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpLimitConfig {
    /// Whether the limit applies.
    pub enabled: bool,
    /// Sustained requests (or failures) per second.
    pub rate_per_second: f64,
    /// How many may arrive at once before the rate applies.
    pub burst: u32,
}

impl Default for IpLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rate_per_second: 1.0,
            burst: 20,
        }
    }
}

impl IpLimitConfig {
    /// Checks the table.
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if !(self.rate_per_second.is_finite() && self.rate_per_second > 0.0) {
            issues.push(ConfigIssue::new(
                "rate_per_second",
                "must be a positive number",
            ));
        }
        if self.burst == 0 {
            issues.push(ConfigIssue::new("burst", "must be at least 1"));
        }
        finish(issues)
    }
}

/// One `[plans.NAME]` table: what a consumer on this plan may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanConfig {
    /// Sustained requests per second per consumer (all its keys and routes
    /// together). Unset: no rate limit.
    pub rate_per_second: Option<f64>,
    /// Requests allowed at once above the sustained rate. Defaults to one
    /// second's worth of the rate (at least 1).
    pub burst: Option<u32>,
    /// Requests per UTC day.
    pub quota_per_day: Option<u64>,
    /// Requests per UTC calendar month.
    pub quota_per_month: Option<u64>,
    /// Total uses over the consumer's lifetime (a remaining-uses count).
    pub quota_total: Option<u64>,
    /// When a consumer belongs to a group, count quotas per group (shared by
    /// every consumer in it) instead of per consumer.
    pub shared_by_group: bool,
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self {
            rate_per_second: None,
            burst: None,
            quota_per_day: None,
            quota_per_month: None,
            quota_total: None,
            shared_by_group: true,
        }
    }
}

impl PlanConfig {
    /// Checks the table.
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if let Some(r) = self.rate_per_second {
            if !(r.is_finite() && r > 0.0) {
                issues.push(ConfigIssue::new(
                    "rate_per_second",
                    "must be a positive number",
                ));
            }
        } else if self.burst.is_some() {
            issues.push(ConfigIssue::new(
                "burst",
                "has no effect without `rate_per_second`",
            ));
        }
        if self.burst == Some(0) {
            issues.push(ConfigIssue::new("burst", "must be at least 1"));
        }
        for (name, q) in [
            ("quota_per_day", self.quota_per_day),
            ("quota_per_month", self.quota_per_month),
            ("quota_total", self.quota_total),
        ] {
            if q == Some(0) {
                issues.push(ConfigIssue::new(
                    name,
                    "must be at least 1 (revoke the key to stop all traffic)",
                ));
            }
        }
        finish(issues)
    }

    /// The effective burst.
    pub fn effective_burst(&self) -> u32 {
        self.burst.unwrap_or_else(|| {
            self.rate_per_second
                .map(|r| r.ceil().clamp(1.0, u32::MAX as f64) as u32)
                .unwrap_or(1)
        })
    }
}

/// An authentication method a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethodKind {
    /// A Gatehouse API key.
    ApiKey,
    /// A JWT bearer token.
    Jwt,
    /// The client certificate the listener verified (mutual TLS), mapped to
    /// the consumer its `client_cert_consumer` field names.
    ClientCert,
}

impl AuthMethodKind {
    /// Stable name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Jwt => "jwt",
            Self::ClientCert => "client_cert",
        }
    }
}

/// Which part of a verified client certificate names its consumer (a
/// consumer whose name is exactly that value), as Kong's `mtls-auth`
/// matches a certificate to a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CertConsumerField {
    /// The subject's common name (`CN`).
    #[default]
    #[serde(rename = "cn")]
    CommonName,
    /// The whole subject, RFC 4514 as in `X-Client-Cert-Subject`
    /// (`O=Acme,CN=billing`).
    #[serde(rename = "subject")]
    Subject,
    /// The first `URI` subject alternative name that names a consumer
    /// (`spiffe://acme/billing`).
    #[serde(rename = "san:URI")]
    SanUri,
    /// The first `DNS` subject alternative name that names a consumer.
    #[serde(rename = "san:DNS")]
    SanDns,
    /// The first `email` subject alternative name that names a consumer.
    #[serde(rename = "san:email")]
    SanEmail,
}

impl CertConsumerField {
    /// The name in the config file.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::CommonName => "cn",
            Self::Subject => "subject",
            Self::SanUri => "san:URI",
            Self::SanDns => "san:DNS",
            Self::SanEmail => "san:email",
        }
    }
}

/// A route's `auth` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteAuthConfig {
    /// Accepted methods, tried in order.
    pub methods: Vec<AuthMethodKind>,
    /// Header carrying an API key, besides `Authorization: Bearer`.
    pub header: String,
    /// Opt-in query parameter carrying an API key (keys in URLs end up in
    /// access logs and browser history; prefer headers).
    pub query_param: Option<String>,
    /// Scopes a key must hold for this route (custom scopes, `*` grants all).
    pub required_scopes: Vec<String>,
    /// Tags of this route, matched against `tag:` scopes.
    pub tags: Vec<String>,
    /// Let requests without any credential through as anonymous (they are
    /// still limited per client IP). Requests with a bad credential are
    /// always rejected.
    pub anonymous: bool,
    /// Names of the identity headers set on the upstream request.
    pub forward: ForwardHeaders,
    /// JWT settings; required when `methods` contains `jwt`.
    pub jwt: Option<JwtConfig>,
    /// With `client_cert` in `methods`: the certificate field whose value
    /// is a consumer's name.
    pub client_cert_consumer: CertConsumerField,
}

impl Default for RouteAuthConfig {
    fn default() -> Self {
        Self {
            methods: vec![AuthMethodKind::ApiKey],
            header: DEFAULT_KEY_HEADER.into(),
            query_param: None,
            required_scopes: Vec::new(),
            tags: Vec::new(),
            anonymous: false,
            forward: ForwardHeaders::default(),
            jwt: None,
            client_cert_consumer: CertConsumerField::default(),
        }
    }
}

impl RouteAuthConfig {
    /// Checks the table.
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if self.methods.is_empty() {
            issues.push(ConfigIssue::new(
                "methods",
                "list at least one of `api_key`, `jwt`, `client_cert` (or remove the auth table)",
            ));
        }
        // A certificate names a consumer, not a key: it holds no scopes,
        // so a route that needs scopes would have to let it pass unchecked.
        if self.methods.contains(&AuthMethodKind::ClientCert) && !self.required_scopes.is_empty() {
            issues.push(ConfigIssue::new(
                "required_scopes",
                "a route with `client_cert` in `methods` cannot require scopes: a certificate \
                 identifies a consumer and holds no scopes (use a separate route for keys)",
            ));
        }
        if http::HeaderName::from_bytes(self.header.as_bytes()).is_err() {
            issues.push(ConfigIssue::new(
                "header",
                format!("`{}` is not a valid header name", self.header),
            ));
        }
        if let Some(q) = &self.query_param {
            if q.is_empty() || q.contains(['&', '=', '#']) {
                issues.push(ConfigIssue::new(
                    "query_param",
                    format!("`{q}` is not a usable query parameter name"),
                ));
            }
        }
        for (i, s) in self.required_scopes.iter().enumerate() {
            if let Err(e) = s.parse::<Scope>() {
                issues.push(ConfigIssue::new(
                    format!("required_scopes[{i}]"),
                    e.to_string(),
                ));
            }
        }
        issues.extend(nested("forward", self.forward.validate()));
        match (&self.jwt, self.methods.contains(&AuthMethodKind::Jwt)) {
            (None, true) => issues.push(ConfigIssue::new(
                "jwt",
                "`methods` contains `jwt` but there is no [jwt] table",
            )),
            (Some(j), _) => issues.extend(nested("jwt", j.validate())),
            (None, false) => {}
        }
        finish(issues)
    }
}

/// Names of the identity headers forwarded upstream. An empty name turns
/// that header off. Incoming copies of these headers are always removed so
/// a client cannot forge an identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardHeaders {
    /// Consumer id.
    pub consumer_id: String,
    /// Consumer name.
    pub consumer_name: String,
    /// Key id (API keys only).
    pub key_id: String,
    /// Plan name.
    pub plan: String,
}

impl ForwardHeaders {
    /// The default names, in field order.
    pub const DEFAULT_NAMES: [&'static str; 4] = [
        "x-consumer-id",
        "x-consumer-name",
        "x-key-id",
        "x-consumer-plan",
    ];
}

impl Default for ForwardHeaders {
    fn default() -> Self {
        let [consumer_id, consumer_name, key_id, plan] = Self::DEFAULT_NAMES.map(String::from);
        Self {
            consumer_id,
            consumer_name,
            key_id,
            plan,
        }
    }
}

impl ForwardHeaders {
    /// Checks the table.
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        for (name, v) in [
            ("consumer_id", &self.consumer_id),
            ("consumer_name", &self.consumer_name),
            ("key_id", &self.key_id),
            ("plan", &self.plan),
        ] {
            if !v.is_empty() && http::HeaderName::from_bytes(v.as_bytes()).is_err() {
                issues.push(ConfigIssue::new(
                    name,
                    format!("`{v}` is not a valid header name"),
                ));
            }
        }
        finish(issues)
    }
}

/// JWT signature algorithms accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

impl JwtAlgorithm {
    /// The `jsonwebtoken` algorithm.
    pub fn to_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::HS256 => jsonwebtoken::Algorithm::HS256,
            Self::RS256 => jsonwebtoken::Algorithm::RS256,
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

/// JWT verification for one route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The only algorithm accepted (tokens naming another are rejected, so
    /// `alg` confusion attacks do not apply).
    pub algorithm: JwtAlgorithm,
    /// HS256 shared secret, inline. Prefer `secret_env`.
    #[serde(default)]
    pub secret: Option<String>,
    /// Environment variable holding the HS256 secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// PEM file with the RS256/ES256 public key.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// JWKS file (JSON) with RS256/ES256 public keys, picked by `kid`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// URL of a JWKS document with RS256/ES256 public keys: fetched when
    /// the first token arrives, then refreshed (see `docs/security.md`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// OpenID Connect issuer: keys come from the `jwks_uri` of its
    /// discovery document (`{issuer}/.well-known/openid-configuration`),
    /// and `iss` must be this issuer unless `issuer` says otherwise.
    #[serde(default)]
    pub oidc_issuer: Option<String>,
    /// With `jwks_url` or `oidc_issuer`: time between scheduled refreshes.
    #[serde(default = "default_jwks_refresh_interval", with = "humantime_serde")]
    pub jwks_refresh_interval: Duration,
    /// Shortest time between two refreshes caused by tokens naming an
    /// unknown `kid` (or arriving while no key was ever fetched).
    #[serde(
        default = "default_jwks_min_refresh_interval",
        with = "humantime_serde"
    )]
    pub jwks_min_refresh_interval: Duration,
    /// Bound on one request to the provider.
    #[serde(default = "default_jwks_timeout", with = "humantime_serde")]
    pub jwks_timeout: Duration,
    /// Required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted `aud` values (any one must match). Empty: `aud` not checked.
    #[serde(default)]
    pub audience: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Claim naming the consumer.
    #[serde(default = "default_consumer_claim")]
    pub consumer_claim: String,
    /// Plan applied to JWT consumers (rate limits count per consumer claim).
    #[serde(default)]
    pub plan: Option<String>,
    /// Claims copied to upstream headers: claim name → header name. String,
    /// number and boolean claims are forwarded; others are skipped.
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

/// Default `jwks_refresh_interval`.
pub const DEFAULT_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default `jwks_min_refresh_interval`.
pub const DEFAULT_JWKS_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Default `jwks_timeout`.
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);

fn default_jwks_refresh_interval() -> Duration {
    DEFAULT_JWKS_REFRESH_INTERVAL
}

fn default_jwks_min_refresh_interval() -> Duration {
    DEFAULT_JWKS_MIN_REFRESH_INTERVAL
}

fn default_jwks_timeout() -> Duration {
    DEFAULT_JWKS_TIMEOUT
}

fn default_consumer_claim() -> String {
    "sub".into()
}

impl JwtConfig {
    /// Checks the table (not the key files; those are read when the route is
    /// prepared, see [`crate::jwt::JwtVerifier::from_config`]).
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        match self.algorithm {
            JwtAlgorithm::HS256 => {
                if self.secret.is_none() && self.secret_env.is_none() {
                    issues.push(ConfigIssue::new(
                        "secret",
                        "HS256 needs `secret` or `secret_env`",
                    ));
                }
                if self.public_key_file.is_some()
                    || self.jwks_file.is_some()
                    || self.jwks_url.is_some()
                    || self.oidc_issuer.is_some()
                {
                    issues.push(ConfigIssue::new(
                        "algorithm",
                        "HS256 uses a shared secret; `public_key_file`, `jwks_file`, `jwks_url` and `oidc_issuer` are for RS256/ES256",
                    ));
                }
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => {
                let sources = [
                    self.public_key_file.is_some(),
                    self.jwks_file.is_some(),
                    self.jwks_url.is_some(),
                    self.oidc_issuer.is_some(),
                ];
                if sources.iter().filter(|s| **s).count() != 1 {
                    issues.push(ConfigIssue::new(
                        "public_key_file",
                        "set exactly one of `public_key_file`, `jwks_file`, `jwks_url` or `oidc_issuer`",
                    ));
                }
                if self.secret.is_some() || self.secret_env.is_some() {
                    issues.push(ConfigIssue::new(
                        "secret",
                        "a shared secret only applies to HS256",
                    ));
                }
            }
        }
        for (key, value) in [
            ("jwks_url", &self.jwks_url),
            ("oidc_issuer", &self.oidc_issuer),
        ] {
            let Some(value) = value else { continue };
            match url::Url::parse(value) {
                Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => {}
                _ => issues.push(ConfigIssue::new(
                    key,
                    format!("`{value}` is not an https:// (or http://) URL"),
                )),
            }
        }
        if let (Some(iss), Some(oidc)) = (&self.issuer, &self.oidc_issuer) {
            if iss != oidc {
                issues.push(ConfigIssue::new(
                    "issuer",
                    format!("`{iss}` differs from `oidc_issuer` (`{oidc}`), whose discovery document names the issuer; leave `issuer` out"),
                ));
            }
        }
        if self.jwks_refresh_interval < Duration::from_secs(1) {
            issues.push(ConfigIssue::new(
                "jwks_refresh_interval",
                "must be at least 1s",
            ));
        }
        if self.jwks_timeout.is_zero() {
            issues.push(ConfigIssue::new(
                "jwks_timeout",
                "must be greater than zero",
            ));
        }
        if self.consumer_claim.is_empty() {
            issues.push(ConfigIssue::new("consumer_claim", "must not be empty"));
        }
        for (claim, header) in &self.claims_to_headers {
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                issues.push(ConfigIssue::new(
                    format!("claims_to_headers.{claim}"),
                    format!("`{header}` is not a valid header name"),
                ));
            }
        }
        finish(issues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_parse_from_empty_tables() {
        let k: KeysConfig = toml::from_str("").unwrap();
        assert_eq!(k, KeysConfig::default());
        k.validate().unwrap();
        let r: RouteAuthConfig = toml::from_str("").unwrap();
        r.validate().unwrap();
        PlanConfig::default().validate().unwrap();
    }

    #[test]
    fn full_example_parses() {
        let k: KeysConfig = toml::from_str(
            r#"
            environment = "test"
            default_grace = "1h"
            default_plan = "free"
            [rotation]
            rotate_every = "90d"
            warn_before = "14d"
            webhook_url = "http://127.0.0.1:9/hook"
            [failed_auth_per_ip]
            rate_per_second = 0.5
            burst = 5
            "#,
        )
        .unwrap();
        let mut plans = BTreeMap::new();
        plans.insert(
            "free".to_string(),
            toml::from_str::<PlanConfig>("rate_per_second = 5\nburst = 10\nquota_per_day = 1000")
                .unwrap(),
        );
        k.validate_with_plans(&plans).unwrap();
        assert_eq!(k.default_grace, Duration::from_secs(3600));
        let r: RouteAuthConfig = toml::from_str(
            r#"
            methods = ["api_key", "jwt"]
            header = "x-key"
            query_param = "api_key"
            required_scopes = ["orders:write"]
            [jwt]
            algorithm = "HS256"
            secret = "s3cret"
            issuer = "https://idp.example"
            audience = ["gatehouse"]
            claims_to_headers = { email = "x-user-email" }
            "#,
        )
        .unwrap();
        r.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<KeysConfig>("defualt_grace = \"1h\"").unwrap_err();
        assert!(err.to_string().contains("defualt_grace"), "{err}");
        assert!(toml::from_str::<PlanConfig>("rate = 1").is_err());
    }

    #[test]
    fn validation_reports_every_issue_with_its_path() {
        let k = KeysConfig {
            environment: "Live!".into(),
            default_grace: Duration::from_secs(3600 * 24 * 365),
            default_plan: Some("gold".into()),
            rotation: RotationPolicyConfig {
                rotate_every: Some(Duration::from_secs(86400)),
                warn_before: Duration::from_secs(86400 * 2),
                webhook_url: Some("ftp://x".into()),
            },
            ..KeysConfig::default()
        };
        let issues = k.validate_with_plans(&BTreeMap::new()).unwrap_err();
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "environment",
                "default_grace",
                "rotation.warn_before",
                "rotation.webhook_url",
                "default_plan"
            ]
        );
        let r = RouteAuthConfig {
            methods: vec![AuthMethodKind::Jwt],
            header: "bad header".into(),
            required_scopes: vec!["has space".into()],
            ..RouteAuthConfig::default()
        };
        let issues: Vec<String> = r
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|i| i.under("routes[0].auth").path)
            .collect();
        assert_eq!(
            issues,
            [
                "routes[0].auth.header",
                "routes[0].auth.required_scopes[0]",
                "routes[0].auth.jwt"
            ]
        );
        let p = PlanConfig {
            rate_per_second: Some(-1.0),
            quota_per_day: Some(0),
            ..PlanConfig::default()
        };
        assert_eq!(p.validate().unwrap_err().len(), 2);
    }
}
