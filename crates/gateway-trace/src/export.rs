//! Finished spans on their way to the collector: a bounded queue the
//! request path only ever `try_send`s into, and one thread that batches
//! the queue and exports each batch over OTLP.
//!
//! The SDK's `BatchSpanProcessor` does the same, but keeps its drop count
//! private (it is logged once, at shutdown); here every span is counted as
//! exported, dropped or failed in `gatehouse_trace_spans_total`, so an
//! operator sees a collector falling behind on `/metrics`.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use opentelemetry_sdk::Resource;

use crate::config::{OtlpConfig, OtlpProtocol};

/// Most spans in one export (fewer when the queue is smaller).
const MAX_BATCH: usize = 512;
/// Longest time a finished span waits for a batch to fill.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// Shortest time between two warnings about failed exports.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What the export thread is handed.
// Spans are nearly every job: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Job {
    Span(SpanData),
    /// Export everything queued before this, then answer.
    Flush(SyncSender<()>),
}

/// The request side of the export queue: cheap to clone, never blocks.
#[derive(Clone)]
pub struct SpanSink {
    queue: SyncSender<Job>,
}

impl std::fmt::Debug for SpanSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpanSink")
    }
}

impl SpanSink {
    /// Queues a finished span; a full queue drops it, counted.
    pub fn submit(&self, span: SpanData) {
        match self.queue.try_send(Job::Span(span)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => count(1, "dropped"),
            // The export thread is gone (shutdown): nothing to count against.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Exports what is queued now, waiting at most `timeout` (blocking:
    /// for shutdown, off the request path). Returns whether it finished.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done, finished) = mpsc::sync_channel(1);
        let deadline = Instant::now() + timeout;
        // A full queue makes room as the thread works; wait for it, within
        // the deadline.
        let mut job = Job::Flush(done);
        loop {
            match self.queue.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    job = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        finished
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// Starts the export thread for `config`, exporting as `service_name`.
/// Fails when the exporter cannot be built (an endpoint its transport
/// refuses); a collector that is away is not a failure: its exports fail,
/// counted, and the queue drops what does not fit.
pub fn start(config: &OtlpConfig, service_name: &str) -> Result<SpanSink, String> {
    let (queue, spans) = mpsc::sync_channel::<Job>(config.queue_size);
    let (built_tx, built_rx) = mpsc::sync_channel(1);
    let config = config.clone();
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new(
                "service.name",
                config
                    .service_name
                    .clone()
                    .unwrap_or_else(|| service_name.to_string()),
            ),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build();
    std::thread::Builder::new()
        .name("otlp-export".into())
        .spawn(move || {
            // The transports are async (hyper, tonic): a runtime of the
            // thread's own, so an export never runs on a request's worker.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = built_tx.send(Err(format!("cannot start the export runtime: {e}")));
                    return;
                }
            };
            // tonic's lazy channel spawns its worker: built inside the runtime.
            let exporter = runtime.block_on(async { build_exporter(&config, &resource) });
            let exporter = match exporter {
                Ok(e) => {
                    let _ = built_tx.send(Ok(()));
                    e
                }
                Err(e) => {
                    let _ = built_tx.send(Err(e));
                    return;
                }
            };
            // A batch is never bigger than the queue: what waits for export
            // stays within twice `queue_size` (the queue and the batch).
            let batch_size = MAX_BATCH.min(config.queue_size);
            run(&runtime, &exporter, &spans, batch_size, config.timeout);
        })
        .map_err(|e| format!("cannot start the export thread: {e}"))?;
    match built_rx.recv() {
        Ok(Ok(())) => Ok(SpanSink { queue }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the export thread stopped while starting".into()),
    }
}

fn build_exporter(config: &OtlpConfig, resource: &Resource) -> Result<SpanExporter, String> {
    let url = config.export_url()?;
    let mut exporter = match config.protocol {
        OtlpProtocol::HttpProtobuf => {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            // ring, named rather than left to the process default: a binary
            // that links both rustls backends has no default.
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("no usable TLS versions: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .build();
            let client = opentelemetry_http::hyper::HyperClient::new(https, config.timeout, None);
            let headers: HashMap<String, String> = config.headers.clone().into_iter().collect();
            SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_endpoint(url)
                .with_timeout(config.timeout)
                .with_headers(headers)
                .build()
        }
        OtlpProtocol::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (name, value) in &config.headers {
                // Checked by `OtlpConfig::validate`; gRPC wants lower case.
                let name =
                    tonic::metadata::MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                        .map_err(|_| {
                            format!("header `{name}` is not a valid gRPC metadata name")
                        })?;
                let value = value
                    .parse()
                    .map_err(|_| format!("header `{name}` has a value gRPC refuses"))?;
                metadata.insert(name, value);
            }
            let mut builder = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(url.clone())
                .with_timeout(config.timeout)
                .with_metadata(metadata);
            if url.starts_with("https://") {
                // tonic's TLS takes the process's default provider; ring
                // unless the process chose one already.
                let _ = rustls::crypto::ring::default_provider().install_default();
                builder = builder
                    .with_tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots());
            }
            builder.build()
        }
    }
    .map_err(|e| {
        format!(
            "cannot build the OTLP exporter for `{}`: {e}",
            config.endpoint
        )
    })?;
    exporter.set_resource(resource);
    Ok(exporter)
}

/// Batches the queue until every sender is gone, then exports the rest.
fn run(
    runtime: &tokio::runtime::Runtime,
    exporter: &SpanExporter,
    spans: &Receiver<Job>,
    batch_size: usize,
    timeout: Duration,
) {
    let mut batch = Vec::with_capacity(batch_size);
    let mut last_warning: Option<Instant> = None;
    let mut deadline = Instant::now() + BATCH_DELAY;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let mut flushed = None;
        let open = match spans.recv_timeout(wait) {
            Ok(job) => {
                let mut next = Some(job);
                // Whatever else is already waiting joins the same batch.
                while let Some(job) = next.take() {
                    match job {
                        Job::Span(span) => batch.push(span),
                        Job::Flush(done) => {
                            flushed = Some(done);
                            break;
                        }
                    }
                    if batch.len() < batch_size {
                        next = spans.try_recv().ok();
                    }
                }
                true
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        };
        if let Some(done) = flushed {
            if !batch.is_empty() {
                export(runtime, exporter, &mut batch, timeout, &mut last_warning);
            }
            let _ = done.send(());
            continue;
        }
        let due = Instant::now() >= deadline;
        if !batch.is_empty() && (batch.len() >= batch_size || due || !open) {
            export(runtime, exporter, &mut batch, timeout, &mut last_warning);
        }
        if due {
            deadline = Instant::now() + BATCH_DELAY;
        }
        if !open {
            let _ = exporter.shutdown();
            return;
        }
    }
}

fn export(
    runtime: &tokio::runtime::Runtime,
    exporter: &SpanExporter,
    batch: &mut Vec<SpanData>,
    timeout: Duration,
    last_warning: &mut Option<Instant>,
) {
    let n = batch.len() as u64;
    let spans = std::mem::replace(batch, Vec::with_capacity(batch.capacity()));
    // The timer needs the runtime: made inside it.
    let result =
        runtime.block_on(async { tokio::time::timeout(timeout, exporter.export(spans)).await });
    let error = match result {
        Ok(Ok(())) => {
            count(n, "exported");
            return;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {}", humantime::format_duration(timeout)),
    };
    count(n, "failed");
    if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
        *last_warning = Some(Instant::now());
        tracing::warn!(spans = n, error = %error, "OTLP export failed; spans dropped");
    }
}

fn count(n: u64, outcome: &'static str) {
    metrics::counter!("gatehouse_trace_spans_total", "outcome" => outcome).increment(n);
}
