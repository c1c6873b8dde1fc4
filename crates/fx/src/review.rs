//! Review of incoming raw rates: what was held back, what conflicts with
//! stored values, and the audited corrections that change them.
//!
//! A raw value for `(provider, currency, fixing date)` is in one of two
//! states: *published* (in `fx_raw_rates`, or the newest correction) or
//! *quarantined* (in `fx_quarantine`, held back by a plausibility check and
//! never used by conversions). A correction (`fx_rate_corrections`,
//! append-only) records who changed which value from what to what, when
//! and why; the old value stays stored, so the history of every value can
//! be read back. Correcting a quarantined value, to itself or to another
//! value, is how it is released.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::currency::CurrencyCode;

/// How a file is taken in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportMode {
    /// New values are stored (or quarantined); values that differ from
    /// stored ones are refused as conflicts, and nothing changes for them.
    Import,
    /// As `Import`, but values that differ from stored (or quarantined)
    /// ones replace them through an audited correction.
    Correct(CorrectionMeta),
}

/// Who corrects, why, and through what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrectionMeta {
    /// Who (a person or system name).
    pub actor: String,
    /// Why.
    pub reason: String,
    /// Through what: `cli` or `api`.
    pub via: String,
}

/// State of a stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StoredState {
    /// Used by conversions.
    Published,
    /// Held back by a plausibility check.
    Quarantined,
}

impl StoredState {
    /// Stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            StoredState::Published => "published",
            StoredState::Quarantined => "quarantined",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<StoredState> {
        match s {
            "published" => Some(StoredState::Published),
            "quarantined" => Some(StoredState::Quarantined),
            _ => None,
        }
    }
}

/// The current value of one `(provider, currency, date)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredValue {
    /// Currency.
    pub currency: CurrencyCode,
    /// Fixing date.
    pub date: NaiveDate,
    /// Base of the value.
    pub base: CurrencyCode,
    /// The value.
    pub rate: Decimal,
    /// Published or quarantined.
    pub state: StoredState,
}

/// Where a row of a file is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowRef {
    /// Line of the file, when the format writes dates as text.
    pub line: Option<usize>,
    /// Fixing date.
    pub date: NaiveDate,
    /// Currency.
    pub currency: CurrencyCode,
}

impl fmt::Display for RowRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}, ")?;
        }
        write!(f, "{} {}", self.date, self.currency)
    }
}

/// A value quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    /// Where.
    pub row: RowRef,
    /// The value held back.
    pub rate: Decimal,
    /// Why.
    pub reason: String,
}

/// A value that differs from the stored one and was not applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// Where.
    pub row: RowRef,
    /// The stored value.
    pub stored: Decimal,
    /// Its state.
    pub state: StoredState,
    /// The value in the file.
    pub new: Decimal,
    /// Why it cannot be applied even as a correction, if so (e.g. a
    /// different base).
    pub note: Option<String>,
}

/// A value changed by a correction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Corrected {
    /// Where.
    pub row: RowRef,
    /// The value before.
    pub old: Decimal,
    /// Its state before (a quarantined value is released).
    pub was: StoredState,
    /// The value now published.
    pub new: Decimal,
}

/// A quarantined value as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuarantineRecord {
    /// Provider.
    pub provider: String,
    /// Base currency.
    pub base: CurrencyCode,
    /// Currency.
    pub currency: CurrencyCode,
    /// Fixing date.
    pub date: NaiveDate,
    /// The value held back.
    pub rate: Decimal,
    /// Why.
    pub reason: String,
    /// When it arrived.
    pub at: DateTime<Utc>,
}

/// A correction as stored (the audit row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CorrectionRecord {
    /// Sequence number (assigned by the store; 0 before insertion).
    pub seq: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Provider.
    pub provider: String,
    /// Base currency.
    pub base: CurrencyCode,
    /// Currency.
    pub currency: CurrencyCode,
    /// Fixing date.
    pub date: NaiveDate,
    /// The value before.
    pub old_rate: Decimal,
    /// Its state before.
    pub old_state: StoredState,
    /// The value published from now on.
    pub new_rate: Decimal,
    /// Who.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// Through what (`cli`, `api`).
    pub via: String,
}
