//! The error vocabulary of the currency service.
//!
//! Every variant names its entry of the error table
//! ([`gateway_core::errors`], documented in `docs/errors.md`) through
//! [`ToProblem::code`]: the code clients get and its status. The domain
//! knows which public error it is, not how it is served.

use chrono::NaiveDate;
use gateway_core::errors::{self, ErrorCode};
use gateway_core::ToProblem;

use crate::currency::{CurrencyCode, CurrencyError};
use crate::money::AmountError;

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

/// Each variant's entry of the error table (code and HTTP status).
impl ToProblem for FxError {
    fn code(&self) -> &'static ErrorCode {
        match self {
            FxError::Currency(e) => e.code(),
            FxError::Amount(e) => e.code(),
            FxError::NoData => &errors::NO_RATES_LOADED,
            FxError::BeforeFirstFixing { .. } => &errors::DATE_BEFORE_FIRST_FIXING,
            FxError::FutureDate { .. } => &errors::DATE_IN_FUTURE,
            FxError::NotQuoted { .. } => &errors::CURRENCY_NOT_QUOTED,
            FxError::StartAfterEnd { .. } => &errors::START_AFTER_END,
            FxError::RangeTooLong { .. } => &errors::RANGE_TOO_LONG,
            FxError::TooStale { .. } => &errors::RATES_TOO_STALE,
            FxError::Overflow => &errors::AMOUNT_TOO_LARGE,
            FxError::QuoteNotFound(_) => &errors::QUOTE_NOT_FOUND,
            FxError::QuoteExpired { .. } => &errors::QUOTE_EXPIRED,
            FxError::Store(_) => &errors::STORAGE_ERROR,
            FxError::InvalidRate(_) => &errors::INVALID_RATE,
            FxError::FixingsRefused(_) => &errors::FIXINGS_REFUSED,
            FxError::FixingNotFound { .. } => &errors::FIXING_NOT_FOUND,
        }
    }
}
