//! Endpoint templates: grouping requests by route, method and normalised path.
//!
//! Statistics are kept per endpoint, so `/v1/orders/12345` and
//! `/v1/orders/67890` must land in one bucket: path segments that look like
//! identifiers (numbers, UUIDs, dates, long hex or mixed letter-digit tokens)
//! become `{id}`. The query string is never part of the template.

/// Template for an identifier segment.
pub const ID: &str = "{id}";

/// `"{route} {METHOD} {template}"`, e.g. `rates GET /v1/rates/{id}`.
pub fn endpoint_key(route: &str, method: &str, path: &str) -> String {
    format!("{route} {method} {}", template(path))
}

/// The normalised path template of `path` (query string removed).
pub fn template(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() || path == "/" {
        return "/".into();
    }
    let mut out = String::with_capacity(path.len() + 1);
    // Request targets that are not origin-form ("*", odd input) still get a
    // template starting with '/'.
    let rest = path.strip_prefix('/').unwrap_or(path);
    for seg in rest.split('/') {
        out.push('/');
        if is_identifier(seg) {
            out.push_str(ID);
        } else {
            out.push_str(seg);
        }
    }
    out
}

fn is_identifier(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    let b = seg.as_bytes();
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(seg) || is_date(seg) {
        return true;
    }
    if b.len() >= 16 && b.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    // Opaque tokens (ULIDs, base62 ids, "ord_8fK2x9Q1"): long, and mixing
    // digits with letters. Short words like "v1" or "utf8" stay.
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    b.len() >= 8
        && digits >= 2
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_become_id() {
        for (path, want) in [
            ("/", "/"),
            ("", "/"),
            ("/v1/rates", "/v1/rates"),
            ("/v1/orders/12345", "/v1/orders/{id}"),
            ("/v1/orders/12345/items/7?x=1", "/v1/orders/{id}/items/{id}"),
            ("/u/3f2b8c1e-9d4a-4b7e-8a6f-0c1d2e3f4a5b", "/u/{id}"),
            ("/v1/rates/2026-01-31", "/v1/rates/{id}"),
            ("/blob/deadbeefdeadbeef00", "/blob/{id}"),
            ("/o/ord_8fK2x9Q1", "/o/{id}"),
            ("/v2/utf8/latest", "/v2/utf8/latest"),
            ("/a//b/", "/a//b/"),
            ("*", "/*"),
        ] {
            assert_eq!(template(path), want, "{path}");
        }
        assert_eq!(
            endpoint_key("rates", "GET", "/v1/rates/2026-01-31?base=EUR"),
            "rates GET /v1/rates/{id}"
        );
    }
}
