//! Tolerant parsing of `Cache-Control`, `Pragma`, `Expires` and HTTP dates.
//!
//! Origins and clients send malformed values; RFC 9111 says what they mean
//! rather than leaving it to the parser: an invalid `max-age` makes the
//! response stale (§4.2.1), an invalid `Expires` is a time in the past
//! (§5.3), unknown directives are ignored (§5.2.3). Parsing therefore never
//! fails: it records what it understood, and the policy applies the RFC.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use http::{header, HeaderMap};

/// A delta-seconds value as found in a directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seconds {
    /// A valid, non-negative value (saturated at `i64::MAX` seconds).
    Valid(u64),
    /// The directive was present with a missing or malformed value.
    Invalid,
}

impl Seconds {
    fn parse(v: Option<&str>) -> Self {
        match v {
            Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                // RFC 9111 §1.2.2: overflowing values mean "infinity", which
                // is represented by 2^31.
                Seconds::Valid(v.parse::<u64>().unwrap_or(1 << 31).min(1 << 31))
            }
            _ => Seconds::Invalid,
        }
    }

    /// The value, when valid.
    pub fn valid(self) -> Option<u64> {
        match self {
            Seconds::Valid(n) => Some(n),
            Seconds::Invalid => None,
        }
    }
}

/// The response directives the cache acts on (RFC 9111 §5.2.2, RFC 5861).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    /// `max-age`.
    pub max_age: Option<Seconds>,
    /// `s-maxage`: overrides `max-age` in a shared cache.
    pub s_maxage: Option<Seconds>,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (qualified forms are treated as unqualified: stricter).
    pub no_cache: bool,
    /// `private` (qualified forms too: a shared cache must not store).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `stale-while-revalidate=N`.
    pub stale_while_revalidate: Option<Seconds>,
    /// `stale-if-error=N`.
    pub stale_if_error: Option<Seconds>,
    /// A directive appeared more than once with different values: the
    /// response is treated as stale (RFC 9111 §4.2.1).
    pub conflicting: bool,
    /// The directives come from a targeted field (RFC 9213, see
    /// [`crate::targeted`]): `Cache-Control` and `Expires` are ignored.
    pub targeted: bool,
}

impl ResponseDirectives {
    /// Parses every `Cache-Control` field line of `headers`.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut d = Self::default();
        for (name, value) in directives(headers) {
            match name.as_str() {
                "max-age" => set_seconds(&mut d.max_age, value, &mut d.conflicting),
                "s-maxage" => set_seconds(&mut d.s_maxage, value, &mut d.conflicting),
                "no-store" => d.no_store = true,
                "no-cache" => d.no_cache = true,
                "private" => d.private = true,
                "public" => d.public = true,
                "must-revalidate" => d.must_revalidate = true,
                "proxy-revalidate" => d.proxy_revalidate = true,
                "stale-while-revalidate" => {
                    set_seconds(&mut d.stale_while_revalidate, value, &mut d.conflicting)
                }
                "stale-if-error" => set_seconds(&mut d.stale_if_error, value, &mut d.conflicting),
                _ => {}
            }
        }
        d
    }

    /// Whether the response may never be served stale: `must-revalidate`,
    /// `proxy-revalidate`, or `s-maxage` (which implies proxy-revalidate in
    /// a shared cache, RFC 9111 §5.2.2.10).
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some() || self.no_cache
    }
}

/// The request directives the cache acts on (RFC 9111 §5.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `max-age`: the client does not want a response older than this.
    pub max_age: Option<Seconds>,
    /// `max-stale[=N]`: the client accepts stale responses (by N, or any).
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh`: the response must stay fresh for at least this long.
    pub min_fresh: Option<Seconds>,
    /// `no-cache` (or `Pragma: no-cache` without `Cache-Control`).
    pub no_cache: bool,
    /// `no-store`: do not store the response to this request.
    pub no_store: bool,
    /// `only-if-cached`: answer from the cache or with 504.
    pub only_if_cached: bool,
}

impl RequestDirectives {
    /// Parses the request's `Cache-Control` (and `Pragma`, RFC 9111 §5.4).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut d = Self::default();
        let mut ignored_conflict = false;
        for (name, value) in directives(headers) {
            match name.as_str() {
                "max-age" => set_seconds(&mut d.max_age, value, &mut ignored_conflict),
                "min-fresh" => set_seconds(&mut d.min_fresh, value, &mut ignored_conflict),
                "max-stale" => {
                    // A malformed value is treated as "no limit given"
                    // only when absent; garbage means the client accepts
                    // nothing extra, the conservative reading.
                    d.max_stale = match value {
                        None => Some(None),
                        Some(v) => match Seconds::parse(Some(v)) {
                            Seconds::Valid(n) => Some(Some(n)),
                            Seconds::Invalid => Some(Some(0)),
                        },
                    }
                }
                "no-cache" => d.no_cache = true,
                "no-store" => d.no_store = true,
                "only-if-cached" => d.only_if_cached = true,
                _ => {}
            }
        }
        if !headers.contains_key(header::CACHE_CONTROL)
            && headers
                .get_all(header::PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| {
                    v.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("no-cache"))
                })
        {
            d.no_cache = true;
        }
        d
    }
}

fn set_seconds(slot: &mut Option<Seconds>, value: Option<&str>, conflicting: &mut bool) {
    let parsed = Seconds::parse(value);
    match slot {
        None => *slot = Some(parsed),
        Some(prev) if *prev != parsed => {
            // RFC 9111 §4.2.1: with conflicting duplicates, consider the
            // response stale; keep the first for everything else.
            *conflicting = true;
        }
        Some(_) => {}
    }
}

/// Iterates `(lowercased name, unquoted value)` over every `Cache-Control`
/// line, skipping lines that are not visible ASCII.
fn directives(headers: &HeaderMap) -> impl Iterator<Item = (String, Option<&str>)> {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_directives)
}

fn split_directives(line: &str) -> Vec<(String, Option<&str>)> {
    let mut out = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        // Split at the next comma outside quotes.
        let mut in_quotes = false;
        let mut end = rest.len();
        for (i, b) in rest.bytes().enumerate() {
            match b {
                b'"' => in_quotes = !in_quotes,
                b',' if !in_quotes => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let item = rest[..end].trim();
        rest = if end < rest.len() {
            &rest[end + 1..]
        } else {
            ""
        };
        if item.is_empty() {
            continue;
        }
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                (n.trim(), Some(v))
            }
            None => (item, None),
        };
        out.push((name.to_ascii_lowercase(), value));
    }
    out
}

/// The `Age` a response carries, in seconds (RFC 9111 §5.1): the first
/// member of the first field line, which must be delta-seconds (digits
/// only: `10x`, `+10` or `-1` are invalid). An invalid value is ignored,
/// as the RFC asks, so `None` means "absent or invalid"; a value too large
/// to represent saturates like every other delta-seconds (§1.2.2).
pub fn age(headers: &HeaderMap) -> Option<u64> {
    let line = headers.get(header::AGE)?.to_str().ok()?;
    let first = line.split(',').next().unwrap_or_default().trim();
    Seconds::parse(Some(first)).valid()
}

/// Parses an HTTP-date in any of the three formats of RFC 9110 §5.6.7.
pub fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    httpdate::parse_http_date(value.trim())
        .ok()
        .map(DateTime::<Utc>::from)
}

/// Formats an HTTP-date (IMF-fixdate).
pub fn fmt_http_date(at: DateTime<Utc>) -> String {
    let st: SystemTime = if at.timestamp() >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(at.timestamp() as u64)
    } else {
        SystemTime::UNIX_EPOCH
    };
    httpdate::fmt_http_date(st)
}

/// The single date in header `name`, if exactly one valid value is present.
pub fn header_date(headers: &HeaderMap, name: &header::HeaderName) -> Option<DateTime<Utc>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_http_date(first.to_str().ok()?)
}

/// What `Expires` says (RFC 9111 §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expires {
    /// No `Expires` field.
    Absent,
    /// A valid date.
    At(DateTime<Utc>),
    /// Present but invalid (including `0`): already expired.
    Invalid,
}

impl Expires {
    /// Reads `Expires` from `headers`; several lines count as invalid.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        if !headers.contains_key(header::EXPIRES) {
            return Expires::Absent;
        }
        match header_date(headers, &header::EXPIRES) {
            Some(at) => Expires::At(at),
            None => Expires::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(cc: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in cc {
            h.append(header::CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn parses_response_directives_across_lines_and_case() {
        let d = ResponseDirectives::from_headers(&headers(&[
            "Public, MAX-AGE=60",
            "s-maxage=\"120\", stale-while-revalidate=30,,",
            "private=\"set-cookie, x\"",
        ]));
        assert!(d.public && d.private);
        assert_eq!(d.max_age, Some(Seconds::Valid(60)));
        assert_eq!(d.s_maxage, Some(Seconds::Valid(120)));
        assert_eq!(d.stale_while_revalidate, Some(Seconds::Valid(30)));
        assert!(!d.conflicting);
    }

    #[test]
    fn malformed_and_conflicting_values_are_recorded_not_fatal() {
        let d = ResponseDirectives::from_headers(&headers(&["max-age=abc"]));
        assert_eq!(d.max_age, Some(Seconds::Invalid));
        let d = ResponseDirectives::from_headers(&headers(&["max-age=-5"]));
        assert_eq!(d.max_age, Some(Seconds::Invalid));
        let d = ResponseDirectives::from_headers(&headers(&["max-age=10, max-age=20"]));
        assert!(d.conflicting);
        let d = ResponseDirectives::from_headers(&headers(&["max-age=99999999999999999999"]));
        assert_eq!(d.max_age, Some(Seconds::Valid(1 << 31)));
        // Garbage must not panic.
        let d = ResponseDirectives::from_headers(&headers(&["=,\"\"=,=\"", "no-store=\""]));
        assert!(d.no_store);
    }

    #[test]
    fn request_directives_and_pragma() {
        let mut h = headers(&["max-stale, min-fresh=5, only-if-cached"]);
        let d = RequestDirectives::from_headers(&h);
        assert_eq!(d.max_stale, Some(None));
        assert_eq!(d.min_fresh, Some(Seconds::Valid(5)));
        assert!(d.only_if_cached);
        h.clear();
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        assert!(RequestDirectives::from_headers(&h).no_cache);
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
        assert!(!RequestDirectives::from_headers(&h).no_cache);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_header_values_never_panic(values in proptest::collection::vec(".{0,40}", 0..4)) {
            let mut h = HeaderMap::new();
            for v in &values {
                if let Ok(v) = HeaderValue::from_str(v) {
                    h.append(header::CACHE_CONTROL, v.clone());
                    h.append(header::EXPIRES, v.clone());
                    h.append(header::VARY, v.clone());
                    h.append(header::PRAGMA, v);
                }
            }
            let _ = ResponseDirectives::from_headers(&h);
            let _ = RequestDirectives::from_headers(&h);
            let _ = Expires::from_headers(&h);
            if let Some(vary) = crate::key::parse_vary(&h) {
                let _ = crate::key::secondary_key(&h, &vary);
            }
        }
    }

    #[test]
    fn age_is_delta_seconds_or_ignored() {
        let age_of = |lines: &[&str]| {
            let mut h = HeaderMap::new();
            for v in lines {
                h.append(header::AGE, HeaderValue::from_str(v).unwrap());
            }
            age(&h)
        };
        assert_eq!(age_of(&[]), None);
        assert_eq!(age_of(&["10"]), Some(10));
        assert_eq!(age_of(&[" 10 "]), Some(10));
        assert_eq!(age_of(&["10x"]), None);
        assert_eq!(age_of(&["+10"]), None);
        assert_eq!(age_of(&["-1"]), None);
        assert_eq!(age_of(&["1.5"]), None);
        assert_eq!(age_of(&[""]), None);
        // A list: the first member counts, later ones are discarded.
        assert_eq!(age_of(&["30, 5"]), Some(30));
        assert_eq!(age_of(&["30", "5"]), Some(30));
        assert_eq!(age_of(&["x, 5"]), None);
        assert_eq!(age_of(&["99999999999999999999"]), Some(1 << 31));
    }

    #[test]
    fn expires_invalid_means_expired() {
        let mut h = HeaderMap::new();
        assert_eq!(Expires::from_headers(&h), Expires::Absent);
        h.insert(header::EXPIRES, HeaderValue::from_static("0"));
        assert_eq!(Expires::from_headers(&h), Expires::Invalid);
        h.insert(
            header::EXPIRES,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert!(matches!(Expires::from_headers(&h), Expires::At(_)));
        // The obsolete formats are accepted too.
        assert!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT").is_some());
        assert!(parse_http_date("Sun Nov  6 08:49:37 1994").is_some());
    }
}
