//! Cache decisions as data: what the cache did with a request and why.
//!
//! One vocabulary serves the `Cache-Status` response header (RFC 9211),
//! logs and the `status` label of `gatehouse_cache_requests_total`, so an
//! operator reading any of them sees the same words.

use std::fmt::Write as _;

use http::HeaderValue;

/// The cache's name in `Cache-Status`.
pub const CACHE_NAME: &str = "gatehouse";

/// What the cache did with a request; the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// Served from the cache, fresh.
    Hit,
    /// Served from the cache while stale (stale-while-revalidate,
    /// stale-if-error, or the client's `max-stale`).
    Stale,
    /// Nothing usable stored: fetched from the origin.
    Miss,
    /// A stored response was validated by the origin (304) and served.
    Revalidated,
    /// A stored response was stale and the origin sent a new one.
    Expired,
    /// The cache was not consulted (route disabled, method, range request).
    Bypass,
    /// `only-if-cached` with nothing usable: answered 504.
    Unavailable,
}

impl CacheStatus {
    /// The stable name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Stale => "stale",
            CacheStatus::Miss => "miss",
            CacheStatus::Revalidated => "revalidated",
            CacheStatus::Expired => "expired",
            CacheStatus::Bypass => "bypass",
            CacheStatus::Unavailable => "unavailable",
        }
    }
}

/// Why a response was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotStoredReason {
    /// `no-store` in the request or the response.
    NoStore,
    /// `private` in the response.
    Private,
    /// The request had `Authorization` and the response did not say
    /// `public`, `s-maxage` or `must-revalidate`.
    Authorization,
    /// The response sets a cookie and is not explicitly shared.
    SetCookie,
    /// `Vary: *` (or an unparseable `Vary`).
    VaryStar,
    /// The body exceeded `max_object_bytes`.
    TooLarge,
    /// The status code is not cacheable (or only with explicit freshness).
    Status,
    /// Only GET responses are stored.
    Method,
    /// Neither freshness nor a validator: it could never be reused.
    NoFreshness,
    /// The body failed or the client went away before it completed.
    Incomplete,
}

impl NotStoredReason {
    /// The stable name used in logs, metrics and `Cache-Status` `detail`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotStoredReason::NoStore => "no_store",
            NotStoredReason::Private => "private",
            NotStoredReason::Authorization => "authorization",
            NotStoredReason::SetCookie => "set_cookie",
            NotStoredReason::VaryStar => "vary_star",
            NotStoredReason::TooLarge => "too_large",
            NotStoredReason::Status => "status",
            NotStoredReason::Method => "method",
            NotStoredReason::NoFreshness => "no_freshness",
            NotStoredReason::Incomplete => "incomplete",
        }
    }
}

/// Why the request was forwarded to the origin (RFC 9211 `fwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fwd {
    /// The cache was configured not to look (route disabled, range).
    Bypass,
    /// The method is not cacheable.
    Method,
    /// Nothing stored for the URL.
    UriMiss,
    /// Something stored for the URL, but not for these `Vary` values.
    VaryMiss,
    /// The request's directives required going forward (`no-cache`, `max-age`).
    Request,
    /// The stored response was stale.
    Stale,
}

impl Fwd {
    /// The RFC 9211 token.
    pub fn as_str(self) -> &'static str {
        match self {
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
            Fwd::UriMiss => "uri-miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Request => "request",
            Fwd::Stale => "stale",
        }
    }
}

/// The full decision for one request, rendered into `Cache-Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDecision {
    /// What the cache did.
    pub status: CacheStatus,
    /// Why it went forward, if it did.
    pub fwd: Option<Fwd>,
    /// The origin's status when it went forward.
    pub fwd_status: Option<u16>,
    /// Whether the response was (or is being) stored.
    pub stored: bool,
    /// Freshness left in seconds when served from the cache.
    pub ttl: Option<i64>,
    /// Extra detail: a [`NotStoredReason`] or the stale reason.
    pub detail: Option<&'static str>,
    /// Whether this request waited for another one to the same key.
    pub collapsed: bool,
}

impl CacheDecision {
    /// A decision with only the status set.
    pub fn new(status: CacheStatus) -> Self {
        Self {
            status,
            fwd: None,
            fwd_status: None,
            stored: false,
            ttl: None,
            detail: None,
            collapsed: false,
        }
    }

    /// Renders the `Cache-Status` member for this cache (RFC 9211 §2).
    pub fn header_value(&self) -> HeaderValue {
        let mut s = String::from(CACHE_NAME);
        if matches!(self.status, CacheStatus::Hit | CacheStatus::Stale) && self.fwd.is_none() {
            s.push_str("; hit");
        }
        if let Some(fwd) = self.fwd {
            let _ = write!(s, "; fwd={}", fwd.as_str());
        }
        if let Some(code) = self.fwd_status {
            let _ = write!(s, "; fwd-status={code}");
        }
        if let Some(ttl) = self.ttl {
            let _ = write!(s, "; ttl={ttl}");
        }
        if self.stored {
            s.push_str("; stored");
        }
        if self.collapsed {
            s.push_str("; collapsed");
        }
        if let Some(d) = self.detail {
            let _ = write!(s, "; detail={d}");
        }
        // Every piece above is ASCII tokens and integers.
        HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(CACHE_NAME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc9211_members() {
        let mut d = CacheDecision::new(CacheStatus::Hit);
        d.ttl = Some(42);
        assert_eq!(d.header_value(), "gatehouse; hit; ttl=42");
        let mut d = CacheDecision::new(CacheStatus::Miss);
        d.fwd = Some(Fwd::UriMiss);
        d.fwd_status = Some(200);
        d.stored = true;
        assert_eq!(
            d.header_value(),
            "gatehouse; fwd=uri-miss; fwd-status=200; stored"
        );
        let mut d = CacheDecision::new(CacheStatus::Stale);
        d.ttl = Some(-5);
        d.detail = Some("stale-while-revalidate");
        assert_eq!(
            d.header_value(),
            "gatehouse; hit; ttl=-5; detail=stale-while-revalidate"
        );
        let mut d = CacheDecision::new(CacheStatus::Miss);
        d.fwd = Some(Fwd::UriMiss);
        d.detail = Some(NotStoredReason::NoStore.as_str());
        assert_eq!(d.header_value(), "gatehouse; fwd=uri-miss; detail=no_store");
    }
}
