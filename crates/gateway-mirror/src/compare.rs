//! Comparing a primary response with a shadow response.
//!
//! The [`Comparator`] trait is the extension point; [`DefaultComparator`]
//! compares the status, the configured headers and the body: JSON bodies
//! structurally, per JSON path (changed value, missing, extra, type change,
//! array length; numbers with a tolerance), other bodies by SHA-256.
//!
//! Every [`Diff`] carries two paths: the concrete `path` (`$.items[3].ts`)
//! kept in examples, and the `field` key with array indices folded
//! (`$.items[*].ts`) under which statistics and noise are aggregated, so one
//! varying field in a list of 100 items is one field, not 100.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::CompareConfig;
use crate::outcome::{DiffCategory, DiffKind};
pub use crate::path::PathPattern;

/// Longest value excerpt kept in a diff.
const MAX_EXCERPT: usize = 200;
/// More diffs than this in one response are summarised by the first ones.
const MAX_DIFFS_PER_RESPONSE: usize = 64;

/// How an upstream call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No answer within the deadline.
    Timeout,
    /// Could not connect.
    Connect,
    /// The connection broke mid-exchange, or the response was invalid.
    Reset,
    /// Anything else (e.g. unknown cluster).
    Other,
}

impl ErrorKind {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Reset => "reset",
            Self::Other => "other",
        }
    }
}

/// A failed upstream call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservationError {
    /// The class of failure.
    pub kind: ErrorKind,
    /// A short description, for examples and logs.
    pub message: String,
}

/// What one upstream (primary, candidate or secondary) answered.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Response status; `None` when the call failed.
    pub status: Option<StatusCode>,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body, `None` when it was over the size cap (not compared).
    pub body: Option<Bytes>,
    /// Time to the complete response (or the failure).
    pub latency: Duration,
    /// Set when the call failed.
    pub error: Option<ObservationError>,
}

impl Observation {
    /// A complete response.
    pub fn response(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        latency: Duration,
    ) -> Self {
        Self {
            status: Some(status),
            headers,
            body: Some(body),
            latency,
            error: None,
        }
    }

    /// A failed call.
    pub fn failed(kind: ErrorKind, message: impl Into<String>, latency: Duration) -> Self {
        Self {
            status: None,
            headers: HeaderMap::new(),
            body: None,
            latency,
            error: Some(ObservationError {
                kind,
                message: message.into(),
            }),
        }
    }

    /// Whether this counts as an error for error-rate statistics: a failed
    /// call or a 5xx status.
    pub fn is_error(&self) -> bool {
        self.error.is_some() || self.status.is_some_and(|s| s.is_server_error())
    }
}

/// One difference between two responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Diff {
    /// Which group it belongs to.
    pub category: DiffCategory,
    /// Aggregation key: `status`, `header:<name>`, `body` or a JSON path with
    /// array indices folded to `[*]`.
    pub field: String,
    /// Concrete location (JSON path with indices).
    pub path: String,
    /// How it differs.
    pub kind: DiffKind,
    /// The primary's value (excerpt), if any.
    pub primary: Option<String>,
    /// The shadow's value (excerpt), if any.
    pub candidate: Option<String>,
}

/// Compares two observations. Implementations must be cheap enough to run on
/// the mirror workers for every sample and must never panic on any input.
pub trait Comparator: Send + Sync + 'static {
    /// The differences of `shadow` from `primary`; empty when they match.
    /// Both observations are successful responses (failures are classified
    /// before comparison).
    fn compare(&self, primary: &Observation, shadow: &Observation) -> Vec<Diff>;
}

/// Status, configured headers and body comparison driven by [`CompareConfig`].
#[derive(Debug, Clone)]
pub struct DefaultComparator {
    headers: Vec<String>,
    ignore: Vec<PathPattern>,
    abs_tol: f64,
    rel_tol: f64,
}

impl DefaultComparator {
    /// Builds the comparator; invalid ignore patterns are skipped (they are
    /// rejected by `LaunchConfig::validate`).
    pub fn new(cfg: &CompareConfig) -> Self {
        let ignored: Vec<String> = cfg
            .ignore_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        Self {
            headers: cfg
                .headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .filter(|h| !ignored.contains(h))
                .collect(),
            ignore: cfg
                .ignore_paths
                .iter()
                .filter_map(|p| PathPattern::parse(p).ok())
                .collect(),
            abs_tol: cfg.numeric_tolerance,
            rel_tol: cfg.numeric_relative_tolerance,
        }
    }

    fn ignored(&self, field: &str) -> bool {
        self.ignore.iter().any(|p| p.matches(field))
    }

    fn numbers_equal(&self, a: &serde_json::Number, b: &serde_json::Number) -> bool {
        if a == b {
            return true;
        }
        match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => {
                let d = (x - y).abs();
                d <= self.abs_tol || d <= self.rel_tol * x.abs().max(y.abs())
            }
            _ => false,
        }
    }

    fn json_diff(&self, a: &Value, b: &Value, path: &mut PathBuf2, out: &mut Vec<Diff>) {
        if out.len() >= MAX_DIFFS_PER_RESPONSE || self.ignored(&path.field) {
            return;
        }
        let mut push = |kind: DiffKind, p: Option<&Value>, c: Option<&Value>, path: &PathBuf2| {
            out.push(Diff {
                category: DiffCategory::BodyField,
                field: path.field.clone(),
                path: path.concrete.clone(),
                kind,
                primary: p.map(excerpt),
                candidate: c.map(excerpt),
            })
        };
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, va) in x {
                    path.push_key(k);
                    match y.get(k) {
                        Some(vb) => self.json_diff(va, vb, path, out),
                        None if !self.ignored(&path.field) => {
                            out.push(Diff {
                                category: DiffCategory::BodyField,
                                field: path.field.clone(),
                                path: path.concrete.clone(),
                                kind: DiffKind::Missing,
                                primary: Some(excerpt(va)),
                                candidate: None,
                            });
                        }
                        None => {}
                    }
                    path.pop();
                }
                for (k, vb) in y {
                    if !x.contains_key(k) {
                        path.push_key(k);
                        if !self.ignored(&path.field) {
                            out.push(Diff {
                                category: DiffCategory::BodyField,
                                field: path.field.clone(),
                                path: path.concrete.clone(),
                                kind: DiffKind::Extra,
                                primary: None,
                                candidate: Some(excerpt(vb)),
                            });
                        }
                        path.pop();
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                if x.len() != y.len() {
                    push(
                        DiffKind::ArrayLength,
                        Some(&Value::from(x.len())),
                        Some(&Value::from(y.len())),
                        path,
                    );
                }
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    path.push_index(i);
                    self.json_diff(va, vb, path, out);
                    path.pop();
                }
            }
            (Value::Number(x), Value::Number(y)) => {
                if !self.numbers_equal(x, y) {
                    push(DiffKind::Changed, Some(a), Some(b), path);
                }
            }
            (x, y) if std::mem::discriminant(x) == std::mem::discriminant(y) => {
                if x != y {
                    push(DiffKind::Changed, Some(a), Some(b), path);
                }
            }
            _ => push(DiffKind::TypeChanged, Some(a), Some(b), path),
        }
    }
}

impl Comparator for DefaultComparator {
    fn compare(&self, primary: &Observation, shadow: &Observation) -> Vec<Diff> {
        let mut out = Vec::new();
        if primary.status != shadow.status && !self.ignored_field("status") {
            out.push(Diff {
                category: DiffCategory::StatusMismatch,
                field: "status".into(),
                path: "status".into(),
                kind: DiffKind::Changed,
                primary: primary.status.map(|s| s.as_u16().to_string()),
                candidate: shadow.status.map(|s| s.as_u16().to_string()),
            });
        }
        for name in &self.headers {
            // Compared as bytes first: Strings are built only for a diff.
            if primary
                .headers
                .get_all(name)
                .iter()
                .eq(shadow.headers.get_all(name).iter())
            {
                continue;
            }
            let a = header_str(&primary.headers, name);
            let b = header_str(&shadow.headers, name);
            if a != b {
                let field = format!("header:{name}");
                out.push(Diff {
                    category: DiffCategory::Header,
                    path: field.clone(),
                    field,
                    kind: match (&a, &b) {
                        (Some(_), None) => DiffKind::Missing,
                        (None, Some(_)) => DiffKind::Extra,
                        _ => DiffKind::Changed,
                    },
                    primary: a,
                    candidate: b,
                });
            }
        }
        let (Some(pa), Some(pb)) = (&primary.body, &shadow.body) else {
            // A body over the cap on either side is not compared at all:
            // guessing would report differences that are not there.
            return out;
        };
        if pa == pb {
            return out;
        }
        match (
            serde_json::from_slice::<Value>(pa),
            serde_json::from_slice::<Value>(pb),
        ) {
            (Ok(a), Ok(b)) => {
                let mut path = PathBuf2::root();
                self.json_diff(&a, &b, &mut path, &mut out);
            }
            _ => {
                if !self.ignored_field("$") && sha256_hex(pa) != sha256_hex(pb) {
                    out.push(Diff {
                        category: DiffCategory::BodyField,
                        field: "body".into(),
                        path: "body".into(),
                        kind: DiffKind::HashMismatch,
                        primary: Some(format!("sha256:{}", &sha256_hex(pa)[..16])),
                        candidate: Some(format!("sha256:{}", &sha256_hex(pb)[..16])),
                    });
                }
            }
        }
        out
    }
}

impl DefaultComparator {
    fn ignored_field(&self, field: &str) -> bool {
        self.ignored(field)
    }
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    let vals: Vec<_> = h
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    if vals.is_empty() {
        None
    } else {
        Some(vals.join(", "))
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn excerpt(v: &Value) -> String {
    let s = v.to_string();
    if s.len() <= MAX_EXCERPT {
        s
    } else {
        let mut end = MAX_EXCERPT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// A JSON path under construction, kept both concrete and folded.
struct PathBuf2 {
    concrete: String,
    field: String,
    stack: Vec<(usize, usize)>,
}

impl PathBuf2 {
    fn root() -> Self {
        Self {
            concrete: "$".into(),
            field: "$".into(),
            stack: Vec::new(),
        }
    }

    fn push_key(&mut self, k: &str) {
        self.stack.push((self.concrete.len(), self.field.len()));
        let seg = if !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            format!(".{k}")
        } else {
            format!("['{}']", k.replace('\\', "\\\\").replace('\'', "\\'"))
        };
        self.concrete.push_str(&seg);
        self.field.push_str(&seg);
    }

    fn push_index(&mut self, i: usize) {
        self.stack.push((self.concrete.len(), self.field.len()));
        self.concrete.push_str(&format!("[{i}]"));
        self.field.push_str("[*]");
    }

    fn pop(&mut self) {
        if let Some((c, f)) = self.stack.pop() {
            self.concrete.truncate(c);
            self.field.truncate(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn obs(status: u16, body: &str) -> Observation {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        Observation::response(
            StatusCode::from_u16(status).unwrap(),
            h,
            Bytes::from(body.to_string()),
            Duration::from_millis(1),
        )
    }

    fn diffs(cfg: &CompareConfig, a: &str, b: &str) -> Vec<(String, String, &'static str)> {
        DefaultComparator::new(cfg)
            .compare(&obs(200, a), &obs(200, b))
            .into_iter()
            .map(|d| (d.path, d.field, d.kind.as_str()))
            .collect()
    }

    fn d(path: &str, field: &str, kind: &'static str) -> (String, String, &'static str) {
        (path.into(), field.into(), kind)
    }

    #[test]
    fn json_is_compared_structurally_per_path() {
        let cfg = CompareConfig::default();
        assert_eq!(
            diffs(
                &cfg,
                r#"{"base":"EUR","rates":{"JPY":160.1,"USD":1.08},"n":1,"list":[1,2,3],"gone":true}"#,
                r#"{"rates":{"USD":1.08,"JPY":160.2},"base":"EUR","n":"1","list":[1,5],"new":null}"#,
            ),
            vec![
                d("$.gone", "$.gone", "missing"),
                d("$.list", "$.list", "array_length"),
                d("$.list[1]", "$.list[*]", "changed"),
                d("$.n", "$.n", "type_changed"),
                d("$.rates.JPY", "$.rates.JPY", "changed"),
                d("$.new", "$.new", "extra"),
            ]
        );
        // Key order and whitespace are not differences.
        assert!(diffs(
            &cfg,
            r#"{"a":1,"b":[1,{"c":2}]}"#,
            r#"{ "b":[1,{"c":2}], "a":1 }"#
        )
        .is_empty());
    }

    #[test]
    fn numeric_tolerance_and_ignore_paths() {
        let cfg = CompareConfig {
            numeric_tolerance: 0.001,
            ignore_paths: vec!["$.meta".into(), "$.items[*].etag".into(), "$..trace".into()],
            ..CompareConfig::default()
        };
        assert!(diffs(
            &cfg,
            r#"{"r":1.0001,"meta":{"t":1},"items":[{"etag":"a","v":1}],"x":{"y":{"trace":"1"}}}"#,
            r#"{"r":1.0,"meta":{"t":2},"items":[{"etag":"b","v":1}],"x":{"y":{"trace":"2"}}}"#
        )
        .is_empty());
        assert_eq!(
            diffs(&cfg, r#"{"r":1.0}"#, r#"{"r":1.01}"#),
            vec![d("$.r", "$.r", "changed")]
        );
        let rel = CompareConfig {
            numeric_relative_tolerance: 0.01,
            ..CompareConfig::default()
        };
        assert!(diffs(&rel, r#"{"r":1000}"#, r#"{"r":1009}"#).is_empty());
        assert_eq!(diffs(&rel, r#"{"r":1000}"#, r#"{"r":1011}"#).len(), 1);
    }

    #[test]
    fn status_headers_and_opaque_bodies() {
        let c = DefaultComparator::new(&CompareConfig::default());
        let a = obs(200, "hello");
        let mut b = obs(404, "world");
        b.headers
            .insert("content-type", HeaderValue::from_static("text/plain"));
        let got: Vec<_> = c
            .compare(&a, &b)
            .into_iter()
            .map(|d| (d.category.as_str(), d.field))
            .collect();
        assert_eq!(
            got,
            vec![
                ("status_mismatch", "status".to_string()),
                ("header", "header:content-type".to_string()),
                ("body_field", "body".to_string()),
            ]
        );
        // Bodies over the cap are not compared.
        b = obs(200, "world");
        b.body = None;
        assert!(c.compare(&a, &b).is_empty());
    }
}
