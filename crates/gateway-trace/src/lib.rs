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

//!
//! Without the `export` feature (on by default) only [`config`] and
//! [`context`] are built: what a crate that reads the config needs.

pub mod config;
pub mod context;
#[cfg(feature = "export")]
pub mod export;
#[cfg(feature = "export")]
pub mod span;
#[cfg(feature = "export")]
pub mod tracer;

pub use config::{OtlpConfig, OtlpProtocol};
pub use context::{TraceContext, TRACEPARENT};
#[cfg(feature = "export")]
pub use opentelemetry::trace::SpanId;
#[cfg(feature = "export")]
pub use opentelemetry::KeyValue;
#[cfg(feature = "export")]
pub use span::ServerSpan;
#[cfg(feature = "export")]
pub use tracer::Tracer;
