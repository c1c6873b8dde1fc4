//! A route's `cors` table: which browser origins may call it, and how
//! (the Fetch standard's CORS protocol; see `docs/security.md`).

use std::time::Duration;

use gateway_core::config_issue::{finish, ConfigIssue};
use http::{HeaderName, Method};
use serde::{Deserialize, Serialize};

/// Default `max_age`: how long a browser may reuse a preflight answer.
pub const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(600);

/// Default `allow_methods`.
pub const DEFAULT_CORS_METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// Cross-origin requests from browsers (`cors` on a route).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteCorsConfig {
    /// Origins allowed: exact (`https://app.example.com`, with a port when
    /// not the scheme's default), one leading wildcard label
    /// (`https://*.example.com`), `"null"`, or `"*"` for any origin (not
    /// with `allow_credentials`).
    pub allow_origins: Vec<String>,
    /// Methods a cross-origin request may use.
    pub allow_methods: Vec<String>,
    /// Request headers a cross-origin request may send beyond the
    /// CORS-safelisted ones; `["*"]` allows any. Absent: the headers a
    /// preflight asks for are allowed.
    pub allow_headers: Option<Vec<String>>,
    /// Response headers the browser lets the page read beyond the
    /// CORS-safelisted ones.
    pub expose_headers: Vec<String>,
    /// Whether requests with credentials (cookies, `Authorization`, TLS
    /// client certificates) may read the response.
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for RouteCorsConfig {
    fn default() -> Self {
        Self {
            allow_origins: Vec::new(),
            allow_methods: DEFAULT_CORS_METHODS.iter().map(|m| m.to_string()).collect(),
            allow_headers: None,
            expose_headers: Vec::new(),
            allow_credentials: false,
            max_age: DEFAULT_CORS_MAX_AGE,
        }
    }
}

impl RouteCorsConfig {
    /// Every problem with the table, paths relative to it.
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if self.allow_origins.is_empty() {
            issues.push(ConfigIssue::new(
                "allow_origins",
                "list at least one origin (e.g. `https://app.example.com`), or remove `cors`",
            ));
        }
        for (i, origin) in self.allow_origins.iter().enumerate() {
            let at = format!("allow_origins[{i}]");
            if origin == "*" {
                if self.allow_credentials {
                    issues.push(ConfigIssue::new(
                        at,
                        "`*` cannot be used with `allow_credentials = true` (browsers refuse it); list the origins",
                    ));
                }
                continue;
            }
            if let Err(message) = OriginPattern::parse(origin) {
                issues.push(ConfigIssue::new(at, message));
            }
        }
        if self.allow_methods.is_empty() {
            issues.push(ConfigIssue::new(
                "allow_methods",
                "list at least one method",
            ));
        }
        for (i, m) in self.allow_methods.iter().enumerate() {
            if Method::from_bytes(m.as_bytes()).is_err() || m.to_ascii_uppercase() != *m {
                issues.push(ConfigIssue::new(
                    format!("allow_methods[{i}]"),
                    format!("`{m}` is not an HTTP method (write methods in upper case, e.g. GET)"),
                ));
            }
        }
        for (key, list) in [
            (
                "allow_headers",
                self.allow_headers.as_deref().unwrap_or_default(),
            ),
            ("expose_headers", &self.expose_headers[..]),
        ] {
            for (i, h) in list.iter().enumerate() {
                if h == "*" && key == "allow_headers" {
                    continue;
                }
                if HeaderName::from_bytes(h.as_bytes()).is_err() {
                    issues.push(ConfigIssue::new(
                        format!("{key}[{i}]"),
                        format!("`{h}` is not a valid header name"),
                    ));
                }
            }
        }
        if self.max_age > Duration::from_secs(24 * 60 * 60) {
            issues.push(ConfigIssue::new(
                "max_age",
                "must be at most 24h (browsers cap it lower still)",
            ));
        }
        finish(issues)
    }
}

/// One allowed origin other than `*`: `scheme://host[:port]`, where host
/// may start with one wildcard label (`*.example.com`), or `null`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// The serialised origin, lower-cased.
    Exact(String),
    /// `scheme://*.suffix[:port]`: `prefix` is `scheme://`, `suffix` is
    /// `.suffix[:port]`; the label(s) in between are any non-empty host
    /// labels.
    Wildcard {
        /// `https://`.
        prefix: String,
        /// `.example.com` or `.example.com:8443`.
        suffix: String,
    },
}

impl OriginPattern {
    /// Reads one `allow_origins` entry.
    pub fn parse(entry: &str) -> Result<Self, String> {
        if entry == "null" {
            return Ok(Self::Exact("null".into()));
        }
        let hint = "write an origin as `scheme://host` or `scheme://host:port` with no path (e.g. `https://app.example.com`, `https://*.example.com`)";
        let Some((scheme, authority)) = entry.split_once("://") else {
            return Err(format!("`{entry}` is not an origin: {hint}"));
        };
        let scheme_ok = !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !scheme_ok || authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(format!("`{entry}` is not an origin: {hint}"));
        }
        let lower = entry.to_ascii_lowercase();
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                if p.parse::<u16>().is_err() {
                    return Err(format!("`{entry}`: `{p}` is not a port"));
                }
                (h, Some(p))
            }
            _ => (authority, None),
        };
        let default_port = matches!(
            (scheme, port),
            ("https", Some("443")) | ("http", Some("80"))
        );
        if default_port {
            return Err(format!(
                "`{entry}`: browsers leave out the default port; write `{scheme}://{host}`"
            ));
        }
        match host.strip_prefix("*.") {
            Some(rest) => {
                if rest.is_empty()
                    || rest.contains('*')
                    || !rest.contains('.') && rest != "localhost"
                {
                    return Err(format!(
                        "`{entry}`: a wildcard must be one leading label before at least two labels (`https://*.example.com`)"
                    ));
                }
                let scheme = scheme.to_ascii_lowercase();
                Ok(Self::Wildcard {
                    prefix: format!("{scheme}://"),
                    suffix: lower[scheme.len() + 4..].to_string(),
                })
            }
            None if host.contains('*') => Err(format!(
                "`{entry}`: a wildcard must be the whole first label (`https://*.example.com`)"
            )),
            None => Ok(Self::Exact(lower)),
        }
    }

    /// Whether the request's `Origin` (as sent) matches.
    pub fn matches(&self, origin: &str) -> bool {
        match self {
            Self::Exact(o) => o.eq_ignore_ascii_case(origin),
            Self::Wildcard { prefix, suffix } => {
                let Some(rest) = strip_prefix_ignore_case(origin, prefix) else {
                    return false;
                };
                let Some(labels) = strip_suffix_ignore_case(rest, suffix) else {
                    return false;
                };
                // The wildcard covers host labels only: no port, no path.
                !labels.is_empty()
                    && labels.split('.').all(|l| {
                        !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    })
            }
        }
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len()
        && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()))
    .then(|| &s[prefix.len()..])
}

fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let at = s.len().checked_sub(suffix.len())?;
    (s.is_char_boundary(at) && s.as_bytes()[at..].eq_ignore_ascii_case(suffix.as_bytes()))
        .then(|| &s[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns_match_as_browsers_send_origins() {
        let exact = OriginPattern::parse("https://App.example.com").unwrap();
        let wild = OriginPattern::parse("https://*.example.com").unwrap();
        let wild_port = OriginPattern::parse("http://*.example.com:8080").unwrap();
        for (pattern, origin, want) in [
            (&exact, "https://app.example.com", true),
            (&exact, "https://app.example.com:8443", false),
            (&exact, "http://app.example.com", false),
            (&wild, "https://a.example.com", true),
            (&wild, "https://a.b.example.com", true),
            (&wild, "https://example.com", false),
            (&wild, "https://evil-example.com", false),
            (&wild, "https://a.example.com.evil.net", false),
            (&wild, "https://a.example.com:8443", false),
            (&wild, "http://a.example.com", false),
            (&wild, "https://.example.com", false),
            (&wild_port, "http://x.example.com:8080", true),
            (&wild_port, "http://x.example.com", false),
        ] {
            assert_eq!(pattern.matches(origin), want, "{pattern:?} {origin}");
        }
    }

    #[test]
    fn bad_entries_say_what_to_write() {
        for (entry, want) in [
            ("app.example.com", "is not an origin"),
            ("https://app.example.com/", "is not an origin"),
            ("https://app.example.com:443", "leave out the default port"),
            ("https://a*.example.com", "whole first label"),
            ("https://*.com", "before at least two labels"),
            ("https://app.example.com:x", "is not a port"),
        ] {
            let err = OriginPattern::parse(entry).unwrap_err();
            assert!(err.contains(want), "{entry}: {err}");
        }
        let cfg = RouteCorsConfig {
            allow_origins: vec!["*".into()],
            allow_credentials: true,
            allow_methods: vec!["get".into()],
            ..Default::default()
        };
        let issues = cfg.validate().unwrap_err();
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["allow_origins[0]", "allow_methods[0]"]);
    }
}
