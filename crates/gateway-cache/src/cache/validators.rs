//! Conditional requests (RFC 9111 §4.3): stripping the client's
//! conditionals before a fetch, building the revalidation request from the
//! stored validators, and matching the client's own validators against a
//! stored response.
//!
//! Pure functions over headers, shared by misses, revalidation, background
//! refresh and stored responses.

use gateway_core::{body, Body};
use http::{header, request, HeaderMap, HeaderName, Method, Request};

use crate::directives::header_date;
use crate::storage::CachedResponse;

static CONDITIONALS: [HeaderName; 5] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
];

pub(crate) fn strip_conditionals(headers: &mut HeaderMap) {
    for h in &CONDITIONALS {
        headers.remove(h);
    }
}

/// The origin request revalidating `obj`: the client's request with the
/// stored validators instead of the client's own (RFC 9111 §4.3.1).
pub(crate) fn conditional_request(parts: &request::Parts, obj: &CachedResponse) -> Request<Body> {
    let mut p = parts.clone();
    p.method = Method::GET;
    strip_conditionals(&mut p.headers);
    if let Some(etag) = obj.headers.get(header::ETAG) {
        p.headers.insert(header::IF_NONE_MATCH, etag.clone());
    }
    if let Some(lm) = obj.headers.get(header::LAST_MODIFIED) {
        p.headers.insert(header::IF_MODIFIED_SINCE, lm.clone());
    }
    Request::from_parts(p, body::empty())
}

/// Whether the client's own validators match the stored response, so it
/// can be answered 304 (RFC 9111 §4.3.2, RFC 9110 §13.1.2-3).
pub(crate) fn client_validator_matches(req: &HeaderMap, obj: &CachedResponse) -> bool {
    if req.contains_key(header::IF_NONE_MATCH) {
        let Some(etag) = obj.headers.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
        let stored = weak(etag);
        return req
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim() == "*" || weak(t) == stored);
    }
    if let Some(since) = header_date(req, &header::IF_MODIFIED_SINCE) {
        let lm = header_date(&obj.headers, &header::LAST_MODIFIED)
            .or_else(|| header_date(&obj.headers, &header::DATE));
        return lm.is_some_and(|lm| lm <= since);
    }
    false
}
