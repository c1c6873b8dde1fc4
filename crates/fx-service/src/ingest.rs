//! Scheduled ingestion from rate providers over HTTP.
//!
//! Each configured provider is fetched from its URL on its own interval,
//! with a per-attempt timeout, retries with exponential backoff on network
//! errors and 5xx/429 answers, and conditional GET (`If-None-Match` /
//! `If-Modified-Since` from the previous success) so an unchanged file costs
//! a 304. A fetched file goes through [`fx::FxEngine::ingest_bytes`]: parsed
//! whole, then stored in one transaction, or rejected whole with the reason
//! logged. A failing provider is marked so in the [`HealthRegistry`]; the
//! others carry on and the served consensus simply lacks it.

use std::sync::Arc;

use chrono::NaiveDate;
use fx::engine::IngestError;
use fx::FxEngine;
use gateway_core::body::{read_capped, Capped};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ProviderConfig;
use crate::fleet::{lease_ttl, Fleet, Lease};
// Provider health lives in `health`; these paths stay for callers.
pub use crate::health::{HealthRegistry, ProviderHealth, ProviderState};

/// Result of one scheduled fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// 304: nothing new.
    NotModified,
    /// Stored (possibly 0 new rows if already known).
    Ingested {
        /// New rows.
        inserted: u64,
        /// Newest fixing in the file.
        last_fixing: NaiveDate,
    },
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    /// Network failure or timeout, after all retries.
    #[error("request failed after {attempts} attempts: {reason}")]
    Unreachable {
        /// Attempts made.
        attempts: u32,
        /// Last error.
        reason: String,
    },
    /// A non-retryable HTTP status.
    #[error("provider answered HTTP {0}")]
    Status(u16),
    /// The file was rejected whole.
    #[error("file rejected: {0}")]
    Rejected(String),
    /// The body exceeded the size limit.
    #[error("file is larger than {0} bytes")]
    TooLarge(usize),
}

/// Fetches providers and feeds the engine.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    engine: Arc<FxEngine>,
    health: Arc<HealthRegistry>,
    /// In a fleet: announces new rows and takes fetch leases.
    fleet: Option<Fleet>,
}

fn retryable(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

impl Fetcher {
    /// A fetcher with its own HTTP client.
    pub fn new(engine: Arc<FxEngine>, health: Arc<HealthRegistry>) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("gatehouse-fx/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            client,
            engine,
            health,
            fleet: None,
        }
    }

    /// Makes this fetcher a member of `fleet`: stored rows are announced to
    /// the other instances, and scheduled fetches take the provider's lease.
    pub fn with_fleet(mut self, fleet: Option<Fleet>) -> Self {
        self.fleet = fleet;
        self
    }

    /// The health registry.
    pub fn health(&self) -> &Arc<HealthRegistry> {
        &self.health
    }

    async fn attempt(
        &self,
        p: &ProviderConfig,
    ) -> Result<Option<(bytes::Bytes, Option<String>, Option<String>)>, (bool, FetchError)> {
        let (etag, lm) = self.health.validators(&p.name);
        let mut req = self.client.get(&p.url).timeout(p.timeout);
        if let Some(e) = etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, e);
        }
        if let Some(l) = lm {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, l);
        }
        let unreachable = |e: reqwest::Error| {
            (
                true,
                FetchError::Unreachable {
                    attempts: 1,
                    reason: if e.is_timeout() {
                        "timed out".into()
                    } else {
                        e.to_string()
                    },
                },
            )
        };
        let res = req.send().await.map_err(unreachable)?;
        let status = res.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        if !status.is_success() {
            return Err((retryable(status), FetchError::Status(status.as_u16())));
        }
        let header = |n: reqwest::header::HeaderName| {
            res.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let new_etag = header(reqwest::header::ETAG);
        let new_lm = header(reqwest::header::LAST_MODIFIED);
        let limit = fx::parse::MAX_INPUT_BYTES;
        if res.content_length().is_some_and(|l| l as usize > limit) {
            return Err((false, FetchError::TooLarge(limit)));
        }
        let mut body = http::Response::<reqwest::Body>::from(res).into_body();
        match read_capped(&mut body, limit).await.map_err(unreachable)? {
            Capped::Complete(body) => Ok(Some((body, new_etag, new_lm))),
            Capped::TooLarge => Err((false, FetchError::TooLarge(limit))),
        }
    }

    /// Fetches one provider now (with retries) and ingests what it serves.
    pub async fn fetch_once(&self, p: &ProviderConfig) -> Result<FetchOutcome, FetchError> {
        self.health.register(p);
        let now = self.engine.clock().now();
        self.health.update(&p.name, |h| h.last_attempt = Some(now));
        let mut delay = p.backoff;
        let mut attempts = 0;
        let fetched = loop {
            attempts += 1;
            match self.attempt(p).await {
                Ok(v) => break Ok(v),
                Err((retry, e)) if retry && attempts <= p.retries => {
                    tracing::warn!(provider = %p.name, attempt = attempts, error = %e, "fx provider fetch failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(p.backoff_max);
                }
                Err((_, FetchError::Unreachable { reason, .. })) => {
                    break Err(FetchError::Unreachable { attempts, reason })
                }
                Err((_, e)) => break Err(e),
            }
        };
        let result = match fetched {
            Ok(None) => Ok(FetchOutcome::NotModified),
            Ok(Some((body, etag, lm))) => match self
                .engine
                .ingest_bytes(&p.name, Some(p.format), &body)
                .await
            {
                Ok(report) => {
                    if let Some(f) = &self.fleet {
                        f.announce_ingest(&p.name, &report).await;
                    }
                    for q in &report.quarantined {
                        tracing::warn!(provider = %p.name, row = %q.row, rate = %q.rate, reason = %q.reason, "fx provider value quarantined; correct or approve it to publish it");
                    }
                    for c in &report.conflicts {
                        tracing::warn!(provider = %p.name, row = %c.row, stored = %c.stored, new = %c.new, "fx provider value differs from the stored one; not applied");
                    }
                    let issue = report
                        .quarantined
                        .last()
                        .map(|q| format!("{} {} quarantined: {}", q.row, q.rate, q.reason))
                        .or_else(|| {
                            report.conflicts.last().map(|c| {
                                format!("{} {} differs from the stored {}", c.row, c.new, c.stored)
                            })
                        });
                    self.health.update(&p.name, |h| {
                        h.etag = etag;
                        h.last_modified = lm;
                        h.rows_ingested += report.inserted;
                        h.rows_quarantined += report.quarantined.len() as u64;
                        h.rows_conflicting += report.conflicts.len() as u64;
                        if issue.is_some() {
                            h.last_review_issue = issue;
                        }
                        h.last_fixing = h.last_fixing.max(Some(report.last_date));
                    });
                    Ok(FetchOutcome::Ingested {
                        inserted: report.inserted,
                        last_fixing: report.last_date,
                    })
                }
                Err(IngestError::Store(e)) => Err(FetchError::Rejected(format!("not stored: {e}"))),
                Err(e) => Err(FetchError::Rejected(e.to_string())),
            },
            Err(e) => Err(e),
        };
        let done = self.engine.clock().now();
        match &result {
            Ok(_) => self.health.update(&p.name, |h| {
                h.state = ProviderState::Healthy;
                h.last_success = Some(done);
                h.last_error = None;
                h.consecutive_failures = 0;
            }),
            Err(e) => {
                tracing::warn!(provider = %p.name, error = %e, "fx provider fetch failed");
                self.health.update(&p.name, |h| {
                    h.state = ProviderState::Failing;
                    h.last_error = Some(e.to_string());
                    h.consecutive_failures += 1;
                })
            }
        }
        result
    }

    /// One tick of a provider's schedule: fetches, unless another instance
    /// of the fleet holds the provider's lease for this interval (it then
    /// announces what it stored). Without Redis, or when Redis fails, this
    /// instance fetches on its own: availability before economy.
    pub async fn scheduled_fetch(
        &self,
        p: &ProviderConfig,
    ) -> Option<Result<FetchOutcome, FetchError>> {
        if let Some(f) = &self.fleet {
            let lease = f.try_lease(&p.name, lease_ttl(p.interval)).await;
            if !lease.should_fetch() {
                tracing::debug!(provider = %p.name, "fx provider fetched by another instance this interval; skipping");
                return None;
            }
            if lease == Lease::Unavailable {
                tracing::debug!(provider = %p.name, "fx fleet lease unavailable (Redis down); fetching locally");
            }
        }
        Some(self.fetch_once(p).await)
    }

    /// Starts one task per enabled provider, fetching immediately and then
    /// every `interval`, until `shutdown` turns true. In a fleet, each tick
    /// goes through [`scheduled_fetch`](Self::scheduled_fetch).
    pub fn spawn(
        &self,
        providers: &[ProviderConfig],
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        providers
            .iter()
            .filter(|p| p.enabled)
            .map(|p| {
                self.health.register(p);
                let me = self.clone();
                let p = p.clone();
                let mut stop = shutdown.clone();
                tokio::spawn(async move {
                    loop {
                        me.scheduled_fetch(&p).await;
                        tokio::select! {
                            _ = tokio::time::sleep(p.interval) => {}
                            _ = stop.changed() => break,
                        }
                        if *stop.borrow() {
                            break;
                        }
                    }
                })
            })
            .collect()
    }
}
