//! Access logs and Prometheus metrics.
//!
//! The access log is one JSON object per line, written by a dedicated thread
//! so a slow disk never stalls a request: the request path only does a
//! non-blocking `try_send`, and a full queue drops the line and counts it in
//! `gatehouse_access_log_dropped_total` rather than adding latency. The
//! request path hands the thread the record itself; turning it into JSON
//! happens there too. A log file can be reopened by its path
//! ([`AccessLog::reopen`], on `SIGUSR1`) for log rotation.
//!
//! Per-request metrics go through [`RequestMetrics`]: handles registered
//! once per route, status and upstream, so a request neither allocates
//! label strings nor looks the metric up in the recorder's registry.

use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
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
    tx: Option<SyncSender<Entry>>,
}

/// What the writer thread receives: lines, and requests to reopen its file.
/// Both travel on one queue, so every line queued before a reopen goes to
/// the old file and every line after it to the new one.
// Records are moved into the queue unboxed, as before reopens existed:
// boxing them would add an allocation to every request to shrink the rare
// reopen.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Entry {
    Record(AccessRecord),
    /// Reopen the file by its path; the result goes back on the sender.
    Reopen(SyncSender<std::io::Result<()>>),
}

/// Where the writer thread writes.
enum Destination {
    Stdout,
    File(PathBuf),
}

impl Destination {
    fn open(&self) -> std::io::Result<Box<dyn Write + Send>> {
        Ok(match self {
            Destination::Stdout => Box::new(std::io::stdout()),
            Destination::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        })
    }
}

impl AccessLog {
    /// `"stdout"`, `"off"`, or a file path (appended to, and reopened by
    /// [`AccessLog::reopen`]).
    pub fn open(target: &str) -> std::io::Result<Self> {
        let destination = match target {
            "off" | "" => return Ok(Self { tx: None }),
            "stdout" | "-" => Destination::Stdout,
            path => Destination::File(PathBuf::from(path)),
        };
        let sink = destination.open()?;
        let (tx, rx) = mpsc::sync_channel::<Entry>(ACCESS_LOG_QUEUE);
        std::thread::Builder::new()
            .name("gatehouse-access-log".into())
            .spawn(move || write_entries(rx, destination, sink))?;
        Ok(Self { tx: Some(tx) })
    }

    /// Whether lines go anywhere (`"off"` builds no records at all).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a record; never blocks.
    pub fn log(&self, record: AccessRecord) {
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(_)) = tx.try_send(Entry::Record(record)) {
            metrics::counter!("gatehouse_access_log_dropped_total").increment(1);
        }
    }

    /// Closes the log file and opens its path again (creating it), after
    /// writing every line queued so far to the old file: what logrotate
    /// needs once it has renamed the file. Lines queued after this call go
    /// to the new file; none are lost. When the path cannot be opened the
    /// old file stays in use and the error is returned. Does nothing for
    /// `stdout` and `off`.
    ///
    /// Blocks until the writer thread has done it (behind the lines already
    /// queued), so async callers run it on a blocking thread.
    pub fn reopen(&self) -> std::io::Result<()> {
        let Some(tx) = &self.tx else { return Ok(()) };
        let stopped = || std::io::Error::other("the access log writer has stopped");
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        tx.send(Entry::Reopen(done_tx)).map_err(|_| stopped())?;
        done_rx.recv().map_err(|_| stopped())?
    }
}

/// The writer thread: lines as JSON, one per line, and reopens in queue
/// order.
fn write_entries(rx: Receiver<Entry>, destination: Destination, sink: Box<dyn Write + Send>) {
    let mut out = BufWriter::new(sink);
    let handle = |entry: Entry, out: &mut BufWriter<Box<dyn Write + Send>>| match entry {
        Entry::Record(record) => {
            if serde_json::to_writer(&mut *out, &record).is_ok() {
                let _ = out.write_all(b"\n");
            }
        }
        Entry::Reopen(done) => {
            let _ = out.flush();
            let result = destination.open().map(|sink| *out = BufWriter::new(sink));
            let _ = done.send(result);
        }
    };
    while let Ok(entry) = rx.recv() {
        handle(entry, &mut out);
        // Drain what is queued, then flush once: batching under load,
        // prompt lines when idle.
        while let Ok(entry) = rx.try_recv() {
            handle(entry, &mut out);
        }
        let _ = out.flush();
    }
}

/// `gatehouse_requests_total{route,status,upstream}` and
/// `gatehouse_request_duration_seconds{route,status}` for one route (or for
/// requests that matched none), with a handle pair per status and upstream
/// registered the first time it is seen.
pub struct RequestMetrics {
    route: Option<Arc<str>>,
    cells: RwLock<Vec<RequestCell>>,
    /// `gatehouse_spliced_bytes_total` for the route, once registered.
    spliced: OnceLock<metrics::Counter>,
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
            spliced: OnceLock::new(),
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

impl RequestMetrics {
    /// Counts response body bytes the kernel moved for the route.
    pub fn record_spliced(&self, bytes: u64) {
        if let Some(counter) = self.spliced.get() {
            counter.increment(bytes);
            return;
        }
        let route = self.route.as_deref().unwrap_or("none").to_string();
        let counter = metrics::counter!("gatehouse_spliced_bytes_total", "route" => route);
        counter.increment(bytes);
        if recorder_ready() {
            let _ = self.spliced.set(counter);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(request_id: &str) -> AccessRecord {
        AccessRecord {
            ts: "2026-01-01T00:00:00Z".into(),
            request_id: request_id.into(),
            trace_id: "0".repeat(32),
            client: "127.0.0.1".into(),
            listener: "public",
            method: "GET".into(),
            host: "example.com".into(),
            path: "/".into(),
            protocol: "HTTP/1.1",
            status: 200,
            route: None,
            upstream: None,
            error: None,
            bytes_out: 0,
            completed: true,
            duration_ms: 1.0,
            user_agent: None,
        }
    }

    fn ids(path: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"].to_string()
            })
            .map(|id| id.trim_matches('"').to_string())
            .collect()
    }

    #[test]
    fn reopen_sends_earlier_lines_to_the_renamed_file_and_later_ones_to_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(path.to_str().unwrap()).unwrap();
        log.log(record("a"));
        log.log(record("b"));
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        // Queued before the reopen, so written to the renamed file.
        log.log(record("c"));
        log.reopen().unwrap();
        assert!(path.exists(), "the path is created again at once");
        log.log(record("d"));
        // A second reopen waits for "d" to be written.
        log.reopen().unwrap();
        assert_eq!(ids(&dir.path().join("access.log.1")), ["a", "b", "c"]);
        assert_eq!(ids(&path), ["d"]);
    }

    #[test]
    fn a_failed_reopen_keeps_writing_to_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let path = logs.join("access.log");
        let log = AccessLog::open(path.to_str().unwrap()).unwrap();
        log.log(record("a"));
        let moved = dir.path().join("moved");
        std::fs::rename(&logs, &moved).unwrap();
        assert!(log.reopen().is_err(), "the directory is gone");
        log.log(record("b"));
        log.reopen().unwrap_err();
        assert_eq!(ids(&moved.join("access.log")), ["a", "b"]);
    }

    #[test]
    fn reopen_without_a_file_does_nothing() {
        AccessLog::open("off").unwrap().reopen().unwrap();
        AccessLog::open("stdout").unwrap().reopen().unwrap();
    }
}
