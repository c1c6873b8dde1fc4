//! The shapes of mirrored work: the [`LiveJob`] the primary path hands over
//! as received, and the [`Job`] a worker derives from it (or a replay reads
//! from a recording), ready to send, compare and record.
//!
//! Kept apart so the hot path, the workers, the recorder and replay share
//! these types without depending on one another.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

use crate::compare::Observation;
use crate::stats::redacted_headers;

/// A live request handed over by the primary path: as received, so the
/// primary does no shadow work beyond copying it.
pub(crate) struct LiveJob {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) primary: Observation,
    /// Index into the launch's routes.
    pub(crate) route: usize,
    pub(crate) request_id: String,
}

/// A queued shadow request, ready to send and compare.
pub(crate) struct Job {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    /// Headers to send to the shadow (stripped, replaced, marked).
    pub(crate) headers: HeaderMap,
    /// The original request headers, redacted, for examples and recordings.
    pub(crate) original_headers: OriginalHeaders,
    pub(crate) body: Bytes,
    pub(crate) primary: Observation,
    pub(crate) endpoint: String,
    pub(crate) request_id: String,
}

/// The client's request headers as the example and the recording show them.
pub(crate) enum OriginalHeaders {
    /// As received; redacted only when shown (most samples never are).
    Raw(HeaderMap),
    /// Already redacted (a replayed recording).
    Redacted(BTreeMap<String, String>),
}

impl OriginalHeaders {
    pub(crate) fn redacted(&self, strip: &[String]) -> BTreeMap<String, String> {
        match self {
            Self::Raw(h) => redacted_headers(h, strip),
            Self::Redacted(m) => m.clone(),
        }
    }
}
