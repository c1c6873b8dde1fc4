//! [`RedisRateLimiter`]: GCRA shared by every node, with a local fallback.
//!
//! Each decision is one `EVALSHA` of a Lua script that reads the subject's
//! theoretical arrival time (TAT), applies the same arithmetic as
//! [`gateway_keys::ratelimit::gcra`] and writes the new TAT with an expiry
//! at the bucket's reset time. The script reads the clock with
//! `redis.call('TIME')`, so every node uses the Redis server's clock and node
//! clock skew cannot hand out extra requests; the `now` argument of
//! [`RateLimiter::check`] is therefore ignored in shared mode (it is used
//! by the local fallback only).
//!
//! **Failure policy.** When Redis errors, exceeds `op_timeout`, or is known
//! to be down, the decision is made locally by an in-memory [`GcraLimiter`]
//! with the rate divided by the last known node count (`per_second / n`,
//! burst `ceil(burst / n)`, at least 1): if the load is spread evenly, the
//! cluster as a whole still admits about the configured rate. While down,
//! at most one decision per [`PROBE_INTERVAL`](crate::PROBE_INTERVAL) tries
//! Redis; the heartbeat also re-checks every beat. The first successful call
//! switches back to shared mode.
//!
//! **Rate and quotas in one call.** For a plan with both, the limiter also
//! decides the plan's quota windows ([`RateLimiter::check_with_quotas`]):
//! one script runs the GCRA decision and, only when it admits, the quota
//! counting of [`RedisQuotas`](crate::RedisQuotas) on the same counters,
//! so such a request costs one round trip instead of two. The outcome is
//! the same as the two calls in a row, made atomically.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gateway_keys::ratelimit::{
    GcraLimiter, QuotaCount, Rate, RateAndQuotas, RateDecision, RateLimiter,
};
use redis::Script;

use crate::error::RedisError;
use crate::state::RedisState;

/// The decision shared by [`CHECK_LUA`] and [`PEEK_LUA`]: reads the TAT
/// and returns early on a refusal; leaves `now`, `t`, `new_tat` and
/// `remaining` set for an admission.
macro_rules! gcra_decision_lua {
    () => {
        r"
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  tat = math.max(tonumber(stored), now)
end
local new_tat = tat + t
local allow_at = new_tat - tau
if now < allow_at then
  return {0, 0, tat - now, allow_at - now, now}
end
local remaining = math.floor((tau - (new_tat - now)) / t)
if remaining < 0 then remaining = 0 end
"
    };
}

/// GCRA check: ARGV = emission interval T (µs), tolerance tau = T * burst
/// (µs). Returns {allowed, remaining, reset_us, retry_after_us, now_us}.
///
/// Numbers are Lua doubles: exact for integers below 2^53, and server time
/// in µs is about 2^51. TATs are written with `%.0f` because `tostring`
/// would use 14 significant digits and lose microseconds.
const CHECK_LUA: &str = concat!(
    gcra_decision_lua!(),
    r"
local ttl_ms = math.max(1, math.ceil((new_tat - now) / 1000))
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
return {1, remaining, new_tat - now, 0, now}
"
);

/// The read-only twin of [`CHECK_LUA`]: the same decision, no write.
const PEEK_LUA: &str = concat!(
    gcra_decision_lua!(),
    r"
return {1, remaining, new_tat - now, 0, now}
"
);

/// [`CHECK_LUA`] followed, when it admits, by the quota counting of
/// `CONSUME_LUA` (crate::quotas) on KEYS[2..], with their arguments from
/// ARGV[3] on. Returns the rate's five numbers, then (when admitted) the
/// quota reply: `0, used...` or `index, used`.
const JOINT_LUA: &str = concat!(
    gcra_decision_lua!(),
    r"
local ttl_ms = math.max(1, math.ceil((new_tat - now) / 1000))
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
local out = {1, remaining, new_tat - now, 0, now}
for i = 2, #KEYS do
  local a = (i - 2) * 3 + 3
  local limit = tonumber(ARGV[a])
  local seed = tonumber(ARGV[a + 1])
  local ttl = tonumber(ARGV[a + 2])
  if redis.call('SET', KEYS[i], seed, 'NX') and ttl > 0 then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
  local used = tonumber(redis.call('GET', KEYS[i]))
  if used >= limit then
    out[6] = i - 1
    out[7] = used
    return out
  end
end
out[6] = 0
for i = 2, #KEYS do
  out[i + 5] = redis.call('INCR', KEYS[i])
end
return out
"
);

/// Whether a decision counts the event or only looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Check,
    Peek,
}

impl Mode {
    fn op(self) -> &'static str {
        match self {
            Mode::Check => "ratelimit_check",
            Mode::Peek => "ratelimit_peek",
        }
    }
}

/// A [`RateLimiter`] whose buckets live in Redis (`{prefix}rl:{subject}`),
/// shared by every node; see the module docs for the failure policy.
pub struct RedisRateLimiter {
    state: RedisState,
    check_script: Script,
    peek_script: Script,
    joint_script: Script,
    local: GcraLimiter,
    in_fallback: AtomicBool,
    fallback_decisions: AtomicU64,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("state", &self.state)
            .field("in_fallback", &self.is_fallback())
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter over `state`'s Redis.
    pub fn new(state: RedisState) -> Self {
        Self {
            state,
            check_script: Script::new(CHECK_LUA),
            peek_script: Script::new(PEEK_LUA),
            joint_script: Script::new(JOINT_LUA),
            local: GcraLimiter::new(),
            in_fallback: AtomicBool::new(false),
            fallback_decisions: AtomicU64::new(0),
        }
    }

    /// Whether the last decision was made locally (Redis unreachable).
    pub fn is_fallback(&self) -> bool {
        self.in_fallback.load(Ordering::Acquire)
    }

    /// Decisions made by the local fallback since this limiter was created.
    pub fn fallback_decisions(&self) -> u64 {
        self.fallback_decisions.load(Ordering::Relaxed)
    }

    /// The Redis key of `subject`'s bucket.
    pub fn bucket_key(&self, subject: &str) -> String {
        self.state.key(&format!("rl:{subject}"))
    }

    /// One shared decision, no fallback: counts the event if allowed and
    /// returns the decision with the Redis server time (µs since the epoch)
    /// it was made at. Bounded by `op_timeout`. For diagnostics and tests
    /// (the server time lets a caller replay [`gateway_keys::ratelimit::gcra`]).
    pub async fn check_shared(
        &self,
        subject: &str,
        rate: Rate,
    ) -> Result<(RateDecision, i64), RedisError> {
        self.shared(subject, rate, Mode::Check).await
    }

    /// Like [`check_shared`](Self::check_shared) without counting.
    pub async fn peek_shared(
        &self,
        subject: &str,
        rate: Rate,
    ) -> Result<(RateDecision, i64), RedisError> {
        self.shared(subject, rate, Mode::Peek).await
    }

    /// The rate the local fallback enforces on this node while Redis is
    /// down: the cluster-wide rate split evenly over `nodes` nodes.
    pub fn local_share(rate: Rate, nodes: u64) -> Rate {
        let n = nodes.max(1);
        Rate {
            per_second: rate.per_second / n as f64,
            burst: (u64::from(rate.burst).div_ceil(n)).max(1) as u32,
        }
    }

    async fn shared(
        &self,
        subject: &str,
        rate: Rate,
        mode: Mode,
    ) -> Result<(RateDecision, i64), RedisError> {
        let (t, tau) = gcra_params(rate);
        let key = self.bucket_key(subject);
        let script = match mode {
            Mode::Check => &self.check_script,
            Mode::Peek => &self.peek_script,
        };
        let op = mode.op();
        let reply: Vec<i64> = self
            .state
            .call(op, self.state.config().op_timeout, |mut c| async move {
                // EVALSHA, falling back to EVAL (and caching the script) on
                // NOSCRIPT: one round trip once the script is loaded.
                script.key(&key).arg(t).arg(tau).invoke_async(&mut c).await
            })
            .await?;
        match reply.as_slice() {
            &[allowed, remaining, reset_us, retry_after_us, now_us] => Ok((
                RateDecision {
                    allowed: allowed == 1,
                    remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
                    reset_us,
                    retry_after_us,
                },
                now_us,
            )),
            other => Err(RedisError::Protocol {
                op,
                detail: format!("expected 5 integers, got {other:?}"),
            }),
        }
    }

    /// One shared decision of the rate and, when it admits, the quotas
    /// (see the module docs), no fallback. For tests and diagnostics.
    pub async fn check_with_quotas_shared(
        &self,
        subject: &str,
        rate: Rate,
        quota_subject: &str,
        windows: &[QuotaCount],
    ) -> Result<RateAndQuotas, RedisError> {
        const OP: &str = "ratelimit_quota_check";
        let (t, tau) = gcra_params(rate);
        let mut invocation = self.joint_script.prepare_invoke();
        invocation.key(self.bucket_key(subject)).arg(t).arg(tau);
        crate::quotas::add_counters(&mut invocation, &self.state, quota_subject, windows);
        let reply: Vec<i64> = self
            .state
            .call(OP, self.state.config().op_timeout, |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await?;
        let parsed = match reply.as_slice() {
            &[0, remaining, reset_us, retry_after_us, _now] => Some((
                RateDecision {
                    allowed: false,
                    remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
                    reset_us,
                    retry_after_us,
                },
                None,
            )),
            [1, remaining, reset_us, retry_after_us, _now, quotas @ ..] => {
                crate::quotas::parse_reply(quotas, windows.len()).map(|q| {
                    (
                        RateDecision {
                            allowed: true,
                            remaining: u32::try_from((*remaining).max(0)).unwrap_or(u32::MAX),
                            reset_us: *reset_us,
                            retry_after_us: *retry_after_us,
                        },
                        Some(q),
                    )
                })
            }
            _ => None,
        };
        let (rate, quotas) = parsed.ok_or_else(|| RedisError::Protocol {
            op: OP,
            detail: format!("unexpected rate and quota reply {reply:?}"),
        })?;
        Ok(RateAndQuotas { rate, quotas })
    }

    async fn decide(
        &self,
        subject: &str,
        rate: Rate,
        now: DateTime<Utc>,
        mode: Mode,
    ) -> RateDecision {
        if self.state.should_try() {
            match self.shared(subject, rate, mode).await {
                Ok((d, _)) => {
                    self.state.mark_up();
                    self.leave_fallback();
                    return d;
                }
                Err(e) => self.state.mark_down(&e),
            }
        }
        self.enter_fallback();
        self.fallback_decisions.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("gatehouse_ratelimit_fallback_total").increment(1);
        let local = Self::local_share(rate, self.state.node_count());
        match mode {
            Mode::Check => self.local.check(subject, local, now).await,
            Mode::Peek => self.local.peek(subject, local, now).await,
        }
    }

    fn enter_fallback(&self) {
        if !self.in_fallback.swap(true, Ordering::AcqRel) {
            metrics::gauge!("gatehouse_ratelimit_local_fallback").set(1.0);
            tracing::warn!(
                nodes = self.state.node_count(),
                "rate limits fall back to local decisions (Redis unreachable); each node enforces its share of every rate"
            );
        }
    }

    fn leave_fallback(&self) {
        if self.in_fallback.swap(false, Ordering::AcqRel) {
            metrics::gauge!("gatehouse_ratelimit_local_fallback").set(0.0);
            tracing::info!("rate limits are shared through Redis again");
        }
    }
}

/// The emission interval T and tolerance tau, in µs, exactly as
/// [`gateway_keys::ratelimit::gcra`] computes them.
pub(crate) fn gcra_params(rate: Rate) -> (i64, i64) {
    let t = ((1_000_000.0 / rate.per_second).round() as i64).max(1);
    let tau = t.saturating_mul(i64::from(rate.burst.max(1)));
    (t, tau)
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    /// Counts one event for `key` in the shared bucket (Redis server time;
    /// `now` is ignored), or locally with this node's share of `rate` when
    /// Redis is unreachable.
    async fn check(&self, key: &str, rate: Rate, now: DateTime<Utc>) -> RateDecision {
        self.decide(key, rate, now, Mode::Check).await
    }

    /// Whether one event would be allowed, without counting it; same
    /// failure policy as `check`.
    async fn peek(&self, key: &str, rate: Rate, now: DateTime<Utc>) -> RateDecision {
        self.decide(key, rate, now, Mode::Peek).await
    }

    /// Prunes the local fallback's buckets. Redis buckets expire by
    /// themselves (PX at the reset time).
    async fn prune(&self, now: DateTime<Utc>) {
        self.local.prune(now).await;
    }

    /// Rate and quotas in one script (see the module docs). `None` when
    /// Redis is unreachable: the caller then decides both apart, and
    /// locally while Redis stays down.
    async fn check_with_quotas(
        &self,
        key: &str,
        rate: Rate,
        quota_subject: &str,
        windows: &[QuotaCount],
    ) -> Option<RateAndQuotas> {
        if windows.is_empty() || !self.state.should_try() {
            return None;
        }
        match self
            .check_with_quotas_shared(key, rate, quota_subject, windows)
            .await
        {
            Ok(decided) => {
                self.state.mark_up();
                self.leave_fallback();
                Some(decided)
            }
            Err(e) => {
                self.state.mark_down(&e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_keys::ratelimit::gcra;

    #[test]
    fn params_match_gcra() {
        // gcra()'s remaining after the first event of a full bucket is
        // burst - 1, which pins down T and tau.
        for (per_second, burst) in [(1.0, 3), (200.0, 20), (3.0, 1), (0.5, 7), (1e7, 5)] {
            let rate = Rate { per_second, burst };
            let (t, tau) = gcra_params(rate);
            let (d, tat) = gcra(None, 0, rate);
            assert_eq!(tat, t, "{rate:?}");
            assert_eq!(d.reset_us, t);
            assert_eq!(tau / t, i64::from(burst));
        }
    }

    #[test]
    fn local_share_divides_rate_and_rounds_burst_up() {
        let r = Rate {
            per_second: 100.0,
            burst: 10,
        };
        assert_eq!(
            RedisRateLimiter::local_share(r, 3),
            Rate {
                per_second: 100.0 / 3.0,
                burst: 4
            }
        );
        assert_eq!(RedisRateLimiter::local_share(r, 1), r);
        assert_eq!(RedisRateLimiter::local_share(r, 0), r);
        let one = Rate {
            per_second: 1.0,
            burst: 1,
        };
        assert_eq!(RedisRateLimiter::local_share(one, 5).burst, 1);
    }
}
