//! Cache keys: the normalised URL, per-route extra parts, and the `Vary`
//! secondary key.
//!
//! A key has three layers, each with its own reason (see `docs/cache.md`):
//!
//! 1. **URL** — scheme and host lowercased, default port dropped, path and
//!    query percent-encoding normalised (unreserved characters decoded, hex
//!    digits uppercased), query parameters sorted and ignored ones (`utm_*`)
//!    removed. Requests that mean the same resource share an entry instead
//!    of fragmenting the cache. Purge by URL and by prefix work on this
//!    layer, so one purge reaches every variant and every tenant.
//! 2. **Extra** — per-route parts the origin does not announce with `Vary`:
//!    chosen request header values and the authenticated consumer id, so
//!    per-tenant responses never cross tenants.
//! 3. **Secondary** — the normalised values of the request headers the
//!    stored response's `Vary` names, selecting one of several variants.

use std::fmt::Write as _;
use std::sync::Arc;

use http::{HeaderMap, HeaderName};

/// Identity of one stored variant: URL, extra parts, and secondary key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VariantKey {
    /// The normalised URL (layer 1).
    pub url: Arc<str>,
    /// Route-specific extra parts (layer 2); empty when none.
    pub extra: Arc<str>,
    /// The `Vary` secondary key (layer 3); empty when the response has no `Vary`.
    pub secondary: Arc<str>,
}

/// The primary key of a request: URL plus extra parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrimaryKey {
    /// The normalised URL.
    pub url: Arc<str>,
    /// Route-specific extra parts.
    pub extra: Arc<str>,
}

impl PrimaryKey {
    /// The variant of this primary key selected by `secondary`.
    pub fn variant(&self, secondary: impl Into<Arc<str>>) -> VariantKey {
        VariantKey {
            url: self.url.clone(),
            extra: self.extra.clone(),
            secondary: secondary.into(),
        }
    }
}

/// Why a URL could not be turned into a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The URL has no scheme and host and none were supplied.
    #[error("`{0}` is not an absolute http(s) URL")]
    NotAbsolute(String),
    /// Nothing of the authority is left once userinfo, the default port and
    /// trailing dots are taken off (`.`, `u@`, `:443`).
    #[error("`{0}` names no host")]
    NoHost(String),
    /// The scheme is neither http nor https.
    #[error("unsupported scheme `{0}` (only http and https are cached)")]
    Scheme(String),
    /// What follows the host's last `:` is not a port number.
    #[error("the port of `{0}` is not a number")]
    BadPort(String),
}

/// Normalises `scheme://authority/path?query` into the URL layer of a key,
/// leaving out query parameters whose decoded name matches `ignore` globs.
pub fn normalize_url(
    scheme: &str,
    authority: &str,
    path_and_query: &str,
    ignore: &[&[String]],
) -> Result<String, KeyError> {
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return Err(KeyError::Scheme(scheme)),
    };
    // Userinfo never identifies the resource; drop it.
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = host_port.to_ascii_lowercase();
    // `[::1]` has colons inside brackets: only a colon after them starts a port.
    let (name, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p),
        _ => (host_port.as_str(), ""),
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KeyError::BadPort(authority.to_string()));
    }
    let name = name.trim_end_matches('.');
    if name.is_empty() {
        // Such a key could not be written as a URL again, so no purge
        // could reach it; the request is not cached instead.
        return Err(KeyError::NoHost(authority.to_string()));
    }
    let host = if port.is_empty() || port == default_port {
        name.to_string()
    } else {
        format!("{name}:{port}")
    };
    let host = host.as_str();
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    // Fragments never reach a server, but a purge URL may carry one.
    let path = path.split('#').next().unwrap_or("");
    let query = query.map(|q| q.split('#').next().unwrap_or(""));

    let mut out = String::with_capacity(scheme.len() + host.len() + path_and_query.len() + 4);
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(host);
    if path.is_empty() {
        out.push('/');
    } else {
        if !path.starts_with('/') {
            out.push('/');
        }
        push_normalized(&mut out, path, false);
    }
    if let Some(q) = query {
        let mut params: Vec<(String, String)> = Vec::new();
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (pair, None),
            };
            let decoded = percent_encoding::percent_decode_str(&name.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            if ignore
                .iter()
                .flat_map(|g| g.iter())
                .any(|g| glob_match(g, &decoded))
            {
                continue;
            }
            let mut n = String::new();
            push_normalized(&mut n, name, true);
            let v = value.map(|v| {
                let mut s = String::from("=");
                push_normalized(&mut s, v, true);
                s
            });
            params.push((n, v.unwrap_or_default()));
        }
        // Stable sort by name only would keep `a=2&a=1` distinct from
        // `a=1&a=2`; sorting whole pairs treats repeated parameters as a set,
        // which is what nearly every API framework does with them.
        params.sort();
        if !params.is_empty() {
            out.push('?');
            for (i, (n, v)) in params.iter().enumerate() {
                if i > 0 {
                    out.push('&');
                }
                out.push_str(n);
                out.push_str(v);
            }
        }
    }
    Ok(out)
}

/// Normalises a full absolute URL as given to a purge (`https://h/p?q`).
pub fn normalize_absolute(url: &str, ignore: &[&[String]]) -> Result<String, KeyError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| KeyError::NotAbsolute(url.to_string()))?;
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, pq) = rest.split_at(split);
    if authority.is_empty() {
        return Err(KeyError::NotAbsolute(url.to_string()));
    }
    normalize_url(scheme, authority, pq, ignore)
}

/// Normalises a URL prefix for purge-by-prefix: like a URL, but the path is
/// kept as typed (no `/` added) and the query is not reordered.
pub fn normalize_prefix(prefix: &str) -> Result<String, KeyError> {
    let (scheme, rest) = prefix
        .split_once("://")
        .ok_or_else(|| KeyError::NotAbsolute(prefix.to_string()))?;
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, pq) = rest.split_at(split);
    if authority.is_empty() {
        return Err(KeyError::NotAbsolute(prefix.to_string()));
    }
    if pq.is_empty() {
        // `https://h` must not match `https://host2/`.
        return normalize_url(scheme, authority, "/", &[]);
    }
    let head = normalize_url(scheme, authority, "", &[])?;
    let head = head.trim_end_matches('/');
    let mut out = head.to_string();
    push_normalized(&mut out, pq, false);
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `s` with percent-encoding normalised: escapes of unreserved
/// characters decoded, hex digits uppercased, bytes that must be escaped
/// escaped. In query components `+` stays as typed (it may mean space or
/// plus; only the origin knows).
fn push_normalized(out: &mut String, s: &str, query: bool) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let (h, l) = (b.get(i + 1).copied(), b.get(i + 2).copied());
            if let (Some(h), Some(l)) = (h, l) {
                if let (Some(hv), Some(lv)) = (hex_val(h), hex_val(l)) {
                    let byte = hv << 4 | lv;
                    if is_unreserved(byte) {
                        out.push(byte as char);
                    } else {
                        out.push('%');
                        out.push(HEX[hv as usize] as char);
                        out.push(HEX[lv as usize] as char);
                    }
                    i += 3;
                    continue;
                }
            }
            // A stray `%` is escaped so it cannot collide with an escape.
            out.push_str("%25");
            i += 1;
            continue;
        }
        if is_unreserved(c)
            || matches!(
                c,
                b'/' | b':' | b'@' | b'!' | b'$' | b'\'' | b'(' | b')' | b'*' | b',' | b';'
            )
            || (query && matches!(c, b'+' | b'?' | b'='))
            || (!query && matches!(c, b'+' | b'=' | b'&' | b'?'))
        {
            out.push(c as char);
        } else {
            out.push('%');
            out.push(HEX[(c >> 4) as usize] as char);
            out.push(HEX[(c & 15) as usize] as char);
        }
        i += 1;
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// Case-insensitive glob match supporting `*` (any run) and `?` (one char).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let n: Vec<char> = name.to_lowercase().chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Builds the extra key layer from chosen request headers and the consumer.
pub fn extra_key(headers: &HeaderMap, key_headers: &[String], consumer: Option<&str>) -> String {
    let mut out = String::new();
    for name in key_headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        let _ = write!(out, "h:{}=", name.as_str());
        match header_value(headers, &name) {
            Some(v) => out.push_str(&v),
            None => out.push('\u{0}'),
        }
        out.push('\n');
    }
    if let Some(c) = consumer {
        let _ = writeln!(out, "c:{c}");
    }
    out
}

/// Parses a `Vary` value list. `Ok(None)` means `Vary: *` (never matches);
/// names that are not valid header names make the whole field invalid,
/// which is treated like `*`: the response cannot be matched safely.
pub fn parse_vary(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names: Vec<HeaderName> = Vec::new();
    for v in headers.get_all(http::header::VARY) {
        let s = v.to_str().ok()?;
        for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if t == "*" {
                return None;
            }
            let name = HeaderName::from_bytes(t.as_bytes()).ok()?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Some(names)
}

/// Builds the secondary key of a request for the given `Vary` names.
///
/// Values are normalised so equivalent requests select the same variant:
/// whitespace around commas and runs of spaces collapsed, `Accept*` headers
/// lowercased (their tokens are case-insensitive), and `Accept-Encoding`
/// tokens sorted (order carries no meaning there). An absent header is
/// distinct from an empty one.
pub fn secondary_key(headers: &HeaderMap, vary: &[HeaderName]) -> String {
    let mut out = String::new();
    for name in vary {
        out.push_str(name.as_str());
        match header_value(headers, name) {
            Some(v) => {
                out.push('=');
                if name == http::header::ACCEPT_ENCODING {
                    let mut tokens: Vec<String> = v
                        .split(',')
                        .map(|t| t.replace(' ', "").to_ascii_lowercase())
                        .filter(|t| !t.is_empty())
                        .collect();
                    tokens.sort();
                    tokens.dedup();
                    out.push_str(&tokens.join(","));
                } else if name.as_str().starts_with("accept") {
                    out.push_str(&v.to_ascii_lowercase());
                } else {
                    out.push_str(&v);
                }
            }
            None => out.push('\u{0}'),
        }
        out.push('\n');
    }
    out
}

/// All lines of `name` joined with `,`, whitespace around list items
/// trimmed and inner runs of whitespace collapsed. `None` when absent.
fn header_value(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut any = false;
    for v in headers.get_all(name) {
        any = true;
        let s = String::from_utf8_lossy(v.as_bytes());
        for item in s.split(',') {
            let collapsed = item.split_whitespace().collect::<Vec<_>>().join(" ");
            if !collapsed.is_empty() {
                parts.push(collapsed);
            }
        }
    }
    any.then(|| parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn url(s: &str, p: &str) -> String {
        normalize_url(s, "Example.COM:443", p, &[]).unwrap()
    }

    #[test]
    fn normalises_scheme_host_port_and_escapes() {
        assert_eq!(url("HTTPS", ""), "https://example.com/");
        assert_eq!(
            normalize_url("http", "example.com:80", "/a", &[]).unwrap(),
            "http://example.com/a"
        );
        assert_eq!(
            normalize_url("http", "example.com:8080", "/a", &[]).unwrap(),
            "http://example.com:8080/a"
        );
        assert_eq!(
            url("https", "/%7euser/%2f%41"),
            "https://example.com/~user/%2FA"
        );
        assert_eq!(url("https", "/a b"), "https://example.com/a%20b");
        assert_eq!(url("https", "/100%"), "https://example.com/100%25");
        assert!(matches!(
            normalize_url("ftp", "h", "/", &[]),
            Err(KeyError::Scheme(_))
        ));
    }

    #[test]
    fn an_authority_with_no_host_before_its_port_or_a_bad_port_gives_no_key() {
        // Found by the cache_key fuzz target: `:.` once became `https://:/`.
        assert!(matches!(
            normalize_url("https", ":.", "/", &[]),
            Err(KeyError::BadPort(_))
        ));
        assert!(matches!(
            normalize_url("https", ".:8080", "/", &[]),
            Err(KeyError::NoHost(_))
        ));
        assert_eq!(
            normalize_url("http", "Example.COM.:8080", "/a", &[]).unwrap(),
            "http://example.com:8080/a"
        );
    }

    #[test]
    fn an_authority_without_a_host_gives_no_key() {
        // Found by the cache_key fuzz target: the authority `.` became the
        // key `https:///`, which normalising again (as a purge does)
        // refuses, so the stored entry could never be purged.
        for authority in [".", "..", "u@", ":443", "u@.:443"] {
            assert_eq!(
                normalize_url("https", authority, "/x", &[]),
                Err(KeyError::NoHost(authority.to_string())),
                "{authority}"
            );
        }
        assert!(normalize_absolute("https://./x", &[]).is_err());
        assert_eq!(
            normalize_url("https", "h.", "/x", &[]).unwrap(),
            "https://h/x"
        );
    }

    #[test]
    fn sorts_query_and_drops_ignored_params() {
        let ignore = vec!["utm_*".to_string(), "fbclid".to_string()];
        let a = normalize_url(
            "https",
            "h",
            "/p?b=2&utm_source=x&a=1&FBCLID=9&UTM_medium=y",
            &[&ignore],
        )
        .unwrap();
        assert_eq!(a, "https://h/p?a=1&b=2");
        let b = normalize_url("https", "h", "/p?a=%31&b=2", &[]).unwrap();
        assert_eq!(b, "https://h/p?a=1&b=2");
        // Only ignored parameters: the `?` disappears too.
        let c = normalize_url("https", "h", "/p?utm_x=1", &[&ignore]).unwrap();
        assert_eq!(c, "https://h/p");
    }

    #[test]
    fn absolute_and_prefix_forms() {
        assert_eq!(
            normalize_absolute("HTTPS://H:443/x?b&a#frag", &[]).unwrap(),
            "https://h/x?a&b"
        );
        assert_eq!(
            normalize_prefix("https://H/api/v1").unwrap(),
            "https://h/api/v1"
        );
        assert_eq!(normalize_prefix("https://H").unwrap(), "https://h/");
        assert!(normalize_absolute("/relative", &[]).is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("utm_*", "UTM_source"));
        assert!(glob_match("*id", "fbclid"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("utm_*", "xutm_"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn vary_parsing_and_secondary_normalisation() {
        let mut res = HeaderMap::new();
        res.append(
            "vary",
            HeaderValue::from_static("Accept-Encoding, accept-language"),
        );
        res.append("vary", HeaderValue::from_static("X-Custom"));
        let vary = parse_vary(&res).unwrap();
        assert_eq!(vary.len(), 3);
        res.append("vary", HeaderValue::from_static("*"));
        assert!(parse_vary(&res).is_none());

        let mut a = HeaderMap::new();
        a.insert("accept-encoding", HeaderValue::from_static("gzip, br"));
        a.insert("accept-language", HeaderValue::from_static("EN-us"));
        a.insert("x-custom", HeaderValue::from_static("  a   b , c "));
        let mut b = HeaderMap::new();
        b.insert("accept-encoding", HeaderValue::from_static("BR,gzip"));
        b.insert("accept-language", HeaderValue::from_static("en-US"));
        b.insert("x-custom", HeaderValue::from_static("a b,c"));
        assert_eq!(secondary_key(&a, &vary), secondary_key(&b, &vary));
        b.remove("x-custom");
        assert_ne!(secondary_key(&a, &vary), secondary_key(&b, &vary));
        b.insert("x-custom", HeaderValue::from_static(""));
        let empty = secondary_key(&b, &vary);
        b.remove("x-custom");
        assert_ne!(empty, secondary_key(&b, &vary), "absent differs from empty");
    }

    proptest! {
        #[test]
        fn url_normalisation_is_idempotent_and_order_free(
            path in "(/[a-zA-Z0-9%._~-]{0,8}){0,4}",
            params in proptest::collection::vec(("[a-z]{1,4}", "[a-zA-Z0-9%+]{0,5}"), 0..5),
        ) {
            let q: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut rev = q.clone();
            rev.reverse();
            let a = normalize_url("https", "h", &format!("{path}?{}", q.join("&")), &[]).unwrap();
            let b = normalize_url("https", "h", &format!("{path}?{}", rev.join("&")), &[]).unwrap();
            prop_assert_eq!(&a, &b);
            let again = normalize_absolute(&a, &[]).unwrap();
            prop_assert_eq!(a, again);
        }
    }
}
