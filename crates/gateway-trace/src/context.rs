//! W3C trace context (`traceparent`) for one hop: continued from the
//! caller or started here, with the sampled flag that decides whether the
//! hop records spans.

use http::header::{HeaderMap, HeaderName, HeaderValue};
#[cfg(feature = "export")]
use opentelemetry::trace::{SpanId, TraceId};
use rand::RngCore;

/// W3C trace context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// W3C trace context for this hop.
///
/// The ids are kept as their hex text in fixed arrays: they are made once
/// per request and read for the `traceparent` header and the access log,
/// so there is nothing to gain from heap strings. Spans, recorded only for
/// sampled requests, convert them to OpenTelemetry's binary ids.
#[derive(Debug, Clone)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    trace_id: [u8; 32],
    /// This hop's span id (16 hex digits), sent upstream as the parent.
    span_id: [u8; 16],
    /// The caller's span id, if the request carried one.
    parent_id: Option<[u8; 16]>,
    /// Two lowercase hex digits.
    flags: [u8; 2],
}

impl TraceContext {
    /// Continues the caller's trace, or starts one when the header is
    /// absent or malformed (as the W3C spec requires). A new trace is
    /// flagged sampled until a tracer decides otherwise
    /// ([`TraceContext::set_sampled`]).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        // One draw for the span id and, if needed, a new trace id.
        let mut random = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut random);
        let mut span_id = [0u8; 16];
        hex_into(&random[..8], &mut span_id);
        if let Some((trace_id, parent, flags)) = headers
            .get(TRACEPARENT)
            .and_then(|v| parse_traceparent(v.as_bytes()))
        {
            return Self {
                trace_id,
                span_id,
                parent_id: Some(parent),
                flags,
            };
        }
        let mut trace_id = [0u8; 32];
        hex_into(&random[8..], &mut trace_id);
        Self {
            trace_id,
            span_id,
            parent_id: None,
            flags: *b"01",
        }
    }

    /// The trace id: 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        hex_str(&self.trace_id)
    }

    /// This hop's span id (16 hex digits), sent upstream as the parent.
    pub fn span_id(&self) -> &str {
        hex_str(&self.span_id)
    }

    /// The caller's span id, if the request carried one.
    pub fn parent_id(&self) -> Option<&str> {
        self.parent_id.as_ref().map(|p| hex_str(p))
    }

    /// Whether the trace is sampled (the low bit of the flags).
    pub fn sampled(&self) -> bool {
        // The second hex digit holds the low four bits.
        hex_value(self.flags[1]) & 1 == 1
    }

    /// Sets or clears the sampled flag, keeping the other flags.
    pub fn set_sampled(&mut self, sampled: bool) {
        let low = hex_value(self.flags[1]) & !1 | u8::from(sampled);
        self.flags[1] = DIGITS[usize::from(low)];
    }

    /// The `traceparent` value to send upstream: this hop's span as the
    /// parent.
    pub fn header_value(&self) -> HeaderValue {
        self.header_value_for(&self.span_id)
    }

    #[cfg(feature = "export")]
    /// The `traceparent` value naming `span` (a span of this hop, such as
    /// one upstream attempt) as the parent.
    pub fn child_header_value(&self, span: SpanId) -> HeaderValue {
        let mut hex = [0u8; 16];
        hex_into(&span.to_bytes(), &mut hex);
        self.header_value_for(&hex)
    }

    fn header_value_for(&self, span_id: &[u8; 16]) -> HeaderValue {
        // `00-` + 32 + `-` + 16 + `-` + 2 = 55 bytes, built on the stack.
        let mut buf = [0u8; 55];
        buf[..3].copy_from_slice(b"00-");
        buf[3..35].copy_from_slice(&self.trace_id);
        buf[35] = b'-';
        buf[36..52].copy_from_slice(span_id);
        buf[52] = b'-';
        buf[53..].copy_from_slice(&self.flags);
        HeaderValue::from_bytes(&buf).expect("hex is a valid header value")
    }

    #[cfg(feature = "export")]
    /// The trace id as OpenTelemetry's binary id.
    pub fn otel_trace_id(&self) -> TraceId {
        TraceId::from_bytes(unhex(&self.trace_id))
    }

    #[cfg(feature = "export")]
    /// This hop's span id as OpenTelemetry's binary id.
    pub fn otel_span_id(&self) -> SpanId {
        SpanId::from_bytes(unhex(&self.span_id))
    }

    #[cfg(feature = "export")]
    /// The caller's span id as OpenTelemetry's binary id.
    pub fn otel_parent_id(&self) -> Option<SpanId> {
        self.parent_id
            .as_ref()
            .map(|p| SpanId::from_bytes(unhex(p)))
    }
}

/// `version-traceid-parentid-flags`, validated without allocating.
fn parse_traceparent(v: &[u8]) -> Option<([u8; 32], [u8; 16], [u8; 2])> {
    let v = v.trim_ascii();
    let mut parts = v.split(|&b| b == b'-');
    let (Some(version), Some(trace), Some(parent), Some(flags), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let is_hex = |s: &[u8], n: usize| {
        s.len() == n
            && s.iter()
                .all(|&b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !is_hex(version, 2)
        || version == b"ff"
        || !is_hex(trace, 32)
        || !is_hex(parent, 16)
        || !is_hex(flags, 2)
    {
        return None;
    }
    if trace.iter().all(|&b| b == b'0') || parent.iter().all(|&b| b == b'0') {
        return None;
    }
    Some((
        trace.try_into().ok()?,
        parent.try_into().ok()?,
        flags.try_into().ok()?,
    ))
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex into `out` (twice as long).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// The value of one lowercase hex digit (validated on the way in).
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        _ => digit - b'a' + 10,
    }
}

#[cfg(feature = "export")]
/// Hex text back to the bytes it spells (`N` bytes from `2N` digits).
fn unhex<const N: usize>(hex: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = hex_value(pair[0]) << 4 | hex_value(pair[1]);
    }
    out
}

/// Hex digits as text; they are ASCII by construction.
fn hex_str(hex: &[u8]) -> &str {
    std::str::from_utf8(hex).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_continued_or_created() {
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let t = TraceContext::from_headers(&h);
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id(), Some("00f067aa0ba902b7"));
        assert_eq!(t.span_id().len(), 16);
        let v = t.header_value();
        let v = v.to_str().unwrap();
        assert!(v.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(v.ends_with("-01") && v.len() == 55, "{v}");
        assert!(
            !v.contains("00f067aa0ba902b7"),
            "a new span id is sent upstream"
        );

        h.insert(TRACEPARENT, HeaderValue::from_static("garbage"));
        let t = TraceContext::from_headers(&h);
        assert_eq!(t.trace_id().len(), 32);
        assert!(t.parent_id().is_none());

        // Upper-case hex, an all-zero trace id, version ff and extra parts
        // are all malformed.
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            h.insert(TRACEPARENT, HeaderValue::from_static(bad));
            let t = TraceContext::from_headers(&h);
            assert!(t.parent_id().is_none(), "{bad}");
            assert_ne!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
        }
    }

    #[test]
    fn the_sampled_flag_is_read_and_set_without_touching_other_flags() {
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02"),
        );
        let mut t = TraceContext::from_headers(&h);
        assert!(!t.sampled());
        t.set_sampled(true);
        assert!(t.sampled());
        assert!(t.header_value().to_str().unwrap().ends_with("-03"));
        t.set_sampled(false);
        assert!(t.header_value().to_str().unwrap().ends_with("-02"));
    }

    #[cfg(feature = "export")]
    #[test]
    fn binary_ids_match_the_hex_ones() {
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let t = TraceContext::from_headers(&h);
        assert_eq!(
            t.otel_trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(
            t.otel_parent_id(),
            Some(SpanId::from_hex("00f067aa0ba902b7").unwrap())
        );
        assert_eq!(t.otel_span_id(), SpanId::from_hex(t.span_id()).unwrap());
        let child = SpanId::from_hex("0123456789abcdef").unwrap();
        assert_eq!(
            t.child_header_value(child),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0123456789abcdef-01"
        );
    }
}
