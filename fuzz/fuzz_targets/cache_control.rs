//! `Cache-Control` (and `Pragma`, `Expires`) parsing: one field line per
//! input line, as an origin or a client would send them.
//!
//! Properties: parsing never panics; delta-seconds never exceed 2^31 (RFC
//! 9111 §1.2.2); several field lines mean the same as one line joining them
//! with commas (RFC 9110 §5.3) whenever each line's quotes are balanced.
#![no_main]

use gateway_cache::directives::{Expires, RequestDirectives, ResponseDirectives, Seconds};
use http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fn map(name: header::HeaderName, lines: &[HeaderValue]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in lines {
        h.append(name.clone(), v.clone());
    }
    h
}

fn bounded(s: Option<Seconds>) {
    if let Some(Seconds::Valid(n)) = s {
        assert!(n <= 1 << 31, "delta-seconds {n} above 2^31");
    }
}

fuzz_target!(|data: &[u8]| {
    let lines: Vec<HeaderValue> = data
        .split(|b| *b == b'\n')
        .filter_map(|l| HeaderValue::from_bytes(l).ok())
        .collect();

    let h = map(header::CACHE_CONTROL, &lines);
    let res = ResponseDirectives::from_headers(&h);
    let req = RequestDirectives::from_headers(&h);
    for s in [
        res.max_age,
        res.s_maxage,
        res.stale_while_revalidate,
        res.stale_if_error,
    ] {
        bounded(s);
    }
    bounded(req.max_age);
    bounded(req.min_fresh);
    if let Some(Some(n)) = req.max_stale {
        assert!(n <= 1 << 31);
    }
    let _ = res.forbids_stale();
    let _ = Expires::from_headers(&map(header::EXPIRES, &lines));
    let _ = RequestDirectives::from_headers(&map(header::PRAGMA, &lines));

    // Joining field lines with commas must not change their meaning.
    let texts: Option<Vec<&str>> = lines.iter().map(|v| v.to_str().ok()).collect();
    if let Some(texts) = texts {
        if !texts.is_empty() && texts.iter().all(|t| t.matches('"').count() % 2 == 0) {
            if let Ok(joined) = HeaderValue::from_str(&texts.join(", ")) {
                let one = map(header::CACHE_CONTROL, &[joined]);
                assert_eq!(
                    ResponseDirectives::from_headers(&one),
                    res,
                    "lines {texts:?}"
                );
                assert_eq!(
                    RequestDirectives::from_headers(&one),
                    req,
                    "lines {texts:?}"
                );
            }
        }
    }
});
