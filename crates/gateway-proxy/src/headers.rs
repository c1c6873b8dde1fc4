//! Header handling on the way through: hop-by-hop removal (RFC 9110 7.6.1),
//! `X-Forwarded-*`, `X-Request-Id`, W3C `traceparent`, and path
//! normalisation.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use rand::RngCore;

/// Headers that describe one connection and never cross a proxy.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// `X-Request-Id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// W3C trace context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether the request asks to switch protocols (WebSocket and friends).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
///
/// For an upgrade, `Upgrade` and `Connection: upgrade` are kept: the
/// handshake must reach the upstream. `TE: trailers` is kept because gRPC
/// needs it end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        if keep_upgrade && name == header::UPGRADE {
            continue;
        }
        headers.remove(&name);
    }
    let te_trailers = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in HOP_BY_HOP.iter() {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Adds `X-Forwarded-For` (appending the peer), `-Proto` and `-Host`.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    proto: &'static str,
    host: Option<&str>,
) {
    let xff = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {peer}"),
        _ => peer.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(X_FORWARDED_HOST, v);
    }
}

/// The client address to log: the first `X-Forwarded-For` entry when the
/// gateway is told to trust it, else the peer.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trust_forwarded: bool) -> IpAddr {
    if trust_forwarded {
        if let Some(ip) = headers
            .get(X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
        {
            return ip;
        }
    }
    peer
}

/// The request id: the client's if it is sane, else a new UUIDv7.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    let id = uuid::Uuid::now_v7();
    HeaderValue::from_str(&id.to_string()).expect("uuid is a valid header value")
}

/// W3C trace context for this hop.
#[derive(Debug, Clone)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// Our span id (16 hex digits), sent upstream as the parent.
    pub span_id: String,
    /// The caller's span id, if the request carried one.
    pub parent_id: Option<String>,
    flags: String,
}

impl TraceContext {
    /// Continues the caller's trace, or starts one when the header is
    /// absent or malformed (as the W3C spec requires).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut rng = rand::thread_rng();
        let mut span = [0u8; 8];
        rng.fill_bytes(&mut span);
        let span_id = hex(&span);
        if let Some((trace_id, parent, flags)) = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent)
        {
            return Self {
                trace_id,
                span_id,
                parent_id: Some(parent),
                flags,
            };
        }
        let mut trace = [0u8; 16];
        rng.fill_bytes(&mut trace);
        Self {
            trace_id: hex(&trace),
            span_id,
            parent_id: None,
            flags: "01".into(),
        }
    }

    /// The `traceparent` value to send upstream.
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "00-{}-{}-{}",
            self.trace_id, self.span_id, self.flags
        ))
        .expect("hex is a valid header value")
    }
}

fn parse_traceparent(v: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = v.trim().split('-').collect();
    let [version, trace, parent, flags] = parts.as_slice() else {
        return None;
    };
    let is_hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !is_hex(version, 2)
        || *version == "ff"
        || !is_hex(trace, 32)
        || !is_hex(parent, 16)
        || !is_hex(flags, 2)
    {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    Some((trace.to_string(), parent.to_string(), flags.to_string()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Removes `.` and `..` segments (RFC 3986 5.2.4), also when written as
/// `%2e`, so `/public/../admin` cannot reach a route it does not match.
/// Returns `None` for paths that climb above the root.
pub fn normalize_path(path: &str) -> Option<std::borrow::Cow<'_, str>> {
    let is_dot = |s: &str| s == "." || s.eq_ignore_ascii_case("%2e");
    let is_dotdot = |s: &str| {
        matches!(s.len(), 2 | 4 | 6) && s.to_ascii_lowercase().replace("%2e", ".") == ".."
    };
    if !path.split('/').any(|s| is_dot(s) || is_dotdot(s)) {
        return Some(std::borrow::Cow::Borrowed(path));
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        if is_dot(seg) {
            if i == last {
                out.push("");
            }
        } else if is_dotdot(seg) {
            out.pop()?;
            if i == last {
                out.push("");
            }
        } else {
            out.push(seg);
        }
    }
    Some(std::borrow::Cow::Owned(format!("/{}", out.join("/"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-keep"]);
    }

    #[test]
    fn keeps_upgrade_handshake_and_te_trailers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::TE], "trailers");
    }

    #[test]
    fn forwarded_for_appends_peer() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        add_forwarded(
            &mut h,
            "10.0.0.1".parse().unwrap(),
            "https",
            Some("api.example.com"),
        );
        assert_eq!(h[X_FORWARDED_FOR], "203.0.113.9, 10.0.0.1");
        assert_eq!(h[X_FORWARDED_PROTO], "https");
        assert_eq!(h[X_FORWARDED_HOST], "api.example.com");
        let peer = "10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(&h, peer, true).to_string(), "203.0.113.9");
        assert_eq!(client_ip(&h, peer, false), peer);
    }

    #[test]
    fn traceparent_is_continued_or_created() {
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let t = TraceContext::from_headers(&h);
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        let v = t.header_value();
        let v = v.to_str().unwrap();
        assert!(v.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(
            !v.contains("00f067aa0ba902b7"),
            "a new span id is sent upstream"
        );

        h.insert(TRACEPARENT, HeaderValue::from_static("garbage"));
        let t = TraceContext::from_headers(&h);
        assert_eq!(t.trace_id.len(), 32);
        assert!(t.parent_id.is_none());
    }

    #[test]
    fn request_id_passes_through_or_is_generated() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(X_REQUEST_ID, HeaderValue::from_static(""));
        assert_eq!(request_id(&h).len(), 36);
    }

    #[test]
    fn dot_segments_are_removed() {
        for (input, want) in [
            ("/a/b", Some("/a/b")),
            ("/public/../admin", Some("/admin")),
            ("/public/%2E%2e/admin", Some("/admin")),
            ("/a/./b/.", Some("/a/b/")),
            ("/a/..", Some("/")),
            ("/..", None),
        ] {
            assert_eq!(normalize_path(input).as_deref(), want, "{input}");
        }
    }
}
