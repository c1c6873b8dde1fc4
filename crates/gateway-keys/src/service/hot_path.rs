//! What the request path calls: key verification and use notes, plan
//! limits, scope denials and addresses over the failure limit. Memory
//! only; what must be written is queued for the next flush.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::DateTime;
use serde_json::json;

use crate::identity::{Identity, IdentityKind};
use crate::key::{ApiKey, ConsumerId, KeyHash, KeyId};
use crate::keyring::{KeyEntry, Verified, VerifyFailure};
use crate::model::{AuditAction, KeyStatus, NewAuditEntry};
use crate::ratelimit::{LimitKind, LimitSubject, Limited, RateLimitInfo};
use crate::usage::RefusalReason;

use super::state::{KeyService, UseNote, SYSTEM_ACTOR};

impl KeyService {
    /// Verifies a parsed key against the in-memory keyring and notes its
    /// use for the batched last-used update. No I/O.
    pub fn verify(&self, key: &ApiKey) -> Result<Verified, VerifyFailure> {
        self.verify_hash(&key.hash())
    }

    /// [`KeyService::verify`] for a key already checked and hashed.
    pub(crate) fn verify_hash(&self, hash: &KeyHash) -> Result<Verified, VerifyFailure> {
        let now_us = self.now_micros();
        let v = self
            .inner
            .keyring
            .verify_hash_at(hash, now_us)
            .inspect_err(|f| self.note_failure(hash, *f, now_us))?;
        self.note_use(&v.entry, v.status, now_us);
        Ok(v)
    }

    /// Looks a key hash up at `now_us` (microseconds since the epoch) and
    /// lends the key's entry and state to `f`, without noting the use: for
    /// a caller that may still refuse the request (and otherwise calls
    /// `note_use`).
    pub(crate) fn lend_hash<R>(
        &self,
        hash: &KeyHash,
        now_us: i64,
        f: impl FnOnce(&Arc<KeyEntry>, KeyStatus) -> R,
    ) -> Result<R, VerifyFailure> {
        self.inner
            .keyring
            .lend_hash_at(hash, now_us, f)
            .inspect_err(|failure| self.note_failure(hash, *failure, now_us))
    }

    /// Counts a known key's refusal (revoked, expired) in its usage; an
    /// unknown key has no usage to count in.
    fn note_failure(&self, hash: &KeyHash, failure: VerifyFailure, now_us: i64) {
        let reason = match failure {
            VerifyFailure::Revoked => RefusalReason::Revoked,
            VerifyFailure::Expired => RefusalReason::Expired,
            VerifyFailure::Unknown => return,
        };
        if let Some(id) = self.inner.keyring.key_id_of(hash) {
            self.inner.usage.refusal(&id, reason, secs(now_us));
        }
    }

    /// Counts a refusal of `key` in its usage (scope and plan limits).
    pub(crate) fn note_refusal(&self, key: &KeyId, reason: RefusalReason) {
        self.inner
            .usage
            .refusal(key, reason, secs(self.now_micros()));
    }

    /// Records that a verified key was used at `now_us`, for the batched
    /// last-used update. A key in steady use is noted once a second (and
    /// again at once if it starts retiring): the request path then only
    /// reads the entry's stamp, and `last_used_at` is exact to the second.
    pub(crate) fn note_use(&self, entry: &KeyEntry, status: KeyStatus, now_us: i64) {
        self.inner.usage.request(&entry.record.id, secs(now_us));
        let retiring = status == KeyStatus::Retiring;
        let stamp = now_us.div_euclid(1_000_000) * 2 + i64::from(retiring);
        if entry.noted.load(Ordering::Relaxed) == stamp {
            return;
        }
        entry.noted.store(stamp, Ordering::Relaxed);
        let note = UseNote {
            at: DateTime::from_timestamp_micros(now_us).unwrap_or_default(),
            retiring,
        };
        // Update a note not yet flushed in place rather than cloning the id
        // for a fresh insert.
        let id = &entry.record.id;
        if let Some(mut slot) = self.inner.uses.get_mut(id) {
            *slot = note;
        } else {
            self.inner.uses.insert(id.clone(), note);
        }
    }

    /// Notes the client that sent a key in its grace period (see
    /// [`crate::grace_clients`]); the caller checks the key is retiring.
    pub(crate) fn note_grace_client(
        &self,
        id: &KeyId,
        ip: Option<IpAddr>,
        user_agent: Option<&str>,
        now_us: i64,
    ) {
        let at = DateTime::from_timestamp_micros(now_us).unwrap_or_default();
        self.inner.grace_clients.note(id, ip, user_agent, at);
    }

    /// The service's clock, in microseconds since the epoch (for callers
    /// that note uses).
    pub(crate) fn now_micros(&self) -> i64 {
        self.inner.clock.now_micros()
    }

    /// Whether [`Self::check_limits`] has anything to check for `identity`
    /// (a consumer whose plan, or the default plan, is configured): lets
    /// the request path skip building its future otherwise.
    pub fn has_limits(&self, identity: &Identity) -> bool {
        identity.consumer_id.is_some()
            && identity
                .plan
                .as_deref()
                .or(self.inner.config.load().default_plan.as_deref())
                .is_some_and(|p| self.inner.plans.load().contains_key(p))
    }

    /// Checks the identity's plan limits (rate, then quotas). Anonymous
    /// identities and identities without a plan pass with no headers.
    pub async fn check_limits(&self, identity: &Identity) -> Result<RateLimitInfo, Limited> {
        let Some(consumer) = identity.consumer_id.as_deref() else {
            return Ok(RateLimitInfo::default());
        };
        let plans = self.inner.plans.load();
        let config = self.inner.config.load();
        let plan_name = identity.plan.as_deref().or(config.default_plan.as_deref());
        let Some(plan) = plan_name.and_then(|p| plans.get(p)) else {
            return Ok(RateLimitInfo::default());
        };
        let prefix = match identity.kind {
            IdentityKind::Jwt => "jwt",
            _ => "consumer",
        };
        let rate_key = format!("{prefix}:{consumer}");
        let quota_key = match (&identity.group, plan.shared_by_group) {
            (Some(g), true) => format!("group:{g}"),
            _ => rate_key.clone(),
        };
        let subject = LimitSubject {
            rate_key,
            quota_key,
        };
        let result = self.inner.limits.check(&subject, plan).await;
        if let (Err(limited), Some(key)) = (&result, &identity.key_id) {
            match limited.kind {
                LimitKind::Rate => self.note_refusal(key, RefusalReason::RateLimited),
                LimitKind::Quota => self.note_refusal(key, RefusalReason::Quota),
                LimitKind::UnauthenticatedIp | LimitKind::FailedAuthIp => {}
            }
        }
        result
    }

    /// Queues an audit entry written by the next flush (for hot-path events).
    pub(crate) fn queue_audit(&self, entry: NewAuditEntry) {
        let mut q = self.inner.audit_queue.lock();
        // Bound the queue: a flood of denials must not grow memory forever.
        if q.len() < 10_000 {
            q.push(entry);
        }
    }

    /// Records a scope denial (once per key and route between flushes).
    pub(crate) fn note_scope_denial(
        &self,
        key: &KeyId,
        consumer: &ConsumerId,
        route: &str,
        reason: &str,
    ) {
        self.note_refusal(key, RefusalReason::Scope);
        if self
            .inner
            .denials_seen
            .insert((key.clone(), route.to_string()), ())
            .is_none()
        {
            self.queue_audit(NewAuditEntry {
                at: self.inner.clock.now(),
                actor: SYSTEM_ACTOR.into(),
                action: AuditAction::ScopeDenied,
                key_id: Some(key.clone()),
                consumer_id: Some(consumer.clone()),
                detail: json!({ "route": route, "reason": reason }),
            });
        }
    }

    /// Whether `ip`'s last failed verification on this node left it over
    /// the failure limit (and no request since found it under).
    pub(crate) fn ip_was_blocked(&self, ip: IpAddr) -> bool {
        // The count spares the common case (nobody blocked) a hashed lookup.
        self.inner.blocked_count.load(Ordering::Relaxed) > 0
            && self.inner.blocked_ips.contains_key(&ip)
    }

    /// Records that `ip` tripped (`blocked`) or cleared the failure limit;
    /// a burst is audited once, when it starts.
    pub(crate) fn note_ip_blocked(&self, ip: IpAddr, blocked: bool) {
        if !blocked {
            if self.inner.blocked_ips.remove(&ip).is_some() {
                self.inner.blocked_count.fetch_sub(1, Ordering::Relaxed);
            }
            return;
        }
        if self.inner.blocked_ips.insert(ip, ()).is_none() {
            self.inner.blocked_count.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client_ip = %ip, "burst of failed key verifications; address limited");
            self.queue_audit(NewAuditEntry {
                at: self.inner.clock.now(),
                actor: ip.to_string(),
                action: AuditAction::FailureBurst,
                key_id: None,
                consumer_id: None,
                detail: json!({ "client_ip": ip.to_string() }),
            });
        }
    }
}

/// Microseconds to whole seconds since the epoch.
fn secs(now_us: i64) -> u64 {
    u64::try_from(now_us.div_euclid(1_000_000)).unwrap_or(0)
}
