//! Writing an answer: conditional caching (strong `ETag`, `Last-Modified`,
//! `Cache-Control` max-age to the next fixing, 304 on `If-None-Match` /
//! `If-Modified-Since`) and `no-store` answers.

use std::fmt::Write as _;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use fx::query::Resolved;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::params::TIER_HEADER;

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), written directly: it is
/// on every cacheable answer and chrono's strftime re-parses its format
/// string on each call.
pub(super) fn http_date(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if !(0..=9999).contains(&t.year()) {
        return t.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    }
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().num_days_from_monday() as usize],
        t.day(),
        MONTHS[t.month0() as usize],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Seconds a cache may keep an answer built on `r`.
pub(super) fn max_age(r: &Resolved, now: DateTime<Utc>) -> i64 {
    match r.next_expected {
        Some(next) if next > now => (next - now).num_seconds().max(60),
        // The next fixing is overdue: check again soon.
        Some(_) => 60,
        // A superseded fixing will not change.
        None => 86_400,
    }
}

/// The strong ETag of a body: the first 128 bits of its SHA-256, quoted.
pub(super) fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for b in &digest[..16] {
        let _ = write!(tag, "{b:02x}");
    }
    tag.push('"');
    tag
}

pub(super) fn cacheable(
    req: &HeaderMap,
    body: Vec<u8>,
    last_modified: Option<DateTime<Utc>>,
    max_age: i64,
    vary_tier: bool,
) -> Response {
    let tag = etag(&body);
    cacheable_tagged(req, body.into(), &tag, last_modified, max_age, vary_tier)
}

/// [`cacheable`] for a body whose ETag is already known.
pub(super) fn cacheable_tagged(
    req: &HeaderMap,
    body: Bytes,
    tag: &str,
    last_modified: Option<DateTime<Utc>>,
    max_age: i64,
    vary_tier: bool,
) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(tag) {
        headers.insert(header::ETAG, v);
    }
    if let Some(lm) = last_modified.and_then(|t| HeaderValue::from_str(&http_date(t)).ok()) {
        headers.insert(header::LAST_MODIFIED, lm);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    if vary_tier {
        headers.insert(header::VARY, HeaderValue::from_static(TIER_HEADER));
    }
    let not_modified = match req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        Some(inm) => inm
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.trim_start_matches("W/") == tag),
        None => match (
            req.get(header::IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok()),
            last_modified,
        ) {
            (Some(ims), Some(lm)) => {
                DateTime::parse_from_rfc2822(ims).is_ok_and(|ims| lm.timestamp() <= ims.timestamp())
            }
            _ => false,
        },
    };
    if not_modified {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (StatusCode::OK, headers, body).into_response()
}

pub(super) fn json_body<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

pub(super) fn no_store<T: Serialize + ?Sized>(status: StatusCode, v: &T) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json_body(v),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn http_date_matches_chrono() {
        let mut t = Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 58).unwrap();
        for _ in 0..5_000 {
            assert_eq!(
                http_date(t),
                t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
            );
            t += chrono::Duration::seconds(86_400 * 3 + 3_601);
        }
    }
}
