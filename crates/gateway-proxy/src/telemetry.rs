//! Access logs and Prometheus metrics.
//!
//! The access log is one JSON object per line, written by a dedicated thread
//! so a slow disk never stalls a request: the request path only does a
//! non-blocking `try_send`, and a full queue drops the line and counts it in
//! `gatehouse_access_log_dropped_total` rather than adding latency. The
//! request path hands the thread the record itself; turning it into JSON
//! happens there too.
//!
//! Per-request metrics go through [`RequestMetrics`]: handles registered
//! once per route, status and upstream, so a request neither allocates
//! label strings nor looks the metric up in the recorder's registry.

use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::RwLock;

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
    tx: Option<SyncSender<AccessRecord>>,
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
        let (tx, rx) = mpsc::sync_channel::<AccessRecord>(ACCESS_LOG_QUEUE);
        std::thread::Builder::new()
            .name("gatehouse-access-log".into())
            .spawn(move || {
                let mut out = BufWriter::new(sink);
                let write = |record: &AccessRecord, out: &mut BufWriter<_>| {
                    if serde_json::to_writer(&mut *out, record).is_ok() {
                        let _ = out.write_all(b"\n");
                    }
                };
                while let Ok(record) = rx.recv() {
                    write(&record, &mut out);
                    // Drain what is queued, then flush once: batching under
                    // load, prompt lines when idle.
                    while let Ok(record) = rx.try_recv() {
                        write(&record, &mut out);
                    }
                    let _ = out.flush();
                }
            })?;
        Ok(Self { tx: Some(tx) })
    }

    /// Whether lines go anywhere (`"off"` builds no records at all).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a record; never blocks.
    pub fn log(&self, record: AccessRecord) {
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(_)) = tx.try_send(record) {
            metrics::counter!("gatehouse_access_log_dropped_total").increment(1);
        }
    }
}

/// `gatehouse_requests_total{route,status,upstream}` and
/// `gatehouse_request_duration_seconds{route,status}` for one route (or for
/// requests that matched none), with a handle pair per status and upstream
/// registered the first time it is seen.
pub struct RequestMetrics {
    route: Option<Arc<str>>,
    cells: RwLock<Vec<RequestCell>>,
}

struct RequestCell {
    status: u16,
    upstream: Option<Arc<str>>,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

impl std::fmt::Debug for RequestMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMetrics")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl RequestMetrics {
    /// Metrics for `route` (`None`: requests no route matched, labelled
    /// `route="none"`).
    pub fn new(route: Option<Arc<str>>) -> Self {
        Self {
            route,
            cells: RwLock::new(Vec::new()),
        }
    }

    /// The metrics of requests that matched no route.
    pub fn unrouted() -> &'static Self {
        static NONE: OnceLock<RequestMetrics> = OnceLock::new();
        NONE.get_or_init(|| Self::new(None))
    }

    /// Counts one finished request; `upstream` is the cluster label
    /// (`None`: `upstream="none"`).
    pub fn record(&self, status: u16, upstream: Option<&Arc<str>>, elapsed: Duration) {
        let same = |c: &RequestCell| c.status == status && c.upstream.as_ref() == upstream;
        if let Some(c) = self.cells.read().iter().find(|c| same(c)) {
            c.requests.increment(1);
            c.duration.record(elapsed.as_secs_f64());
            return;
        }
        let route = self.route.as_deref().unwrap_or("none").to_string();
        let status_label = status.to_string();
        let cell = RequestCell {
            status,
            upstream: upstream.cloned(),
            requests: metrics::counter!(
                "gatehouse_requests_total",
                "route" => route.clone(),
                "status" => status_label.clone(),
                "upstream" => upstream.map_or_else(|| "none".to_string(), |u| u.to_string()),
            ),
            duration: metrics::histogram!(
                "gatehouse_request_duration_seconds",
                "route" => route,
                "status" => status_label,
            ),
        };
        cell.requests.increment(1);
        cell.duration.record(elapsed.as_secs_f64());
        if !recorder_ready() {
            return;
        }
        let mut cells = self.cells.write();
        if !cells.iter().any(same) {
            cells.push(cell);
        }
    }
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Whether [`prometheus`] has run, so a metric handle registered now goes
/// to the recorder for good. Handles are only cached after that: one
/// registered before would stay a no-op.
fn recorder_ready() -> bool {
    PROMETHEUS.get().is_some()
}

/// Sets `gatehouse_in_flight_requests`.
pub(crate) fn set_in_flight(n: usize) {
    static GAUGE: OnceLock<metrics::Gauge> = OnceLock::new();
    let gauge = if recorder_ready() {
        GAUGE.get_or_init(|| metrics::gauge!("gatehouse_in_flight_requests"))
    } else {
        &metrics::gauge!("gatehouse_in_flight_requests")
    };
    gauge.set(n as f64);
}

/// The process-wide Prometheus recorder (installed once, shared by every
/// gateway in the process, as tests start several).
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
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
