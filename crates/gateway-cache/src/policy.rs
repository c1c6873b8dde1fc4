//! RFC 9111 policy: may this response be stored, how long is it fresh, how
//! old is it now, and may it be served stale.
//!
//! The decisions are pure functions of headers, the configured defaults and
//! the time, so they are tested without any I/O. Time comes in as
//! `DateTime<Utc>` from the injected [`gateway_core::Clock`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{header, HeaderMap, Method, StatusCode};

use crate::config::{CacheConfig, RouteCacheConfig};
use crate::directives::{
    self, header_date, Expires, RequestDirectives, ResponseDirectives, Seconds,
};
use crate::status::NotStoredReason;

/// Status codes a cache may store and serve with heuristic freshness
/// (RFC 9110 §15.1), minus 206: range responses are not cached here.
const HEURISTIC_STATUSES: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// Status codes stored only with explicit freshness: every other final
/// status this cache understands (RFC 9110 §15, and 451 from RFC 7725), so
/// an origin that gives a 502 or 503 a `max-age` can have it reused while it
/// recovers (RFC 9111 §3). Left out on purpose: 206 (a part, never stored:
/// ranges are answered from whole responses), 304 (a validation answer,
/// not a representation), 401 and 407 (challenges to the credentials one
/// request sent or did not send; reused, they would answer a client that
/// has credentials with a challenge), and the deprecated 305 and 306.
const EXPLICIT_ONLY_STATUSES: [u16; 27] = [
    201, 202, 205, 302, 303, 307, 400, 402, 403, 406, 408, 409, 411, 412, 413, 415, 416, 417, 421,
    422, 426, 451, 500, 502, 503, 504, 505,
];

/// Freshness facts recorded when a response is stored or revalidated.
#[derive(Debug, Clone, PartialEq)]
pub struct Freshness {
    /// When the request that produced the response was sent.
    pub request_time: DateTime<Utc>,
    /// When the response was received.
    pub response_time: DateTime<Utc>,
    /// The response's `Date`, when valid.
    pub date: Option<DateTime<Utc>>,
    /// The response's `Age` in seconds (0 when absent or invalid).
    pub age_value: u64,
    /// Freshness lifetime in seconds (0: stale on arrival).
    pub lifetime: u64,
    /// Window after expiry in which the entry may be served while one
    /// background refresh runs.
    pub stale_while_revalidate: u64,
    /// Window after expiry in which the entry may be served when the
    /// origin fails.
    pub stale_if_error: u64,
    /// `must-revalidate`, `proxy-revalidate`, `s-maxage` or `no-cache`:
    /// never serve stale.
    pub forbids_stale: bool,
    /// `no-cache`: revalidate before every use.
    pub no_cache: bool,
}

impl Freshness {
    /// Computes the facts for a response received at `response_time` for a
    /// request sent at `request_time`.
    pub fn compute(
        headers: &HeaderMap,
        dirs: &ResponseDirectives,
        request_time: DateTime<Utc>,
        response_time: DateTime<Utc>,
        cfg: &CacheConfig,
        route: &RouteCacheConfig,
    ) -> Self {
        let date = header_date(headers, &header::DATE);
        let age_value = directives::age(headers).unwrap_or(0);
        let lifetime = match route.ttl_override {
            Some(ttl) => ttl.as_secs(),
            None => lifetime_from_headers(headers, dirs, date, response_time, cfg),
        };
        let window = |d: Option<Seconds>, default: Option<Duration>| -> u64 {
            match d {
                Some(Seconds::Valid(n)) => n,
                Some(Seconds::Invalid) => 0,
                None => default.map_or(0, |d| d.as_secs()),
            }
        };
        Self {
            request_time,
            response_time,
            date,
            age_value,
            lifetime,
            stale_while_revalidate: window(
                dirs.stale_while_revalidate,
                route.stale_while_revalidate,
            ),
            stale_if_error: window(dirs.stale_if_error, route.stale_if_error),
            forbids_stale: dirs.forbids_stale(),
            no_cache: dirs.no_cache,
        }
    }

    /// The current age in seconds (RFC 9111 §4.2.3).
    pub fn current_age(&self, now: DateTime<Utc>) -> u64 {
        let secs = |d: chrono::Duration| d.num_seconds().max(0) as u64;
        let apparent_age = self.date.map_or(0, |d| secs(self.response_time - d));
        let response_delay = secs(self.response_time - self.request_time);
        let corrected_age_value = self.age_value.saturating_add(response_delay);
        let corrected_initial_age = apparent_age.max(corrected_age_value);
        let resident_time = secs(now - self.response_time);
        corrected_initial_age.saturating_add(resident_time)
    }

    /// Seconds of freshness left at `now`; negative once stale.
    pub fn ttl(&self, now: DateTime<Utc>) -> i64 {
        self.lifetime as i64 - self.current_age(now).min(i64::MAX as u64 / 2) as i64
    }
}

/// Freshness lifetime from the response (RFC 9111 §4.2.1 and §4.2.2).
fn lifetime_from_headers(
    headers: &HeaderMap,
    dirs: &ResponseDirectives,
    date: Option<DateTime<Utc>>,
    response_time: DateTime<Utc>,
    cfg: &CacheConfig,
) -> u64 {
    if dirs.conflicting {
        return 0;
    }
    if let Some(s) = dirs.s_maxage {
        return s.valid().unwrap_or(0);
    }
    if let Some(s) = dirs.max_age {
        return s.valid().unwrap_or(0);
    }
    // A targeted field decides alone: Expires is ignored (RFC 9213 §2.1).
    let expires = if dirs.targeted {
        Expires::Absent
    } else {
        Expires::from_headers(headers)
    };
    match expires {
        Expires::Invalid => return 0,
        Expires::At(at) => {
            let base = date.unwrap_or(response_time);
            return (at - base).num_seconds().max(0) as u64;
        }
        Expires::Absent => {}
    }
    // Heuristic freshness: a fraction of the time since last modification.
    if let Some(lm) = header_date(headers, &header::LAST_MODIFIED) {
        let base = date.unwrap_or(response_time);
        let since = (base - lm).num_seconds().max(0) as f64;
        let h = (since * cfg.heuristic_fraction) as u64;
        return h.min(cfg.heuristic_max.as_secs());
    }
    0
}

/// Whether the response to `method` with these headers may be stored by a
/// shared cache (RFC 9111 §3). `Err` names the first reason it may not.
pub fn storable(
    method: &Method,
    req_headers: &HeaderMap,
    req_dirs: &RequestDirectives,
    status: StatusCode,
    res_headers: &HeaderMap,
    dirs: &ResponseDirectives,
    route: &RouteCacheConfig,
) -> Result<(), NotStoredReason> {
    if method != Method::GET {
        return Err(NotStoredReason::Method);
    }
    if req_dirs.no_store || dirs.no_store {
        return Err(NotStoredReason::NoStore);
    }
    if dirs.private {
        return Err(NotStoredReason::Private);
    }
    let explicit_share = dirs.public || dirs.s_maxage.is_some();
    if req_headers.contains_key(header::AUTHORIZATION) && !explicit_share && !dirs.must_revalidate {
        return Err(NotStoredReason::Authorization);
    }
    // A response setting a cookie is per-user unless the origin says it is
    // shared; storing it would hand one user's session to everyone.
    if res_headers.contains_key(header::SET_COOKIE) && !explicit_share {
        return Err(NotStoredReason::SetCookie);
    }
    if crate::key::parse_vary(res_headers).is_none() {
        return Err(NotStoredReason::VaryStar);
    }
    let code = status.as_u16();
    let explicit_from_origin = dirs.max_age.is_some()
        || dirs.s_maxage.is_some()
        || (!dirs.targeted && res_headers.contains_key(header::EXPIRES))
        || dirs.public;
    // A route's ttl_override stands in for the origin's freshness, except
    // on server errors: only the origin may ask for a failure to be reused.
    let explicit = explicit_from_origin || (route.ttl_override.is_some() && code < 500);
    let status_ok =
        HEURISTIC_STATUSES.contains(&code) || (explicit && EXPLICIT_ONLY_STATUSES.contains(&code));
    if !status_ok {
        return Err(NotStoredReason::Status);
    }
    Ok(())
}

/// Whether a stored response without freshness or validators is worth
/// keeping: it could never be served without a full fetch.
pub fn worth_storing(fresh: &Freshness, res_headers: &HeaderMap) -> bool {
    fresh.lifetime > 0
        || fresh.stale_while_revalidate > 0
        || fresh.stale_if_error > 0
        || res_headers.contains_key(header::ETAG)
        || res_headers.contains_key(header::LAST_MODIFIED)
}

/// How a stored response relates to a request at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usability {
    /// Fresh and acceptable to the client: serve it.
    Fresh,
    /// Stale but the client accepts it (`max-stale`): serve it.
    StaleAcceptedByClient,
    /// Stale, within stale-while-revalidate: serve it and refresh once.
    StaleWhileRevalidate,
    /// Must be validated with the origin before use (stale-if-error may
    /// still apply if the origin fails).
    MustRevalidate,
}

/// Decides how a stored response may be used for a request (RFC 9111 §4.2,
/// §5.2.1, RFC 5861). `invalidated` is set by a soft purge.
pub fn usability(
    fresh: &Freshness,
    invalidated: bool,
    req: &RequestDirectives,
    now: DateTime<Utc>,
) -> Usability {
    let age = fresh.current_age(now);
    let is_fresh = !invalidated && !fresh.no_cache && age < fresh.lifetime;
    if req.no_cache || fresh.no_cache {
        return Usability::MustRevalidate;
    }
    if let Some(max_age) = req.max_age {
        if age > max_age.valid().unwrap_or(0) {
            return Usability::MustRevalidate;
        }
    }
    if is_fresh {
        if let Some(min_fresh) = req.min_fresh {
            if fresh.lifetime - age < min_fresh.valid().unwrap_or(0) {
                return Usability::MustRevalidate;
            }
        }
        return Usability::Fresh;
    }
    let staleness = age.saturating_sub(fresh.lifetime);
    if fresh.forbids_stale {
        return Usability::MustRevalidate;
    }
    if let Some(max_stale) = req.max_stale {
        if max_stale.is_none_or(|limit| staleness <= limit) {
            return Usability::StaleAcceptedByClient;
        }
    }
    if staleness < fresh.stale_while_revalidate {
        return Usability::StaleWhileRevalidate;
    }
    Usability::MustRevalidate
}

/// Whether a stale entry may answer when the origin failed.
pub fn stale_if_error_allows(fresh: &Freshness, now: DateTime<Utc>) -> bool {
    if fresh.forbids_stale {
        return false;
    }
    let staleness = fresh.current_age(now).saturating_sub(fresh.lifetime);
    staleness < fresh.stale_if_error
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn hdrs(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn lifetime(pairs: &[(&'static str, &str)]) -> u64 {
        let h = hdrs(pairs);
        let d = ResponseDirectives::from_headers(&h);
        Freshness::compute(
            &h,
            &d,
            t(0),
            t(0),
            &CacheConfig::default(),
            &RouteCacheConfig::default(),
        )
        .lifetime
    }

    fn date(s: i64) -> String {
        crate::directives::fmt_http_date(t(s))
    }

    #[test]
    fn freshness_lifetime_precedence() {
        assert_eq!(
            lifetime(&[("cache-control", "max-age=60, s-maxage=120")]),
            120
        );
        assert_eq!(lifetime(&[("cache-control", "max-age=60")]), 60);
        assert_eq!(
            lifetime(&[("date", &date(0)), ("expires", &date(300))]),
            300
        );
        assert_eq!(
            lifetime(&[("cache-control", "max-age=5"), ("expires", &date(300))]),
            5
        );
        // Heuristic: 10% of 1000 s since Last-Modified.
        assert_eq!(
            lifetime(&[("date", &date(0)), ("last-modified", &date(-1000))]),
            100
        );
        // Invalid values mean stale.
        assert_eq!(lifetime(&[("cache-control", "max-age=ten")]), 0);
        assert_eq!(lifetime(&[("expires", "0")]), 0);
        assert_eq!(lifetime(&[("cache-control", "max-age=1, max-age=100")]), 0);
        assert_eq!(lifetime(&[]), 0);
    }

    #[test]
    fn age_follows_rfc9111_section_4_2_3() {
        let h = hdrs(&[("date", &date(-10)), ("age", "5")]);
        let d = ResponseDirectives::from_headers(&h);
        let f = Freshness::compute(
            &h,
            &d,
            t(-2),
            t(0),
            &CacheConfig::default(),
            &RouteCacheConfig::default(),
        );
        // apparent_age = 10; corrected_age_value = 5 + 2 = 7; initial = 10.
        assert_eq!(f.current_age(t(0)), 10);
        assert_eq!(f.current_age(t(30)), 40);
        // A Date in the future never makes the age negative.
        let h = hdrs(&[("date", &date(100))]);
        let f = Freshness::compute(
            &h,
            &d,
            t(0),
            t(0),
            &CacheConfig::default(),
            &RouteCacheConfig::default(),
        );
        assert_eq!(f.current_age(t(0)), 0);
    }

    fn check_store(
        req: &[(&'static str, &str)],
        res: &[(&'static str, &str)],
        status: u16,
    ) -> Result<(), NotStoredReason> {
        let rq = hdrs(req);
        let rs = hdrs(res);
        storable(
            &Method::GET,
            &rq,
            &RequestDirectives::from_headers(&rq),
            StatusCode::from_u16(status).unwrap(),
            &rs,
            &ResponseDirectives::from_headers(&rs),
            &RouteCacheConfig::default(),
        )
    }

    #[test]
    fn storability_rules() {
        use NotStoredReason::*;
        assert_eq!(
            check_store(&[], &[("cache-control", "max-age=60")], 200),
            Ok(())
        );
        assert_eq!(
            check_store(&[], &[("cache-control", "no-store")], 200),
            Err(NoStore)
        );
        assert_eq!(
            check_store(&[("cache-control", "no-store")], &[], 200),
            Err(NoStore)
        );
        assert_eq!(
            check_store(&[], &[("cache-control", "private, max-age=60")], 200),
            Err(Private)
        );
        let auth = [("authorization", "Bearer x")];
        assert_eq!(
            check_store(&auth, &[("cache-control", "max-age=60")], 200),
            Err(Authorization)
        );
        assert_eq!(
            check_store(&auth, &[("cache-control", "public, max-age=60")], 200),
            Ok(())
        );
        assert_eq!(
            check_store(&auth, &[("cache-control", "s-maxage=60")], 200),
            Ok(())
        );
        assert_eq!(check_store(&[], &[("vary", "*")], 200), Err(VaryStar));
        assert_eq!(
            check_store(&[], &[("vary", "bad header")], 200),
            Err(VaryStar)
        );
        assert_eq!(
            check_store(&[], &[("cache-control", "max-age=60")], 206),
            Err(Status)
        );
        assert_eq!(check_store(&[], &[], 503), Err(Status));
        assert_eq!(
            check_store(&[], &[("cache-control", "max-age=60")], 503),
            Ok(())
        );
        for never in [101, 206, 304, 401, 407, 599] {
            assert_eq!(
                check_store(&[], &[("cache-control", "max-age=60")], never),
                Err(Status),
                "{never}"
            );
        }
        assert_eq!(check_store(&[], &[], 302), Err(Status));
        assert_eq!(
            check_store(&[], &[("cache-control", "max-age=60")], 302),
            Ok(())
        );
        assert_eq!(
            check_store(&[], &[("set-cookie", "a=b")], 200),
            Err(SetCookie)
        );
    }

    fn fresh(lifetime: u64, swr: u64, forbids: bool) -> Freshness {
        Freshness {
            request_time: t(0),
            response_time: t(0),
            date: Some(t(0)),
            age_value: 0,
            lifetime,
            stale_while_revalidate: swr,
            stale_if_error: 0,
            forbids_stale: forbids,
            no_cache: false,
        }
    }

    #[test]
    fn usability_honours_request_directives() {
        let f = fresh(60, 30, false);
        let none = RequestDirectives::default();
        assert_eq!(usability(&f, false, &none, t(10)), Usability::Fresh);
        assert_eq!(
            usability(&f, true, &none, t(10)),
            Usability::StaleWhileRevalidate
        );
        assert_eq!(
            usability(&f, false, &none, t(70)),
            Usability::StaleWhileRevalidate
        );
        assert_eq!(
            usability(&f, false, &none, t(100)),
            Usability::MustRevalidate
        );
        let req = |s: &str| RequestDirectives::from_headers(&hdrs(&[("cache-control", s)]));
        assert_eq!(
            usability(&f, false, &req("max-age=5"), t(10)),
            Usability::MustRevalidate
        );
        assert_eq!(
            usability(&f, false, &req("min-fresh=55"), t(10)),
            Usability::MustRevalidate
        );
        assert_eq!(
            usability(&f, false, &req("no-cache"), t(10)),
            Usability::MustRevalidate
        );
        assert_eq!(
            usability(&f, false, &req("max-stale"), t(1000)),
            Usability::StaleAcceptedByClient
        );
        assert_eq!(
            usability(&f, false, &req("max-stale=10"), t(65)),
            Usability::StaleAcceptedByClient
        );
        assert_eq!(
            usability(&f, false, &req("max-stale=10"), t(1000)),
            Usability::MustRevalidate
        );
        let strict = fresh(60, 30, true);
        assert_eq!(
            usability(&strict, false, &req("max-stale"), t(70)),
            Usability::MustRevalidate
        );
        assert_eq!(
            usability(&strict, false, &none, t(70)),
            Usability::MustRevalidate
        );
    }
}
