//! `[telemetry.otlp]`: where spans go, how, and how many requests record
//! them. The gateway and the fx service embed the same table.

use std::collections::BTreeMap;
use std::time::Duration;

use gateway_core::config_issue::{finish, ConfigIssue};
use serde::{Deserialize, Serialize};

/// Default share of new traces that are recorded.
pub const DEFAULT_SAMPLE_RATIO: f64 = 1.0;
/// Default time one export may take before it is abandoned.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of finished spans waiting for export; more are dropped.
pub const DEFAULT_QUEUE_SIZE: usize = 4096;
/// The path an HTTP endpoint gets when it names none (the OTLP default).
pub const HTTP_TRACES_PATH: &str = "/v1/traces";

/// How spans are sent to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies (a collector's port 4318).
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP/gRPC (a collector's port 4317).
    #[serde(rename = "grpc")]
    Grpc,
}

/// OpenTelemetry trace export over OTLP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector: `http://collector:4318` for `http/protobuf` (the
    /// path `/v1/traces` is added when the URL has none), or
    /// `http://collector:4317` for `grpc`; `https://` for TLS.
    pub endpoint: String,
    /// `"http/protobuf"` (default) or `"grpc"`, as in
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`.
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// Share of new traces recorded, from 0.0 to 1.0 (default 1.0). A
    /// request that continues a trace follows its caller's sampled flag
    /// instead (parent-based sampling).
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// Headers sent with every export (for example a vendor's API key).
    /// Their values never appear in logs or the admin API.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Longest time one export may take (default `10s`).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Finished spans waiting for export (default 4096). When the
    /// collector is slow or away the queue fills and further spans are
    /// dropped and counted, so a request never waits for it.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// `service.name` of the exported spans; the binary's own name for the
    /// service by default (`gatehouse`, `gatehouse-fx`).
    #[serde(default)]
    pub service_name: Option<String>,
}

fn default_sample_ratio() -> f64 {
    DEFAULT_SAMPLE_RATIO
}

fn default_timeout() -> Duration {
    DEFAULT_EXPORT_TIMEOUT
}

fn default_queue_size() -> usize {
    DEFAULT_QUEUE_SIZE
}

impl OtlpConfig {
    /// An export of every trace to `endpoint` over `protocol`, with the
    /// defaults for the rest.
    pub fn new(endpoint: impl Into<String>, protocol: OtlpProtocol) -> Self {
        Self {
            endpoint: endpoint.into(),
            protocol,
            sample_ratio: DEFAULT_SAMPLE_RATIO,
            headers: BTreeMap::new(),
            timeout: DEFAULT_EXPORT_TIMEOUT,
            queue_size: DEFAULT_QUEUE_SIZE,
            service_name: None,
        }
    }

    /// Every problem, with key paths relative to this table.
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if let Err(message) = self.export_url() {
            issues.push(ConfigIssue::new("endpoint", message));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            issues.push(ConfigIssue::new(
                "sample_ratio",
                format!("must be between 0.0 and 1.0, got {}", self.sample_ratio),
            ));
        }
        if self.timeout.is_zero() {
            issues.push(ConfigIssue::new("timeout", "must be more than zero"));
        }
        if self.queue_size == 0 {
            issues.push(ConfigIssue::new("queue_size", "must be at least 1"));
        }
        for (name, value) in &self.headers {
            let path = format!("headers.{name}");
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                issues.push(ConfigIssue::new(path, "is not a valid header name"));
            } else if http::HeaderValue::from_str(value).is_err() {
                // The value may be a credential: it is not repeated.
                issues.push(ConfigIssue::new(
                    path,
                    "value is not a valid header value (visible ASCII and spaces only)",
                ));
            }
        }
        if matches!(&self.service_name, Some(n) if n.trim().is_empty()) {
            issues.push(ConfigIssue::new("service_name", "must not be empty"));
        }
        finish(issues)
    }

    /// The URL exports go to: the endpoint, with `/v1/traces` added to an
    /// HTTP endpoint that names no path.
    pub fn export_url(&self) -> Result<String, String> {
        let url = url::Url::parse(&self.endpoint)
            .map_err(|e| format!("`{}` is not a URL: {e}", self.endpoint))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "`{}` must start with http:// or https://",
                self.endpoint
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{}` names no host", self.endpoint));
        }
        Ok(match self.protocol {
            OtlpProtocol::HttpProtobuf if url.path() == "/" => {
                format!("{}{HTTP_TRACES_PATH}", self.endpoint.trim_end_matches('/'))
            }
            _ => self.endpoint.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> OtlpConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn defaults_and_the_http_path() {
        let c = parse("endpoint = \"http://collector:4318\"");
        assert_eq!(c.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(c.sample_ratio, 1.0);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.export_url().unwrap(), "http://collector:4318/v1/traces");
        let c = parse("endpoint = \"https://otlp.example.com/custom/traces\"");
        assert_eq!(
            c.export_url().unwrap(),
            "https://otlp.example.com/custom/traces"
        );
        let c = parse("endpoint = \"http://collector:4317\"\nprotocol = \"grpc\"");
        assert_eq!(c.export_url().unwrap(), "http://collector:4317");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn every_problem_is_named_with_its_key() {
        let c = parse(
            "endpoint = \"collector:4318\"\nsample_ratio = 1.5\ntimeout = \"0s\"\nqueue_size = 0\n\
             service_name = \" \"\n[headers]\n\"bad name\" = \"x\"\nauthorization = \"Bearer \\u0001secret\"\n",
        );
        let issues = c.validate().unwrap_err();
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "endpoint",
                "sample_ratio",
                "timeout",
                "queue_size",
                "headers.authorization",
                "headers.bad name",
                "service_name"
            ]
        );
        assert!(
            issues.iter().all(|i| !i.message.contains("secret")),
            "a header value is never repeated: {issues:?}"
        );
    }

    #[test]
    fn an_unknown_protocol_or_key_is_refused() {
        assert!(
            toml::from_str::<OtlpConfig>("endpoint = \"http://c\"\nprotocol = \"udp\"").is_err()
        );
        assert!(toml::from_str::<OtlpConfig>("endpoint = \"http://c\"\nratio = 0.5").is_err());
    }
}
