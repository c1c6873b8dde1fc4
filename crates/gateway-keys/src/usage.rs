//! Per-key usage on this node: requests and refusals by reason, per hour,
//! for the last [`USAGE_HOURS`] hours. In memory only, fed from the hot
//! path with a few relaxed atomic additions; it is what the console's
//! per-key chart draws. Memory is bounded: at most [`MAX_TRACKED_KEYS`]
//! keys are tracked (each [`KEY_USAGE_BYTES`] bytes); past that, new keys
//! are not counted until a restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use serde::Serialize;

use crate::key::KeyId;

/// Hours of usage kept per key.
pub const USAGE_HOURS: usize = 24;
/// Keys tracked at most.
pub const MAX_TRACKED_KEYS: usize = 100_000;
/// Memory of one tracked key's counters.
pub const KEY_USAGE_BYTES: usize = std::mem::size_of::<KeyUsageRing>();

/// Why a known key's request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// The key is revoked.
    Revoked,
    /// The key has expired (or its grace period ended).
    Expired,
    /// The route is outside the key's scopes.
    Scope,
    /// The plan's rate limit.
    RateLimited,
    /// A plan quota is used up.
    Quota,
}

impl RefusalReason {
    /// Every reason, in the order counters are kept.
    pub const ALL: [Self; 5] = [
        Self::Revoked,
        Self::Expired,
        Self::Scope,
        Self::RateLimited,
        Self::Quota,
    ];

    /// Stable identifier.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Scope => "scope",
            Self::RateLimited => "rate_limited",
            Self::Quota => "quota",
        }
    }
}

struct HourSlot {
    /// Hour index plus one held; 0 when unused.
    epoch: AtomicU64,
    requests: AtomicU64,
    refusals: [AtomicU64; RefusalReason::ALL.len()],
}

impl HourSlot {
    fn new() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            refusals: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn enter(&self, hour: u64) {
        let want = hour + 1;
        let have = self.epoch.load(Ordering::Acquire);
        if have < want
            && self
                .epoch
                .compare_exchange(have, want, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.requests.store(0, Ordering::Relaxed);
            for r in &self.refusals {
                r.store(0, Ordering::Relaxed);
            }
        }
    }
}

struct KeyUsageRing {
    hours: [HourSlot; USAGE_HOURS],
}

/// One hour of a key's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageHour {
    /// Start of the hour, Unix seconds.
    pub t: u64,
    /// Requests the key authenticated (including those then refused for
    /// scope or plan limits; revoked and expired uses count only as
    /// refusals).
    pub requests: u64,
    /// Requests refused, by reason.
    #[schema(value_type = std::collections::BTreeMap<String, u64>)]
    pub refusals: std::collections::BTreeMap<&'static str, u64>,
}

/// A key's usage over the last day, oldest hour first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyUsageReport {
    /// The key.
    pub key_id: KeyId,
    /// The hours, the current (partial) one last.
    pub hours: Vec<UsageHour>,
    /// For a key in its grace period, the clients still sending it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_clients: Option<crate::grace_clients::GraceClientsReport>,
}

/// The per-key counters.
#[derive(Default)]
pub struct UsageCounters {
    keys: DashMap<KeyId, Arc<KeyUsageRing>>,
}

impl UsageCounters {
    fn ring(&self, id: &KeyId) -> Option<Arc<KeyUsageRing>> {
        if let Some(r) = self.keys.get(id) {
            return Some(r.clone());
        }
        if self.keys.len() >= MAX_TRACKED_KEYS {
            return None;
        }
        Some(
            self.keys
                .entry(id.clone())
                .or_insert_with(|| {
                    Arc::new(KeyUsageRing {
                        hours: std::array::from_fn(|_| HourSlot::new()),
                    })
                })
                .clone(),
        )
    }

    fn slot(ring: &KeyUsageRing, now_secs: u64) -> &HourSlot {
        let hour = now_secs / 3600;
        let slot = &ring.hours[(hour % USAGE_HOURS as u64) as usize];
        slot.enter(hour);
        slot
    }

    /// Counts a request let through at `now_secs`.
    pub fn request(&self, id: &KeyId, now_secs: u64) {
        if let Some(ring) = self.ring(id) {
            Self::slot(&ring, now_secs)
                .requests
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a refusal at `now_secs`.
    pub fn refusal(&self, id: &KeyId, reason: RefusalReason, now_secs: u64) {
        if let Some(ring) = self.ring(id) {
            let i = RefusalReason::ALL
                .iter()
                .position(|r| *r == reason)
                .expect("every reason is in ALL");
            Self::slot(&ring, now_secs).refusals[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The key's last [`USAGE_HOURS`] hours as of `now_secs` (zeros when
    /// it was not used).
    pub fn report(&self, id: &KeyId, now_secs: u64) -> KeyUsageReport {
        let current = now_secs / 3600;
        let ring = self.keys.get(id).map(|r| r.clone());
        let hours = (current + 1 - (USAGE_HOURS as u64).min(current + 1)..=current)
            .map(|hour| {
                let slot = ring
                    .as_ref()
                    .map(|r| &r.hours[(hour % USAGE_HOURS as u64) as usize])
                    .filter(|s| s.epoch.load(Ordering::Acquire) == hour + 1);
                UsageHour {
                    t: hour * 3600,
                    requests: slot.map_or(0, |s| s.requests.load(Ordering::Relaxed)),
                    refusals: RefusalReason::ALL
                        .iter()
                        .enumerate()
                        .map(|(i, r)| {
                            (
                                r.as_str(),
                                slot.map_or(0, |s| s.refusals[i].load(Ordering::Relaxed)),
                            )
                        })
                        .collect(),
                }
            })
            .collect();
        KeyUsageReport {
            key_id: id.clone(),
            hours,
            grace_clients: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_and_refusals_per_hour() {
        let u = UsageCounters::default();
        let id = KeyId::generate();
        let t = 1_700_000_000 - 1_700_000_000 % 3600;
        u.request(&id, t);
        u.request(&id, t + 10);
        u.refusal(&id, RefusalReason::RateLimited, t + 20);
        u.request(&id, t + 3600);
        let r = u.report(&id, t + 3600);
        assert_eq!(r.hours.len(), USAGE_HOURS);
        let prev = &r.hours[USAGE_HOURS - 2];
        assert_eq!(
            (prev.t, prev.requests, prev.refusals["rate_limited"]),
            (t, 2, 1)
        );
        assert_eq!(r.hours[USAGE_HOURS - 1].requests, 1);
        // A day later the old hour's slot is reused, not added to.
        u.request(&id, t + 24 * 3600);
        let r = u.report(&id, t + 24 * 3600);
        assert_eq!(r.hours.iter().map(|h| h.requests).sum::<u64>(), 2);
        let other = u.report(&KeyId::generate(), t);
        assert!(other.hours.iter().all(|h| h.requests == 0));
    }
}
