//! Config errors that say what and where.

use std::fmt;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// 1-based line of the offending key or value (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// Key path, e.g. `routes[2].cluster` (empty for syntax errors).
    pub path: String,
    /// What is wrong, in one sentence.
    pub message: String,
}

/// Why a config could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read config: {message}")]
    Io {
        /// The file.
        file: String,
        /// The OS error.
        message: String,
    },
    /// The file was read but is not a valid config.
    #[error("{}", render(file, issues))]
    Invalid {
        /// The file.
        file: String,
        /// Every problem found, in file order.
        issues: Vec<Issue>,
    },
}

impl ConfigError {
    /// The individual issues (empty for IO errors).
    pub fn issues(&self) -> &[Issue] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid { issues, .. } => issues,
        }
    }
}

fn render(file: &str, issues: &[Issue]) -> String {
    let mut out = String::new();
    for (i, issue) in issues.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&issue.to_string_in(file));
    }
    out
}

impl Issue {
    /// `file:line:column: path: message`, the shape editors and CI annotate.
    pub fn to_string_in(&self, file: &str) -> String {
        let mut s = format!("{file}:{}:{}: ", self.line, self.column);
        if !self.path.is_empty() {
            s.push_str(&self.path);
            s.push_str(": ");
        }
        s.push_str(&self.message);
        s
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_in("config"))
    }
}
