//! Deciding what happens to each value of an incoming batch.
//!
//! Given what is stored for the batch's provider and dates and the
//! published rates (the [`RateBook`]), every `(date, currency, value)` is:
//!
//! - *already stored* when the same value is stored (nothing changes);
//! - a *conflict* when a different value is stored and the import is not a
//!   correction (nothing changes for it; reported);
//! - a *correction* when a different (or quarantined) value is stored and
//!   the import is one ([`ImportMode::Correct`]);
//! - *quarantined* when it is new and fails a plausibility check;
//! - *published* otherwise.
//!
//! Pure: the engine reads the inputs and stores the [`Plan`].

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::currency::CurrencyCode;
use crate::parse::{Batch, Fixing};
use crate::plausibility::{PlausibilityConfig, References};
use crate::review::{
    Conflict, Corrected, CorrectionRecord, Held, ImportMode, QuarantineRecord, RowRef, StoredState,
    StoredValue,
};
use crate::table::RateBook;

/// What to store for a batch, and what to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Values to store as published (already stored ones included; the
    /// store keeps those as they are).
    pub published: Batch,
    /// Values to quarantine.
    pub held: Vec<QuarantineRecord>,
    /// Corrections to record.
    pub corrections: Vec<CorrectionRecord>,
    /// Quarantined now, for the report.
    pub quarantined: Vec<Held>,
    /// Identical to a value quarantined earlier.
    pub still_quarantined: Vec<Held>,
    /// Refused: a different value is stored.
    pub conflicts: Vec<Conflict>,
    /// Changed by a correction.
    pub corrected: Vec<Corrected>,
}

/// Everything [`plan`] looks at.
pub struct Inputs<'a> {
    /// Provider name.
    pub provider: &'a str,
    /// The incoming values.
    pub batch: &'a Batch,
    /// What is stored for the provider over the batch's dates.
    pub stored: &'a [StoredValue],
    /// The published rates.
    pub book: &'a RateBook,
    /// Bounds.
    pub plausibility: &'a PlausibilityConfig,
    /// Import or correct.
    pub mode: &'a ImportMode,
    /// When.
    pub now: DateTime<Utc>,
    /// The file line of a fixing date, when known.
    pub locate: &'a dyn Fn(NaiveDate) -> Option<usize>,
}

/// Decides what happens to each value of the batch.
pub fn plan(i: &Inputs<'_>) -> Plan {
    let base = i.batch.base;
    let stored: HashMap<(CurrencyCode, NaiveDate), &StoredValue> =
        i.stored.iter().map(|v| ((v.currency, v.date), v)).collect();
    let lookback = Duration::days(i64::from(i.plausibility.lookback_days));
    let mut p = Plan {
        published: Batch {
            base,
            fixings: Vec::new(),
        },
        held: Vec::new(),
        corrections: Vec::new(),
        quarantined: Vec::new(),
        still_quarantined: Vec::new(),
        conflicts: Vec::new(),
        corrected: Vec::new(),
    };
    // The latest value accepted from this batch, per currency: the
    // previous fixing of the next day's value.
    let mut accepted: HashMap<CurrencyCode, (NaiveDate, Decimal)> = HashMap::new();
    for f in &i.batch.fixings {
        let mut rates = Vec::with_capacity(f.rates.len());
        let row = |c| RowRef {
            line: (i.locate)(f.date),
            date: f.date,
            currency: c,
        };
        for &(c, v) in &f.rates {
            match stored.get(&(c, f.date)) {
                Some(s) if s.base == base && s.rate == v => match s.state {
                    StoredState::Published => {
                        rates.push((c, v));
                        accepted.insert(c, (f.date, v));
                    }
                    StoredState::Quarantined => p.still_quarantined.push(Held {
                        row: row(c),
                        rate: v,
                        reason: "quarantined earlier; awaiting review".to_string(),
                    }),
                },
                Some(s) => match i.mode {
                    ImportMode::Correct(meta) if s.base == base => {
                        p.corrections.push(CorrectionRecord {
                            seq: 0,
                            at: i.now,
                            provider: i.provider.to_string(),
                            base,
                            currency: c,
                            date: f.date,
                            old_rate: s.rate,
                            old_state: s.state,
                            new_rate: v,
                            actor: meta.actor.clone(),
                            reason: meta.reason.clone(),
                            via: meta.via.clone(),
                        });
                        p.corrected.push(Corrected {
                            row: row(c),
                            old: s.rate,
                            was: s.state,
                            new: v,
                        });
                        accepted.insert(c, (f.date, v));
                    }
                    _ => p.conflicts.push(Conflict {
                        row: row(c),
                        stored: s.rate,
                        state: s.state,
                        new: v,
                        note: (s.base != base).then(|| {
                            format!("stored against base {}, the file is against {base}", s.base)
                        }),
                    }),
                },
                None => {
                    let since = f.date - lookback;
                    let previous = accepted
                        .get(&c)
                        .copied()
                        .filter(|(d, _)| *d >= since)
                        .or_else(|| i.book.previous_value(i.provider, c, base, since, f.date));
                    let refs = References {
                        previous,
                        others: i.book.other_values(i.provider, f.date, c, base),
                    };
                    match i.plausibility.assess(v, &refs) {
                        Some(reason) => {
                            p.held.push(QuarantineRecord {
                                provider: i.provider.to_string(),
                                base,
                                currency: c,
                                date: f.date,
                                rate: v,
                                reason: reason.clone(),
                                at: i.now,
                            });
                            p.quarantined.push(Held {
                                row: row(c),
                                rate: v,
                                reason,
                            });
                        }
                        None => {
                            rates.push((c, v));
                            accepted.insert(c, (f.date, v));
                        }
                    }
                }
            }
        }
        if !rates.is_empty() {
            p.published.fixings.push(Fixing {
                date: f.date,
                rates,
            });
        }
    }
    p
}
