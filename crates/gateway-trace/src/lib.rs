//! OpenTelemetry traces for the gateway and the fx service.
//!
//! - [`context`]: the W3C `traceparent` of one hop, continued or started,
//!   with its sampled flag.
//! - [`config`]: `[telemetry.otlp]`, where spans go and how many.
//! - [`tracer`]: the sampling decision (parent-based, then a ratio of new
//!   traces) and the start of a sampled request's server span.
//! - [`span`]: a request's server span, its stages as events, and a
//!   client span per upstream attempt.
//! - [`export`]: the bounded queue and the thread that sends batches over
//!   OTLP (HTTP/protobuf or gRPC), counting what it drops.
//!
//! Nothing here waits on the collector from a request: a request only
//! pushes finished spans into a queue that drops when full.

pub mod config;
pub mod context;
pub mod export;
pub mod span;
pub mod tracer;

pub use config::{OtlpConfig, OtlpProtocol};
pub use context::{TraceContext, TRACEPARENT};
pub use opentelemetry::trace::SpanId;
pub use opentelemetry::KeyValue;
pub use span::ServerSpan;
pub use tracer::Tracer;
