//! Cache key normalisation (the URL layer of a key).
//!
//! Input lines: a request target, a `Host` value (used when the target has
//! no authority, as the gateway does), and comma-separated ignored query
//! parameter globs. Properties: nothing panics; a key is idempotent (the
//! key, given back as a purge URL, is the same key), and a purge of the URL
//! the client requested reaches the key its request was stored under.
#![no_main]

use gateway_cache::key::{glob_match, normalize_absolute, normalize_prefix, normalize_url};
use http::uri::{Authority, Uri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or("");
    let host = lines.next().unwrap_or("");
    let ignore: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split(',')
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    let ignore: &[&[String]] = &[&ignore];

    // Purge input is whatever an operator typed: it must not panic.
    let _ = normalize_absolute(target, ignore);
    let _ = normalize_prefix(target);
    let _ = glob_match(host, target);

    // The request path: what the gateway parsed off the wire.
    let Ok(uri) = target.parse::<Uri>() else {
        return;
    };
    let authority = match uri.authority() {
        Some(a) => a.clone(),
        None => match host.parse::<Authority>() {
            Ok(a) => a,
            Err(_) => return,
        },
    };
    let scheme = uri.scheme_str().unwrap_or("https");
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let Ok(key) = normalize_url(scheme, authority.as_str(), pq, ignore) else {
        return;
    };
    assert!(
        key.starts_with("http://") || key.starts_with("https://"),
        "key {key:?}"
    );
    assert!(
        !key.contains('#') && !key.bytes().any(|b| b.is_ascii_control() || b == b' '),
        "key {key:?} has a fragment, a space or a control character"
    );
    assert_eq!(
        normalize_absolute(&key, ignore).as_deref(),
        Ok(key.as_str()),
        "normalising the key {key:?} again changed it (from {target:?}, host {host:?})"
    );
    if uri.scheme().is_some() {
        assert_eq!(
            normalize_absolute(&uri.to_string(), ignore).as_deref(),
            Ok(key.as_str()),
            "a purge of {uri} misses the key it is stored under"
        );
    }
    if let Ok(prefix) = normalize_prefix(&key) {
        assert!(
            key.starts_with(&prefix),
            "the key {key:?} is not under its own prefix {prefix:?}"
        );
    }
});
