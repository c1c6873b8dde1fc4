//! Rate limits and quotas: per consumer (by plan), per client IP for
//! unauthenticated traffic, and per client IP for failed verifications.
//!
//! Rate limits use GCRA (the "virtual scheduling" form of a token bucket):
//! one timestamp per subject, constant memory, exact `Retry-After`. The
//! algorithm sits behind the [`RateLimiter`] trait so the scale-out work can
//! add a Redis implementation sharing state between nodes; the in-memory
//! [`GcraLimiter`] reads time from the injected clock, so tests move time
//! instead of sleeping.
//!
//! Quotas (per day, per month, total uses) are counted in memory by
//! [`QuotaBook`] and written to the store in batches by the service's
//! flusher, so the hot path does no I/O; a node's counts are re-read from
//! the store at every full reload.
//!
//! Outcomes render as headers following the IETF RateLimit header fields
//! draft: `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`,
//! `RateLimit-Policy`, and on refusal a 429 problem with `Retry-After`.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use dashmap::DashMap;
use gateway_core::errors::{self, ErrorCode};
use gateway_core::{Problem, ToProblem};
use http::{HeaderMap, HeaderName, HeaderValue, Response};

use crate::config::{IpLimitConfig, PlanConfig};
use crate::store::QuotaUsage;

/// A GCRA rate: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained events per second.
    pub per_second: f64,
    /// Events allowed at once.
    pub burst: u32,
}

impl Rate {
    fn emission_us(&self) -> i64 {
        ((1_000_000.0 / self.per_second).round() as i64).max(1)
    }

    /// The window, in seconds, over which `burst` events refill.
    pub fn window_secs(&self) -> u64 {
        ((self.burst as f64) / self.per_second).ceil().max(1.0) as u64
    }

    /// The `RateLimit-Policy` item for this rate.
    pub fn policy(&self) -> String {
        format!("{};w={}", self.burst, self.window_secs())
    }
}

impl From<&IpLimitConfig> for Rate {
    fn from(c: &IpLimitConfig) -> Self {
        Rate {
            per_second: c.rate_per_second,
            burst: c.burst,
        }
    }
}

/// The outcome of one GCRA check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the event is allowed.
    pub allowed: bool,
    /// Events still allowed right now after this one.
    pub remaining: u32,
    /// Microseconds until the bucket is full again.
    pub reset_us: i64,
    /// Microseconds until the next event would be allowed (0 when allowed).
    pub retry_after_us: i64,
}

/// A rate limiter keyed by subject (`consumer:<id>`, `ip:<addr>`, ...).
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one event for `key` at `now` if allowed.
    async fn check(&self, key: &str, rate: Rate, now: DateTime<Utc>) -> RateDecision;
    /// Whether one event would be allowed now, without counting it.
    async fn peek(&self, key: &str, rate: Rate, now: DateTime<Utc>) -> RateDecision;
    /// Drops state that no longer limits anything (a full bucket). Called
    /// periodically; the default does nothing.
    async fn prune(&self, _now: DateTime<Utc>) {}
    /// [`Self::check`] for `key` and, only when that allows, one use of the
    /// quota `windows` of `quota_subject`, decided in one step: a limiter
    /// in a shared store saves a round trip per request whose plan has both.
    /// It must count quotas where the fleet's [`SharedQuotas`] does, and is
    /// only asked when there are some. `None` (the default, or the store is
    /// unreachable): the caller asks [`Self::check`] and the quotas apart.
    async fn check_with_quotas(
        &self,
        _key: &str,
        _rate: Rate,
        _quota_subject: &str,
        _windows: &[QuotaCount],
    ) -> Option<RateAndQuotas> {
        None
    }
}

/// What [`RateLimiter::check_with_quotas`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateAndQuotas {
    /// The rate decision.
    pub rate: RateDecision,
    /// The quotas' outcome; `None` when the rate refused (nothing counted).
    pub quotas: Option<SharedQuotaOutcome>,
}

/// The in-memory GCRA limiter.
#[derive(Debug, Default)]
pub struct GcraLimiter {
    tat: DashMap<String, i64>,
}

impl GcraLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of subjects tracked.
    pub fn len(&self) -> usize {
        self.tat.len()
    }

    /// Whether no subjects are tracked.
    pub fn is_empty(&self) -> bool {
        self.tat.is_empty()
    }
}

/// One GCRA step: returns the decision and the new theoretical arrival time.
pub fn gcra(tat: Option<i64>, now_us: i64, rate: Rate) -> (RateDecision, i64) {
    let t = rate.emission_us();
    let tau = t.saturating_mul(i64::from(rate.burst.max(1)));
    let tat = tat.unwrap_or(now_us).max(now_us);
    let new_tat = tat + t;
    let allow_at = new_tat - tau;
    if now_us < allow_at {
        (
            RateDecision {
                allowed: false,
                remaining: 0,
                reset_us: tat - now_us,
                retry_after_us: allow_at - now_us,
            },
            tat,
        )
    } else {
        let remaining = ((tau - (new_tat - now_us)) / t).max(0);
        (
            RateDecision {
                allowed: true,
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                reset_us: new_tat - now_us,
                retry_after_us: 0,
            },
            new_tat,
        )
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

#[async_trait]
impl RateLimiter for GcraLimiter {
    async fn check(&self, key: &str, rate: Rate, now: DateTime<Utc>) -> RateDecision {
        let now = micros(now);
        // A subject seen before (the usual case) is updated in place; only
        // a new one costs a copy of its key.
        let mut slot = match self.tat.get_mut(key) {
            Some(slot) => slot,
            None => self.tat.entry(key.to_string()).or_insert(i64::MIN),
        };
        let prev = (*slot != i64::MIN).then_some(*slot);
        let (d, new_tat) = gcra(prev, now, rate);
        *slot = new_tat;
        d
    }

    async fn peek(&self, key: &str, rate: Rate, now: DateTime<Utc>) -> RateDecision {
        let prev = self.tat.get(key).map(|v| *v);
        gcra(prev, micros(now), rate).0
    }

    async fn prune(&self, now: DateTime<Utc>) {
        let now = micros(now);
        self.tat.retain(|_, tat| *tat > now);
    }
}

/// What a limit counted, for headers, metrics and problem codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// The plan's rate limit.
    Rate,
    /// A plan quota.
    Quota,
    /// The per-IP limit for requests without credentials.
    UnauthenticatedIp,
    /// The per-IP limit for failed verifications.
    FailedAuthIp,
}

impl LimitKind {
    /// Stable identifier (also the problem `code`).
    pub fn as_str(&self) -> &'static str {
        self.code().code
    }

    /// The entry of the error table a refusal by this limit answers with.
    pub fn code(&self) -> &'static ErrorCode {
        match self {
            Self::Rate => &errors::RATE_LIMITED,
            Self::Quota => &errors::QUOTA_EXHAUSTED,
            Self::UnauthenticatedIp => &errors::IP_RATE_LIMITED,
            Self::FailedAuthIp => &errors::TOO_MANY_FAILED_ATTEMPTS,
        }
    }
}

/// Limit state to report on a response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimitInfo {
    /// `RateLimit-Limit` of the closest limit.
    pub limit: u64,
    /// `RateLimit-Remaining` of the closest limit.
    pub remaining: u64,
    /// `RateLimit-Reset`: seconds until the closest limit resets.
    pub reset_secs: u64,
    /// `RateLimit-Policy` items of every limit that applied.
    pub policies: Vec<String>,
}

impl RateLimitInfo {
    /// Whether any limit applied (no headers are written otherwise).
    pub fn is_limited(&self) -> bool {
        !self.policies.is_empty()
    }

    /// Folds in another limit, keeping the one closest to exhaustion for the
    /// Limit/Remaining/Reset trio.
    fn merge(&mut self, limit: u64, remaining: u64, reset_secs: u64, policy: String) {
        if self.policies.is_empty() || remaining < self.remaining {
            self.limit = limit;
            self.remaining = remaining;
            self.reset_secs = reset_secs;
        }
        self.policies.push(policy);
    }

    /// Writes the RateLimit-* headers (nothing when no limit applied).
    pub fn apply(&self, headers: &mut HeaderMap) {
        if !self.is_limited() {
            return;
        }
        let set = |h: &mut HeaderMap, name: &'static str, v: String| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        set(headers, "ratelimit-limit", self.limit.to_string());
        set(headers, "ratelimit-remaining", self.remaining.to_string());
        set(headers, "ratelimit-reset", self.reset_secs.to_string());
        set(headers, "ratelimit-policy", self.policies.join(", "));
    }
}

/// A refusal: renders as 429 problem+json with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// Which limit refused.
    pub kind: LimitKind,
    /// Seconds to wait; `None` when waiting will not help (total quota used up).
    pub retry_after_secs: Option<u64>,
    /// Limit state for the RateLimit-* headers.
    pub info: RateLimitInfo,
}

/// The detail sentence of the 429.
impl std::fmt::Display for Limited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let detail = match (self.kind, self.retry_after_secs) {
            (LimitKind::Quota, None) => {
                "the consumer has used every request its plan allows".to_string()
            }
            (LimitKind::Quota, Some(s)) => {
                format!("the plan's quota is used up; it resets in {s} s")
            }
            (LimitKind::Rate, _) => format!(
                "rate limit exceeded; retry in {} s",
                self.retry_after_secs.unwrap_or(1)
            ),
            (LimitKind::UnauthenticatedIp, _) => format!(
                "too many requests without credentials from this address; retry in {} s",
                self.retry_after_secs.unwrap_or(1)
            ),
            (LimitKind::FailedAuthIp, _) => format!(
                "too many failed authentication attempts from this address; retry in {} s",
                self.retry_after_secs.unwrap_or(1)
            ),
        };
        f.write_str(&detail)
    }
}

/// A 429 problem+json, with `retry_after` when waiting will help.
impl ToProblem for Limited {
    fn code(&self) -> &'static ErrorCode {
        self.kind.code()
    }

    fn to_problem(&self) -> Problem {
        let mut p = Problem::new(self.code(), self.to_string());
        if let Some(s) = self.retry_after_secs {
            p = p.with("retry_after", s);
        }
        p
    }
}

impl Limited {
    /// Headers to add to the 429: `Retry-After` and RateLimit-*.
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(s) = self.retry_after_secs {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from(s));
        }
        self.info.apply(&mut h);
        h
    }

    /// The full 429 response.
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let mut res = self.to_problem().into_response();
        res.headers_mut().extend(self.headers());
        res
    }
}

fn ceil_secs(us: i64) -> u64 {
    u64::try_from((us.max(0) + 999_999) / 1_000_000).unwrap_or(0)
}

/// A quota window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaWindow {
    /// The current UTC day.
    Day,
    /// The current UTC calendar month.
    Month,
    /// Forever (remaining uses).
    Total,
}

impl QuotaWindow {
    /// The period key at `now` (`d:2026-11-23`, `m:2026-11`, `total`).
    pub fn period(&self, now: DateTime<Utc>) -> String {
        match self {
            Self::Day => format!("d:{}", now.format("%Y-%m-%d")),
            Self::Month => format!("m:{}", now.format("%Y-%m")),
            Self::Total => "total".into(),
        }
    }

    /// Seconds until the window resets, `None` for `Total`.
    pub fn reset_secs(&self, now: DateTime<Utc>) -> Option<u64> {
        let next = match self {
            Self::Day => now.date_naive().succ_opt()?,
            Self::Month => {
                let (y, m) = if now.month() == 12 {
                    (now.year() + 1, 1)
                } else {
                    (now.year(), now.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1)?
            }
            Self::Total => return None,
        };
        let next = Utc.from_utc_datetime(&next.and_hms_opt(0, 0, 0)?);
        Some(ceil_secs(
            (next - now).num_microseconds().unwrap_or(i64::MAX),
        ))
    }

    fn window_secs(&self) -> u64 {
        match self {
            Self::Day => 86_400,
            Self::Month => 2_592_000,
            Self::Total => 0,
        }
    }
}

/// One quota window to count in a fleet-wide counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCount {
    /// Which window.
    pub window: QuotaWindow,
    /// The plan's limit for it.
    pub limit: u64,
    /// The period key (`d:2026-11-23`, ...): part of the counter's name.
    pub period: String,
    /// Seconds until the period ends (`None` for totals), so a counter can
    /// expire with its period.
    pub ttl_secs: Option<u64>,
    /// What this node knows was used already (store totals at the last
    /// reload plus its own uses since). A shared counter that does not
    /// exist yet (first use, or a Redis that lost its data) starts here.
    pub seed: i64,
}

/// What a fleet-wide quota counter decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedQuotaOutcome {
    /// Counted in every window; uses after counting, in window order.
    Counted(Vec<i64>),
    /// Nothing counted: window `index` was used up (`used` so far).
    Exhausted {
        /// Index into the windows passed in.
        index: usize,
        /// Uses counted in that window.
        used: i64,
    },
}

/// Quota counters shared by every node of a fleet (Redis in the scale-out
/// setup). The [`QuotaBook`] stays the durable record: every admitted use
/// is also counted there and flushed to the store, and it decides alone
/// when the shared counter is unavailable.
#[async_trait]
pub trait SharedQuotas: Send + Sync + 'static {
    /// Atomically counts one use in every window, or none if any is used
    /// up. `None` means the shared counter could not be reached in time:
    /// the caller decides locally.
    async fn consume(&self, subject: &str, windows: &[QuotaCount]) -> Option<SharedQuotaOutcome>;
}

#[derive(Debug, Default, Clone, Copy)]
struct QuotaCell {
    used: i64,
    pending: i64,
}

/// In-memory quota counters, flushed to the store in batches.
#[derive(Debug, Default)]
pub struct QuotaBook {
    cells: DashMap<(String, String), QuotaCell>,
}

impl QuotaBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request for `subject` against every window in `limits`,
    /// or none if any window is used up.
    pub fn consume(
        &self,
        subject: &str,
        limits: &[(QuotaWindow, u64)],
        now: DateTime<Utc>,
        info: &mut RateLimitInfo,
    ) -> Result<(), Limited> {
        let mut taken: Vec<(String, String)> = Vec::with_capacity(limits.len());
        for (window, limit) in limits {
            let key = (subject.to_string(), window.period(now));
            let mut cell = self.cells.entry(key.clone()).or_default();
            let limit_i = i64::try_from(*limit).unwrap_or(i64::MAX);
            let reset = window.reset_secs(now);
            if cell.used >= limit_i {
                drop(cell);
                // Give back what earlier windows counted for this request.
                for k in taken {
                    if let Some(mut c) = self.cells.get_mut(&k) {
                        c.used -= 1;
                        c.pending -= 1;
                    }
                }
                let mut info = info.clone();
                info.merge(*limit, 0, reset.unwrap_or(0), quota_policy(*window, *limit));
                return Err(Limited {
                    kind: LimitKind::Quota,
                    retry_after_secs: reset,
                    info,
                });
            }
            cell.used += 1;
            cell.pending += 1;
            let remaining = u64::try_from(limit_i - cell.used).unwrap_or(0);
            drop(cell);
            info.merge(
                *limit,
                remaining,
                reset.unwrap_or(0),
                quota_policy(*window, *limit),
            );
            taken.push(key);
        }
        Ok(())
    }

    /// Counts one use in every window without checking limits (the
    /// fleet-wide counter already admitted it), so the store gets the delta.
    pub fn record(&self, subject: &str, windows: &[(QuotaWindow, u64)], now: DateTime<Utc>) {
        for (window, _) in windows {
            let mut cell = self
                .cells
                .entry((subject.to_string(), window.period(now)))
                .or_default();
            cell.used += 1;
            cell.pending += 1;
        }
    }

    /// Takes the unflushed deltas.
    pub fn drain_pending(&self) -> Vec<QuotaUsage> {
        let mut out = Vec::new();
        for mut e in self.cells.iter_mut() {
            if e.pending != 0 {
                out.push(QuotaUsage {
                    subject: e.key().0.clone(),
                    period: e.key().1.clone(),
                    used: e.pending,
                });
                e.pending = 0;
            }
        }
        out
    }

    /// Puts back deltas whose write failed, so they are retried.
    pub fn restore_pending(&self, deltas: &[QuotaUsage]) {
        for d in deltas {
            let mut c = self
                .cells
                .entry((d.subject.clone(), d.period.clone()))
                .or_default();
            c.pending += d.used;
        }
    }

    /// Replaces counts with store totals (plus anything not yet flushed) and
    /// forgets periods that are over.
    pub fn load(&self, rows: Vec<QuotaUsage>, current_periods: &[String]) {
        self.cells
            .retain(|k, c| c.pending != 0 || current_periods.contains(&k.1));
        for r in rows {
            let mut c = self.cells.entry((r.subject, r.period)).or_default();
            c.used = r.used + c.pending;
        }
    }

    /// Requests counted for `subject` in `window` at `now`.
    pub fn used(&self, subject: &str, window: QuotaWindow, now: DateTime<Utc>) -> i64 {
        self.cells
            .get(&(subject.to_string(), window.period(now)))
            .map(|c| c.used)
            .unwrap_or(0)
    }
}

fn quota_policy(window: QuotaWindow, limit: u64) -> String {
    match window {
        QuotaWindow::Total => format!("{limit};w=0;comment=\"total\""),
        w => format!("{limit};w={}", w.window_secs()),
    }
}

/// Who a plan's limits count against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSubject {
    /// Key of the rate limiter (`consumer:<id>`).
    pub rate_key: String,
    /// Key of the quota counters (`consumer:<id>` or `group:<name>`).
    pub quota_key: String,
}

/// Rate limiter and quota book together, on an injected clock.
#[derive(Clone)]
pub struct Limits {
    limiter: Arc<dyn RateLimiter>,
    quotas: Arc<QuotaBook>,
    shared_quotas: Option<Arc<dyn SharedQuotas>>,
    clock: Arc<dyn gateway_core::Clock>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").finish_non_exhaustive()
    }
}

impl Limits {
    /// Limits over `limiter` and `quotas`.
    pub fn new(
        limiter: Arc<dyn RateLimiter>,
        quotas: Arc<QuotaBook>,
        clock: Arc<dyn gateway_core::Clock>,
    ) -> Self {
        Self {
            limiter,
            quotas,
            shared_quotas: None,
            clock,
        }
    }

    /// Counts quotas in `shared` first (a fleet), falling back to the local
    /// book when it is unavailable.
    pub fn with_shared_quotas(mut self, shared: Arc<dyn SharedQuotas>) -> Self {
        self.shared_quotas = Some(shared);
        self
    }

    /// The quota book.
    pub fn quotas(&self) -> &Arc<QuotaBook> {
        &self.quotas
    }

    /// The rate limiter.
    pub fn limiter(&self) -> &Arc<dyn RateLimiter> {
        &self.limiter
    }

    /// Checks a plan's rate limit, then its quotas, for `subject`.
    pub async fn check(
        &self,
        subject: &LimitSubject,
        plan: &PlanConfig,
    ) -> Result<RateLimitInfo, Limited> {
        let now = self.clock.now();
        let mut info = RateLimitInfo::default();
        let mut windows = Vec::with_capacity(3);
        if let Some(q) = plan.quota_per_day {
            windows.push((QuotaWindow::Day, q));
        }
        if let Some(q) = plan.quota_per_month {
            windows.push((QuotaWindow::Month, q));
        }
        if let Some(q) = plan.quota_total {
            windows.push((QuotaWindow::Total, q));
        }
        // With a fleet's shared counters, a plan that has both kinds of
        // limit asks the limiter for both at once (one round trip).
        let counts = (!windows.is_empty() && self.shared_quotas.is_some())
            .then(|| self.quota_counts(&subject.quota_key, &windows, now));
        let mut joint_quotas = None;
        if let Some(per_second) = plan.rate_per_second {
            let rate = Rate {
                per_second,
                burst: plan.effective_burst(),
            };
            let joint = match &counts {
                Some(counts) => {
                    self.limiter
                        .check_with_quotas(&subject.rate_key, rate, &subject.quota_key, counts)
                        .await
                }
                None => None,
            };
            let d = match joint {
                Some(j) => {
                    joint_quotas = j.quotas;
                    j.rate
                }
                None => self.limiter.check(&subject.rate_key, rate, now).await,
            };
            info.merge(
                u64::from(rate.burst),
                u64::from(d.remaining),
                ceil_secs(d.reset_us),
                rate.policy(),
            );
            if !d.allowed {
                // Still advertise every policy that applies to this client.
                info.policies
                    .extend(windows.iter().map(|(w, q)| quota_policy(*w, *q)));
                metrics::counter!("gatehouse_ratelimit_total", "outcome" => "rate_limited")
                    .increment(1);
                return Err(Limited {
                    kind: LimitKind::Rate,
                    retry_after_secs: Some(ceil_secs(d.retry_after_us).max(1)),
                    info,
                });
            }
        }
        if !windows.is_empty() {
            let consumed = match (joint_quotas, &counts) {
                (Some(outcome), Some(counts)) => self.apply_shared(
                    &subject.quota_key,
                    &windows,
                    counts,
                    outcome,
                    now,
                    &mut info,
                ),
                _ => {
                    self.consume_quotas(&subject.quota_key, &windows, counts, now, &mut info)
                        .await
                }
            };
            if let Err(l) = consumed {
                metrics::counter!("gatehouse_ratelimit_total", "outcome" => "quota_exhausted")
                    .increment(1);
                return Err(l);
            }
        }
        metrics::counter!("gatehouse_ratelimit_total", "outcome" => "allowed").increment(1);
        Ok(info)
    }

    /// The shared counters' view of `windows` for `subject`, seeded with
    /// what this node knows.
    fn quota_counts(
        &self,
        subject: &str,
        windows: &[(QuotaWindow, u64)],
        now: DateTime<Utc>,
    ) -> Vec<QuotaCount> {
        windows
            .iter()
            .map(|(window, limit)| QuotaCount {
                window: *window,
                limit: *limit,
                period: window.period(now),
                ttl_secs: window.reset_secs(now),
                seed: self.quotas.used(subject, *window, now),
            })
            .collect()
    }

    async fn consume_quotas(
        &self,
        subject: &str,
        windows: &[(QuotaWindow, u64)],
        counts: Option<Vec<QuotaCount>>,
        now: DateTime<Utc>,
        info: &mut RateLimitInfo,
    ) -> Result<(), Limited> {
        let Some(shared) = &self.shared_quotas else {
            return self.quotas.consume(subject, windows, now, info);
        };
        let counts = counts.unwrap_or_else(|| self.quota_counts(subject, windows, now));
        match shared.consume(subject, &counts).await {
            Some(outcome) => self.apply_shared(subject, windows, &counts, outcome, now, info),
            None => self.quotas.consume(subject, windows, now, info),
        }
    }

    /// Takes what the shared counters decided: records an admitted use in
    /// the local book (the durable record) and sets the headers' state.
    fn apply_shared(
        &self,
        subject: &str,
        windows: &[(QuotaWindow, u64)],
        counts: &[QuotaCount],
        outcome: SharedQuotaOutcome,
        now: DateTime<Utc>,
        info: &mut RateLimitInfo,
    ) -> Result<(), Limited> {
        match outcome {
            SharedQuotaOutcome::Counted(used) => {
                self.quotas.record(subject, windows, now);
                for (c, used) in counts.iter().zip(used) {
                    let remaining =
                        u64::try_from(i64::try_from(c.limit).unwrap_or(i64::MAX) - used)
                            .unwrap_or(0);
                    info.merge(
                        c.limit,
                        remaining,
                        c.ttl_secs.unwrap_or(0),
                        quota_policy(c.window, c.limit),
                    );
                }
                Ok(())
            }
            SharedQuotaOutcome::Exhausted { index, .. } => {
                let c = &counts[index.min(counts.len() - 1)];
                let mut info = info.clone();
                info.merge(
                    c.limit,
                    0,
                    c.ttl_secs.unwrap_or(0),
                    quota_policy(c.window, c.limit),
                );
                Err(Limited {
                    kind: LimitKind::Quota,
                    retry_after_secs: c.ttl_secs,
                    info,
                })
            }
        }
    }

    /// Counts one event against a per-IP limit.
    pub async fn check_ip(
        &self,
        key: &str,
        cfg: &IpLimitConfig,
        kind: LimitKind,
    ) -> Result<RateLimitInfo, Limited> {
        self.ip(key, cfg, kind, true).await
    }

    /// Whether a per-IP limit would refuse now, without counting.
    pub async fn peek_ip(
        &self,
        key: &str,
        cfg: &IpLimitConfig,
        kind: LimitKind,
    ) -> Result<RateLimitInfo, Limited> {
        self.ip(key, cfg, kind, false).await
    }

    /// [`Limits::peek_ip`] for callers that only need the refusal: nothing
    /// is built when the limit would allow, as it does for almost every
    /// request (the authentication stage peeks on each one).
    pub(crate) async fn refusal_ip(
        &self,
        key: &str,
        cfg: &IpLimitConfig,
        kind: LimitKind,
    ) -> Option<Limited> {
        if !cfg.enabled {
            return None;
        }
        let rate = Rate::from(cfg);
        let d = self.limiter.peek(key, rate, self.clock.now()).await;
        (!d.allowed).then(|| refused(kind, rate, d))
    }

    async fn ip(
        &self,
        key: &str,
        cfg: &IpLimitConfig,
        kind: LimitKind,
        count: bool,
    ) -> Result<RateLimitInfo, Limited> {
        if !cfg.enabled {
            return Ok(RateLimitInfo::default());
        }
        let rate = Rate::from(cfg);
        let now = self.clock.now();
        let d = if count {
            self.limiter.check(key, rate, now).await
        } else {
            self.limiter.peek(key, rate, now).await
        };
        if d.allowed {
            Ok(ip_info(rate, d))
        } else {
            Err(refused(kind, rate, d))
        }
    }

    /// Current quota periods (for reloads).
    pub fn current_periods(&self) -> Vec<String> {
        let now = self.clock.now();
        [QuotaWindow::Day, QuotaWindow::Month, QuotaWindow::Total]
            .iter()
            .map(|w| w.period(now))
            .collect()
    }

    /// Drops idle limiter state.
    pub async fn prune(&self) {
        self.limiter.prune(self.clock.now()).await;
    }
}

/// The RateLimit-* state of a per-IP decision.
fn ip_info(rate: Rate, d: RateDecision) -> RateLimitInfo {
    let mut info = RateLimitInfo::default();
    info.merge(
        u64::from(rate.burst),
        u64::from(d.remaining),
        ceil_secs(d.reset_us),
        rate.policy(),
    );
    info
}

/// A per-IP limit's refusal (counted in `gatehouse_ratelimit_total`).
fn refused(kind: LimitKind, rate: Rate, d: RateDecision) -> Limited {
    metrics::counter!("gatehouse_ratelimit_total", "outcome" => kind.as_str()).increment(1);
    Limited {
        kind,
        retry_after_secs: Some(ceil_secs(d.retry_after_us).max(1)),
        info: ip_info(rate, d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as ChronoDuration;
    use gateway_core::ManualClock;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 31, 23, 59, 0).unwrap()
    }

    #[test]
    fn gcra_allows_burst_then_spaces_events() {
        let rate = Rate {
            per_second: 1.0,
            burst: 3,
        };
        let mut tat = None;
        let now = 0;
        let mut remaining = vec![];
        for _ in 0..3 {
            let (d, t) = gcra(tat, now, rate);
            assert!(d.allowed);
            remaining.push(d.remaining);
            tat = Some(t);
        }
        assert_eq!(remaining, [2, 1, 0]);
        let (d, t) = gcra(tat, now, rate);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, 1_000_000);
        assert_eq!(t, tat.unwrap(), "a refusal does not consume");
        let (d, _) = gcra(tat, 1_000_000, rate);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
    }

    #[tokio::test]
    async fn plan_rate_limit_and_quota_report_headers() {
        let clock = ManualClock::new(t0());
        let limits = Limits::new(
            Arc::new(GcraLimiter::new()),
            Arc::new(QuotaBook::new()),
            Arc::new(clock.clone()),
        );
        let plan = PlanConfig {
            rate_per_second: Some(2.0),
            burst: Some(2),
            quota_per_day: Some(3),
            ..PlanConfig::default()
        };
        let subj = LimitSubject {
            rate_key: "consumer:a".into(),
            quota_key: "consumer:a".into(),
        };
        let info = limits.check(&subj, &plan).await.unwrap();
        assert_eq!(info.policies, ["2;w=1", "3;w=86400"]);
        assert_eq!((info.limit, info.remaining), (2, 1));
        limits.check(&subj, &plan).await.unwrap();
        let refused = limits.check(&subj, &plan).await.unwrap_err();
        assert_eq!(refused.kind, LimitKind::Rate);
        assert_eq!(refused.retry_after_secs, Some(1));
        let res: Response<Bytes> = refused.into_response();
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()["retry-after"], "1");
        assert_eq!(res.headers()["ratelimit-remaining"], "0");

        clock.advance(ChronoDuration::seconds(1));
        let info = limits.check(&subj, &plan).await.unwrap();
        // Third request of the day: the quota is now the closest limit.
        assert_eq!((info.limit, info.remaining), (3, 0));
        clock.advance(ChronoDuration::seconds(1));
        let refused = limits.check(&subj, &plan).await.unwrap_err();
        assert_eq!(refused.kind, LimitKind::Quota);
        // 23:59:02 -> midnight is 58 s away.
        assert_eq!(refused.retry_after_secs, Some(58));
        // A new day resets the quota.
        clock.advance(ChronoDuration::seconds(58));
        limits.check(&subj, &plan).await.unwrap();
    }

    /// A fleet-wide counter shared by two nodes' `Limits`, switchable off.
    #[derive(Default)]
    struct FakeShared {
        counters: parking_lot::Mutex<std::collections::HashMap<String, i64>>,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl SharedQuotas for FakeShared {
        async fn consume(
            &self,
            subject: &str,
            windows: &[QuotaCount],
        ) -> Option<SharedQuotaOutcome> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return None;
            }
            let mut c = self.counters.lock();
            let keys: Vec<String> = windows
                .iter()
                .map(|w| format!("{subject}:{}", w.period))
                .collect();
            for (i, (w, k)) in windows.iter().zip(&keys).enumerate() {
                let used = *c.entry(k.clone()).or_insert(w.seed);
                if used >= w.limit as i64 {
                    return Some(SharedQuotaOutcome::Exhausted { index: i, used });
                }
            }
            Some(SharedQuotaOutcome::Counted(
                keys.iter()
                    .map(|k| {
                        let v = c.get_mut(k).unwrap();
                        *v += 1;
                        *v
                    })
                    .collect(),
            ))
        }
    }

    #[tokio::test]
    async fn shared_quotas_count_across_nodes_and_fall_back_locally() {
        let clock = ManualClock::new(t0());
        let shared = Arc::new(FakeShared::default());
        let node = || {
            Limits::new(
                Arc::new(GcraLimiter::new()),
                Arc::new(QuotaBook::new()),
                Arc::new(clock.clone()),
            )
            .with_shared_quotas(shared.clone())
        };
        let (a, b) = (node(), node());
        let plan = PlanConfig {
            quota_per_day: Some(4),
            ..PlanConfig::default()
        };
        let subj = LimitSubject {
            rate_key: "consumer:a".into(),
            quota_key: "consumer:a".into(),
        };
        let info = a.check(&subj, &plan).await.unwrap();
        assert_eq!((info.limit, info.remaining), (4, 3));
        let info = b.check(&subj, &plan).await.unwrap();
        assert_eq!(info.remaining, 2, "node B sees node A's use");
        a.check(&subj, &plan).await.unwrap();
        b.check(&subj, &plan).await.unwrap();
        for node in [&a, &b] {
            let refused = node.check(&subj, &plan).await.unwrap_err();
            assert_eq!(refused.kind, LimitKind::Quota);
            assert_eq!(refused.retry_after_secs, Some(60));
        }
        // Every admitted use is in the local books too, for the store.
        let pending: i64 = [&a, &b]
            .iter()
            .flat_map(|n| n.quotas().drain_pending())
            .map(|u| u.used)
            .sum();
        assert_eq!(pending, 4);

        // Without the shared counter a node decides from what it knows: a
        // fresh day, so it admits up to the limit on its own.
        shared.down.store(true, std::sync::atomic::Ordering::SeqCst);
        clock.advance(ChronoDuration::seconds(60));
        for _ in 0..4 {
            a.check(&subj, &plan).await.unwrap();
        }
        assert_eq!(
            a.check(&subj, &plan).await.unwrap_err().kind,
            LimitKind::Quota
        );
        // Back up: the new day's shared counter starts from what A counted.
        shared
            .down
            .store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            a.check(&subj, &plan).await.unwrap_err().kind,
            LimitKind::Quota
        );
    }

    #[tokio::test]
    async fn total_quota_has_no_retry_after_and_groups_share() {
        let clock = ManualClock::new(t0());
        let limits = Limits::new(
            Arc::new(GcraLimiter::new()),
            Arc::new(QuotaBook::new()),
            Arc::new(clock.clone()),
        );
        let plan = PlanConfig {
            quota_total: Some(2),
            ..PlanConfig::default()
        };
        let a = LimitSubject {
            rate_key: "consumer:a".into(),
            quota_key: "group:g".into(),
        };
        let b = LimitSubject {
            rate_key: "consumer:b".into(),
            quota_key: "group:g".into(),
        };
        limits.check(&a, &plan).await.unwrap();
        limits.check(&b, &plan).await.unwrap();
        let refused = limits.check(&a, &plan).await.unwrap_err();
        assert_eq!(refused.retry_after_secs, None);
        let res: Response<Bytes> = refused.into_response();
        assert!(res.headers().get("retry-after").is_none());
        let deltas = limits.quotas().drain_pending();
        assert_eq!(deltas.iter().map(|d| d.used).sum::<i64>(), 2);
        assert!(limits.quotas().drain_pending().is_empty());
    }

    #[test]
    fn quota_windows_reset_at_utc_boundaries() {
        let now = t0();
        assert_eq!(QuotaWindow::Day.period(now), "d:2026-03-31");
        assert_eq!(QuotaWindow::Month.period(now), "m:2026-03");
        assert_eq!(QuotaWindow::Month.reset_secs(now), Some(60));
        let dec = Utc.with_ymd_and_hms(2026, 12, 31, 0, 0, 0).unwrap();
        assert_eq!(QuotaWindow::Month.reset_secs(dec), Some(86_400));
        assert_eq!(QuotaWindow::Total.reset_secs(now), None);
    }
}
