//! Recording: appends a sample of a launch's mirrored requests (headers
//! redacted) to its record file as JSON lines, in the format
//! offline replay (`record.rs`) reads back.
//!
//! Separate from replay because the workers record and replay drives the
//! workers' comparison; together they would import each other.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::config::RecordConfig;
use crate::job::Job;
use crate::sampling::sampled;
use crate::stats::redacted_headers;

/// One recorded request and the primary's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// When it was mirrored.
    pub at: DateTime<Utc>,
    /// Launch that recorded it.
    pub launch: String,
    /// Endpoint key (`route METHOD /template`).
    pub endpoint: String,
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Request headers, sensitive ones as `[redacted]`.
    pub headers: BTreeMap<String, String>,
    /// Request body, base64.
    pub body_b64: String,
    /// The primary's response.
    pub primary: RecordedResponse,
}

/// A recorded primary response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedResponse {
    /// Status, when the primary answered.
    pub status: Option<u16>,
    /// Headers, sensitive ones redacted.
    pub headers: BTreeMap<String, String>,
    /// Body, base64 (absent when over the cap).
    pub body_b64: Option<String>,
    /// Latency in ms.
    pub latency_ms: f64,
}

/// Appends sampled jobs of a launch to its record file.
pub(crate) struct Recorder {
    launch: String,
    cfg: RecordConfig,
    /// Headers whose values are redacted in the file (the launch's
    /// `strip_headers`, beside the always-sensitive ones).
    strip: Vec<String>,
    file: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
    written: AtomicU64,
}

impl Recorder {
    pub(crate) fn new(launch: &str, cfg: RecordConfig, strip: Vec<String>) -> Self {
        Self {
            launch: launch.to_string(),
            strip,
            cfg,
            file: Mutex::new(None),
            written: AtomicU64::new(0),
        }
    }

    pub(crate) fn maybe_record(&self, job: &Job, now: &DateTime<Utc>) {
        if self.written.load(Ordering::Relaxed) >= self.cfg.max_records
            || !sampled(
                &format!("{}#record", self.launch),
                &job.request_id,
                self.cfg.sample_percent,
            )
        {
            return;
        }
        let line = RecordedRequest {
            at: *now,
            launch: self.launch.clone(),
            endpoint: job.endpoint.clone(),
            method: job.method.to_string(),
            uri: job.uri.to_string(),
            headers: job.original_headers.redacted(&self.strip),
            body_b64: B64.encode(&job.body),
            primary: RecordedResponse {
                status: job.primary.status.map(|s| s.as_u16()),
                headers: redacted_headers(&job.primary.headers, &[]),
                body_b64: job.primary.body.as_ref().map(|b| B64.encode(b)),
                latency_ms: job.primary.latency.as_secs_f64() * 1000.0,
            },
        };
        let Ok(mut json) = serde_json::to_string(&line) else {
            return;
        };
        json.push('\n');
        let mut guard = self.file.lock();
        // Checked again under the lock: concurrent jobs all passed the cheap
        // check above, and only one of them may write the last allowed line.
        if self.written.load(Ordering::Relaxed) >= self.cfg.max_records {
            return;
        }
        if guard.is_none() {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.cfg.file)
            {
                Ok(f) => *guard = Some(std::io::BufWriter::new(f)),
                Err(e) => {
                    tracing::warn!(launch = %self.launch, file = %self.cfg.file.display(), error = %e, "cannot open record file");
                    return;
                }
            }
        }
        if let Some(w) = guard.as_mut() {
            // Flushed per line so a crash loses at most the line in progress.
            if w.write_all(json.as_bytes()).and_then(|_| w.flush()).is_ok() {
                self.written.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
