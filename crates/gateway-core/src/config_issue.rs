//! One problem found in a config table, and the helpers every section's
//! `validate` uses.
//!
//! Every config section in the workspace checks itself with the same
//! signature, `fn validate(&self) -> Result<(), Vec<ConfigIssue>>`, and
//! reports *every* problem at once with its key path **relative to the
//! table validated** (`max_bytes`, `targets[1]`, `rotation.warn_before`).
//! Whoever embeds the table prefixes the paths with where it found it
//! (`cache.`, `clusters.api.`, `routes[2].auth.`) using [`nested`] or
//! [`ConfigIssue::under`], so a table never needs to know its place in a
//! document.

use std::fmt;

use serde::Serialize;

/// One problem in a config table, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigIssue {
    /// Dotted key path, relative to the table validated until a caller
    /// prefixes it (e.g. `health_check.interval`, `routes[0].cache.key_headers[1]`).
    pub path: String,
    /// What is wrong and what would be accepted, in one sentence.
    pub message: String,
}

impl ConfigIssue {
    /// A new issue at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same issue with `prefix.` prepended to its path (`prefix` alone
    /// when the path is empty, the path unchanged when `prefix` is empty).
    pub fn under(mut self, prefix: &str) -> Self {
        self.path = join(prefix, &self.path);
        self
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The issues of a nested table's `validate` result, each prefixed with
/// `prefix` (empty when the table is valid).
///
/// ```
/// use gateway_core::config_issue::{nested, ConfigIssue};
/// let inner: Result<(), Vec<ConfigIssue>> = Err(vec![ConfigIssue::new("burst", "must be at least 1")]);
/// let issues = nested("plans.gold", inner);
/// assert_eq!(issues[0].path, "plans.gold.burst");
/// ```
pub fn nested(prefix: &str, result: Result<(), Vec<ConfigIssue>>) -> Vec<ConfigIssue> {
    match result {
        Ok(()) => Vec::new(),
        Err(issues) => issues.into_iter().map(|i| i.under(prefix)).collect(),
    }
}

/// `Ok(())` when nothing was found, else every issue: the usual last line
/// of a `validate`.
pub fn finish(issues: Vec<ConfigIssue>) -> Result<(), Vec<ConfigIssue>> {
    if issues.is_empty() {
        Ok(())
    } else {
        Err(issues)
    }
}

/// Renders issues on one line (`path: message; path: message`), for errors
/// that carry them as text.
pub fn render(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (false, true) => prefix.to_string(),
        // An index attaches without a dot: `routes` + `[2].name`.
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_join_with_dots_and_indexes_attach() {
        let i = ConfigIssue::new("burst", "must be at least 1");
        assert_eq!(i.clone().under("plans.gold").path, "plans.gold.burst");
        assert_eq!(i.clone().under("").path, "burst");
        assert_eq!(ConfigIssue::new("", "x").under("cache").path, "cache");
        assert_eq!(
            ConfigIssue::new("[2].name", "x").under("routes").path,
            "routes[2].name"
        );
        assert_eq!(i.to_string(), "burst: must be at least 1");
    }

    #[test]
    fn nested_and_finish() {
        assert!(nested("a", Ok(())).is_empty());
        let issues = nested(
            "a",
            Err(vec![ConfigIssue::new("b", "m"), ConfigIssue::new("c", "n")]),
        );
        assert_eq!(render(&issues), "a.b: m; a.c: n");
        assert_eq!(finish(Vec::new()), Ok(()));
        assert_eq!(finish(issues.clone()), Err(issues));
    }
}
