//! The one body type that flows through the gateway pipeline.
//!
//! Requests and responses are streamed, never buffered whole, so every stage
//! passes a boxed streaming body. Stages that need the bytes (the cache, the
//! mirror comparator) collect them explicitly and under a size cap.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

/// A type-erased error, as carried by bodies and services.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The streaming body used by every stage of the pipeline.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body holding `bytes` in full.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Boxes any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}
