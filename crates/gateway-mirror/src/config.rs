//! Launch definitions: what to mirror, where, how much, and how to judge it.
//!
//! A [`LaunchConfig`] is embedded by the gateway as `[[dark_launches]]` in the
//! config file and is also the body of `POST /v1/shadow`. Every field has a
//! named default so a launch needs only a name, its routes and a candidate.
//! [`LaunchConfig::validate`] reports every problem at once with its key path,
//! so an operator fixes a config in one pass.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gateway_core::config_issue::{finish, ConfigIssue};
use http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};

/// Default share of eligible requests mirrored, in percent.
pub const DEFAULT_SAMPLE_PERCENT: f64 = 100.0;
/// Default cap on mirrored requests per second (per launch).
pub const DEFAULT_MAX_RPS: u32 = 100;
/// Default cap on request and response bodies captured for comparison.
/// With the default queue this bounds queued memory to about
/// 256 × 2 × 256 KiB = 128 MiB per launch in the worst case.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Default marker header added to every mirrored request.
pub const DEFAULT_MARKER_HEADER: &str = "x-gatehouse-shadow";
/// Default number of mirrored requests waiting for a worker.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;
/// Default number of mirrored requests in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Default deadline for a shadow (candidate or secondary) response.
pub const DEFAULT_SHADOW_TIMEOUT: Duration = Duration::from_secs(5);
/// Default minimum compared samples before an endpoint gets a verdict.
pub const DEFAULT_MIN_SAMPLES: u64 = 300;
/// Default match rate the candidate must reach (with confidence) to promote.
pub const DEFAULT_TARGET_MATCH_RATE: f64 = 0.99;
/// Default one-sided confidence level of the match-rate bound.
pub const DEFAULT_CONFIDENCE: f64 = 0.95;
/// Default significance level of the Mann-Whitney latency test.
pub const DEFAULT_LATENCY_P_VALUE: f64 = 0.01;
/// Default tolerated increase of the median latency before a significant
/// shift counts as a regression (0.10 = 10 % slower).
pub const DEFAULT_MAX_LATENCY_INCREASE: f64 = 0.10;
/// Default tolerated increase of the error rate (absolute, 0.01 = 1 point).
pub const DEFAULT_MAX_ERROR_RATE_INCREASE: f64 = 0.01;
/// Default share of a launch's samples an under-sampled endpoint may hold
/// without blocking promotion of the whole launch.
pub const DEFAULT_MAX_UNEVALUATED_SHARE: f64 = 0.05;

/// Headers stripped from the mirrored copy by default: credentials of the real
/// caller must never reach a candidate unless explicitly swapped in.
pub const DEFAULT_STRIP_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];
/// Headers always redacted in stored examples, recordings and reports.
pub const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];
/// Headers compared by default.
pub const DEFAULT_COMPARE_HEADERS: &[&str] = &["content-type"];

/// How the deterministic sampling decision is keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SampleBy {
    /// Each request id is in or out on its own.
    #[default]
    RequestId,
    /// All requests of one consumer are in or out together (falls back to the
    /// request id for anonymous requests).
    Consumer,
}

impl SampleBy {
    /// Stable name for logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestId => "request_id",
            Self::Consumer => "consumer",
        }
    }
}

/// One dark launch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchConfig {
    /// Unique name, `[a-z0-9_-]{1,64}`; used in URLs, metrics and the store.
    pub name: String,
    /// Route names (as in the gateway's `[[routes]]`) whose traffic is mirrored.
    pub routes: Vec<String>,
    /// Upstream cluster receiving the mirrored copy (the new version).
    pub candidate: String,
    /// Optional cluster running a second copy of the current version; when
    /// set, fields that differ between primary and secondary are noise.
    #[serde(default)]
    pub secondary: Option<String>,
    /// Share of eligible requests mirrored, 0–100.
    #[serde(default = "default_sample_percent")]
    pub sample_percent: f64,
    /// What the sampling decision is keyed on.
    #[serde(default)]
    pub sample_by: SampleBy,
    /// Maximum mirrored requests per second; excess requests are dropped.
    #[serde(default = "default_max_rps")]
    pub max_rps: u32,
    /// Methods mirrored. Defaults to the safe methods GET, HEAD, OPTIONS.
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// Must be true for any unsafe method (POST, PUT, PATCH, DELETE, …) in
    /// `methods` to be accepted: mirroring writes needs a candidate that
    /// stubs its side effects.
    #[serde(default)]
    pub allow_unsafe: bool,
    /// Headers removed from the mirrored copy.
    #[serde(default = "default_strip_headers")]
    pub strip_headers: Vec<String>,
    /// Headers set (replacing any value) on the mirrored copy, e.g. shadow
    /// credentials.
    #[serde(default)]
    pub set_headers: BTreeMap<String, String>,
    /// Header (value `1`) marking a request as mirrored.
    #[serde(default = "default_marker_header")]
    pub marker_header: String,
    /// Request and response bodies larger than this are not mirrored or not
    /// compared.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Deadline for a shadow response.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schema(value_type = String, example = "5s")]
    pub timeout: Duration,
    /// Mirrored requests waiting for a worker; beyond it they are dropped.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Mirrored requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Starts paused (no mirroring) when true.
    #[serde(default)]
    pub paused: bool,
    /// What is compared and what is ignored.
    #[serde(default)]
    pub compare: CompareConfig,
    /// Verdict thresholds.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Optional capture of mirrored requests for offline replay.
    #[serde(default)]
    pub record: Option<RecordConfig>,
}

/// What is compared between primary and candidate responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompareConfig {
    /// Response headers compared (case-insensitive).
    #[serde(default = "default_compare_headers")]
    pub headers: Vec<String>,
    /// JSON paths ignored, e.g. `$.meta.generated_at`, `$.items[*].etag`,
    /// `$..trace_id` (any depth). Everything under an ignored path is ignored.
    #[serde(default)]
    pub ignore_paths: Vec<String>,
    /// Headers ignored even if listed in `headers`.
    #[serde(default)]
    pub ignore_headers: Vec<String>,
    /// Two numbers are equal when they differ by at most this much.
    #[serde(default)]
    pub numeric_tolerance: f64,
    /// … or by at most this fraction of the larger magnitude.
    #[serde(default)]
    pub numeric_relative_tolerance: f64,
    /// Learn noise from repeated identical requests when no secondary is set.
    #[serde(default = "default_true")]
    pub learn_noise: bool,
}

impl Default for CompareConfig {
    fn default() -> Self {
        Self {
            headers: default_compare_headers(),
            ignore_paths: Vec::new(),
            ignore_headers: Vec::new(),
            numeric_tolerance: 0.0,
            numeric_relative_tolerance: 0.0,
            learn_noise: true,
        }
    }
}

/// Thresholds of the verdict; see `docs/dark-launch.md` for the method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Compared samples an endpoint needs before it gets a verdict.
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
    /// Match rate the candidate must reach.
    #[serde(default = "default_target_match_rate")]
    pub target_match_rate: f64,
    /// One-sided confidence level of the Wilson bound on the match rate.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Significance level of the one-sided Mann-Whitney U latency test.
    #[serde(default = "default_latency_p_value")]
    pub latency_p_value: f64,
    /// Relative increase of the candidate's median latency tolerated even
    /// when the shift is significant.
    #[serde(default = "default_max_latency_increase")]
    pub max_latency_increase: f64,
    /// Absolute increase of the error rate tolerated.
    #[serde(default = "default_max_error_rate_increase")]
    pub max_error_rate_increase: f64,
    /// Share of samples held by under-sampled endpoints that does not block
    /// promotion of the launch.
    #[serde(default = "default_max_unevaluated_share")]
    pub max_unevaluated_share: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            min_samples: DEFAULT_MIN_SAMPLES,
            target_match_rate: DEFAULT_TARGET_MATCH_RATE,
            confidence: DEFAULT_CONFIDENCE,
            latency_p_value: DEFAULT_LATENCY_P_VALUE,
            max_latency_increase: DEFAULT_MAX_LATENCY_INCREASE,
            max_error_rate_increase: DEFAULT_MAX_ERROR_RATE_INCREASE,
            max_unevaluated_share: DEFAULT_MAX_UNEVALUATED_SHARE,
        }
    }
}

/// Capture of mirrored requests (redacted) as JSON lines for `shadow replay`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// File the JSON lines are appended to.
    #[schema(value_type = String)]
    pub file: PathBuf,
    /// Share of mirrored requests recorded, 0–100.
    #[serde(default = "default_record_percent")]
    pub sample_percent: f64,
    /// Recording stops after this many records.
    #[serde(default = "default_record_max")]
    pub max_records: u64,
}

fn default_sample_percent() -> f64 {
    DEFAULT_SAMPLE_PERCENT
}
fn default_max_rps() -> u32 {
    DEFAULT_MAX_RPS
}
fn default_methods() -> Vec<String> {
    vec!["GET".into(), "HEAD".into(), "OPTIONS".into()]
}
fn default_strip_headers() -> Vec<String> {
    DEFAULT_STRIP_HEADERS
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_marker_header() -> String {
    DEFAULT_MARKER_HEADER.into()
}
fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
fn default_timeout() -> Duration {
    DEFAULT_SHADOW_TIMEOUT
}
fn default_queue_capacity() -> usize {
    DEFAULT_QUEUE_CAPACITY
}
fn default_concurrency() -> usize {
    DEFAULT_CONCURRENCY
}
fn default_compare_headers() -> Vec<String> {
    DEFAULT_COMPARE_HEADERS
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_true() -> bool {
    true
}
fn default_min_samples() -> u64 {
    DEFAULT_MIN_SAMPLES
}
fn default_target_match_rate() -> f64 {
    DEFAULT_TARGET_MATCH_RATE
}
fn default_confidence() -> f64 {
    DEFAULT_CONFIDENCE
}
fn default_latency_p_value() -> f64 {
    DEFAULT_LATENCY_P_VALUE
}
fn default_max_latency_increase() -> f64 {
    DEFAULT_MAX_LATENCY_INCREASE
}
fn default_max_error_rate_increase() -> f64 {
    DEFAULT_MAX_ERROR_RATE_INCREASE
}
fn default_max_unevaluated_share() -> f64 {
    DEFAULT_MAX_UNEVALUATED_SHARE
}
fn default_record_percent() -> f64 {
    1.0
}
fn default_record_max() -> u64 {
    10_000
}

/// Whether `method` is safe in the RFC 9110 sense (no intended side effects).
pub fn is_safe_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

impl LaunchConfig {
    /// A launch with every default, for `name` mirroring `routes` to `candidate`.
    pub fn new(name: &str, routes: &[&str], candidate: &str) -> Self {
        Self {
            name: name.into(),
            routes: routes.iter().map(|s| s.to_string()).collect(),
            candidate: candidate.into(),
            secondary: None,
            sample_percent: DEFAULT_SAMPLE_PERCENT,
            sample_by: SampleBy::default(),
            max_rps: DEFAULT_MAX_RPS,
            methods: default_methods(),
            allow_unsafe: false,
            strip_headers: default_strip_headers(),
            set_headers: BTreeMap::new(),
            marker_header: DEFAULT_MARKER_HEADER.into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            timeout: DEFAULT_SHADOW_TIMEOUT,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            concurrency: DEFAULT_CONCURRENCY,
            paused: false,
            compare: CompareConfig::default(),
            thresholds: Thresholds::default(),
            record: None,
        }
    }

    /// Checks the launch; paths are relative to the launch's table (the
    /// gateway prefixes them with `dark_launches[i]`).
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut bad = |field: &str, message: String| issues.push(ConfigIssue::new(field, message));
        if !valid_name(&self.name) {
            bad(
                "name",
                format!(
                    "{:?} is not a valid launch name: use 1-64 of a-z, 0-9, '_' and '-'",
                    self.name
                ),
            );
        }
        if self.routes.is_empty() {
            bad("routes", "at least one route is required".into());
        }
        for (i, r) in self.routes.iter().enumerate() {
            if r.trim().is_empty() {
                bad(&format!("routes[{i}]"), "route name is empty".into());
            }
        }
        if self.candidate.trim().is_empty() {
            bad("candidate", "candidate cluster name is empty".into());
        }
        if let Some(s) = &self.secondary {
            if s.trim().is_empty() {
                bad("secondary", "secondary cluster name is empty".into());
            } else if *s == self.candidate {
                bad(
                    "secondary",
                    "secondary must run the current version, not the candidate".into(),
                );
            }
        }
        if !(0.0..=100.0).contains(&self.sample_percent) || self.sample_percent.is_nan() {
            bad(
                "sample_percent",
                format!("{} is outside 0..=100", self.sample_percent),
            );
        }
        if self.max_rps == 0 {
            bad(
                "max_rps",
                "must be at least 1 (pause the launch instead)".into(),
            );
        }
        if self.methods.is_empty() {
            bad("methods", "at least one method is required".into());
        }
        for (i, m) in self.methods.iter().enumerate() {
            match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(method) if !is_safe_method(&method) && !self.allow_unsafe => bad(
                    &format!("methods[{i}]"),
                    format!("{m} is unsafe; set allow_unsafe = true if the candidate stubs its side effects"),
                ),
                Ok(_) => {}
                Err(_) => bad(&format!("methods[{i}]"), format!("{m:?} is not an HTTP method")),
            }
        }
        for (i, h) in self.strip_headers.iter().enumerate() {
            if HeaderName::from_bytes(h.as_bytes()).is_err() {
                bad(
                    &format!("strip_headers[{i}]"),
                    format!("{h:?} is not a header name"),
                );
            }
        }
        for (k, v) in &self.set_headers {
            if HeaderName::from_bytes(k.as_bytes()).is_err() {
                bad(
                    &format!("set_headers.{k}"),
                    format!("{k:?} is not a header name"),
                );
            }
            if HeaderValue::from_str(v).is_err() {
                bad(
                    &format!("set_headers.{k}"),
                    "value is not a valid header value".into(),
                );
            }
        }
        if HeaderName::from_bytes(self.marker_header.as_bytes()).is_err() {
            bad(
                "marker_header",
                format!("{:?} is not a header name", self.marker_header),
            );
        }
        if self.max_body_bytes == 0 {
            bad("max_body_bytes", "must be at least 1".into());
        }
        if self.timeout.is_zero() {
            bad("timeout", "must be greater than zero".into());
        }
        if self.queue_capacity == 0 {
            bad("queue_capacity", "must be at least 1".into());
        }
        if self.concurrency == 0 {
            bad("concurrency", "must be at least 1".into());
        }
        for (i, h) in self
            .compare
            .headers
            .iter()
            .chain(&self.compare.ignore_headers)
            .enumerate()
        {
            if HeaderName::from_bytes(h.as_bytes()).is_err() {
                bad(
                    &format!("compare.headers[{i}]"),
                    format!("{h:?} is not a header name"),
                );
            }
        }
        for (i, p) in self.compare.ignore_paths.iter().enumerate() {
            if let Err(e) = crate::path::PathPattern::parse(p) {
                bad(&format!("compare.ignore_paths[{i}]"), e);
            }
        }
        for (field, v) in [
            ("compare.numeric_tolerance", self.compare.numeric_tolerance),
            (
                "compare.numeric_relative_tolerance",
                self.compare.numeric_relative_tolerance,
            ),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                bad(field, format!("{v} must be a finite number >= 0"));
            }
        }
        let t = &self.thresholds;
        if t.min_samples == 0 {
            bad("thresholds.min_samples", "must be at least 1".into());
        }
        for (field, v) in [
            ("thresholds.target_match_rate", t.target_match_rate),
            ("thresholds.confidence", t.confidence),
            ("thresholds.latency_p_value", t.latency_p_value),
        ] {
            if !(v > 0.0 && v < 1.0) {
                bad(field, format!("{v} must be strictly between 0 and 1"));
            }
        }
        for (field, v) in [
            ("thresholds.max_latency_increase", t.max_latency_increase),
            (
                "thresholds.max_error_rate_increase",
                t.max_error_rate_increase,
            ),
            ("thresholds.max_unevaluated_share", t.max_unevaluated_share),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                bad(field, format!("{v} must be a finite number >= 0"));
            }
        }
        if let Some(r) = &self.record {
            if r.file.as_os_str().is_empty() {
                bad("record.file", "file path is empty".into());
            }
            if !(0.0..=100.0).contains(&r.sample_percent) || r.sample_percent.is_nan() {
                bad(
                    "record.sample_percent",
                    format!("{} is outside 0..=100", r.sample_percent),
                );
            }
        }
        finish(issues)
    }

    /// The methods mirrored, parsed; invalid entries are skipped (they are
    /// rejected by [`validate`](Self::validate)).
    pub fn parsed_methods(&self) -> Vec<Method> {
        self.methods
            .iter()
            .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
            .filter(|m| is_safe_method(m) || self.allow_unsafe)
            .collect()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_toml_gets_documented_defaults() {
        let c: LaunchConfig = toml::from_str(
            r#"
name = "rates-v2"
routes = ["rates"]
candidate = "fx-v2"
"#,
        )
        .unwrap();
        assert_eq!(c, LaunchConfig::new("rates-v2", &["rates"], "fx-v2"));
        assert!(c.validate().is_ok());
        assert_eq!(
            c.parsed_methods(),
            vec![Method::GET, Method::HEAD, Method::OPTIONS]
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<LaunchConfig>(
            "name = \"a\"\nroutes = [\"r\"]\ncandidate = \"c\"\nsample_rate = 5\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("sample_rate"), "{err}");
    }

    #[test]
    fn validate_reports_every_issue_with_its_path() {
        let mut c = LaunchConfig::new("Bad Name", &[], "fx");
        c.sample_percent = 120.0;
        c.methods = vec!["POST".into()];
        c.compare.ignore_paths = vec!["rates.JPY".into()];
        c.thresholds.confidence = 1.0;
        let issues = gateway_core::config_issue::nested("dark_launches[0]", c.validate());
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "dark_launches[0].name",
                "dark_launches[0].routes",
                "dark_launches[0].sample_percent",
                "dark_launches[0].methods[0]",
                "dark_launches[0].compare.ignore_paths[0]",
                "dark_launches[0].thresholds.confidence",
            ]
        );
        assert!(issues[3].message.contains("allow_unsafe"));
    }

    #[test]
    fn unsafe_methods_need_explicit_opt_in() {
        let mut c = LaunchConfig::new("w", &["r"], "c");
        c.methods = vec!["GET".into(), "POST".into()];
        assert!(c.validate().is_err());
        assert_eq!(c.parsed_methods(), vec![Method::GET]);
        c.allow_unsafe = true;
        assert!(c.validate().is_ok());
        assert_eq!(c.parsed_methods(), vec![Method::GET, Method::POST]);
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    /// The sample in `docs/dark-launch.md` must stay a valid launch.
    #[test]
    fn documented_sample_config_is_valid() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            dark_launches: Vec<LaunchConfig>,
        }
        let md = include_str!("../../../docs/dark-launch.md");
        let start = md.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + md[start..].find("```").expect("closed block");
        let doc: Doc = toml::from_str(&md[start..end]).unwrap();
        let l = &doc.dark_launches[0];
        l.validate().unwrap();
        assert_eq!(l.secondary.as_deref(), Some("fx-v1-shadow"));
        assert_eq!(l.sample_by, SampleBy::Consumer);
        assert_eq!(l.compare.ignore_paths.len(), 3);
        assert_eq!(l.record.as_ref().unwrap().max_records, 10_000);
        assert_eq!(l.thresholds, Thresholds::default());
    }
}
