//! The currency engine: storage, the in-memory rate table and quotes.
//!
//! [`FxEngine`] is what an adapter (HTTP, CLI) holds. Reads go to an
//! `ArcSwap<RateTable>` snapshot and never wait. Ingestion is serialised:
//! a batch is first committed to the store in one transaction, and only then
//! merged into the book and published as a new snapshot, so memory never
//! shows data the store does not have.
//!
//! On first start (no ECB rows in the store) the bundled ECB history is
//! imported, and the snapshot is built from the parsed batch directly rather
//! than by reading back what was just written.
//!
//! Every other batch is checked first: fixing dates that cannot be genuine
//! refuse the whole file ([`crate::validity`]); then each value is stored,
//! quarantined, refused as a conflict or recorded as a correction
//! ([`crate::admission`], [`crate::review`]), and only published values
//! reach the table.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use gateway_core::Clock;
use rust_decimal::Decimal;
use tokio::sync::Mutex;

use crate::admission::{self, Inputs};
use crate::bundled;
use crate::consensus::ConsensusConfig;
use crate::currency::CurrencyCode;
use crate::error::FxError;
use crate::money::RoundingMode;
use crate::parse::{Batch, Fixing, Format};
use crate::plausibility::PlausibilityConfig;
use crate::query::{self, apply_rate, ConvertRequest};
use crate::review::{CorrectionMeta, CorrectionRecord, ImportMode, StoredState};
use crate::staleness::{FixingCalendar, StalenessLimits};
use crate::store::{
    AuditEvent, AuditKind, IngestReport, ProviderBatch, QuoteRecord, RateStore, Reviewed,
};
use crate::table::{RateBook, RateTable};
use crate::validity::DateRefusal;

/// What happened at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// The bundled history was imported (first start).
    ImportedBundled {
        /// Rows stored.
        rows: u64,
        /// Milliseconds taken (parse + store + index).
        millis: u128,
    },
    /// Existing data was loaded from the store.
    Loaded {
        /// Rows loaded.
        rows: u64,
        /// Milliseconds taken.
        millis: u128,
    },
}

/// What a [`FxEngine::reload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reload {
    /// Raw rows read from the store.
    pub rows: u64,
    /// Fixing dates whose rates changed (0: the table was already current
    /// and was not replaced).
    pub days_changed: usize,
    /// Version of the table now served.
    pub version: u64,
    /// Milliseconds taken (read + merge + publish).
    pub millis: u128,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Reconciliation of several providers.
    pub consensus: ConsensusConfig,
    /// Import the bundled ECB history when the store has none.
    pub import_bundled: bool,
    /// Bounds beyond which a new value is quarantined.
    pub plausibility: PlausibilityConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            consensus: ConsensusConfig::default(),
            import_bundled: true,
            plausibility: PlausibilityConfig::default(),
        }
    }
}

/// Why a provider file was not ingested.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    /// The format could not be recognised.
    #[error(
        "the file's format is not recognised (expected ECB CSV/zip/XML, OXR or Frankfurter JSON)"
    )]
    UnknownFormat,
    /// The file was rejected whole.
    #[error(transparent)]
    Parse(#[from] crate::parse::ParseError),
    /// Fixings dated in the future or before their provider or currency
    /// existed: the file was rejected whole.
    #[error("{} fixing date(s) refused, nothing was stored: {}", .0.len(), join_refusals(.0))]
    Dates(Vec<DateRefusal>),
    /// Storage failed; nothing was stored.
    #[error(transparent)]
    Store(FxError),
}

fn join_refusals(r: &[DateRefusal]) -> String {
    r.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A quoted conversion's result.
#[derive(Debug, Clone)]
pub struct QuotedConversion {
    /// The quote used.
    pub quote: QuoteRecord,
    /// Amount converted.
    pub amount: Decimal,
    /// At the locked mid rate.
    pub mid_amount: Decimal,
    /// At the locked customer rate.
    pub customer_amount: Decimal,
    /// Rounding used.
    pub rounding: RoundingMode,
    /// Audit sequence number of this conversion.
    pub audit_seq: i64,
}

/// The engine.
#[derive(Debug)]
pub struct FxEngine {
    store: Arc<dyn RateStore>,
    book: Mutex<RateBook>,
    table: ArcSwap<RateTable>,
    clock: Arc<dyn Clock>,
    plausibility: PlausibilityConfig,
    bootstrap: Bootstrap,
    /// The report of the latest reload, for logs and tests.
    last_reload: std::sync::Mutex<Option<Reload>>,
}

impl FxEngine {
    /// Opens the engine over a migrated store, importing the bundled
    /// history on first start.
    pub async fn open(
        store: Arc<dyn RateStore>,
        cfg: EngineConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<FxEngine, FxError> {
        let started = Instant::now();
        let mut book = RateBook::new(cfg.consensus);
        let bootstrap = if cfg.import_bundled && store.count_rows(bundled::PROVIDER).await? == 0 {
            let batch = bundled::ecb_history()
                .map_err(|e| FxError::Store(format!("bundled history is unreadable: {e}")))?;
            let report = store
                .ingest(bundled::PROVIDER, Format::EcbZip, &batch, clock.now())
                .await?;
            // Anything already stored from other providers joins the book too.
            for pb in store.load_all().await? {
                if pb.provider == bundled::PROVIDER {
                    continue;
                }
                for b in &pb.batches {
                    let (days, _) = crate::table::normalise(b);
                    book.add_normalised(&pb.provider, days);
                }
            }
            let (days, _) = crate::table::normalise(&batch);
            book.add_normalised(bundled::PROVIDER, days);
            Bootstrap::ImportedBundled {
                rows: report.inserted,
                millis: started.elapsed().as_millis(),
            }
        } else {
            let (rows, _) = merge_stored(&mut book, &store.load_all().await?);
            Bootstrap::Loaded {
                rows,
                millis: started.elapsed().as_millis(),
            }
        };
        let all: Vec<_> = book_dates(&book);
        let table = book.publish(&all, clock.now());
        tracing::info!(?bootstrap, days = table.days().len(), "fx rates loaded");
        Ok(FxEngine {
            store,
            book: Mutex::new(book),
            table: ArcSwap::new(table),
            clock,
            plausibility: cfg.plausibility,
            bootstrap,
            last_reload: std::sync::Mutex::new(None),
        })
    }

    /// What happened at startup.
    pub fn bootstrap(&self) -> &Bootstrap {
        &self.bootstrap
    }

    /// The current snapshot.
    pub fn table(&self) -> Arc<RateTable> {
        self.table.load_full()
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn RateStore> {
        &self.store
    }

    /// The plausibility bounds in force.
    pub fn plausibility(&self) -> &PlausibilityConfig {
        &self.plausibility
    }

    /// Checks a batch and stores it (one transaction): new plausible
    /// values are published, implausible ones quarantined, values differing
    /// from stored ones reported as conflicts; then publishes the updated
    /// table. A batch with a fixing dated in the future or before its
    /// provider or currency existed is refused whole.
    pub async fn ingest(
        &self,
        provider: &str,
        format: Format,
        batch: &Batch,
    ) -> Result<IngestReport, FxError> {
        let refused = crate::validity::check_dates(batch, format, self.clock.now());
        if !refused.is_empty() {
            return Err(FxError::FixingsRefused(join_refusals(&refused)));
        }
        self.review(
            provider,
            format.as_str(),
            batch,
            &ImportMode::Import,
            &|_| None,
        )
        .await
    }

    /// The one checked ingestion path: under the book lock, plans every
    /// value against what is stored and published, stores the plan in one
    /// transaction and publishes what changed.
    async fn review(
        &self,
        provider: &str,
        source: &str,
        batch: &Batch,
        mode: &ImportMode,
        locate: &(dyn Fn(NaiveDate) -> Option<usize> + Sync),
    ) -> Result<IngestReport, FxError> {
        let (Some(first), Some(last)) = (batch.fixings.first(), batch.fixings.last()) else {
            return Err(FxError::Store("empty batch".into()));
        };
        let span = (first.date, last.date);
        let mut book = self.book.lock().await;
        let now = self.clock.now();
        let stored = self.store.stored_values(provider, span.0, span.1).await?;
        let plan = admission::plan(&Inputs {
            provider,
            batch,
            stored: &stored,
            book: &book,
            plausibility: &self.plausibility,
            mode,
            now,
            locate,
        });
        let mut report = self
            .store
            .ingest_reviewed(
                provider,
                source,
                &plan.published,
                Reviewed {
                    held: &plan.held,
                    corrections: &plan.corrections,
                    span,
                },
                now,
            )
            .await?;
        report.ignored += plan.still_quarantined.len() as u64;
        // Corrections replace values, and a non-pivot batch missing some of
        // its values cannot be normalised from the file alone: the store,
        // which now holds exactly what is published, is read back.
        let partial = !(plan.held.is_empty() && plan.conflicts.is_empty());
        let touched =
            if !plan.corrections.is_empty() || (partial && batch.base != crate::table::PIVOT) {
                let stored = self.store.load_range(provider, span.0, span.1).await?;
                merge_stored(&mut book, &stored).1
            } else {
                let (days, _) = crate::table::normalise(&plan.published);
                book.add_normalised(provider, days)
            };
        if !touched.is_empty() {
            self.table.store(book.publish(&touched, now));
        }
        for h in &plan.quarantined {
            tracing::warn!(provider, row = %h.row, rate = %h.rate, reason = %h.reason, "fx value quarantined");
        }
        for c in &plan.conflicts {
            tracing::warn!(provider, row = %c.row, stored = %c.stored, new = %c.new, "fx value conflicts with the stored one; not applied");
        }
        for c in &plan.corrections {
            tracing::info!(provider, date = %c.date, currency = %c.currency, old = %c.old_rate, new = %c.new_rate, actor = %c.actor, reason = %c.reason, "fx value corrected");
        }
        tracing::info!(
            provider,
            inserted = report.inserted,
            ignored = report.ignored,
            quarantined = plan.quarantined.len(),
            conflicts = plan.conflicts.len(),
            corrected = plan.corrections.len(),
            days = touched.len(),
            "fx ingestion stored"
        );
        report.quarantined = plan.quarantined;
        report.still_quarantined = plan.still_quarantined;
        report.conflicts = plan.conflicts;
        report.corrected = plan.corrected;
        Ok(report)
    }

    /// Corrects (or, with its own value, releases from quarantine) one
    /// stored value: audited, the old value kept, the table republished.
    /// `Ok(None)` when the value is already published as given.
    pub async fn correct_one(
        &self,
        provider: &str,
        date: NaiveDate,
        currency: CurrencyCode,
        rate: Decimal,
        meta: CorrectionMeta,
    ) -> Result<Option<CorrectionRecord>, FxError> {
        let rate = crate::parse::check_rate(rate).map_err(FxError::InvalidRate)?;
        let stored = self.store.stored_values(provider, date, date).await?;
        let Some(current) = stored.iter().find(|v| v.currency == currency) else {
            return Err(FxError::FixingNotFound {
                provider: provider.to_string(),
                currency,
                date,
            });
        };
        if current.rate == rate && current.state == StoredState::Published {
            return Ok(None);
        }
        let batch = Batch {
            base: current.base,
            fixings: vec![Fixing {
                date,
                rates: vec![(currency, rate)],
            }],
        };
        let report = self
            .review(
                provider,
                "correction",
                &batch,
                &ImportMode::Correct(meta),
                &|_| None,
            )
            .await?;
        if report.corrected.is_empty() {
            return Ok(None);
        }
        let history = self
            .store
            .corrections(Some(provider), Some(date), Some(date))
            .await?;
        Ok(history.into_iter().rev().find(|c| c.currency == currency))
    }

    /// Parses a whole provider file (format detected when `None`) and
    /// ingests it. A corrupt, truncated or inconsistent file, or one with a
    /// fixing dated in the future or before its provider or currency
    /// existed, is rejected whole, with the reason logged, and nothing is
    /// stored. Each value is then checked as [`ingest`](Self::ingest) does,
    /// and the report names the file line of every value quarantined or in
    /// conflict.
    pub async fn ingest_bytes(
        &self,
        provider: &str,
        format: Option<Format>,
        bytes: &[u8],
    ) -> Result<IngestReport, IngestError> {
        self.import_bytes(provider, format, bytes, &ImportMode::Import)
            .await
    }

    /// [`ingest_bytes`](Self::ingest_bytes) with a mode: with
    /// [`ImportMode::Correct`], values that differ from stored (or
    /// quarantined) ones replace them through audited corrections.
    pub async fn import_bytes(
        &self,
        provider: &str,
        format: Option<Format>,
        bytes: &[u8],
        mode: &ImportMode,
    ) -> Result<IngestReport, IngestError> {
        let format = match format.or_else(|| Format::detect(bytes)) {
            Some(f) => f,
            None => {
                tracing::warn!(provider, "provider file rejected: format not recognised");
                return Err(IngestError::UnknownFormat);
            }
        };
        let batch = format.parse(bytes).map_err(|e| {
            tracing::warn!(provider, format = format.as_str(), location = %e.location, reason = %e.reason, "provider file rejected");
            IngestError::Parse(e)
        })?;
        let mut refused = crate::validity::check_dates(&batch, format, self.clock.now());
        if !refused.is_empty() {
            for r in &mut refused {
                r.line = crate::parse::locate_date(format, bytes, r.date);
                tracing::warn!(provider, format = format.as_str(), refusal = %r, "provider file rejected");
            }
            return Err(IngestError::Dates(refused));
        }
        let locate = |d: NaiveDate| crate::parse::locate_date(format, bytes, d);
        self.review(provider, format.as_str(), &batch, mode, &locate)
            .await
            .map_err(IngestError::Store)
    }

    /// Locks the current rate for `from`→`to` for `ttl`.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_quote(
        &self,
        from: CurrencyCode,
        to: CurrencyCode,
        spread_bps: u32,
        tier: Option<&str>,
        ttl: Duration,
        calendar: &FixingCalendar,
        limits: &StalenessLimits,
    ) -> Result<QuoteRecord, FxError> {
        let table = self.table();
        let now = self.clock.now();
        let resolved = query::resolve(&table, None, now, calendar, limits)?;
        let conv = query::convert_on(
            &table,
            &resolved.day,
            &ConvertRequest {
                from,
                to,
                amount: Decimal::ONE,
                date: None,
                rounding: RoundingMode::HalfEven,
                spread_bps,
            },
        )?;
        let q = QuoteRecord {
            id: format!("q_{}", uuid::Uuid::now_v7().simple()),
            from,
            to,
            mid_rate: conv.mid_rate,
            customer_rate: conv.customer_rate,
            spread_bps,
            tier: tier.unwrap_or_default().to_string(),
            fixing_date: resolved.day.date,
            providers: conv.providers.join(","),
            created_at: now,
            expires_at: now + ttl,
        };
        let detail = serde_json::json!({
            "from": from, "to": to,
            "mid_rate": q.mid_rate.to_string(), "customer_rate": q.customer_rate.to_string(),
            "spread_bps": spread_bps, "tier": q.tier, "fixing_date": q.fixing_date.to_string(),
            "expires_at": crate::store::ts(q.expires_at),
        });
        let audit = AuditEvent {
            seq: 0,
            at: now,
            kind: AuditKind::QuoteCreated,
            quote_id: q.id.clone(),
            detail: detail.to_string(),
        };
        self.store.insert_quote(&q, &audit).await?;
        Ok(q)
    }

    /// Converts `amount` at a quote's locked rates, if it has not expired.
    pub async fn convert_quote(
        &self,
        id: &str,
        amount: Decimal,
        rounding: RoundingMode,
    ) -> Result<QuotedConversion, FxError> {
        let now = self.clock.now();
        let q = self
            .store
            .get_quote(id)
            .await?
            .ok_or_else(|| FxError::QuoteNotFound(id.chars().take(64).collect()))?;
        if now >= q.expires_at {
            let detail = serde_json::json!({
                "reason": "expired", "amount": amount.to_string(),
                "expired_at": crate::store::ts(q.expires_at),
            });
            self.store
                .append_audit(&AuditEvent {
                    seq: 0,
                    at: now,
                    kind: AuditKind::QuoteRefused,
                    quote_id: q.id.clone(),
                    detail: detail.to_string(),
                })
                .await?;
            return Err(FxError::QuoteExpired {
                id: q.id,
                expired_at: crate::store::ts(q.expires_at),
            });
        }
        let mid_amount = apply_rate(amount, q.mid_rate, q.to, rounding)?;
        let customer_amount = apply_rate(amount, q.customer_rate, q.to, rounding)?;
        let detail = serde_json::json!({
            "from": q.from, "to": q.to, "amount": amount.to_string(),
            "mid_rate": q.mid_rate.to_string(), "mid_amount": mid_amount.to_string(),
            "customer_rate": q.customer_rate.to_string(), "customer_amount": customer_amount.to_string(),
            "rounding": rounding.as_str(),
        });
        let audit_seq = self
            .store
            .append_audit(&AuditEvent {
                seq: 0,
                at: now,
                kind: AuditKind::QuoteConverted,
                quote_id: q.id.clone(),
                detail: detail.to_string(),
            })
            .await?;
        Ok(QuotedConversion {
            quote: q,
            amount,
            mid_amount,
            customer_amount,
            rounding,
            audit_seq,
        })
    }

    /// Re-reads every stored row and publishes a new snapshot if the store
    /// holds rows this process has not seen (stored by another process
    /// sharing the database, e.g. another instance of a fleet or
    /// `gatehouse fx import`).
    ///
    /// This is the start-up load (`load_all`, normalise, add to the book)
    /// merged into the current book: raw rows are never updated or deleted,
    /// so the result is the table a fresh start would build, while only the
    /// days that changed are recomputed, untouched days stay shared and the
    /// table version keeps increasing (caches keyed on it stay correct).
    /// Serialised with [`ingest`](Self::ingest); readers never wait.
    pub async fn reload(&self) -> Result<Reload, FxError> {
        self.reload_with(|store| async move { store.load_all().await })
            .await
    }

    /// Like [`reload`](Self::reload), but re-reads only `provider`'s rows
    /// with a fixing date in `first..=last` (inclusive; the bounds may come
    /// in either order). Enough when another process announced what it
    /// stored: raw rows are only ever added, so rows outside the range are
    /// already in the book. The cost follows the range, not the history.
    pub async fn reload_range(
        &self,
        provider: &str,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Result<Reload, FxError> {
        let (first, last) = (first.min(last), first.max(last));
        self.reload_with(|store| async move { store.load_range(provider, first, last).await })
            .await
    }

    /// The one reload path: under the book lock (serialised with ingestion),
    /// reads what `load` returns, merges it and publishes the changed days.
    async fn reload_with<'a, F, Fut>(&'a self, load: F) -> Result<Reload, FxError>
    where
        F: FnOnce(&'a Arc<dyn RateStore>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<ProviderBatch>, FxError>>,
    {
        let started = Instant::now();
        let mut book = self.book.lock().await;
        let stored = load(&self.store).await?;
        let (rows, mut touched) = merge_stored(&mut book, &stored);
        touched.sort_unstable();
        touched.dedup();
        if !touched.is_empty() {
            self.table.store(book.publish(&touched, self.clock.now()));
        }
        let report = Reload {
            rows,
            days_changed: touched.len(),
            version: self.table.load().version,
            millis: started.elapsed().as_millis(),
        };
        *self
            .last_reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(report);
        Ok(report)
    }

    /// What the latest successful [`reload`](Self::reload) or
    /// [`reload_range`](Self::reload_range) did (`None` before the first).
    pub fn last_reload(&self) -> Option<Reload> {
        *self
            .last_reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When the engine's data last changed.
    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.table().updated_at
    }
}

/// Sets each provider's days in `book` to what the store publishes for
/// them (corrections included); returns the rows read and the dates that
/// changed.
fn merge_stored(
    book: &mut RateBook,
    stored: &[crate::store::ProviderBatch],
) -> (u64, Vec<chrono::NaiveDate>) {
    let mut rows = 0u64;
    let mut touched = Vec::new();
    for pb in stored {
        let mut days: std::collections::BTreeMap<NaiveDate, Vec<(CurrencyCode, Decimal)>> =
            std::collections::BTreeMap::new();
        for b in &pb.batches {
            rows += b.len() as u64;
            let (normalised, _) = crate::table::normalise(b);
            for (date, rates) in normalised {
                let day = days.entry(date).or_default();
                for (c, v) in rates {
                    if !day.iter().any(|r| r.0 == c) {
                        day.push((c, v));
                    }
                }
            }
        }
        touched.extend(book.replace_normalised(&pb.provider, days.into_iter().collect()));
    }
    (rows, touched)
}

fn book_dates(book: &RateBook) -> Vec<chrono::NaiveDate> {
    book.dates()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Fixing;
    use crate::store::SqlStore;
    use chrono::TimeZone;
    use gateway_core::ManualClock;

    fn batch(date: &str, usd: i64) -> Batch {
        Batch {
            base: CurrencyCode::EUR,
            fixings: vec![Fixing {
                date: NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap(),
                rates: vec![(CurrencyCode::USD, Decimal::new(usd, 4))],
            }],
        }
    }

    /// Two engines over one in-memory store, standing for two processes on
    /// one database: A stores `ecb` fixings of `days` before B opens.
    async fn engines_sharing_a_store(days: &[(&str, i64)]) -> (FxEngine, FxEngine) {
        let store: Arc<dyn RateStore> =
            Arc::new(SqlStore::connect("sqlite::memory:", None).await.unwrap());
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap(),
        ));
        let cfg = EngineConfig {
            import_bundled: false,
            ..EngineConfig::default()
        };
        let a = FxEngine::open(store.clone(), cfg.clone(), clock.clone())
            .await
            .unwrap();
        for (day, usd) in days {
            a.ingest("ecb", Format::EcbXml, &batch(day, *usd))
                .await
                .unwrap();
        }
        let b = FxEngine::open(store, cfg, clock).await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn reload_picks_up_rows_another_process_stored() {
        let (a, b) = engines_sharing_a_store(&[("2026-10-29", 11150)]).await;
        let v0 = b.table().version;
        assert_eq!(b.table().days().len(), 1);

        a.ingest("ecb", Format::EcbXml, &batch("2026-10-30", 11172))
            .await
            .unwrap();
        assert_eq!(b.table().days().len(), 1, "b has not looked yet");
        let r = b.reload().await.unwrap();
        assert_eq!((r.rows, r.days_changed), (2, 1));
        let t = b.table();
        assert_eq!(t.latest().unwrap().date.to_string(), "2026-10-30");
        assert_eq!(
            t.latest().unwrap().mid(CurrencyCode::USD),
            Some(Decimal::new(11172, 4))
        );
        // The version only grows, so caches keyed on it never serve old data.
        assert!(t.version > v0);
        // Nothing new: the snapshot is kept as it is.
        let again = b.reload().await.unwrap();
        assert_eq!(again.days_changed, 0);
        assert!(Arc::ptr_eq(&t, &b.table()));
    }

    #[tokio::test]
    async fn reload_range_reads_only_the_announced_span() {
        let (a, b) = engines_sharing_a_store(&[("2026-10-28", 11140), ("2026-10-29", 11150)]).await;
        let v0 = b.table().version;
        a.ingest("ecb", Format::EcbXml, &batch("2026-10-30", 11172))
            .await
            .unwrap();
        a.ingest("oxr", Format::EcbXml, &batch("2026-10-30", 11171))
            .await
            .unwrap();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        // Only ecb's row of the 30th is read; bounds in either order.
        let r = b
            .reload_range("ecb", d("2026-10-30"), d("2026-10-29"))
            .await
            .unwrap();
        assert_eq!((r.rows, r.days_changed), (2, 1));
        let t = b.table();
        assert_eq!(t.days().len(), 3);
        assert_eq!(
            t.latest().unwrap().providers_of(CurrencyCode::USD),
            vec![Arc::<str>::from("ecb")],
            "oxr was not in the range"
        );
        assert!(t.version > v0);
        // The same result as a full reload would give, from here on.
        assert_eq!(b.last_reload(), Some(r));
        let full = b.reload().await.unwrap();
        assert_eq!((full.rows, full.days_changed), (4, 1));
        assert_eq!(b.last_reload(), Some(full));
    }
}
