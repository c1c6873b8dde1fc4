//! Access logs and Prometheus metrics.
//!
//! The access log is one JSON object per line, written by a dedicated thread
//! so a slow disk never stalls a request: the request path only does a
//! non-blocking `try_send`, and a full queue drops the line and counts it in
//! `gatehouse_access_log_dropped_total` rather than adding latency.

use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;

/// Lines buffered before the access log starts dropping.
const ACCESS_LOG_QUEUE: usize = 16 * 1024;

/// How often histogram samples are folded into buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Latency buckets in seconds: sub-millisecond resolution where a proxy
/// lives, up to the default route timeout.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// One access log line.
#[derive(Debug, Serialize)]
pub struct AccessRecord {
    /// RFC 3339 time the request arrived.
    pub ts: String,
    /// The request id sent upstream and returned to the client.
    pub request_id: String,
    /// W3C trace id.
    pub trace_id: String,
    /// Client address (see `trust_forwarded_headers`).
    pub client: String,
    /// Listener name.
    pub listener: &'static str,
    /// Request method.
    pub method: String,
    /// Host the client asked for.
    pub host: String,
    /// Path and query as received.
    pub path: String,
    /// HTTP version of the client connection.
    pub protocol: &'static str,
    /// Response status.
    pub status: u16,
    /// Matched route, if any.
    pub route: Option<String>,
    /// Upstream cluster, if the request went upstream.
    pub upstream: Option<String>,
    /// Error code when the gateway answered with a problem.
    pub error: Option<Cow<'static, str>>,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    /// Whether the response body was sent completely (false: client went away).
    pub completed: bool,
    /// Total time in milliseconds, until the last body byte.
    pub duration_ms: f64,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
}

/// Where access log lines go.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: Option<SyncSender<String>>,
}

impl AccessLog {
    /// `"stdout"`, `"off"`, or a file path (appended to).
    pub fn open(target: &str) -> std::io::Result<Self> {
        let sink: Box<dyn Write + Send> = match target {
            "off" | "" => return Ok(Self { tx: None }),
            "stdout" | "-" => Box::new(std::io::stdout()),
            path => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = mpsc::sync_channel::<String>(ACCESS_LOG_QUEUE);
        std::thread::Builder::new()
            .name("gatehouse-access-log".into())
            .spawn(move || {
                let mut out = BufWriter::new(sink);
                while let Ok(line) = rx.recv() {
                    let _ = out.write_all(line.as_bytes());
                    // Drain what is queued, then flush once: batching under
                    // load, prompt lines when idle.
                    while let Ok(line) = rx.try_recv() {
                        let _ = out.write_all(line.as_bytes());
                    }
                    let _ = out.flush();
                }
            })?;
        Ok(Self { tx: Some(tx) })
    }

    /// Queues a record; never blocks.
    pub fn log(&self, record: &AccessRecord) {
        let Some(tx) = &self.tx else { return };
        let mut line = match serde_json::to_string(record) {
            Ok(l) => l,
            Err(_) => return,
        };
        line.push('\n');
        if let Err(TrySendError::Full(_)) = tx.try_send(line) {
            metrics::counter!("gatehouse_access_log_dropped_total").increment(1);
        }
    }
}

/// The process-wide Prometheus recorder (installed once, shared by every
/// gateway in the process, as tests start several).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &LATENCY_BUCKETS)
            .expect("non-empty buckets");
        match builder.install_recorder() {
            Ok(handle) => {
                // Histograms hold raw samples until upkeep folds them into
                // buckets; without it memory grows between scrapes.
                let upkeep = handle.clone();
                let _ = std::thread::Builder::new()
                    .name("gatehouse-metrics-upkeep".into())
                    .spawn(move || loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    });
                handle
            }
            // Another recorder is installed (an embedding program's): render
            // from a private one so /metrics still answers.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}
