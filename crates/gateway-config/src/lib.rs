//! The Gatehouse config file.
//!
//! One TOML file describes listeners, the admin API, upstream clusters and
//! routes. Loading is three steps, each of which can only fail with an error
//! that names the file, the line and the key:
//!
//! 1. **parse**: TOML syntax and types (`deny_unknown_fields` everywhere, so a
//!    typo is an error, not a silently ignored setting);
//! 2. **defaults**: every optional field has a documented default
//!    (`DEFAULT_*` constants);
//! 3. **validate**: cross-field rules (routes name existing clusters, no two
//!    routes match the same requests, paths start with `/`, ...). Every issue
//!    is reported at once, not just the first.
//!
//! This crate parses text and does no IO beyond reading the file it is
//! given; building runtime objects (TLS acceptors, clients) is the proxy's job.
//! The `clusters` section is owned by `gateway-upstream`, which validates it.

mod cors;
mod error;
mod ip;
mod locate;
mod model;
mod mtls;
mod validate;

use std::path::Path;

pub use cors::{OriginPattern, RouteCorsConfig, DEFAULT_CORS_MAX_AGE, DEFAULT_CORS_METHODS};
pub use error::{ConfigError, Issue};
pub use ip::{cidr_issues, parse_cidr, IpRulesConfig};
pub use model::*;
pub use mtls::{ClientAuthMode, RouteClientCertConfig};

/// A validated config and the text it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The parsed, defaulted and validated config.
    pub config: Config,
    /// The file it was read from, for messages.
    pub origin: String,
    /// The source text, kept so the admin API can show what is running.
    pub source: String,
}

impl LoadedConfig {
    /// An error for problems found after loading, when the config is built
    /// into running parts (a TLS file that cannot be read, a JWT key that
    /// does not parse): each issue, its path from the document root, is
    /// located in this config's source like a validation issue.
    pub fn issues_error(&self, issues: Vec<gateway_core::ConfigIssue>) -> ConfigError {
        ConfigError::Invalid {
            file: self.origin.clone(),
            issues: locate::locate_all(&self.source, issues),
        }
    }

    /// The running config as JSON with secrets replaced by `"[redacted]"`.
    pub fn redacted_json(&self) -> serde_json::Value {
        let value: toml::Value =
            toml::from_str(&self.source).unwrap_or(toml::Value::Table(Default::default()));
        let mut json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        redact(&mut json);
        json
    }
}

/// Reads, parses and validates the config file at `path`.
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let origin = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        file: origin.clone(),
        message: e.to_string(),
    })?;
    load_str(&source, &origin)
}

/// Parses and validates config text; `origin` names it in messages.
pub fn load_str(source: &str, origin: &str) -> Result<LoadedConfig, ConfigError> {
    // The key path is tracked as serde walks the file, so a value of the
    // wrong type or an unknown key is named (`routes[1].timeout`), not only
    // located.
    let config: Config = serde_path_to_error::deserialize(toml::Deserializer::new(source))
        .map_err(|e| {
            let path = e.path().to_string();
            let e = e.into_inner();
            let start = e.span().map(|span| span.start);
            let (line, column) = start
                .map(|start| locate::line_col(source, start))
                .unwrap_or((0, 0));
            ConfigError::Invalid {
                file: origin.to_string(),
                issues: vec![Issue {
                    line,
                    column,
                    // `.` is the root: a syntax error, or a missing top-level key.
                    path: if path == "." { String::new() } else { path },
                    message: syntax_message(e.message(), source, start),
                }],
            }
        })?;
    let raw = validate::validate(&config);
    if !raw.is_empty() {
        let issues = locate::locate_all(source, raw);
        return Err(ConfigError::Invalid {
            file: origin.to_string(),
            issues,
        });
    }
    Ok(LoadedConfig {
        config,
        origin: origin.to_string(),
        source: source.to_string(),
    })
}

/// The parser's message, or, when it gives none (a control character in a
/// comment), what is at the error's position.
fn syntax_message(message: &str, source: &str, at: Option<usize>) -> String {
    let message = message.trim();
    if !message.is_empty() {
        return message.to_string();
    }
    match at
        .and_then(|i| source.get(i..))
        .and_then(|s| s.chars().next())
    {
        Some(c) if c.is_control() => format!(
            "U+{:04X} is a control character, which TOML allows nowhere but as a tab",
            u32::from(c)
        ),
        Some(c) => format!("unexpected {c:?}"),
        None => "unexpected end of the file".to_string(),
    }
}

/// Key names whose values are secrets, matched case-insensitively as suffixes.
const SECRET_KEYS: [&str; 5] = ["token", "secret", "password", "private_key", "api_key"];

fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let k = k.to_ascii_lowercase();
                if SECRET_KEYS.iter().any(|s| k.ends_with(s)) && !v.is_object() {
                    *v = serde_json::Value::String("[redacted]".into());
                } else if k == "otlp" {
                    redact_otlp(v);
                } else if k.ends_with("url") {
                    if let serde_json::Value::String(s) = v {
                        *s = redact_url_credentials(s);
                    }
                } else {
                    redact(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// `[telemetry.otlp]`: its `headers` carry the collector's credentials
/// by design, whatever their names.
fn redact_otlp(otlp: &mut serde_json::Value) {
    if let Some(serde_json::Value::Object(headers)) = otlp.get_mut("headers") {
        for v in headers.values_mut() {
            *v = serde_json::Value::String("[redacted]".into());
        }
    }
    if let Some(serde_json::Value::String(endpoint)) = otlp.get_mut("endpoint") {
        *endpoint = redact_url_credentials(endpoint);
    }
    redact(otlp);
}

/// `postgres://user:pw@host/db` → `postgres://user:[redacted]@host/db`.
pub fn redact_url_credentials(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!(
                "{}{}:[redacted]{}",
                &url[..scheme_end + 3],
                user,
                &rest[at..]
            )
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests;
