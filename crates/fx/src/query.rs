//! Answers computed from a [`RateTable`]: rates on a day, time series and
//! conversions.
//!
//! All arithmetic is `Decimal`. A cross rate is `mid(to) / mid(from)` (both
//! per 1 EUR) rounded to [`RATE_SIGNIFICANT_DIGITS`]; a converted amount
//! is `amount × rate` with that very rate, rounded once to the target's
//! minor units, so anyone can reproduce the result from the numbers shown.
//!
//! [`RATE_SIGNIFICANT_DIGITS`]: crate::exact::RATE_SIGNIFICANT_DIGITS
//!
//! Date rules: no date means the latest fixing; a date falls back to the
//! latest fixing on or before it (weekends, holidays, gaps) and the answer
//! names the fixing actually used. A date before the first fixing or after
//! today is refused, as is a currency absent from the fixing used (CYP
//! after 2007).

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::currency::CurrencyCode;
use crate::error::FxError;
use crate::exact::{div_rate_by, round_rate, Divisor};
use crate::money::RoundingMode;
use crate::spread::customer_rate;
use crate::staleness::{FixingCalendar, StalenessLimits};
use crate::table::{Day, RateTable, PIVOT};

/// The fixing chosen for a request, and how fresh it is.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The day used.
    pub day: Arc<Day>,
    /// The date asked for (today if none).
    pub requested: NaiveDate,
    /// Whether this is the newest fixing in the table.
    pub is_latest: bool,
    /// When the next fixing is expected (if this is the latest).
    pub next_expected: Option<DateTime<Utc>>,
    /// Overdue time of the next fixing (zero unless the latest is late).
    pub overdue: Duration,
    /// Past the soft limit.
    pub stale: bool,
}

/// Picks the fixing for `date` (None = latest) and applies staleness limits.
pub fn resolve(
    table: &RateTable,
    date: Option<NaiveDate>,
    now: DateTime<Utc>,
    calendar: &FixingCalendar,
    limits: &StalenessLimits,
) -> Result<Resolved, FxError> {
    let today = now.date_naive();
    // Staleness never depends on a fixing dated in the future: one that
    // reached a store anyway (e.g. before dates were checked on import) is
    // not "a later fixing", so it cannot make the real latest one look
    // superseded and current.
    let horizon = today.succ_opt().unwrap_or(today);
    let latest = table.on_or_before(horizon).ok_or(FxError::NoData)?;
    let requested = date.unwrap_or(today);
    if requested > today {
        return Err(FxError::FutureDate {
            date: requested,
            today,
        });
    }
    let first = table.first_date().ok_or(FxError::NoData)?;
    if requested < first {
        return Err(FxError::BeforeFirstFixing {
            date: requested,
            first,
        });
    }
    let day = table
        .on_or_before(requested)
        .ok_or(FxError::NoData)?
        .clone();
    let is_latest = day.date == latest.date;
    let (next_expected, overdue) = if is_latest {
        let f = calendar.freshness(day.date, now);
        (Some(f.next_expected), f.overdue)
    } else {
        (None, Duration::zero())
    };
    if let Some(hard) = limits.hard {
        if overdue > hard {
            return Err(FxError::TooStale {
                fixing: day.date,
                overdue_hours: overdue.num_hours(),
                limit_hours: hard.num_hours(),
            });
        }
    }
    Ok(Resolved {
        day,
        requested,
        is_latest,
        next_expected,
        overdue,
        stale: overdue > limits.soft,
    })
}

fn not_quoted(table: &RateTable, c: CurrencyCode, date: NaiveDate) -> FxError {
    let cov = table.coverage(c);
    FxError::NotQuoted {
        currency: c,
        date,
        first: cov.map(|c| c.first),
        last: cov.map(|c| c.last),
    }
}

/// Units of `to` per 1 `from` on `day`, or which currency is missing.
pub fn cross(
    table: &RateTable,
    day: &Day,
    from: CurrencyCode,
    to: CurrencyCode,
) -> Result<Decimal, FxError> {
    if day.mid(from).is_none() {
        return Err(not_quoted(table, from, day.date));
    }
    if day.mid(to).is_none() {
        return Err(not_quoted(table, to, day.date));
    }
    day.cross(from, to).ok_or(FxError::Overflow)
}

/// The currencies a conversion goes through.
pub fn path(from: CurrencyCode, to: CurrencyCode) -> Vec<CurrencyCode> {
    if from == to {
        vec![from]
    } else if from == PIVOT || to == PIVOT {
        vec![from, to]
    } else {
        vec![from, PIVOT, to]
    }
}

/// Rates of several symbols against one base on one day.
#[derive(Debug, Clone)]
pub struct RatesAnswer {
    /// Base currency.
    pub base: CurrencyCode,
    /// `(symbol, units per 1 base)`, sorted by symbol.
    pub rates: Vec<(CurrencyCode, Decimal)>,
}

/// Rates for `symbols` (all quoted currencies when empty) against `base`.
pub fn rates_on(
    table: &RateTable,
    day: &Day,
    base: CurrencyCode,
    symbols: &[CurrencyCode],
) -> Result<RatesAnswer, FxError> {
    if day.mid(base).is_none() {
        return Err(not_quoted(table, base, day.date));
    }
    let mut rates = Vec::new();
    if symbols.is_empty() {
        if base != PIVOT {
            rates.push((PIVOT, cross(table, day, base, PIVOT)?));
        }
        for r in &day.rates {
            if r.currency != base {
                rates.push((r.currency, cross(table, day, base, r.currency)?));
            }
        }
    } else {
        for s in symbols {
            rates.push((*s, cross(table, day, base, *s)?));
        }
    }
    rates.sort_by_key(|r| r.0);
    rates.dedup_by_key(|r| r.0);
    Ok(RatesAnswer { base, rates })
}

/// Aggregation of a time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interval {
    /// Every fixing.
    #[default]
    Day,
    /// ISO weeks (Monday to Sunday).
    Week,
    /// Calendar months.
    Month,
}

impl Interval {
    /// Name used in query strings.
    pub fn as_str(&self) -> &'static str {
        match self {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }

    /// Parses `day`, `week` or `month`.
    pub fn parse(s: &str) -> Option<Interval> {
        match s.trim().to_ascii_lowercase().as_str() {
            "day" | "daily" => Some(Interval::Day),
            "week" | "weekly" => Some(Interval::Week),
            "month" | "monthly" => Some(Interval::Month),
            _ => None,
        }
    }

    fn bucket(&self, d: NaiveDate) -> NaiveDate {
        match self {
            Interval::Day => d,
            Interval::Week => d - Duration::days(d.weekday().num_days_from_monday() as i64),
            Interval::Month => d.with_day(1).unwrap_or(d),
        }
    }
}

/// One point of a series: a day, or an aggregated period.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPoint {
    /// The fixing date (daily) or the first day of the period.
    pub start: NaiveDate,
    /// The last fixing in the period (equals `start` for daily points).
    pub last_fixing: NaiveDate,
    /// `(symbol, last value, mean value)`; mean equals last for daily points.
    pub rates: Vec<(CurrencyCode, Decimal, Decimal)>,
}

/// Rates of `symbols` against `base` over `[start, end]`; see
/// [`series_each`], which this collects.
pub fn series(
    table: &RateTable,
    base: CurrencyCode,
    symbols: &[CurrencyCode],
    start: NaiveDate,
    end: NaiveDate,
    interval: Interval,
) -> Result<Vec<SeriesPoint>, FxError> {
    let mut out = Vec::new();
    series_each(table, base, symbols, start, end, interval, |p| {
        out.push(p.clone())
    })?;
    Ok(out)
}

/// Rates of `symbols` (every currency quoted in the range when empty)
/// against `base` over `[start, end]`, one point per fixing (or per
/// period), passed to `f` in date order.
///
/// Streams: one point is reused for the whole series, so a 25-year daily
/// series (~200,000 values) allocates nothing per day and its renderer
/// writes each point as it comes.
pub fn series_each(
    table: &RateTable,
    base: CurrencyCode,
    symbols: &[CurrencyCode],
    start: NaiveDate,
    end: NaiveDate,
    interval: Interval,
    mut f: impl FnMut(&SeriesPoint),
) -> Result<(), FxError> {
    let days = table.range(start, end);
    let derived = symbols.is_empty();
    let all_symbols: Vec<CurrencyCode> = if derived {
        // Every currency whose coverage overlaps the range, from the
        // table's coverage index rather than a scan of the days. One with
        // a gap spanning the whole range would be listed but gives no
        // values, so the answer is the same as listing only those quoted.
        table
            .currencies()
            .into_iter()
            .filter(|(c, cov)| *c != base && cov.first <= end && cov.last >= start)
            .map(|(c, _)| c)
            .collect()
    } else {
        symbols.to_vec()
    };
    // Refuse a currency never quoted in the range rather than return
    // nothing (currencies found in the range are quoted by construction).
    let check: &[CurrencyCode] = if derived { &[] } else { &all_symbols };
    for c in std::iter::once(&base).chain(check) {
        if !days.iter().any(|d| d.mid(*c).is_some()) {
            return Err(not_quoted(table, *c, start));
        }
    }
    let mut point = SeriesPoint {
        start,
        last_fixing: start,
        rates: Vec::with_capacity(all_symbols.len()),
    };
    let mut sums: Vec<(Decimal, u32)> = vec![(Decimal::ZERO, 0); all_symbols.len()];
    let mut lasts: Vec<Option<Decimal>> = vec![None; all_symbols.len()];
    let mut current: Option<(NaiveDate, NaiveDate)> = None;
    // Symbols in code order, so each day's (sorted) rates are found in one
    // merge pass rather than a binary search per symbol. Daily points keep
    // the caller's order, so they are written through `slot`.
    let mut order: Vec<usize> = (0..all_symbols.len()).collect();
    order.sort_by_key(|&i| all_symbols[i]);
    let mut daily: Vec<Option<Decimal>> = vec![None; all_symbols.len()];
    for d in days {
        let Some(base_mid) = d.mid(base) else {
            continue;
        };
        let base_mid = Divisor::new(base_mid);
        if interval != Interval::Day {
            let b = interval.bucket(d.date);
            match current {
                Some((cb, _)) if cb == b => {}
                Some(cur) => flush(&all_symbols, cur, &mut sums, &mut lasts, &mut point, &mut f),
                None => {}
            }
            current = Some((b, d.date));
        }
        let mids = d.mids();
        let mut j = 0;
        for &i in &order {
            let s = &all_symbols[i];
            let m = if *s == PIVOT {
                Decimal::ONE
            } else {
                while j < mids.len() && mids[j].0 < *s {
                    j += 1;
                }
                match mids.get(j) {
                    Some(&(c, m)) if c == *s => m,
                    _ => continue,
                }
            };
            let r = if *s == base {
                Decimal::ONE
            } else if base == PIVOT {
                // Pivot-based mids are already the answer (and already rounded).
                m
            } else {
                // A match, not `ok_or`: that builds (and drops) an error
                // for every value.
                match div_rate_by(m, &base_mid) {
                    Some(r) => r,
                    None => return Err(FxError::Overflow),
                }
            };
            if interval == Interval::Day {
                daily[i] = Some(r);
            } else {
                sums[i].0 += r;
                sums[i].1 += 1;
                lasts[i] = Some(r);
            }
        }
        if interval == Interval::Day {
            point.rates.clear();
            for (s, r) in all_symbols.iter().zip(daily.iter_mut()) {
                if let Some(r) = r.take() {
                    point.rates.push((*s, r, r));
                }
            }
            if !point.rates.is_empty() {
                point.start = d.date;
                point.last_fixing = d.date;
                f(&point);
            }
        }
    }
    if let Some(cur) = current {
        flush(&all_symbols, cur, &mut sums, &mut lasts, &mut point, &mut f);
    }
    Ok(())
}

/// Emits one aggregated point from the running sums, and resets them.
fn flush(
    symbols: &[CurrencyCode],
    cur: (NaiveDate, NaiveDate),
    sums: &mut [(Decimal, u32)],
    lasts: &mut [Option<Decimal>],
    point: &mut SeriesPoint,
    f: &mut impl FnMut(&SeriesPoint),
) {
    point.rates.clear();
    for (i, s) in symbols.iter().enumerate() {
        if let Some(last) = lasts[i] {
            let (sum, n) = sums[i];
            let mean = if n <= 1 {
                last
            } else {
                round_rate(sum / Decimal::from(n))
            };
            point.rates.push((*s, last, mean));
        }
        sums[i] = (Decimal::ZERO, 0);
        lasts[i] = None;
    }
    if !point.rates.is_empty() {
        point.start = cur.0;
        point.last_fixing = cur.1;
        f(point);
    }
}

/// A conversion request (already validated).
#[derive(Debug, Clone)]
pub struct ConvertRequest {
    /// Source currency.
    pub from: CurrencyCode,
    /// Target currency.
    pub to: CurrencyCode,
    /// Amount in `from`.
    pub amount: Decimal,
    /// Fixing date (None = latest).
    pub date: Option<NaiveDate>,
    /// Rounding of the result.
    pub rounding: RoundingMode,
    /// Customer markup.
    pub spread_bps: u32,
}

/// A converted amount with everything needed to audit it.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// Source currency.
    pub from: CurrencyCode,
    /// Target currency.
    pub to: CurrencyCode,
    /// Amount in `from`.
    pub amount: Decimal,
    /// Mid rate: units of `to` per 1 `from`.
    pub mid_rate: Decimal,
    /// `amount × mid_rate`, rounded.
    pub mid_amount: Decimal,
    /// Markup applied for the customer rate.
    pub spread_bps: u32,
    /// Customer rate.
    pub customer_rate: Decimal,
    /// `amount × customer_rate`, rounded.
    pub customer_amount: Decimal,
    /// Rounding used.
    pub rounding: RoundingMode,
    /// Currencies the conversion went through.
    pub path: Vec<CurrencyCode>,
    /// Providers behind the rates used.
    pub providers: Vec<String>,
    /// Some input rate is disputed between providers.
    pub disputed: bool,
}

/// Applies a rate to an amount, rounding to `to`'s minor units.
pub fn apply_rate(
    amount: Decimal,
    rate: Decimal,
    to: CurrencyCode,
    rounding: RoundingMode,
) -> Result<Decimal, FxError> {
    let raw = amount.checked_mul(rate).ok_or(FxError::Overflow)?;
    Ok(rounding.round(raw, to.minor_units()))
}

/// Converts on the given day.
pub fn convert_on(
    table: &RateTable,
    day: &Day,
    req: &ConvertRequest,
) -> Result<Conversion, FxError> {
    let mid = cross(table, day, req.from, req.to)?;
    let cust = customer_rate(mid, req.spread_bps);
    let mut providers: Vec<String> = Vec::new();
    for c in [req.from, req.to] {
        for p in day.providers_of(c) {
            if !providers.iter().any(|x| **x == *p) {
                providers.push(p.to_string());
            }
        }
    }
    if providers.is_empty() {
        // Only EUR involved on both sides: still name who fixed the day.
        for r in day.rates.iter().take(1) {
            providers.extend(r.sources.iter().map(|s| s.provider.to_string()));
        }
    }
    let disputed = [req.from, req.to]
        .iter()
        .any(|c| day.get(*c).is_some_and(|r| r.disputed));
    Ok(Conversion {
        from: req.from,
        to: req.to,
        amount: req.amount,
        mid_rate: mid,
        mid_amount: apply_rate(req.amount, mid, req.to, req.rounding)?,
        spread_bps: req.spread_bps,
        customer_rate: cust,
        customer_amount: apply_rate(req.amount, cust, req.to, req.rounding)?,
        rounding: req.rounding,
        path: path(req.from, req.to),
        providers,
        disputed,
    })
}

/// Documented precision, for responses and docs (on every conversion, so
/// a constant rather than a string formatted per request; a test checks it
/// names [`crate::exact::RATE_SIGNIFICANT_DIGITS`]).
pub const PRECISION_NOTE: &str =
    "rates carry 15 significant digits; amounts are rounded once, to the target currency's minor units";

/// [`PRECISION_NOTE`] as an owned string.
pub fn precision_note() -> String {
    PRECISION_NOTE.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::ConsensusConfig;
    use crate::table::RateBook;

    /// The straightforward series: a lookup and a `Decimal` division per
    /// value (what `series` computed before its merge pass and fast
    /// division), daily points only.
    fn reference(
        table: &RateTable,
        base: CurrencyCode,
        symbols: &[CurrencyCode],
        start: NaiveDate,
        end: NaiveDate,
    ) -> Vec<(NaiveDate, Vec<(CurrencyCode, Decimal)>)> {
        let mut out = Vec::new();
        for d in table.range(start, end) {
            let Some(b) = d.mid(base) else { continue };
            let rates: Vec<_> = symbols
                .iter()
                .filter_map(|s| {
                    let m = d.mid(*s)?;
                    Some((*s, round_rate(m.checked_div(b)?)))
                })
                .collect();
            if !rates.is_empty() {
                out.push((d.date, rates));
            }
        }
        out
    }

    #[test]
    fn precision_note_names_the_significant_digits() {
        assert_eq!(
            PRECISION_NOTE,
            format!("rates carry {} significant digits; amounts are rounded once, to the target currency's minor units", crate::exact::RATE_SIGNIFICANT_DIGITS)
        );
    }

    #[test]
    fn series_equals_the_straightforward_computation() {
        let batch = crate::bundled::ecb_history().unwrap();
        let mut book = RateBook::new(ConsensusConfig::default());
        let table = book.apply("ecb", &batch, Utc::now()).0;
        let c = |s: &str| CurrencyCode::parse(s).unwrap();
        let start = NaiveDate::from_ymd_opt(2005, 1, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(2009, 12, 31).unwrap();
        let all: Vec<CurrencyCode> = crate::currency::all()
            .filter(|x| table.range(start, end).iter().any(|d| d.mid(*x).is_some()))
            .collect();
        // Unsorted, with a duplicate, the pivot and a currency that stops
        // being quoted (CYP, 2007) in the middle.
        let picked = [c("USD"), c("CYP"), c("EUR"), c("AUD"), c("USD"), c("JPY")];
        for base in ["USD", "EUR", "JPY", "CYP"] {
            let base = c(base);
            let everything: Vec<_> = all.iter().copied().filter(|x| *x != base).collect();
            for (asked, expected) in [(&[][..], &everything[..]), (&picked[..], &picked[..])] {
                let got = series(&table, base, asked, start, end, Interval::Day).unwrap();
                let want = reference(&table, base, expected, start, end);
                assert_eq!(got.len(), want.len());
                for (g, (date, rates)) in got.iter().zip(&want) {
                    assert_eq!(g.start, *date);
                    let g: Vec<_> = g.rates.iter().map(|r| (r.0, r.1)).collect();
                    assert_eq!(&g, rates, "{base} on {date}");
                }
            }
        }
    }

    #[test]
    fn series_over_an_incrementally_published_table_equal_a_rebuilt_ones() {
        use crate::parse::{Batch, Fixing};
        use std::str::FromStr;
        let c = |s: &str| CurrencyCode::parse(s).unwrap();
        let d = |s: &str| Decimal::from_str(s).unwrap();
        let date = |s: &str| NaiveDate::from_str(s).unwrap();
        let history = crate::bundled::ecb_history().unwrap();
        let mut book = RateBook::new(ConsensusConfig::default());
        book.apply("ecb", &history, Utc::now());
        // A second provider on a few days, old and new, out of order, one
        // of them a new date and one bringing a currency never seen before.
        let days = [
            (
                "2026-11-02",
                vec![(c("USD"), d("1.16")), (c("KES"), d("150.2"))],
            ),
            ("2010-05-04", vec![(c("USD"), d("1.3"))]),
            (
                "2001-01-03",
                vec![(c("JPY"), d("109.1")), (c("CYP"), d("0.57"))],
            ),
        ];
        let batch = Batch {
            base: PIVOT,
            fixings: days
                .iter()
                .map(|(day, rates)| Fixing {
                    date: date(day),
                    rates: rates.clone(),
                })
                .collect(),
        };
        let (t, _) = book.apply("oxr", &batch, Utc::now());
        // Series over the incrementally published table equal those of a
        // book built from scratch with the same data.
        let mut fresh = RateBook::new(ConsensusConfig::default());
        fresh.apply("ecb", &history, Utc::now());
        let rebuilt = fresh.apply("oxr", &batch, Utc::now()).0;
        for base in ["USD", "EUR", "KES", "CYP"] {
            for interval in [Interval::Day, Interval::Month] {
                let s = |t: &RateTable| {
                    series(
                        t,
                        c(base),
                        &[],
                        date("2000-12-01"),
                        date("2026-11-02"),
                        interval,
                    )
                };
                assert_eq!(s(&t), s(&rebuilt), "{base} {interval:?}");
                assert!(s(&t).is_ok_and(|v| !v.is_empty()), "{base}");
            }
        }
    }
}
