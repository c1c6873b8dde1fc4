//! `Vary` parsing and the secondary key it selects.
//!
//! Input: `Vary` field lines, a blank line, then request header lines as
//! `name: value`. Properties: parsing never panics; the names are sorted,
//! unique and lowercase; one comma-joined `Vary` line means the same as
//! several; the secondary key of a request does not depend on the order of
//! its unrelated headers, and two requests differing in a varied header's
//! presence get different keys.
#![no_main]

use gateway_cache::key::{parse_vary, secondary_key};
use http::{header, HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (vary_part, request_part) = text.split_once("\n\n").unwrap_or((&text, ""));

    let vary_lines: Vec<HeaderValue> = vary_part
        .split('\n')
        .filter_map(|l| HeaderValue::from_str(l).ok())
        .collect();
    let mut response = HeaderMap::new();
    for v in &vary_lines {
        response.append(header::VARY, v.clone());
    }
    let parsed = parse_vary(&response);

    if !vary_lines.is_empty() {
        let texts: Vec<&str> = vary_lines.iter().filter_map(|v| v.to_str().ok()).collect();
        if texts.len() == vary_lines.len() {
            if let Ok(joined) = HeaderValue::from_str(&texts.join(", ")) {
                let mut one = HeaderMap::new();
                one.insert(header::VARY, joined);
                assert_eq!(parse_vary(&one), parsed, "lines {texts:?}");
            }
        }
    }

    let Some(names) = parsed else { return };
    for w in names.windows(2) {
        assert!(
            w[0].as_str() < w[1].as_str(),
            "not sorted and unique: {names:?}"
        );
    }

    let mut request = HeaderMap::new();
    let mut reversed = HeaderMap::new();
    let pairs: Vec<(HeaderName, HeaderValue)> = request_part
        .split('\n')
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((
                HeaderName::from_bytes(n.trim().as_bytes()).ok()?,
                HeaderValue::from_str(v.trim()).ok()?,
            ))
        })
        .collect();
    for (n, v) in &pairs {
        request.append(n.clone(), v.clone());
    }
    // The same lines per name in the same order, the names in reverse.
    for (n, _) in pairs.iter().rev() {
        if !reversed.contains_key(n) {
            for value in request.get_all(n) {
                reversed.append(n.clone(), value.clone());
            }
        }
    }
    let key = secondary_key(&request, &names);
    assert_eq!(key, secondary_key(&reversed, &names));

    if let Some(first) = names.first() {
        let mut without = request.clone();
        without.remove(first);
        let mut with_empty = without.clone();
        with_empty.insert(first.clone(), HeaderValue::from_static(""));
        assert_ne!(
            secondary_key(&without, &names),
            secondary_key(&with_empty, &names),
            "an absent header must differ from an empty one"
        );
    }
});
