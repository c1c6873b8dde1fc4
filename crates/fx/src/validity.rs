//! Which fixing dates a provider file may carry.
//!
//! A fixing cannot be dated after tomorrow in the provider's own time zone
//! (the ECB fixes at 14:15 Frankfurt time, so its calendar day is the
//! Central European one; OXR stamps its files in UTC), nor before the
//! provider's first fixing (the ECB's reference rates start on 1999-01-04)
//! or the day a currency came into being ([`CurrencyCode::first_day`]).
//! Such a row is refused with the file's line, the date and the reason;
//! the whole file is then refused and nothing is stored.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};

use crate::currency::CurrencyCode;
use crate::parse::{Batch, Format};

/// The time zone a provider's calendar day is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderZone {
    /// Central European Time (UTC+1, UTC+2 in summer): the ECB, and
    /// Frankfurter, which republishes the ECB's fixings.
    CentralEurope,
    /// UTC: Open Exchange Rates.
    Utc,
}

impl ProviderZone {
    /// The zone of a file format's provider.
    pub fn of(format: Format) -> ProviderZone {
        match format {
            Format::Oxr => ProviderZone::Utc,
            Format::EcbCsv | Format::EcbZip | Format::EcbXml | Format::Frankfurter => {
                ProviderZone::CentralEurope
            }
        }
    }

    /// The calendar day at `now` in this zone.
    pub fn today(&self, now: DateTime<Utc>) -> NaiveDate {
        match self {
            ProviderZone::Utc => now.date_naive(),
            ProviderZone::CentralEurope => (now + cet_offset(now)).date_naive(),
        }
    }
}

/// Central European offset from UTC at `now`: +2 h from the last Sunday of
/// March, 01:00 UTC, to the last Sunday of October, 01:00 UTC; else +1 h.
fn cet_offset(now: DateTime<Utc>) -> Duration {
    let switch = |month: u32| {
        let last = NaiveDate::from_ymd_opt(now.year(), month, 31)?;
        let back = last.weekday().num_days_from_sunday();
        let sunday = last - Duration::days(i64::from(back));
        debug_assert_eq!(sunday.weekday(), Weekday::Sun);
        Some(Utc.from_utc_datetime(&sunday.and_hms_opt(1, 0, 0)?))
    };
    match (switch(3), switch(10)) {
        (Some(start), Some(end)) if now >= start && now < end => Duration::hours(2),
        _ => Duration::hours(1),
    }
}

/// The first fixing date a format's provider has published.
pub fn provider_first_day(format: Format) -> NaiveDate {
    let (y, m, d) = match format {
        // Open Exchange Rates' history starts on 1 January 1999.
        Format::Oxr => (1999, 1, 1),
        // The ECB's first reference rates; Frankfurter republishes them.
        Format::EcbCsv | Format::EcbZip | Format::EcbXml | Format::Frankfurter => (1999, 1, 4),
    };
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

/// The latest fixing date acceptable at `now` from a format's provider:
/// tomorrow in the provider's time zone.
pub fn latest_allowed(format: Format, now: DateTime<Utc>) -> NaiveDate {
    let today = ProviderZone::of(format).today(now);
    today.succ_opt().unwrap_or(today)
}

/// A fixing date refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateRefusal {
    /// The fixing date.
    pub date: NaiveDate,
    /// The currency concerned, when the refusal is about one currency.
    pub currency: Option<CurrencyCode>,
    /// Line of the file, when known.
    pub line: Option<usize>,
    /// Why.
    pub reason: String,
}

impl fmt::Display for DateRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        write!(f, "{}", self.date)?;
        if let Some(c) = self.currency {
            write!(f, " {c}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Every date in `batch` that cannot be a genuine fixing at `now`: after
/// tomorrow in the provider's zone, before the provider's first fixing, or
/// before a currency (or the batch's base) existed. Lines are not filled in.
pub fn check_dates(batch: &Batch, format: Format, now: DateTime<Utc>) -> Vec<DateRefusal> {
    let latest = latest_allowed(format, now);
    let first = provider_first_day(format);
    let mut out = Vec::new();
    let refuse = |out: &mut Vec<DateRefusal>, date, currency, reason: String| {
        out.push(DateRefusal {
            date,
            currency,
            line: None,
            reason,
        })
    };
    for f in &batch.fixings {
        if f.date > latest {
            refuse(
                &mut out,
                f.date,
                None,
                format!("dated in the future (the latest acceptable fixing date is {latest})"),
            );
            continue;
        }
        if f.date < first {
            refuse(
                &mut out,
                f.date,
                None,
                format!("before the provider's first fixing ({first})"),
            );
            continue;
        }
        if let Some(day) = batch.base.first_day().filter(|d| f.date < *d) {
            refuse(
                &mut out,
                f.date,
                Some(batch.base),
                format!("before the base currency {} existed ({day})", batch.base),
            );
            continue;
        }
        for (c, _) in &f.rates {
            if let Some(day) = c.first_day().filter(|d| f.date < *d) {
                refuse(
                    &mut out,
                    f.date,
                    Some(*c),
                    format!("before {c} existed ({day})"),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Fixing;
    use rust_decimal::Decimal;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn tomorrow_is_counted_in_the_providers_zone() {
        // 23:30 UTC on 2 November is already 3 November in Frankfurt (CET).
        let late = Utc.with_ymd_and_hms(2026, 11, 2, 23, 30, 0).unwrap();
        assert_eq!(latest_allowed(Format::EcbXml, late), day(2026, 11, 4));
        assert_eq!(latest_allowed(Format::Oxr, late), day(2026, 11, 3));
        // Summer time: 22:30 UTC on 1 July is 00:30 on 2 July in Frankfurt.
        let summer = Utc.with_ymd_and_hms(2026, 7, 1, 22, 30, 0).unwrap();
        assert_eq!(latest_allowed(Format::EcbCsv, summer), day(2026, 7, 3));
        let winter = Utc.with_ymd_and_hms(2026, 1, 15, 22, 30, 0).unwrap();
        assert_eq!(latest_allowed(Format::EcbCsv, winter), day(2026, 1, 16));
    }

    #[test]
    fn future_old_and_preexisting_dates_are_refused() {
        let now = Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap();
        let usd = CurrencyCode::USD;
        let ron = CurrencyCode::parse("RON").unwrap();
        let fixing = |date, rates: Vec<(CurrencyCode, Decimal)>| Fixing { date, rates };
        let batch = Batch {
            base: CurrencyCode::EUR,
            fixings: vec![
                fixing(day(1970, 1, 1), vec![(usd, Decimal::ONE)]),
                fixing(
                    day(2001, 3, 1),
                    vec![(ron, Decimal::ONE), (usd, Decimal::ONE)],
                ),
                fixing(day(2026, 11, 3), vec![(usd, Decimal::ONE)]),
                fixing(day(2026, 11, 4), vec![(usd, Decimal::ONE)]),
                fixing(day(2099, 1, 1), vec![(usd, Decimal::ONE)]),
            ],
        };
        let refused = check_dates(&batch, Format::EcbCsv, now);
        let dates: Vec<_> = refused.iter().map(|r| (r.date, r.currency)).collect();
        assert_eq!(
            dates,
            vec![
                (day(1970, 1, 1), None),
                (day(2001, 3, 1), Some(ron)),
                (day(2026, 11, 4), None),
                (day(2099, 1, 1), None),
            ]
        );
        assert!(refused[0].reason.contains("1999-01-04"), "{}", refused[0]);
        assert!(refused[3].reason.contains("future"), "{}", refused[3]);
    }
}
