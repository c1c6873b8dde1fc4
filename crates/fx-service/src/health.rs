//! Provider health: what the scheduler, the fleet and the API know about
//! each rate provider (state, last attempt and success, failures, rows
//! stored, quarantined or conflicting, validators for conditional GETs).
//!
//! Written by the fetcher ([`crate::ingest`]) and, in a fleet, by peers'
//! announcements ([`crate::fleet`]); read by `/v1/providers`. It depends on
//! none of them.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use fx::staleness::FixingCalendar;
use parking_lot::RwLock;
use serde::Serialize;

use crate::config::ProviderConfig;

/// Health of one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderState {
    /// Not fetched yet.
    Pending,
    /// Last fetch succeeded and its data is current.
    Healthy,
    /// Last fetch failed (network, HTTP status or rejected file).
    Failing,
    /// Fetches succeed but its newest fixing is overdue beyond `stale_after`.
    Stale,
}

impl ProviderState {
    /// Name for logs and the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderState::Pending => "pending",
            ProviderState::Healthy => "healthy",
            ProviderState::Failing => "failing",
            ProviderState::Stale => "stale",
        }
    }
}

/// What is known about a provider.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProviderHealth {
    /// Provider name.
    pub name: String,
    /// Format fetched.
    pub format: String,
    /// State (stale is computed when read).
    pub state: ProviderState,
    /// Last attempt.
    pub last_attempt: Option<DateTime<Utc>>,
    /// Last success (including 304).
    pub last_success: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Failed attempts in a row (a fetch with retries counts once).
    pub consecutive_failures: u32,
    /// Newest fixing date received from this provider.
    pub last_fixing: Option<NaiveDate>,
    /// Raw rows stored from this provider by this process.
    pub rows_ingested: u64,
    /// Values from this provider quarantined by this process (implausible
    /// moves; held back until corrected or approved).
    pub rows_quarantined: u64,
    /// Values from this provider that differed from stored ones and were
    /// not applied, counted by this process.
    pub rows_conflicting: u64,
    /// The latest quarantined or conflicting value, described.
    pub last_review_issue: Option<String>,
    /// Validator for the next conditional GET.
    #[serde(skip)]
    pub etag: Option<String>,
    /// Validator for the next conditional GET.
    #[serde(skip)]
    pub last_modified: Option<String>,
    #[serde(skip)]
    stale_after: Duration,
}

/// Health of every provider, shared between the scheduler and the API.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    map: RwLock<BTreeMap<String, ProviderHealth>>,
}

impl HealthRegistry {
    /// Registers a provider as pending.
    pub fn register(&self, p: &ProviderConfig) {
        self.map
            .write()
            .entry(p.name.clone())
            .or_insert_with(|| ProviderHealth {
                name: p.name.clone(),
                format: p.format.as_str().to_string(),
                state: ProviderState::Pending,
                last_attempt: None,
                last_success: None,
                last_error: None,
                consecutive_failures: 0,
                last_fixing: None,
                rows_ingested: 0,
                rows_quarantined: 0,
                rows_conflicting: 0,
                last_review_issue: None,
                etag: None,
                last_modified: None,
                stale_after: p.stale_after,
            });
    }

    pub(crate) fn update(&self, name: &str, f: impl FnOnce(&mut ProviderHealth)) {
        if let Some(h) = self.map.write().get_mut(name) {
            f(h);
        }
    }

    pub(crate) fn validators(&self, name: &str) -> (Option<String>, Option<String>) {
        self.map
            .read()
            .get(name)
            .map(|h| (h.etag.clone(), h.last_modified.clone()))
            .unwrap_or_default()
    }

    /// Records that another instance of the fleet stored new rows from
    /// `name` (this one skipped the fetch because a peer held the lease).
    pub(crate) fn record_peer_fetch(&self, name: &str, last_fixing: NaiveDate, at: DateTime<Utc>) {
        self.update(name, |h| {
            h.state = ProviderState::Healthy;
            h.last_success = Some(at);
            h.last_error = None;
            h.consecutive_failures = 0;
            h.last_fixing = h.last_fixing.max(Some(last_fixing));
        });
    }

    /// Every provider's health as of `now`.
    pub fn snapshot(&self, now: DateTime<Utc>, calendar: &FixingCalendar) -> Vec<ProviderHealth> {
        self.map
            .read()
            .values()
            .map(|h| {
                let mut h = h.clone();
                if h.state == ProviderState::Healthy {
                    if let Some(d) = h.last_fixing {
                        let overdue = calendar.freshness(d, now).overdue;
                        if overdue.to_std().unwrap_or_default() > h.stale_after {
                            h.state = ProviderState::Stale;
                        }
                    }
                }
                h
            })
            .collect()
    }

    /// One provider's health.
    pub fn get(
        &self,
        name: &str,
        now: DateTime<Utc>,
        calendar: &FixingCalendar,
    ) -> Option<ProviderHealth> {
        self.snapshot(now, calendar)
            .into_iter()
            .find(|h| h.name == name)
    }
}
