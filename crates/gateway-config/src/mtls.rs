//! Mutual TLS settings: a listener's client certificate authentication
//! (`tls.client_ca`, `tls.client_auth`) and a route's `client_cert`
//! requirement (see `docs/security.md`).

use gateway_core::config_issue::{finish, ConfigIssue};
use serde::{Deserialize, Serialize};

/// Whether a listener with `client_ca` insists on a client certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    /// The handshake fails without a certificate signed by `client_ca`.
    #[default]
    Required,
    /// A certificate is asked for and verified when sent; connections
    /// without one are served (routes may still require one).
    Optional,
}

/// A route that only serves connections with a verified client
/// certificate (`client_cert` on a route).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteClientCertConfig {
    /// Subjects accepted, RFC 4514 as forwarded in `X-Client-Cert-Subject`
    /// (`CN=billing,O=Acme`). With `sans`: either may match.
    pub subjects: Vec<String>,
    /// Subject alternative names accepted, `DNS:name`, `URI:uri`,
    /// `email:address` or `IP:address`.
    pub sans: Vec<String>,
}

impl RouteClientCertConfig {
    /// Checks the SAN forms.
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        for (i, san) in self.sans.iter().enumerate() {
            let ok = ["DNS:", "URI:", "email:", "IP:"]
                .iter()
                .any(|p| san.len() > p.len() && san.starts_with(p));
            if !ok {
                issues.push(ConfigIssue::new(
                    format!("sans[{i}]"),
                    format!("`{san}` must be written `DNS:name`, `URI:uri`, `email:address` or `IP:address`"),
                ));
            }
        }
        for (i, s) in self.subjects.iter().enumerate() {
            if !s.contains('=') {
                issues.push(ConfigIssue::new(
                    format!("subjects[{i}]"),
                    format!(
                        "`{s}` is not a subject; write it as RFC 4514, e.g. `CN=billing,O=Acme`"
                    ),
                ));
            }
        }
        finish(issues)
    }
}
