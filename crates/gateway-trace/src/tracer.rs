//! The process's tracer: the sampling decision for each request, and the
//! server spans of the sampled ones.

use std::borrow::Cow;

use opentelemetry::trace::SpanKind;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample as _};

use crate::config::OtlpConfig;
use crate::context::TraceContext;
use crate::export::{self, SpanSink};
use crate::span::ServerSpan;

/// Samples requests and starts their server spans; cheap to clone.
#[derive(Clone, Debug)]
pub struct Tracer {
    ratio: Sampler,
    sink: SpanSink,
    scope: InstrumentationScope,
}

impl Tracer {
    /// A tracer exporting to `config`'s collector as `service_name`
    /// (unless the config names the service itself); starts the export
    /// thread.
    pub fn start(config: &OtlpConfig, service_name: &str) -> Result<Self, String> {
        let sink = export::start(config, service_name)?;
        Ok(Self {
            ratio: Sampler::TraceIdRatioBased(config.sample_ratio),
            sink,
            scope: InstrumentationScope::builder("gatehouse")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        })
    }

    /// Decides whether the request of `trace` is recorded, and sets its
    /// sampled flag to match (it travels upstream with `traceparent`).
    /// Parent-based: a request that continues a trace follows its
    /// caller's flag; a new trace is recorded at the configured ratio, by
    /// its trace id, as every OpenTelemetry SDK does.
    pub fn sample(&self, trace: &mut TraceContext) -> bool {
        if trace.parent_id().is_some() {
            return trace.sampled();
        }
        let decision = self
            .ratio
            .should_sample(None, trace.otel_trace_id(), "", &SpanKind::Server, &[], &[])
            .decision;
        let sampled = decision == SamplingDecision::RecordAndSample;
        trace.set_sampled(sampled);
        sampled
    }

    /// Exports the spans finished so far, waiting at most `timeout`
    /// (blocking; for shutdown). Returns whether they all went out.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        self.sink.flush(timeout)
    }

    /// Starts the server span of a request [`Tracer::sample`] kept.
    pub fn server_span(
        &self,
        trace: &TraceContext,
        name: impl Into<Cow<'static, str>>,
        attributes: Vec<KeyValue>,
    ) -> ServerSpan {
        ServerSpan::start(
            trace,
            name.into(),
            attributes,
            self.sink.clone(),
            self.scope.clone(),
        )
    }
}
