//! [`RedisQuotas`]: plan quotas (per day, per month, total) counted once for
//! the whole fleet.
//!
//! One `EVALSHA` per admitted request checks every window of the plan and,
//! only if none is used up, increments them all: a request is counted in
//! all windows or in none, and two nodes can never both take the last use.
//! Counters are `{prefix}quota:{subject}:{period}` (`period` is
//! `d:2026-11-23`, `m:2026-11` or `total`) and expire a day after their
//! period ends.
//!
//! Redis keeps nothing on disk here, so it is not the durable record: every
//! node still counts admitted uses in its `QuotaBook` and flushes them to
//! the database. A counter that does not exist (first use, or a Redis that
//! restarted) starts from the node's `seed`, what it knows from the store
//! plus its own unflushed uses. When Redis is unreachable the node decides
//! from its local book (see [`gateway_keys::ratelimit::SharedQuotas`]).

use async_trait::async_trait;
use gateway_keys::ratelimit::{QuotaCount, SharedQuotaOutcome, SharedQuotas};
use redis::Script;

use crate::error::RedisError;
use crate::state::RedisState;

/// KEYS: one counter per window. ARGV: per window, `limit`, `seed`,
/// `ttl_ms` (0 for none). Returns `{0, used...}` when counted, or
/// `{index, used}` (1-based) for the first window used up.
const CONSUME_LUA: &str = r"
for i = 1, #KEYS do
  local limit = tonumber(ARGV[(i - 1) * 3 + 1])
  local seed = tonumber(ARGV[(i - 1) * 3 + 2])
  local ttl = tonumber(ARGV[(i - 1) * 3 + 3])
  if redis.call('SET', KEYS[i], seed, 'NX') and ttl > 0 then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
  local used = tonumber(redis.call('GET', KEYS[i]))
  if used >= limit then
    return {i, used}
  end
end
local out = {0}
for i = 1, #KEYS do
  out[i + 1] = redis.call('INCR', KEYS[i])
end
return out
";

/// Counters outlive their period by a day, so a node whose clock is a
/// little behind still finds the period it is counting.
const TTL_GRACE_SECS: u64 = 86_400;

/// Fleet-wide quota counters in Redis; see the module docs.
pub struct RedisQuotas {
    state: RedisState,
    script: Script,
}

impl std::fmt::Debug for RedisQuotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQuotas").finish_non_exhaustive()
    }
}

impl RedisQuotas {
    /// Quota counters over `state`'s Redis.
    pub fn new(state: RedisState) -> Self {
        Self {
            state,
            script: Script::new(CONSUME_LUA),
        }
    }

    /// The Redis key of `subject`'s counter for `period`.
    pub fn counter_key(&self, subject: &str, period: &str) -> String {
        counter_key(&self.state, subject, period)
    }

    /// One shared decision, no fallback (for tests and diagnostics).
    pub async fn consume_shared(
        &self,
        subject: &str,
        windows: &[QuotaCount],
    ) -> Result<SharedQuotaOutcome, RedisError> {
        const OP: &str = "quota_consume";
        let mut invocation = self.script.prepare_invoke();
        add_counters(&mut invocation, &self.state, subject, windows);
        let reply: Vec<i64> = self
            .state
            .call(OP, self.state.config().op_timeout, |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await?;
        parse_reply(&reply, windows.len()).ok_or_else(|| RedisError::Protocol {
            op: OP,
            detail: format!("unexpected quota reply {reply:?}"),
        })
    }
}

fn counter_key(state: &RedisState, subject: &str, period: &str) -> String {
    state.key(&format!("quota:{subject}:{period}"))
}

/// Adds one counter per window to a script call: its key, and as
/// arguments its `limit`, `seed` and `ttl_ms` (0 for none), the layout of
/// [`CONSUME_LUA`] (and of the quota part of the limiter's joint script).
pub(crate) fn add_counters(
    invocation: &mut redis::ScriptInvocation<'_>,
    state: &RedisState,
    subject: &str,
    windows: &[QuotaCount],
) {
    for w in windows {
        let ttl_ms = w
            .ttl_secs
            .map(|s| (s + TTL_GRACE_SECS).saturating_mul(1000))
            .unwrap_or(0);
        invocation
            .key(counter_key(state, subject, &w.period))
            .arg(w.limit)
            .arg(w.seed.max(0))
            .arg(ttl_ms);
    }
}

/// Reads `{0, used...}` (counted in each of `n` windows) or `{index, used}`
/// (1-based: the first window used up); `None` for anything else.
pub(crate) fn parse_reply(reply: &[i64], n: usize) -> Option<SharedQuotaOutcome> {
    match reply {
        [0, used @ ..] if used.len() == n => Some(SharedQuotaOutcome::Counted(used.to_vec())),
        &[index, used] if index >= 1 && (index as usize) <= n => {
            Some(SharedQuotaOutcome::Exhausted {
                index: index as usize - 1,
                used,
            })
        }
        _ => None,
    }
}

#[async_trait]
impl SharedQuotas for RedisQuotas {
    async fn consume(&self, subject: &str, windows: &[QuotaCount]) -> Option<SharedQuotaOutcome> {
        if windows.is_empty() {
            return None;
        }
        if self.state.should_try() {
            match self.consume_shared(subject, windows).await {
                Ok(outcome) => {
                    self.state.mark_up();
                    return Some(outcome);
                }
                Err(e) => self.state.mark_down(&e),
            }
        }
        // Every decision the caller now takes locally is counted, also
        // while Redis is known down (as the rate limiter counts its own).
        metrics::counter!("gatehouse_quota_fallback_total").increment(1);
        None
    }
}
