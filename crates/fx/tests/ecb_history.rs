//! Conversions and lookups against the real ECB history bundled in the crate.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use chrono::{NaiveDate, TimeZone, Utc};
use fx::consensus::ConsensusConfig;
use fx::query::{self, ConvertRequest, Interval};
use fx::staleness::{FixingCalendar, StalenessLimits};
use fx::table::{RateBook, RateTable};
use fx::{CurrencyCode, FxError, RoundingMode};
use rust_decimal::Decimal;

fn table() -> Arc<RateTable> {
    static T: OnceLock<Arc<RateTable>> = OnceLock::new();
    T.get_or_init(|| {
        let batch = fx::bundled::ecb_history().unwrap();
        let mut book = RateBook::new(ConsensusConfig::default());
        book.apply("ecb", &batch, Utc::now()).0
    })
    .clone()
}

fn c(s: &str) -> CurrencyCode {
    CurrencyCode::parse(s).unwrap()
}
fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}
fn date(s: &str) -> NaiveDate {
    NaiveDate::from_str(s).unwrap()
}
fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap()
}

fn convert(
    from: &str,
    to: &str,
    amount: &str,
    on: Option<&str>,
    rounding: RoundingMode,
) -> Result<(NaiveDate, query::Conversion), FxError> {
    let t = table();
    let r = query::resolve(
        &t,
        on.map(date),
        now(),
        &FixingCalendar::default(),
        &StalenessLimits::default(),
    )?;
    let conv = query::convert_on(
        &t,
        &r.day,
        &ConvertRequest {
            from: c(from),
            to: c(to),
            amount: d(amount),
            date: on.map(date),
            rounding,
            spread_bps: 0,
        },
    )?;
    Ok((r.day.date, conv))
}

#[test]
fn full_history_is_bundled() {
    let t = table();
    assert_eq!(t.first_date(), Some(date("1999-01-04")));
    assert_eq!(t.latest().unwrap().date, date("2026-10-30"));
    assert!(t.days().len() > 7000, "{} days", t.days().len());
    // 41 quoted currencies plus the euro itself.
    assert_eq!(t.currencies().len(), 42);
}

#[test]
fn usd_to_jpy_matches_the_csv_cross_rate() {
    // CSV 2020-03-02: USD 1.1122, JPY 119.82 per EUR.
    let (used, conv) = convert(
        "USD",
        "JPY",
        "1234.56",
        Some("2020-03-02"),
        RoundingMode::HalfEven,
    )
    .unwrap();
    assert_eq!(used, date("2020-03-02"));
    assert_eq!(conv.mid_rate, d("107.732422226218"));
    assert_eq!(conv.mid_amount.to_string(), "133002");
    assert_eq!(conv.path, vec![c("USD"), c("EUR"), c("JPY")]);
    assert_eq!(conv.providers, vec!["ecb".to_string()]);
    let (_, up) = convert(
        "USD",
        "JPY",
        "1234.56",
        Some("2020-03-02"),
        RoundingMode::Ceiling,
    )
    .unwrap();
    assert_eq!(up.mid_amount.to_string(), "133003");
    // Against the pivot there is no intermediate step.
    let (_, eur) = convert(
        "EUR",
        "GBP",
        "100",
        Some("2020-03-02"),
        RoundingMode::HalfEven,
    )
    .unwrap();
    assert_eq!(eur.mid_amount.to_string(), "87.11");
    assert_eq!(eur.path, vec![c("EUR"), c("GBP")]);
}

#[test]
fn weekends_and_holidays_fall_back_to_the_previous_fixing() {
    // Saturday 2020-02-29 uses Friday's fixing.
    let (used, _) = convert(
        "USD",
        "JPY",
        "1",
        Some("2020-02-29"),
        RoundingMode::HalfEven,
    )
    .unwrap();
    assert_eq!(used, date("2020-02-28"));
    // 25 and 26 December: TARGET holidays.
    let (used, _) = convert(
        "USD",
        "JPY",
        "1",
        Some("2019-12-26"),
        RoundingMode::HalfEven,
    )
    .unwrap();
    assert_eq!(used, date("2019-12-24"));
    // Good Friday and Easter Monday 2020.
    let (used, _) = convert(
        "USD",
        "JPY",
        "1",
        Some("2020-04-13"),
        RoundingMode::HalfEven,
    )
    .unwrap();
    assert_eq!(used, date("2020-04-09"));
}

#[test]
fn retired_currencies_are_convertible_only_while_quoted() {
    let (_, conv) = convert(
        "EUR",
        "CYP",
        "100",
        Some("2007-12-31"),
        RoundingMode::HalfEven,
    )
    .unwrap();
    assert_eq!(conv.mid_amount.to_string(), "58.53");
    match convert(
        "EUR",
        "CYP",
        "100",
        Some("2008-01-02"),
        RoundingMode::HalfEven,
    ) {
        Err(FxError::NotQuoted { currency, last, .. }) => {
            assert_eq!(currency, c("CYP"));
            assert_eq!(last, Some(date("2007-12-31")));
        }
        other => panic!("expected not quoted, got {other:?}"),
    }
    let cov = table().coverage(c("EEK")).unwrap();
    assert_eq!(cov.last, date("2010-12-31"));
}

#[test]
fn dates_outside_the_data_are_refused() {
    assert!(matches!(
        convert(
            "USD",
            "JPY",
            "1",
            Some("1998-12-31"),
            RoundingMode::HalfEven
        ),
        Err(FxError::BeforeFirstFixing { .. })
    ));
    assert!(matches!(
        convert(
            "USD",
            "JPY",
            "1",
            Some("2026-11-03"),
            RoundingMode::HalfEven
        ),
        Err(FxError::FutureDate { .. })
    ));
}

#[test]
fn latest_is_flagged_stale_then_refused_as_time_passes() {
    let t = table();
    let cal = FixingCalendar::default();
    let limits = StalenessLimits::default();
    // Monday before 16:00 UTC: Friday's fixing is current.
    let r = query::resolve(&t, None, now(), &cal, &limits).unwrap();
    assert!(!r.stale);
    assert_eq!(r.day.date, date("2026-10-30"));
    // Tuesday evening: Monday's fixing is a day overdue.
    let later = Utc.with_ymd_and_hms(2026, 11, 3, 22, 0, 0).unwrap();
    let r = query::resolve(&t, None, later, &cal, &limits).unwrap();
    assert!(r.stale);
    // A week on: refused.
    let much_later = Utc.with_ymd_and_hms(2026, 11, 9, 22, 0, 0).unwrap();
    assert!(matches!(
        query::resolve(&t, None, much_later, &cal, &limits),
        Err(FxError::TooStale { .. })
    ));
    // A historical date is never stale.
    let r = query::resolve(&t, Some(date("2020-03-02")), much_later, &cal, &limits).unwrap();
    assert!(!r.stale);
}

#[test]
fn any_currency_can_be_the_base() {
    let t = table();
    let day = t.on_or_before(date("2020-03-02")).unwrap().clone();
    let a = query::rates_on(&t, &day, c("GBP"), &[c("JPY"), c("EUR")]).unwrap();
    assert_eq!(a.rates[0], (c("EUR"), d("1.14793429224111")));
    assert_eq!(a.rates[1], (c("JPY"), d("137.545486896330")));
    let all = query::rates_on(&t, &day, c("USD"), &[]).unwrap();
    assert!(all.rates.iter().any(|r| r.0 == c("EUR")));
    assert!(!all.rates.iter().any(|r| r.0 == c("USD")));
}

#[test]
fn monthly_series_gives_last_and_mean() {
    let t = table();
    let s = query::series(
        &t,
        c("EUR"),
        &[c("USD")],
        date("2020-01-01"),
        date("2020-03-31"),
        Interval::Month,
    )
    .unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!(s[1].start, date("2020-02-01"));
    assert_eq!(s[1].last_fixing, date("2020-02-28"));
    assert_eq!(s[1].rates[0].1, d("1.0977"));
    let feb = query::series(
        &t,
        c("EUR"),
        &[c("USD")],
        date("2020-02-01"),
        date("2020-02-29"),
        Interval::Day,
    )
    .unwrap();
    let sum: Decimal = feb.iter().map(|p| p.rates[0].1).sum();
    let mean = fx::table::round_rate(sum / Decimal::from(feb.len() as u64));
    assert_eq!(s[1].rates[0].2, mean);
    let weekly = query::series(
        &t,
        c("EUR"),
        &[c("USD")],
        date("2020-02-03"),
        date("2020-02-16"),
        Interval::Week,
    )
    .unwrap();
    assert_eq!(weekly.len(), 2);
    assert_eq!(weekly[0].start, date("2020-02-03"));
    // CYP over a range where it was never quoted.
    assert!(matches!(
        query::series(
            &t,
            c("EUR"),
            &[c("CYP")],
            date("2010-01-01"),
            date("2010-12-31"),
            Interval::Day
        ),
        Err(FxError::NotQuoted { .. })
    ));
}

/// The fixing calendar agrees with the real history: from 2002 to the last
/// bundled fixing, the ECB published on exactly the days the calendar calls
/// business days.
#[test]
fn calendar_matches_the_days_the_ecb_published() {
    let batch = fx::bundled::ecb_history().unwrap();
    let published: std::collections::BTreeSet<NaiveDate> =
        batch.fixings.iter().map(|f| f.date).collect();
    let cal = FixingCalendar::default();
    let last = *published.iter().next_back().unwrap();
    let mut day = date("2002-01-01");
    let mut mismatches = Vec::new();
    while day <= last {
        if cal.is_business_day(day) != published.contains(&day) {
            mismatches.push(day);
        }
        day = day.succ_opt().unwrap();
    }
    assert!(
        mismatches.is_empty(),
        "calendar disagrees on {mismatches:?}"
    );
}
