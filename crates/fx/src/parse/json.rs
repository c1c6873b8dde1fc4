//! JSON provider formats with their own base currencies.
//!
//! - Open Exchange Rates (`latest.json`, `historical/YYYY-MM-DD.json`):
//!   `{"timestamp": unix, "base": "USD", "rates": {"EUR": 0.9, ...}}`.
//!   The fixing date is the UTC date of `timestamp`.
//! - Frankfurter (and Fixer): `{"base": "EUR", "date": "...", "rates": {...}}`
//!   or a time series `{"base": .., "start_date": .., "rates": {"DATE": {...}}}`.
//!
//! Numbers are read from their JSON text straight into decimals (never via
//! `f64`). Currencies Gatehouse does not know (OXR lists BTC, XAU, ...) are
//! skipped, since the provider legitimately publishes them; anything else
//! malformed rejects the whole file.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{parse_rate, Batch, Fixing, Format, ParseError};
use crate::currency::{CurrencyCode, CurrencyError};

type RawRates = BTreeMap<String, Box<RawValue>>;

fn rates_of(
    f: Format,
    at: &str,
    base: CurrencyCode,
    raw: &RawRates,
) -> Result<Vec<(CurrencyCode, rust_decimal::Decimal)>, ParseError> {
    let mut out = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        let code = match CurrencyCode::parse(name) {
            Ok(c) => c,
            Err(CurrencyError::Unknown(_)) => continue,
            Err(e) => {
                return Err(ParseError::new(
                    f,
                    format!("{at}, rates.{name}"),
                    e.to_string(),
                ))
            }
        };
        if code == base {
            continue;
        }
        let rate = parse_rate(value.get())
            .map_err(|r| ParseError::new(f, format!("{at}, rates.{name}"), r))?;
        out.push((code, rate));
    }
    Ok(out)
}

fn base_of(f: Format, base: &str) -> Result<CurrencyCode, ParseError> {
    CurrencyCode::parse(base).map_err(|e| ParseError::new(f, "base", e.to_string()))
}

#[derive(Deserialize)]
struct OxrDoc {
    timestamp: i64,
    base: String,
    rates: RawRates,
}

/// Parses Open Exchange Rates JSON.
pub fn parse_oxr(bytes: &[u8]) -> Result<Batch, ParseError> {
    let f = Format::Oxr;
    let doc: OxrDoc = serde_json::from_slice(bytes).map_err(|e| {
        ParseError::new(
            f,
            format!("line {}, column {}", e.line(), e.column()),
            e.to_string(),
        )
    })?;
    let base = base_of(f, &doc.base)?;
    let date = DateTime::from_timestamp(doc.timestamp, 0)
        .ok_or_else(|| ParseError::new(f, "timestamp", "timestamp out of range"))?
        .date_naive();
    let rates = rates_of(f, "document", base, &doc.rates)?;
    Batch {
        base,
        fixings: vec![Fixing { date, rates }],
    }
    .finish(f)
}

#[derive(Deserialize)]
struct FrankDoc {
    #[serde(default)]
    amount: Option<Box<RawValue>>,
    #[serde(default)]
    success: Option<bool>,
    base: String,
    #[serde(default)]
    date: Option<String>,
    rates: Box<RawValue>,
}

/// Parses Frankfurter or Fixer JSON, single day or time series.
pub fn parse_frankfurter(bytes: &[u8]) -> Result<Batch, ParseError> {
    let f = Format::Frankfurter;
    let json_err = |e: serde_json::Error| {
        ParseError::new(
            f,
            format!("line {}, column {}", e.line(), e.column()),
            e.to_string(),
        )
    };
    let doc: FrankDoc = serde_json::from_slice(bytes).map_err(json_err)?;
    if doc.success == Some(false) {
        return Err(ParseError::new(f, "success", "provider reported failure"));
    }
    if let Some(a) = &doc.amount {
        let amount = parse_rate(a.get()).map_err(|r| ParseError::new(f, "amount", r))?;
        if amount != rust_decimal::Decimal::ONE {
            return Err(ParseError::new(
                f,
                "amount",
                "only amount=1 responses can be ingested",
            ));
        }
    }
    let base = base_of(f, &doc.base)?;
    let date_of = |s: &str, at: &str| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| ParseError::new(f, at.to_string(), format!("`{s}` is not a date")))
    };
    let fixings = match &doc.date {
        Some(d) => {
            let date = date_of(d, "date")?;
            let raw: RawRates = serde_json::from_str(doc.rates.get()).map_err(json_err)?;
            vec![Fixing {
                date,
                rates: rates_of(f, "document", base, &raw)?,
            }]
        }
        None => {
            let series: BTreeMap<String, RawRates> =
                serde_json::from_str(doc.rates.get()).map_err(json_err)?;
            let mut out = Vec::with_capacity(series.len());
            for (d, raw) in &series {
                let at = format!("rates.{d}");
                out.push(Fixing {
                    date: date_of(d, &at)?,
                    rates: rates_of(f, &at, base, raw)?,
                });
            }
            out
        }
    };
    Batch { base, fixings }.finish(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oxr_is_usd_based_and_skips_unknown_codes() {
        let b = parse_oxr(br#"{"disclaimer":"x","timestamp":1761854400,"base":"USD","rates":{"EUR":0.895,"JPY":157.25,"BTC":0.00001,"USD":1}}"#).unwrap();
        assert_eq!(b.base, CurrencyCode::USD);
        assert_eq!(b.fixings[0].date.to_string(), "2025-10-30");
        assert_eq!(b.fixings[0].rates.len(), 2);
    }

    #[test]
    fn oxr_bad_value_is_named() {
        let e =
            parse_oxr(br#"{"timestamp":1761854400,"base":"USD","rates":{"EUR":"x"}}"#).unwrap_err();
        assert_eq!(e.location, "document, rates.EUR");
        let e =
            parse_oxr(br#"{"timestamp":1761854400,"base":"USD","rates":{"EUR":0.9"#).unwrap_err();
        assert!(e.location.starts_with("line 1"), "{e}");
    }

    #[test]
    fn frankfurter_single_and_series() {
        let b = parse_frankfurter(br#"{"amount":1.0,"base":"EUR","date":"2026-10-30","rates":{"USD":1.1172,"JPY":175.68}}"#).unwrap();
        assert_eq!(b.fixings.len(), 1);
        let b = parse_frankfurter(br#"{"amount":1.0,"base":"EUR","start_date":"2026-10-29","end_date":"2026-10-30","rates":{"2026-10-29":{"USD":1.113},"2026-10-30":{"USD":1.1172}}}"#).unwrap();
        assert_eq!(b.fixings.len(), 2);
        let e = parse_frankfurter(
            br#"{"amount":10,"base":"EUR","date":"2026-10-30","rates":{"USD":11.172}}"#,
        )
        .unwrap_err();
        assert_eq!(e.location, "amount");
    }
}
