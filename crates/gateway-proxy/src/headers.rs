//! Header handling on the way through: hop-by-hop removal (RFC 9110 7.6.1),
//! `X-Forwarded-*`, `X-Request-Id`, W3C `traceparent`, and path
//! normalisation.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection and never cross a proxy. A
/// `static`, not a `const`: a `const` array is built and dropped again at
/// every use. [`hop_by_hop_index`] gives each one's place.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Where `name` is in [`HOP_BY_HOP`]. Matched on the name's text (for a
/// standard name a table lookup): a length check per candidate, where
/// comparing `HeaderName`s one by one costs several times more on every
/// field of every request and response.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => 5,
        "trailer" => 6,
        "transfer-encoding" => 7,
        _ => return None,
    })
}

/// `X-Request-Id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// W3C trace context header.
pub use gateway_trace::TRACEPARENT;
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
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
    // Headers named by `Connection`. Names that the scan below removes
    // anyway (`keep-alive`, the usual token) cost no lookup here.
    let mut values = headers.get_all(header::CONNECTION).iter();
    match (values.next(), values.next()) {
        (None, _) => {}
        // The usual case: one `Connection` header. Its value is shared, not
        // copied, and names are removed without building `HeaderName`s.
        (Some(v), None) => {
            let v = v.clone();
            for t in v.to_str().ok().into_iter().flat_map(|v| v.split(',')) {
                let t = t.trim();
                if t.is_empty() || is_listed(t) {
                    continue;
                }
                headers.remove(t);
            }
        }
        (Some(_), Some(_)) => {
            let named: Vec<HeaderName> = connection_tokens(headers)
                .filter(|t| !is_listed(t))
                .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
                .collect();
            for name in named {
                headers.remove(&name);
            }
        }
    }
    // One pass over the names finds the hop-by-hop headers present, so
    // only those are removed (each removal is a hash lookup): a request
    // without any costs no lookup, an upstream response with
    // `Connection: keep-alive` one instead of ten. Bit `i` stands for
    // `HOP_BY_HOP[i]`, bit `UPGRADE_BIT` for `Upgrade`.
    const UPGRADE_BIT: u32 = HOP_BY_HOP.len() as u32;
    let mut present = 0u32;
    let mut te_trailers = false;
    for name in headers.keys() {
        if name == header::UPGRADE {
            if !keep_upgrade {
                present |= 1 << UPGRADE_BIT;
            }
        } else if let Some(i) = hop_by_hop_index(name) {
            if name == header::TE {
                te_trailers = headers
                    .get(header::TE)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
            }
            present |= 1 << i;
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if present & (1 << UPGRADE_BIT) != 0 {
        headers.remove(header::UPGRADE);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Whether `token` names a header [`strip_hop_by_hop`] handles by itself:
/// a hop-by-hop header, or `Upgrade` (removed, or kept for an upgrade).
/// Not `TE`: named in `Connection`, it goes, even as `TE: trailers`.
fn is_listed(token: &str) -> bool {
    token.eq_ignore_ascii_case(header::UPGRADE.as_str())
        || HOP_BY_HOP
            .iter()
            .any(|n| *n != header::TE && token.eq_ignore_ascii_case(n.as_str()))
}

/// Which of its own fields the gateway adds to an upstream request.
///
/// A route whose header rules remove or set one of them would throw the
/// gateway's value away, so that value is never built: the upstream
/// request comes out the same, without the work. Removing the client's
/// copy of the field is still the rule's job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddedFields {
    /// `X-Forwarded-For`, the peer appended.
    pub forwarded_for: bool,
    /// `X-Forwarded-Proto`.
    pub forwarded_proto: bool,
    /// `X-Forwarded-Host`.
    pub forwarded_host: bool,
    /// `X-Request-Id`.
    pub request_id: bool,
    /// `traceparent`.
    pub traceparent: bool,
}

impl AddedFields {
    /// Every field: a route without header rules on them.
    pub const ALL: Self = Self {
        forwarded_for: true,
        forwarded_proto: true,
        forwarded_host: true,
        request_id: true,
        traceparent: true,
    };

    /// Every field but those `replaced` names (a route's `remove` and
    /// `set` rules).
    pub fn except<'a>(replaced: impl IntoIterator<Item = &'a HeaderName>) -> Self {
        let mut fields = Self::ALL;
        for name in replaced {
            if *name == X_FORWARDED_FOR {
                fields.forwarded_for = false;
            } else if *name == X_FORWARDED_PROTO {
                fields.forwarded_proto = false;
            } else if *name == X_FORWARDED_HOST {
                fields.forwarded_host = false;
            } else if *name == X_REQUEST_ID {
                fields.request_id = false;
            } else if *name == TRACEPARENT {
                fields.traceparent = false;
            }
        }
        fields
    }
}

impl Default for AddedFields {
    fn default() -> Self {
        Self::ALL
    }
}

/// Adds `X-Forwarded-For` (appending the peer), `-Proto` and `-Host`.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    proto: &'static str,
    host: Option<&str>,
) {
    let host = host.and_then(|h| HeaderValue::from_str(h).ok());
    add_forwarded_value(
        headers,
        AddedFields::ALL,
        &ip_header_value(peer),
        proto,
        host,
    );
}

/// [`add_forwarded`] with the peer already a header value (made once per
/// client connection by [`ip_header_value`]) and the host too (the
/// client's `Host`, shared rather than copied), for those of the three
/// `fields` names.
pub fn add_forwarded_value(
    headers: &mut HeaderMap,
    fields: AddedFields,
    peer: &HeaderValue,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    if fields.forwarded_for {
        let xff = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.trim().is_empty() => {
                let peer = peer.to_str().unwrap_or_default();
                HeaderValue::from_str(&format!("{prev}, {peer}")).ok()
            }
            _ => Some(peer.clone()),
        };
        if let Some(v) = xff {
            headers.insert(X_FORWARDED_FOR, v);
        }
    }
    if fields.forwarded_proto {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if let (true, Some(v)) = (fields.forwarded_host, host) {
        headers.insert(X_FORWARDED_HOST, v);
    }
}

/// An IP address as a header value, formatted on the stack.
pub fn ip_header_value(ip: IpAddr) -> HeaderValue {
    use std::io::Write as _;
    // The longest IPv6 text form is 45 bytes.
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let n = cursor.position() as usize;
    HeaderValue::from_bytes(&buf[..n]).expect("an IP address is a valid header value")
}

/// The request id: the client's if it is sane, else a new UUIDv7.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    // Each thread keeps its own v7 context: `Uuid::now_v7` shares one
    // behind a mutex, which every request of every worker would take.
    // Ids stay unique (random past the timestamp) and ordered per thread.
    thread_local! {
        static V7: uuid::ContextV7 = const { uuid::ContextV7::new() };
    }
    let context = uuid::timestamp::context::ThreadLocalContext::new(&V7);
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v7(uuid::Timestamp::now(context))
        .hyphenated()
        .encode_lower(&mut buf);
    HeaderValue::from_str(id).expect("uuid is a valid header value")
}

/// Removes `.` and `..` segments (RFC 3986 5.2.4), also when written as
/// `%2e`, so `/public/../admin` cannot reach a route it does not match.
/// Returns `None` for paths that climb above the root.
pub fn normalize_path(path: &str) -> Option<std::borrow::Cow<'_, str>> {
    let is_dot = |s: &str| s == "." || s.eq_ignore_ascii_case("%2e");
    let is_dotdot = |s: &str| {
        // Two dots, each written `.` or `%2e` (any case).
        let mut rest = s.as_bytes();
        for _ in 0..2 {
            rest = match rest {
                [b'.', tail @ ..] => tail,
                [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
                _ => return false,
            };
        }
        rest.is_empty()
    };
    // A dot segment needs a `.` or a `%`: most paths have neither, and
    // one scan for two bytes settles them.
    if !path.bytes().any(|b| b == b'.' || b == b'%')
        || !path.split('/').any(|s| is_dot(s) || is_dotdot(s))
    {
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

        // Several `Connection` headers, names in any case.
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("X-One"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("x-two, keep-alive"),
        );
        h.insert("x-one", HeaderValue::from_static("1"));
        h.insert("x-two", HeaderValue::from_static("2"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-keep"]);
    }

    #[test]
    fn te_named_in_connection_goes_even_as_trailers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("TE"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty(), "{h:?}");
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
    fn generated_request_ids_are_v7_unique_across_threads_and_ordered_on_one() {
        let ids = |n| {
            (0..n)
                .map(|_| {
                    let id = request_id(&HeaderMap::new());
                    uuid::Uuid::parse_str(id.to_str().unwrap()).unwrap()
                })
                .collect::<Vec<_>>()
        };
        let mut all: Vec<_> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4).map(|_| s.spawn(|| ids(2000))).collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect()
        });
        for one_thread in all.chunks(2000) {
            assert!(one_thread.windows(2).all(|w| w[0] < w[1]));
            assert!(one_thread.iter().all(|id| id.get_version_num() == 7));
        }
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 8000);
    }

    #[test]
    fn every_hop_by_hop_name_is_found_at_its_place_and_no_other_name_is() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        for other in ["upgrade", "host", "content-length", "x-keep-alive", "t"] {
            let name = HeaderName::from_static(other);
            assert_eq!(hop_by_hop_index(&name), None, "{other}");
        }
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
            ("/1k", Some("/1k")),
            ("/a/.../b", Some("/a/.../b")),
            ("/a/%2e./b", Some("/b")),
            ("/a/.%2E/b/%2e", Some("/b/")),
        ] {
            assert_eq!(normalize_path(input).as_deref(), want, "{input}");
        }
    }
}
