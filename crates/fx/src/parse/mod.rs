//! Parsers for rate providers' published formats.
//!
//! Every parser turns a whole file into a [`Batch`] or refuses it whole with
//! a [`ParseError`] naming the line or field and the reason: a corrupt,
//! truncated or inconsistent file never yields partial data, which is what
//! lets ingestion be all-or-nothing.
//!
//! Supported formats ([`Format`]):
//! - ECB history CSV (`eurofxref-hist.csv`), its zip, and the "latest day"
//!   CSV layout (`eurofxref.csv`) — [`ecb`];
//! - ECB XML: daily, 90-day and full history (same schema) — [`ecb`];
//! - Open Exchange Rates `latest.json` / `historical/YYYY-MM-DD.json`
//!   (USD base) — [`json`];
//! - Frankfurter / Fixer JSON, single day or time series — [`json`].

pub mod ecb;
pub mod json;

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::currency::CurrencyCode;

/// The largest file a parser accepts (the full ECB XML history is ~20 MB).
pub const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;

/// One provider file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// ECB CSV: history (`Date,USD,...`) or latest-day layout.
    EcbCsv,
    /// ECB zip holding one CSV.
    EcbZip,
    /// ECB XML (daily, 90-day or history).
    EcbXml,
    /// Open Exchange Rates JSON.
    Oxr,
    /// Frankfurter (or Fixer) JSON.
    Frankfurter,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 5] = [
        Format::EcbCsv,
        Format::EcbZip,
        Format::EcbXml,
        Format::Oxr,
        Format::Frankfurter,
    ];

    /// Name used in config and on the command line.
    pub fn as_str(&self) -> &'static str {
        match self {
            Format::EcbCsv => "ecb-csv",
            Format::EcbZip => "ecb-zip",
            Format::EcbXml => "ecb-xml",
            Format::Oxr => "oxr",
            Format::Frankfurter => "frankfurter",
        }
    }

    /// Guesses the format from the first bytes of a file.
    pub fn detect(bytes: &[u8]) -> Option<Format> {
        if bytes.starts_with(b"PK\x03\x04") {
            return Some(Format::EcbZip);
        }
        let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let start = text.iter().position(|b| !b.is_ascii_whitespace())?;
        let text = &text[start..];
        match text.first()? {
            b'<' => Some(Format::EcbXml),
            b'{' => {
                let head = &text[..text.len().min(4096)];
                let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
                if has(b"\"timestamp\"") && !has(b"\"date\"") {
                    Some(Format::Oxr)
                } else {
                    Some(Format::Frankfurter)
                }
            }
            b'D' | b'd' => Some(Format::EcbCsv),
            _ => None,
        }
    }

    /// Parses a whole file of this format.
    pub fn parse(&self, bytes: &[u8]) -> Result<Batch, ParseError> {
        if bytes.len() > MAX_INPUT_BYTES {
            return Err(ParseError::new(
                *self,
                "file",
                format!("file is larger than {MAX_INPUT_BYTES} bytes"),
            ));
        }
        match self {
            Format::EcbCsv => ecb::parse_csv(bytes),
            Format::EcbZip => ecb::parse_zip(bytes),
            Format::EcbXml => ecb::parse_xml(bytes),
            Format::Oxr => json::parse_oxr(bytes),
            Format::Frankfurter => json::parse_frankfurter(bytes),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = s.trim().to_ascii_lowercase();
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == n)
            .or(match n.as_str() {
                "csv" => Some(Format::EcbCsv),
                "zip" => Some(Format::EcbZip),
                "xml" => Some(Format::EcbXml),
                "fixer" => Some(Format::Frankfurter),
                "openexchangerates" => Some(Format::Oxr),
                _ => None,
            })
            .ok_or_else(|| {
                format!(
                    "unknown format `{s}` (expected ecb-csv, ecb-zip, ecb-xml, oxr or frankfurter)"
                )
            })
    }
}

/// The rates one provider published for one day: units of each currency per
/// one unit of the batch's base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixing {
    /// The fixing date.
    pub date: NaiveDate,
    /// `(currency, units per 1 base)`, sorted by currency, base excluded.
    pub rates: Vec<(CurrencyCode, Decimal)>,
}

/// Everything parsed from one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The currency the rates are quoted against (EUR for the ECB, USD for OXR).
    pub base: CurrencyCode,
    /// Fixings sorted by date, dates unique.
    pub fixings: Vec<Fixing>,
}

impl Batch {
    /// Number of `(date, currency)` values.
    pub fn len(&self) -> usize {
        self.fixings.iter().map(|f| f.rates.len()).sum()
    }

    /// Whether the batch holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sorts fixings and checks dates are unique.
    pub(crate) fn finish(mut self, format: Format) -> Result<Batch, ParseError> {
        self.fixings.sort_by_key(|f| f.date);
        for w in self.fixings.windows(2) {
            if w[0].date == w[1].date {
                return Err(ParseError::new(
                    format,
                    format!("date {}", w[0].date),
                    "the same date appears twice",
                ));
            }
        }
        for f in &mut self.fixings {
            f.rates.sort_by_key(|r| r.0);
            if let Some(w) = f.rates.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(ParseError::new(
                    format,
                    format!("date {}", f.date),
                    format!("currency {} appears twice", w[0].0),
                ));
            }
        }
        self.fixings.retain(|f| !f.rates.is_empty());
        if self.fixings.is_empty() {
            return Err(ParseError::new(format, "file", "no rates found"));
        }
        Ok(self)
    }
}

/// A file refused whole, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{format} file rejected at {location}: {reason}")]
pub struct ParseError {
    /// The format being parsed.
    pub format: Format,
    /// Line, field or element where the problem is.
    pub location: String,
    /// What is wrong.
    pub reason: String,
}

impl ParseError {
    pub(crate) fn new(
        format: Format,
        location: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            format,
            location: location.into(),
            reason: reason.into(),
        }
    }
}

/// The smallest value accepted as a rate: no currency has ever been worth
/// a hundred million units of another (the ECB's extremes are 0.3883 and
/// 1,912,400 units per euro; base changes stay far inside this).
pub const MIN_RATE: Decimal = Decimal::from_parts(1, 0, 0, false, 8);

/// The largest value accepted as a rate (10,000,000,000).
pub const MAX_RATE: Decimal = Decimal::from_parts(1_410_065_408, 2, 0, false, 0);

/// Parses a rate published by a provider: a positive plain or scientific
/// decimal within [`MIN_RATE`]..=[`MAX_RATE`], so a garbled value (zero,
/// negative, a misplaced exponent) cannot poison the data.
pub(crate) fn parse_rate(text: &str) -> Result<Decimal, String> {
    let t = text.trim();
    let v = if t.contains(['e', 'E']) {
        Decimal::from_scientific(t)
    } else {
        Decimal::from_str(t)
    }
    .map_err(|_| {
        format!(
            "`{}` is not a decimal rate",
            t.chars().take(24).collect::<String>()
        )
    })?;
    if v <= Decimal::ZERO {
        return Err(format!("rate `{t}` is not positive"));
    }
    if v > MAX_RATE {
        return Err(format!(
            "rate `{t}` is implausibly large (above {MAX_RATE})"
        ));
    }
    if v < MIN_RATE {
        return Err(format!(
            "rate `{t}` is implausibly small (below {MIN_RATE})"
        ));
    }
    Ok(v.normalize())
}

/// Checks a rate given outside a provider file (a correction through the
/// admin API) against the same bounds as [`parse_rate`].
pub fn check_rate(v: Decimal) -> Result<Decimal, String> {
    parse_rate(&v.to_string())
}

/// The line (1-based) of `bytes` where the fixing of `date` is written, for
/// messages: the first line holding the date as `YYYY-MM-DD` (CSV rows, XML
/// `time=` attributes, JSON keys and `date` fields) or, in the ECB's
/// latest-day CSV, as `30 October 2026`. `None` for formats that do not
/// write the date as text (a zip, OXR's timestamp).
pub fn locate_date(format: Format, bytes: &[u8], date: NaiveDate) -> Option<usize> {
    if format == Format::EcbZip || format == Format::Oxr {
        return None;
    }
    let iso = date.format("%Y-%m-%d").to_string();
    let long = date.format("%-d %B %Y").to_string();
    let find = |needle: &[u8]| bytes.windows(needle.len()).position(|w| w == needle);
    let pos = find(iso.as_bytes()).or_else(|| find(long.as_bytes()))?;
    Some(bytes[..pos].iter().filter(|b| **b == b'\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_from_content() {
        assert_eq!(Format::detect(b"PK\x03\x04rest"), Some(Format::EcbZip));
        assert_eq!(Format::detect(b"  <?xml version"), Some(Format::EcbXml));
        assert_eq!(Format::detect(b"Date,USD,\n"), Some(Format::EcbCsv));
        assert_eq!(
            Format::detect(br#"{"timestamp":1,"base":"USD","rates":{}}"#),
            Some(Format::Oxr)
        );
        assert_eq!(
            Format::detect(br#"{"amount":1.0,"base":"EUR","date":"2026-10-30","rates":{}}"#),
            Some(Format::Frankfurter)
        );
        assert_eq!(Format::detect(b"garbage"), None);
        assert_eq!(Format::detect(b""), None);
    }

    #[test]
    fn rates_must_be_positive_decimals() {
        assert_eq!(parse_rate("1.10").unwrap().to_string(), "1.1");
        assert_eq!(parse_rate("1e-2").unwrap().to_string(), "0.01");
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("abc").is_err());
        assert!(parse_rate("1e30").is_err());
        assert!(parse_rate("0.00000000000000000001").is_err());
        assert!(parse_rate("0.000000009").is_err());
        assert_eq!(parse_rate("0.00000001").unwrap(), MIN_RATE);
        assert_eq!(parse_rate("10000000000").unwrap(), MAX_RATE);
        assert!(parse_rate("10000000000.1").is_err());
    }

    #[test]
    fn dates_are_located_by_line() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        let csv = b"Date,USD,\n2026-10-30,1.1,\n2026-11-02,1.2,\n";
        assert_eq!(locate_date(Format::EcbCsv, csv, d), Some(3));
        let latest = b"Date, USD,\n2 November 2026, 1.1,\n";
        assert_eq!(locate_date(Format::EcbCsv, latest, d), Some(2));
        assert_eq!(locate_date(Format::Oxr, csv, d), None);
    }
}
