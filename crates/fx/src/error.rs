//! The error vocabulary of the currency service.
//!
//! Every variant has a stable `code()` (documented in `docs/fx.md`) and a
//! [`ErrorClass`] from which the HTTP adapter picks a status, so the domain
//! stays free of HTTP while clients always get the same code for the same
//! problem.

use chrono::NaiveDate;

use crate::currency::{CurrencyCode, CurrencyError};
use crate::money::AmountError;

/// Broad classes an adapter maps to statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is malformed (400).
    BadRequest,
    /// The thing asked for does not exist (404).
    NotFound,
    /// It existed but is gone (410), e.g. an expired quote.
    Gone,
    /// Well-formed but cannot be served as asked (422).
    Unprocessable,
    /// The service cannot answer right now (503), e.g. rates too stale.
    Unavailable,
    /// A fault on our side (500); details go to the logs only.
    Internal,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FxError {
    /// A currency parameter is not a currency.
    #[error(transparent)]
    Currency(#[from] CurrencyError),
    /// An amount parameter is not acceptable.
    #[error(transparent)]
    Amount(#[from] AmountError),
    /// No rates have been loaded at all.
    #[error("no exchange rates are loaded yet")]
    NoData,
    /// Date precedes all data.
    #[error("{date} is before the first fixing ({first})")]
    BeforeFirstFixing {
        /// Requested.
        date: NaiveDate,
        /// First available.
        first: NaiveDate,
    },
    /// Date is after today.
    #[error("{date} is in the future (today is {today})")]
    FutureDate {
        /// Requested.
        date: NaiveDate,
        /// Today (UTC).
        today: NaiveDate,
    },
    /// The currency has no rate on the fixing used.
    #[error("{currency} is not quoted on {date}{}", quoted_range(.first, .last))]
    NotQuoted {
        /// The currency.
        currency: CurrencyCode,
        /// The fixing date used.
        date: NaiveDate,
        /// First date quoted, if ever.
        first: Option<NaiveDate>,
        /// Last date quoted, if ever.
        last: Option<NaiveDate>,
    },
    /// `start` is after `end`.
    #[error("start {start} is after end {end}")]
    StartAfterEnd {
        /// Start.
        start: NaiveDate,
        /// End.
        end: NaiveDate,
    },
    /// A series longer than allowed.
    #[error("the range spans {days} days; at most {max} are allowed")]
    RangeTooLong {
        /// Days asked.
        days: i64,
        /// Limit.
        max: i64,
    },
    /// The newest usable rate is older than the hard limit.
    #[error("the newest rate (fixing {fixing}) is {overdue_hours} hours past its expected successor, beyond the {limit_hours}-hour limit for this use")]
    TooStale {
        /// Fixing that would be used.
        fixing: NaiveDate,
        /// How overdue, in hours.
        overdue_hours: i64,
        /// The limit, in hours.
        limit_hours: i64,
    },
    /// The arithmetic left `Decimal`'s range.
    #[error("the result does not fit in 28 significant digits")]
    Overflow,
    /// No such quote.
    #[error("quote {0} does not exist")]
    QuoteNotFound(String),
    /// Quote past its expiry.
    #[error("quote {id} expired at {expired_at}")]
    QuoteExpired {
        /// Quote id.
        id: String,
        /// Expiry (RFC 3339).
        expired_at: String,
    },
    /// Storage failed.
    #[error("storage error: {0}")]
    Store(String),
    /// A value cannot be a rate (zero, negative, absurd magnitude).
    #[error("{0}")]
    InvalidRate(String),
    /// Fixings dated in the future or before their provider or currency
    /// existed; nothing was stored.
    #[error("fixings refused: {0}")]
    FixingsRefused(String),
    /// Nothing is stored for that provider, currency and date.
    #[error("{provider} has no value of {currency} for {date}")]
    FixingNotFound {
        /// Provider.
        provider: String,
        /// Currency.
        currency: CurrencyCode,
        /// Fixing date.
        date: NaiveDate,
    },
}

fn quoted_range(first: &Option<NaiveDate>, last: &Option<NaiveDate>) -> String {
    match (first, last) {
        (Some(f), Some(l)) => format!(" (quoted from {f} to {l})"),
        _ => " (never quoted by any provider)".to_string(),
    }
}

impl FxError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            FxError::Currency(e) => e.code(),
            FxError::Amount(e) => e.code(),
            FxError::NoData => "no_rates_loaded",
            FxError::BeforeFirstFixing { .. } => "date_before_first_fixing",
            FxError::FutureDate { .. } => "date_in_future",
            FxError::NotQuoted { .. } => "currency_not_quoted",
            FxError::StartAfterEnd { .. } => "start_after_end",
            FxError::RangeTooLong { .. } => "range_too_long",
            FxError::TooStale { .. } => "rates_too_stale",
            FxError::Overflow => "amount_too_large",
            FxError::QuoteNotFound(_) => "quote_not_found",
            FxError::QuoteExpired { .. } => "quote_expired",
            FxError::Store(_) => "storage_error",
            FxError::InvalidRate(_) => "invalid_rate",
            FxError::FixingsRefused(_) => "fixings_refused",
            FxError::FixingNotFound { .. } => "fixing_not_found",
        }
    }

    /// The class, from which an adapter picks a status.
    pub fn class(&self) -> ErrorClass {
        match self {
            FxError::Currency(CurrencyError::Malformed(_)) => ErrorClass::BadRequest,
            FxError::Currency(CurrencyError::Unknown(_)) => ErrorClass::NotFound,
            FxError::Amount(AmountError::Empty | AmountError::Malformed(_)) => {
                ErrorClass::BadRequest
            }
            FxError::Amount(_) => ErrorClass::Unprocessable,
            FxError::NoData | FxError::TooStale { .. } => ErrorClass::Unavailable,
            FxError::BeforeFirstFixing { .. }
            | FxError::FutureDate { .. }
            | FxError::NotQuoted { .. }
            | FxError::StartAfterEnd { .. }
            | FxError::RangeTooLong { .. }
            | FxError::Overflow => ErrorClass::Unprocessable,
            FxError::QuoteNotFound(_) => ErrorClass::NotFound,
            FxError::QuoteExpired { .. } => ErrorClass::Gone,
            FxError::Store(_) => ErrorClass::Internal,
            FxError::InvalidRate(_) | FxError::FixingsRefused(_) => ErrorClass::Unprocessable,
            FxError::FixingNotFound { .. } => ErrorClass::NotFound,
        }
    }
}
