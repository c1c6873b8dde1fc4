//! Record and replay: capture a sample of mirrored requests (redacted) as
//! JSON lines, and run the same comparison offline against a candidate URL
//! before any live mirroring (`gatehouse shadow replay FILE --candidate URL`).
//!
//! Sensitive headers are redacted before a line is written, so a recording
//! can be shared; replay never sends a redacted value.
//!
//! Recording itself happens on the workers (`recorder.rs`); this module is
//! the public surface: the line format and offline replay.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

use crate::client::{HttpShadowClient, ShadowClient, ShadowRequest};
use crate::compare::{ErrorKind, Observation};
use crate::config::LaunchConfig;
use crate::job::{Job, OriginalHeaders};
use crate::launch::Core;
use crate::outcome::LaunchState;
pub use crate::recorder::{RecordedRequest, RecordedResponse};
use crate::report::Report;
use crate::stats::LaunchStats;

/// A replay failure.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A line is not a recorded request.
    #[error("{path}:{line}: {message}")]
    BadLine {
        /// File.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A URL is unusable.
    #[error("{0}")]
    BadUrl(String),
}

/// Options of an offline replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Base URL of the candidate.
    pub candidate: String,
    /// Base URL of the primary; when absent the recorded responses are used.
    pub primary: Option<String>,
    /// Compare rules and thresholds (name, routes and clusters are ignored).
    pub launch: LaunchConfig,
    /// Deadline per request.
    pub timeout: Duration,
}

impl ReplayOptions {
    /// Replays against `candidate` with default compare rules.
    pub fn new(candidate: &str) -> Self {
        Self {
            candidate: candidate.to_string(),
            primary: None,
            launch: LaunchConfig::new("replay", &["replay"], "candidate"),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Sends every recorded request to the candidate (and the primary, if given),
/// compares as a live launch would, and returns the report.
pub async fn replay(path: &Path, opts: &ReplayOptions) -> Result<Report, ReplayError> {
    let file = std::fs::File::open(path).map_err(|source| ReplayError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut client = HttpShadowClient::new()
        .with_cluster("candidate", &opts.candidate)
        .map_err(ReplayError::BadUrl)?;
    if let Some(p) = &opts.primary {
        client = client
            .with_cluster("primary", p)
            .map_err(ReplayError::BadUrl)?;
    }
    let client = Arc::new(client);
    let mut cfg = opts.launch.clone();
    cfg.candidate = "candidate".into();
    cfg.secondary = None;
    cfg.record = None;
    cfg.timeout = opts.timeout;
    let clock = gateway_core::clock::system();
    let core = Core::new(
        cfg.clone(),
        LaunchState::Active,
        LaunchStats::default(),
        client.clone(),
        clock.clone(),
    );
    let marker = HeaderName::from_bytes(cfg.marker_header.as_bytes()).unwrap_or(
        HeaderName::from_static(crate::config::DEFAULT_MARKER_HEADER),
    );
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let bad = |message: String| ReplayError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let line = line.map_err(|source| ReplayError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let rec: RecordedRequest =
            serde_json::from_str(&line).map_err(|e| bad(format!("not a recorded request: {e}")))?;
        let method = Method::from_bytes(rec.method.as_bytes())
            .map_err(|_| bad(format!("invalid method {:?}", rec.method)))?;
        let uri: Uri = rec
            .uri
            .parse()
            .map_err(|e| bad(format!("invalid uri {:?}: {e}", rec.uri)))?;
        let body = Bytes::from(
            B64.decode(&rec.body_b64)
                .map_err(|e| bad(format!("body_b64: {e}")))?,
        );
        let mut headers = HeaderMap::new();
        for (k, v) in &rec.headers {
            if v == "[redacted]" {
                continue;
            }
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.append(k, v);
            }
        }
        for h in ["host", "content-length", "connection", "transfer-encoding"] {
            headers.remove(h);
        }
        for (k, v) in &cfg.set_headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.insert(k, v);
            }
        }
        headers.insert(marker.clone(), HeaderValue::from_static("1"));
        let primary = if opts.primary.is_some() {
            client
                .send(
                    "primary",
                    ShadowRequest {
                        method: method.clone(),
                        uri: uri.clone(),
                        headers: headers.clone(),
                        body: body.clone(),
                        timeout: opts.timeout,
                        max_body_bytes: cfg.max_body_bytes,
                    },
                )
                .await
        } else {
            recorded_primary(&rec.primary).map_err(bad)?
        };
        let endpoint = if rec.endpoint.is_empty() {
            crate::endpoint::endpoint_key("replay", method.as_str(), uri.path())
        } else {
            rec.endpoint.clone()
        };
        core.process(Job {
            method,
            uri,
            headers,
            original_headers: OriginalHeaders::Redacted(rec.headers.clone()),
            body,
            primary,
            endpoint,
            request_id: format!("replay-{}", i + 1),
        })
        .await;
    }
    Ok(core.report(clock.now()))
}

fn recorded_primary(r: &RecordedResponse) -> Result<Observation, String> {
    let latency = Duration::from_secs_f64((r.latency_ms / 1000.0).max(0.0));
    let Some(status) = r.status else {
        return Ok(Observation::failed(
            ErrorKind::Other,
            "primary failed when recorded",
            latency,
        ));
    };
    let status =
        StatusCode::from_u16(status).map_err(|_| format!("invalid primary status {status}"))?;
    let mut headers = HeaderMap::new();
    for (k, v) in &r.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    let body = match &r.body_b64 {
        Some(b) => Some(Bytes::from(
            B64.decode(b)
                .map_err(|e| format!("primary.body_b64: {e}"))?,
        )),
        None => None,
    };
    let mut o = Observation::response(status, headers, Bytes::new(), latency);
    o.body = body;
    Ok(o)
}
