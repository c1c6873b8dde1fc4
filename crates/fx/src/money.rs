//! Amounts of money and rounding.
//!
//! Amounts are exact decimals ([`rust_decimal::Decimal`]); no floating point
//! is ever on a money path. User-supplied amounts are parsed from text under
//! explicit limits ([`AmountLimits`]) so that an oversized or over-precise
//! value is a clear error instead of a silent rounding or an overflow.

use std::fmt;
use std::str::FromStr;

use gateway_core::errors::{self, ErrorCode};
use gateway_core::ToProblem;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::currency::CurrencyCode;

/// Limits applied when parsing an amount supplied by a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmountLimits {
    /// Most digits allowed before the decimal point.
    pub max_integer_digits: u32,
    /// Longest accepted input, in characters.
    pub max_len: usize,
    /// Whether zero and negative amounts are accepted.
    pub allow_non_positive: bool,
}

/// Default: up to 15 integer digits (a quadrillion minus one), which keeps
/// `amount × rate` far inside `Decimal`'s 28 significant digits.
pub const DEFAULT_MAX_INTEGER_DIGITS: u32 = 15;

impl Default for AmountLimits {
    fn default() -> Self {
        Self {
            max_integer_digits: DEFAULT_MAX_INTEGER_DIGITS,
            max_len: 40,
            allow_non_positive: false,
        }
    }
}

/// Why an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Nothing given.
    #[error("amount is empty")]
    Empty,
    /// Not a plain decimal number.
    #[error("`{0}` is not a decimal number (use digits with an optional `.`, e.g. 1234.56)")]
    Malformed(String),
    /// Too many integer digits or characters.
    #[error("amount has more than {max} integer digits")]
    TooLarge {
        /// The limit.
        max: u32,
    },
    /// More decimals than the currency's minor unit allows.
    #[error("amount has {given} decimals but {currency} allows at most {allowed}")]
    TooManyDecimals {
        /// Decimals given.
        given: u32,
        /// Decimals allowed.
        allowed: u32,
        /// The currency.
        currency: CurrencyCode,
    },
    /// Zero or negative.
    #[error("amount must be greater than zero")]
    NotPositive,
}

impl ToProblem for AmountError {
    fn code(&self) -> &'static ErrorCode {
        match self {
            AmountError::Empty | AmountError::Malformed(_) => &errors::MALFORMED_AMOUNT,
            AmountError::TooLarge { .. } => &errors::AMOUNT_TOO_LARGE,
            AmountError::TooManyDecimals { .. } => &errors::TOO_MANY_DECIMALS,
            AmountError::NotPositive => &errors::AMOUNT_NOT_POSITIVE,
        }
    }
}

/// Parses a client-supplied amount in `currency`.
///
/// Accepts `[-]digits[.digits]` only: no exponents, no thousands separators,
/// no `NaN`, so what the client wrote is exactly what is converted.
pub fn parse_amount(
    text: &str,
    currency: CurrencyCode,
    limits: &AmountLimits,
) -> Result<Decimal, AmountError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(AmountError::Empty);
    }
    if t.len() > limits.max_len {
        return Err(AmountError::TooLarge {
            max: limits.max_integer_digits,
        });
    }
    let unsigned = t.strip_prefix('-').unwrap_or(t);
    let (int_part, frac_part) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let malformed = || AmountError::Malformed(t.chars().take(40).collect());
    if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    if let Some(f) = frac_part {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
    }
    let significant_int = int_part.trim_start_matches('0').len() as u32;
    if significant_int > limits.max_integer_digits {
        return Err(AmountError::TooLarge {
            max: limits.max_integer_digits,
        });
    }
    let decimals = frac_part.map(|f| f.len() as u32).unwrap_or(0);
    let allowed = currency.minor_units();
    if decimals > allowed {
        return Err(AmountError::TooManyDecimals {
            given: decimals,
            allowed,
            currency,
        });
    }
    let value = Decimal::from_str(t).map_err(|_| malformed())?;
    if !limits.allow_non_positive && value <= Decimal::ZERO {
        return Err(AmountError::NotPositive);
    }
    Ok(value)
}

/// How a converted amount is rounded to the target's minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RoundingMode {
    /// Round half to even ("banker's rounding"); the default.
    #[default]
    HalfEven,
    /// Round half away from zero.
    HalfUp,
    /// Towards positive infinity.
    Ceiling,
    /// Towards negative infinity.
    Floor,
    /// Towards zero.
    Truncate,
}

impl RoundingMode {
    /// Every mode, for docs and error messages.
    pub const ALL: [RoundingMode; 5] = [
        RoundingMode::HalfEven,
        RoundingMode::HalfUp,
        RoundingMode::Ceiling,
        RoundingMode::Floor,
        RoundingMode::Truncate,
    ];

    /// The name used in query strings and config.
    pub fn as_str(&self) -> &'static str {
        match self {
            RoundingMode::HalfEven => "half_even",
            RoundingMode::HalfUp => "half_up",
            RoundingMode::Ceiling => "ceiling",
            RoundingMode::Floor => "floor",
            RoundingMode::Truncate => "truncate",
        }
    }

    fn strategy(&self) -> RoundingStrategy {
        match self {
            RoundingMode::HalfEven => RoundingStrategy::MidpointNearestEven,
            RoundingMode::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            RoundingMode::Ceiling => RoundingStrategy::ToPositiveInfinity,
            RoundingMode::Floor => RoundingStrategy::ToNegativeInfinity,
            RoundingMode::Truncate => RoundingStrategy::ToZero,
        }
    }

    /// Rounds `value` to `dp` decimal places, always showing exactly `dp`
    /// places (so `12` JPY-style and `12.30` USD-style).
    pub fn round(&self, value: Decimal, dp: u32) -> Decimal {
        let mut r = value.round_dp_with_strategy(dp, self.strategy());
        r.rescale(dp);
        r
    }
}

impl fmt::Display for RoundingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RoundingMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        RoundingMode::ALL
            .into_iter()
            .find(|m| m.as_str() == norm)
            .ok_or_else(|| {
                format!(
                    "`{}` is not a rounding mode (expected one of half_even, half_up, ceiling, floor, truncate)",
                    s.chars().take(32).collect::<String>()
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> CurrencyCode {
        CurrencyCode::USD
    }

    #[test]
    fn parses_plain_decimals_exactly() {
        let l = AmountLimits::default();
        assert_eq!(
            parse_amount("1234.56", usd(), &l).unwrap().to_string(),
            "1234.56"
        );
        assert_eq!(parse_amount("007", usd(), &l).unwrap().to_string(), "7");
    }

    #[test]
    fn rejects_bad_amounts_with_reasons() {
        let l = AmountLimits::default();
        let jpy = CurrencyCode::parse("JPY").unwrap();
        for (input, code) in [
            ("", "malformed_amount"),
            ("1e5", "malformed_amount"),
            ("1,000", "malformed_amount"),
            ("NaN", "malformed_amount"),
            ("1.", "malformed_amount"),
            (".5", "malformed_amount"),
            ("--1", "malformed_amount"),
            ("1234567890123456", "amount_too_large"),
            ("1.234", "too_many_decimals"),
            ("0", "amount_not_positive"),
            ("-5", "amount_not_positive"),
        ] {
            assert_eq!(
                parse_amount(input, usd(), &l).unwrap_err().code(),
                code,
                "{input}"
            );
        }
        assert_eq!(
            parse_amount("1.5", jpy, &l).unwrap_err().code(),
            "too_many_decimals"
        );
        let huge = "9".repeat(200);
        assert_eq!(
            parse_amount(&huge, usd(), &l).unwrap_err().code(),
            "amount_too_large"
        );
    }

    #[test]
    fn rounding_modes_differ_where_they_should() {
        let v = Decimal::from_str("2.345").unwrap();
        let n = Decimal::from_str("-2.345").unwrap();
        let r = |m: RoundingMode, x| m.round(x, 2).to_string();
        assert_eq!(r(RoundingMode::HalfEven, v), "2.34");
        assert_eq!(r(RoundingMode::HalfUp, v), "2.35");
        assert_eq!(r(RoundingMode::Ceiling, v), "2.35");
        assert_eq!(r(RoundingMode::Floor, v), "2.34");
        assert_eq!(r(RoundingMode::Truncate, v), "2.34");
        assert_eq!(r(RoundingMode::Floor, n), "-2.35");
        assert_eq!(r(RoundingMode::Truncate, n), "-2.34");
        assert_eq!(
            RoundingMode::HalfEven
                .round(Decimal::from(3), 2)
                .to_string(),
            "3.00"
        );
        assert_eq!(
            "half-up".parse::<RoundingMode>().unwrap(),
            RoundingMode::HalfUp
        );
        assert!("bankers".parse::<RoundingMode>().is_err());
    }
}
