//! The answers' JSON bodies that are written by hand, as they are the
//! hottest (`/v1/convert`, `/v1/rates/...`) or the largest (series): no
//! intermediate `serde_json::Value` tree, and the same bytes it produced
//! (the tests compare them).

use std::fmt::Write as _;
use std::io::Write as _;

use bytes::Bytes;
use chrono::NaiveDate;
use fx::exact::{write_decimal, write_decimal_bytes};
use fx::query::{self, Interval, Resolved};
use fx::CurrencyCode;
use gateway_core::Problem;

use super::params::rates_error;

#[cfg(test)]
fn staleness_json(r: &Resolved) -> (bool, serde_json::Value) {
    (
        r.stale,
        r.next_expected
            .map(|t| serde_json::Value::String(t.to_rfc3339()))
            .unwrap_or(serde_json::Value::Null),
    )
}

// The two hottest bodies are written directly instead of through a
// `serde_json::Value` tree (a map allocation per key, then serialisation).
// Keys are in the order serde_json's sorted maps produced, so the bytes are
// the same; tests compare them with the `json!` construction they replace.

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it
/// (quote, backslash and control characters; nothing else).
fn push_str(out: &mut String, s: &str) {
    if s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

/// Appends an exact decimal as a JSON string.
fn push_decimal(out: &mut String, d: rust_decimal::Decimal) {
    out.push('"');
    write_decimal(out, d);
    out.push('"');
}

/// Appends something whose `Display` is plain ASCII (codes, dates) as a
/// JSON string.
fn push_plain(out: &mut String, v: impl std::fmt::Display) {
    let _ = write!(out, "\"{v}\"");
}

fn push_staleness(out: &mut String, r: &Resolved) {
    out.push_str(r#","next_fixing_expected":"#);
    match r.next_expected {
        Some(t) => push_plain(out, t.to_rfc3339()),
        None => out.push_str("null"),
    }
}

/// The `/v1/convert` body.
pub(super) fn convert_body(conv: &query::Conversion, r: &Resolved, tier: Option<&str>) -> Vec<u8> {
    let mut out = String::with_capacity(640);
    out.push_str(r#"{"amount":"#);
    push_decimal(&mut out, conv.amount);
    out.push_str(r#","customer":{"amount":"#);
    push_decimal(&mut out, conv.customer_amount);
    out.push_str(r#","rate":"#);
    push_decimal(&mut out, conv.customer_rate);
    let _ = write!(out, r#","spread_bps":{},"tier":"#, conv.spread_bps);
    match tier {
        Some(t) => push_str(&mut out, t),
        None => out.push_str("null"),
    }
    out.push_str(r#"},"date":"#);
    push_plain(&mut out, r.day.date);
    out.push_str(r#","from":"#);
    push_plain(&mut out, conv.from);
    out.push_str(r#","mid":{"amount":"#);
    push_decimal(&mut out, conv.mid_amount);
    out.push_str(r#","rate":"#);
    push_decimal(&mut out, conv.mid_rate);
    out.push('}');
    push_staleness(&mut out, r);
    out.push_str(r#","path":["#);
    for (i, c) in conv.path.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_plain(&mut out, c);
    }
    out.push_str(r#"],"precision":"#);
    push_str(&mut out, query::PRECISION_NOTE);
    let _ = write!(
        out,
        r#","provenance":{{"disputed":{},"fixing_date":"{}","providers":["#,
        conv.disputed, r.day.date
    );
    for (i, p) in conv.providers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, p);
    }
    out.push_str(r#"]},"requested_date":"#);
    push_plain(&mut out, r.requested);
    out.push_str(r#","rounding":"#);
    push_str(&mut out, conv.rounding.as_str());
    let _ = write!(out, r#","stale":{},"to":"#, r.stale);
    push_plain(&mut out, conv.to);
    out.push('}');
    out.into_bytes()
}

/// The `/v1/rates/latest` and `/v1/rates/{date}` body without `sources`.
pub(super) fn rates_body(
    base: CurrencyCode,
    r: &Resolved,
    rates: &[(CurrencyCode, rust_decimal::Decimal)],
    providers: &[String],
) -> Vec<u8> {
    let mut out = String::with_capacity(160 + rates.len() * 28);
    out.push_str(r#"{"base":"#);
    push_plain(&mut out, base);
    out.push_str(r#","date":"#);
    push_plain(&mut out, r.day.date);
    push_staleness(&mut out, r);
    out.push_str(r#","providers":["#);
    for (i, p) in providers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, p);
    }
    out.push_str(r#"],"rates":{"#);
    // `rates_on` sorts and dedups by code, the order of a sorted map.
    for (i, (c, v)) in rates.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_plain(&mut out, c);
        out.push(':');
        push_decimal(&mut out, *v);
    }
    out.push_str(r#"},"requested_date":"#);
    push_plain(&mut out, r.requested);
    let _ = write!(out, r#","stale":{}}}"#, r.stale);
    out.into_bytes()
}

pub(super) fn render_series(
    t: &fx::RateTable,
    base: CurrencyCode,
    symbols: &[CurrencyCode],
    start: NaiveDate,
    end: NaiveDate,
    interval: Interval,
) -> Result<Bytes, Problem> {
    // Written by hand, as each point comes (no intermediate series): a
    // 25-year daily series is ~200k values, and every key and value here is
    // plain ASCII needing no escaping. Decimals go through
    // `write_decimal_bytes` (same text as `Display`, a fraction of the
    // cost).
    let span = (end - start).num_days().clamp(0, 1 << 20) as usize;
    // ~5 fixings a week, ~30 currencies of ~25 bytes each.
    let mut out: Vec<u8> = Vec::with_capacity(128 + span * 5 / 7 * (16 + 30 * 25));
    let _ = write!(
        out,
        r#"{{"base":"{base}","start":"{start}","end":"{end}","interval":"{}","rates":{{"#,
        interval.as_str()
    );
    let mut first = true;
    query::series_each(t, base, symbols, start, end, interval, |pt| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        push_date(&mut out, pt.start);
        out.extend_from_slice(br#"":{"#);
        for (j, (c, last, mean)) in pt.rates.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(c.as_bytes());
            if interval == Interval::Day {
                out.extend_from_slice(br#"":""#);
                write_decimal_bytes(&mut out, *last);
                out.push(b'"');
            } else {
                out.extend_from_slice(br#"":{"last":""#);
                write_decimal_bytes(&mut out, *last);
                out.extend_from_slice(br#"","mean":""#);
                write_decimal_bytes(&mut out, *mean);
                out.extend_from_slice(br#""}"#);
            }
        }
        if interval != Interval::Day {
            out.extend_from_slice(br#","_last_fixing":""#);
            push_date(&mut out, pt.last_fixing);
            out.push(b'"');
        }
        out.push(b'}');
    })
    .map_err(|e| rates_error(e, base, symbols))?;
    out.extend_from_slice(b"}}");
    Ok(Bytes::from(out))
}

/// Appends `YYYY-MM-DD` (what `NaiveDate`'s `Display` writes for years
/// 0..=9999; others go through it).
fn push_date(out: &mut Vec<u8>, d: NaiveDate) {
    use chrono::Datelike;
    let (y, m, day) = (d.year(), d.month(), d.day());
    if !(0..=9999).contains(&y) {
        let _ = write!(out, "{d}");
        return;
    }
    let y = y as u32;
    out.extend_from_slice(&[
        b'0' + (y / 1000) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
        b'-',
        b'0' + (m / 10) as u8,
        b'0' + (m % 10) as u8,
        b'-',
        b'0' + (day / 10) as u8,
        b'0' + (day % 10) as u8,
    ]);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};
    use fx::consensus::ConsensusConfig;
    use fx::query::ConvertRequest;
    use fx::staleness::{FixingCalendar, StalenessLimits};
    use fx::table::RateBook;
    use fx::{Batch, Fixing, RoundingMode};
    use rust_decimal::Decimal;
    use serde_json::{json, Map, Value};

    use super::*;
    use crate::http::respond::json_body;

    /// The `json!` construction `convert_body` replaced.
    fn convert_reference(conv: &query::Conversion, r: &Resolved, tier: Option<&str>) -> Vec<u8> {
        let (stale, next) = staleness_json(r);
        json_body(&json!({
            "from": conv.from, "to": conv.to, "amount": conv.amount.to_string(),
            "date": r.day.date.to_string(), "requested_date": r.requested.to_string(),
            "mid": {"rate": conv.mid_rate.to_string(), "amount": conv.mid_amount.to_string()},
            "customer": {"rate": conv.customer_rate.to_string(), "amount": conv.customer_amount.to_string(), "spread_bps": conv.spread_bps, "tier": tier},
            "rounding": conv.rounding.as_str(),
            "path": conv.path,
            "provenance": {"providers": conv.providers, "fixing_date": r.day.date.to_string(), "disputed": conv.disputed},
            "stale": stale, "next_fixing_expected": next,
            "precision": query::precision_note(),
        }))
    }

    /// The `json!` construction `rates_body` replaced.
    fn rates_reference(
        base: CurrencyCode,
        r: &Resolved,
        ans: &[(CurrencyCode, Decimal)],
        providers: &[String],
    ) -> Vec<u8> {
        let mut rates = Map::new();
        for (c, v) in ans {
            rates.insert(c.to_string(), Value::String(v.to_string()));
        }
        let (stale, next) = staleness_json(r);
        json_body(&json!({
            "base": base, "date": r.day.date.to_string(), "requested_date": r.requested.to_string(),
            "rates": rates, "providers": providers, "stale": stale, "next_fixing_expected": next,
        }))
    }

    fn table() -> Arc<fx::RateTable> {
        let mut book = RateBook::new(ConsensusConfig::default());
        let history = fx::bundled::ecb_history().unwrap();
        book.apply("ecb", &history, Utc::now());
        // A second provider with a name that needs escaping, and a
        // disputed value, on the latest day.
        let latest = book.table().latest().unwrap().date;
        let odd = Batch {
            base: CurrencyCode::EUR,
            fixings: vec![Fixing {
                date: latest,
                rates: vec![
                    (CurrencyCode::USD, Decimal::new(15, 1)),
                    (CurrencyCode::parse("JPY").unwrap(), Decimal::new(1601, 1)),
                ],
            }],
        };
        book.apply("o\"dd\\é\u{1}", &odd, Utc::now()).0
    }

    /// The series body as it was written before it streamed: collected
    /// points, dates and decimals through `Display`.
    fn series_reference(
        t: &fx::RateTable,
        base: CurrencyCode,
        symbols: &[CurrencyCode],
        start: NaiveDate,
        end: NaiveDate,
        interval: Interval,
    ) -> String {
        let points = query::series(t, base, symbols, start, end, interval).unwrap();
        let mut out = format!(
            r#"{{"base":"{base}","start":"{start}","end":"{end}","interval":"{}","rates":{{"#,
            interval.as_str()
        );
        for (i, pt) in points.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, r#""{}":{{"#, pt.start);
            for (j, (c, last, mean)) in pt.rates.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                if interval == Interval::Day {
                    let _ = write!(out, r#""{c}":"{last}""#);
                } else {
                    let _ = write!(out, r#""{c}":{{"last":"{last}","mean":"{mean}"}}"#);
                }
            }
            if interval != Interval::Day {
                let _ = write!(out, r#","_last_fixing":"{}""#, pt.last_fixing);
            }
            out.push('}');
        }
        out.push_str("}}");
        out
    }

    #[test]
    fn streamed_series_equals_the_collected_rendering() {
        let t = table();
        let c = |s: &str| CurrencyCode::parse(s).unwrap();
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        let latest = t.latest().unwrap().date;
        let picked = [c("JPY"), c("EUR"), c("CYP"), c("USD"), c("JPY")];
        for (base, start, end) in [
            ("USD", d(2001, 1, 1), d(2025, 12, 31)),
            ("EUR", d(2005, 6, 1), d(2009, 2, 1)),
            ("JPY", d(2007, 12, 1), latest),
            ("CYP", d(2007, 11, 20), d(2008, 1, 10)),
        ] {
            for symbols in [&[][..], &picked[..]] {
                for interval in [Interval::Day, Interval::Week, Interval::Month] {
                    let Ok(want) = query::series(&t, c(base), symbols, start, end, interval) else {
                        continue;
                    };
                    assert!(!want.is_empty());
                    let got = render_series(&t, c(base), symbols, start, end, interval).unwrap();
                    let want = series_reference(&t, c(base), symbols, start, end, interval);
                    assert_eq!(
                        std::str::from_utf8(&got).unwrap(),
                        want,
                        "{base} {symbols:?} {start}..{end} {interval:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn written_bodies_equal_the_json_values_they_replace() {
        let t = table();
        let calendar = FixingCalendar::default();
        let latest = t.latest().unwrap().date;
        let c = |s: &str| CurrencyCode::parse(s).unwrap();
        let pairs = [
            ("USD", "JPY"),
            ("EUR", "USD"),
            ("JPY", "EUR"),
            ("EUR", "EUR"),
            ("GBP", "KRW"),
        ];
        let dates = [None, Some(latest), NaiveDate::from_ymd_opt(2020, 3, 2)];
        let nows = [
            Utc.from_utc_datetime(&latest.and_hms_opt(18, 0, 0).unwrap()),
            Utc.from_utc_datetime(
                &(latest + chrono::Duration::days(30))
                    .and_hms_opt(9, 0, 0)
                    .unwrap(),
            ),
        ];
        let limits = StalenessLimits {
            soft: chrono::Duration::hours(6),
            hard: None,
        };
        let mut checked = 0;
        for now in nows {
            for on in dates {
                let r = query::resolve(&t, on, now, &calendar, &limits).unwrap();
                for (from, to) in pairs {
                    for (amount, tier) in [
                        ("123.25", None),
                        ("0.01", Some("gold")),
                        ("1000000", Some("a\"b\\c\u{7}é")),
                    ] {
                        let conv = query::convert_on(
                            &t,
                            &r.day,
                            &ConvertRequest {
                                from: c(from),
                                to: c(to),
                                amount: amount.parse().unwrap(),
                                date: on,
                                rounding: RoundingMode::HalfUp,
                                spread_bps: 37,
                            },
                        )
                        .unwrap();
                        assert_eq!(
                            String::from_utf8(convert_body(&conv, &r, tier)).unwrap(),
                            String::from_utf8(convert_reference(&conv, &r, tier)).unwrap()
                        );
                        checked += 1;
                    }
                }
                for base in ["USD", "EUR", "JPY"] {
                    let ans = query::rates_on(&t, &r.day, c(base), &[]).unwrap();
                    for providers in [vec![], vec!["ecb".to_string(), "x\"\n".to_string()]] {
                        assert_eq!(
                            String::from_utf8(rates_body(c(base), &r, &ans.rates, &providers))
                                .unwrap(),
                            String::from_utf8(rates_reference(c(base), &r, &ans.rates, &providers))
                                .unwrap()
                        );
                    }
                }
            }
        }
        assert_eq!(checked, 90);
    }
}
