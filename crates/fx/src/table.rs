//! The in-memory rate table: every day's consensus mid rates against the
//! pivot (EUR), with each provider's value kept beside it.
//!
//! [`RateBook`] is the mutable side: it holds every provider's raw fixings
//! (normalised to the pivot) and, when a batch arrives, recomputes the
//! consensus of just the days the batch touched and publishes a new
//! immutable [`RateTable`]. Days are shared between successive tables through
//! `Arc`, so a new fixing costs a copy of the day index, not of the history,
//! and readers (behind an `ArcSwap` in the service) never take a lock.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::consensus::{reconcile, ConsensusConfig};
use crate::currency::CurrencyCode;
use crate::parse::Batch;

// Rate rounding is exact decimal arithmetic and lives in `exact`; these
// paths stay for callers.
pub use crate::exact::{round_rate, RATE_SIGNIFICANT_DIGITS};

/// The pivot currency every stored rate is quoted against.
pub const PIVOT: CurrencyCode = CurrencyCode::EUR;

/// One provider's value for a currency on a day, as units per 1 EUR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Provider name.
    pub provider: Arc<str>,
    /// The provider's value, normalised to the pivot.
    pub value: Decimal,
    /// Left out of the consensus as an outlier.
    pub outlier: bool,
}

/// The consensus for one currency on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRate {
    /// The currency.
    pub currency: CurrencyCode,
    /// Consensus mid rate: units of `currency` per 1 EUR.
    pub mid: Decimal,
    /// Providers disagree with no majority.
    pub disputed: bool,
    /// Every provider's value.
    pub sources: Box<[Source]>,
}

/// All consensus rates of one fixing date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    /// Fixing date.
    pub date: NaiveDate,
    /// Rates sorted by currency; the pivot is implicit (always 1).
    pub rates: Vec<DayRate>,
    /// `(currency, mid)` of `rates`, in the same order, packed together:
    /// what lookups and series scans read. A `DayRate` is ~48 bytes with
    /// its sources behind a pointer; an entry here is 20, so a 25-year
    /// scan touches a third of the memory (it was memory-bound). Built with
    /// the day, so it is exactly as current as `rates`.
    mids: Box<[(CurrencyCode, Decimal)]>,
}

impl Day {
    /// A day from its consensus rates (sorted by currency).
    pub fn new(date: NaiveDate, rates: Vec<DayRate>) -> Day {
        debug_assert!(rates.windows(2).all(|w| w[0].currency < w[1].currency));
        let mids = rates.iter().map(|r| (r.currency, r.mid)).collect();
        Day { date, rates, mids }
    }

    /// `(currency, units per 1 EUR)` of every rate, sorted by currency
    /// (the pivot is implicit).
    pub fn mids(&self) -> &[(CurrencyCode, Decimal)] {
        &self.mids
    }

    /// The consensus entry for `c` (never the pivot).
    pub fn get(&self, c: CurrencyCode) -> Option<&DayRate> {
        self.rates
            .binary_search_by_key(&c, |r| r.currency)
            .ok()
            .map(|i| &self.rates[i])
    }

    /// Units of `c` per 1 EUR on this day, 1 for EUR itself.
    pub fn mid(&self, c: CurrencyCode) -> Option<Decimal> {
        if c == PIVOT {
            return Some(Decimal::ONE);
        }
        self.mids
            .binary_search_by_key(&c, |m| m.0)
            .ok()
            .map(|i| self.mids[i].1)
    }

    /// Names of providers that contributed to `c` (not counting outliers).
    pub fn providers_of(&self, c: CurrencyCode) -> Vec<Arc<str>> {
        match self.get(c) {
            Some(r) => r
                .sources
                .iter()
                .filter(|s| !s.outlier)
                .map(|s| s.provider.clone())
                .collect(),
            None => Vec::new(),
        }
    }

    /// Cross rate: units of `to` per 1 `from`, rounded to
    /// [`RATE_SIGNIFICANT_DIGITS`].
    pub fn cross(&self, from: CurrencyCode, to: CurrencyCode) -> Option<Decimal> {
        let f = self.mid(from)?;
        let t = self.mid(to)?;
        if from == to {
            return Some(Decimal::ONE);
        }
        if from == PIVOT {
            return Some(t);
        }
        crate::exact::div_rate(t, f)
    }
}

/// First and last day a currency was quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// First fixing date with a rate.
    pub first: NaiveDate,
    /// Last fixing date with a rate.
    pub last: NaiveDate,
}

/// An immutable snapshot of all rates.
#[derive(Debug, Clone, Default)]
pub struct RateTable {
    days: Vec<Arc<Day>>,
    coverage: BTreeMap<CurrencyCode, Coverage>,
    /// Increases with every published table.
    pub version: u64,
    /// When this table was published (drives `Last-Modified`).
    pub updated_at: Option<DateTime<Utc>>,
}

impl RateTable {
    /// Every day, oldest first.
    pub fn days(&self) -> &[Arc<Day>] {
        &self.days
    }

    /// Whether there is no data at all.
    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// The first fixing date.
    pub fn first_date(&self) -> Option<NaiveDate> {
        self.days.first().map(|d| d.date)
    }

    /// The latest fixing.
    pub fn latest(&self) -> Option<&Arc<Day>> {
        self.days.last()
    }

    /// The latest fixing on or before `date`.
    pub fn on_or_before(&self, date: NaiveDate) -> Option<&Arc<Day>> {
        let i = self.days.partition_point(|d| d.date <= date);
        i.checked_sub(1).map(|i| &self.days[i])
    }

    /// Days with `start <= date <= end`.
    pub fn range(&self, start: NaiveDate, end: NaiveDate) -> &[Arc<Day>] {
        let a = self.days.partition_point(|d| d.date < start);
        let b = self.days.partition_point(|d| d.date <= end);
        &self.days[a..b.max(a)]
    }

    /// When `c` was quoted; the pivot is quoted on every fixing.
    pub fn coverage(&self, c: CurrencyCode) -> Option<Coverage> {
        if c == PIVOT {
            return Some(Coverage {
                first: self.first_date()?,
                last: self.latest()?.date,
            });
        }
        self.coverage.get(&c).copied()
    }

    /// Every currency that has ever been quoted, pivot included.
    pub fn currencies(&self) -> Vec<(CurrencyCode, Coverage)> {
        let mut v: Vec<_> = self.coverage.iter().map(|(c, cov)| (*c, *cov)).collect();
        if let Some(p) = self.coverage(PIVOT) {
            v.push((PIVOT, p));
            v.sort_by_key(|x| x.0);
        }
        v
    }
}

/// One provider's fixing for one day, normalised to the pivot.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProviderDay {
    rates: Vec<(CurrencyCode, Decimal)>,
}

/// The mutable side: raw per-provider values and the current table.
#[derive(Debug)]
pub struct RateBook {
    raw: BTreeMap<NaiveDate, BTreeMap<Arc<str>, ProviderDay>>,
    providers: BTreeMap<String, Arc<str>>,
    consensus: ConsensusConfig,
    table: Arc<RateTable>,
}

/// Pivot-based rates of one day: `(date, [(currency, units per 1 EUR)])`.
pub type PivotDay = (NaiveDate, Vec<(CurrencyCode, Decimal)>);

/// Converts a batch quoted against any base into pivot-based rates per day.
/// Days whose base cannot be related to the pivot are returned separately.
pub fn normalise(batch: &Batch) -> (Vec<PivotDay>, Vec<NaiveDate>) {
    let mut out = Vec::with_capacity(batch.fixings.len());
    let mut skipped = Vec::new();
    for f in &batch.fixings {
        if batch.base == PIVOT {
            out.push((f.date, f.rates.clone()));
            continue;
        }
        // Units of EUR per 1 base.
        let Some(eur_per_base) = f.rates.iter().find(|r| r.0 == PIVOT).map(|r| r.1) else {
            skipped.push(f.date);
            continue;
        };
        let mut rates = Vec::with_capacity(f.rates.len());
        for (c, v) in &f.rates {
            if *c == PIVOT {
                continue;
            }
            if let Some(x) = crate::exact::div_rate(*v, eur_per_base) {
                rates.push((*c, x));
            }
        }
        if let Some(inv) = crate::exact::div_rate(Decimal::ONE, eur_per_base) {
            rates.push((batch.base, inv));
        }
        rates.sort_by_key(|r| r.0);
        out.push((f.date, rates));
    }
    (out, skipped)
}

impl RateBook {
    /// An empty book.
    pub fn new(consensus: ConsensusConfig) -> Self {
        Self {
            raw: BTreeMap::new(),
            providers: BTreeMap::new(),
            consensus,
            table: Arc::new(RateTable::default()),
        }
    }

    /// Every date with raw data.
    pub fn dates(&self) -> Vec<NaiveDate> {
        self.raw.keys().copied().collect()
    }

    /// The current table.
    pub fn table(&self) -> Arc<RateTable> {
        self.table.clone()
    }

    fn provider(&mut self, name: &str) -> Arc<str> {
        self.providers
            .entry(name.to_string())
            .or_insert_with(|| Arc::from(name))
            .clone()
    }

    /// Adds pivot-normalised days from `provider` without publishing.
    /// An existing `(provider, date)` is kept unless `replace` is set: raw
    /// data is never overwritten by a re-fetch of the same day.
    pub fn add_normalised(
        &mut self,
        provider: &str,
        days: Vec<(NaiveDate, Vec<(CurrencyCode, Decimal)>)>,
    ) -> Vec<NaiveDate> {
        let p = self.provider(provider);
        let mut touched = Vec::with_capacity(days.len());
        for (date, rates) in days {
            let slot = self.raw.entry(date).or_default();
            if let Some(existing) = slot.get_mut(&p) {
                // Only currencies not yet known for that day are added.
                let before = existing.rates.len();
                for (c, v) in rates {
                    if existing.rates.binary_search_by_key(&c, |r| r.0).is_err() {
                        existing.rates.push((c, v));
                    }
                }
                if existing.rates.len() != before {
                    existing.rates.sort_by_key(|r| r.0);
                    touched.push(date);
                }
            } else {
                slot.insert(p.clone(), ProviderDay { rates });
                touched.push(date);
            }
        }
        touched
    }

    /// Sets `provider`'s values of each given day to exactly `days` (what
    /// the store now publishes for it, corrections included), without
    /// publishing. Returns the dates whose values changed.
    pub fn replace_normalised(&mut self, provider: &str, days: Vec<PivotDay>) -> Vec<NaiveDate> {
        let p = self.provider(provider);
        let mut touched = Vec::new();
        for (date, mut rates) in days {
            rates.sort_by_key(|r| r.0);
            let slot = self.raw.entry(date).or_default();
            if slot.get(&p).is_some_and(|d| d.rates == rates) {
                continue;
            }
            if rates.is_empty() {
                slot.remove(&p);
            } else {
                slot.insert(p.clone(), ProviderDay { rates });
            }
            touched.push(date);
        }
        touched
    }

    /// `provider`'s value of `currency` in `base` (units of `currency` per
    /// 1 `base`) on `date`, from its pivot-normalised values.
    pub fn provider_value(
        &self,
        provider: &str,
        date: NaiveDate,
        currency: CurrencyCode,
        base: CurrencyCode,
    ) -> Option<Decimal> {
        let day = self.raw.get(&date)?.get(provider)?;
        value_in_base(day, currency, base)
    }

    /// `provider`'s latest value of `currency` in `base` dated in
    /// `since..before` (exclusive end).
    pub fn previous_value(
        &self,
        provider: &str,
        currency: CurrencyCode,
        base: CurrencyCode,
        since: NaiveDate,
        before: NaiveDate,
    ) -> Option<(NaiveDate, Decimal)> {
        if since >= before {
            return None;
        }
        self.raw.range(since..before).rev().find_map(|(d, ps)| {
            ps.get(provider)
                .and_then(|day| value_in_base(day, currency, base))
                .map(|v| (*d, v))
        })
    }

    /// Every other provider's value of `currency` in `base` on `date`.
    pub fn other_values(
        &self,
        provider: &str,
        date: NaiveDate,
        currency: CurrencyCode,
        base: CurrencyCode,
    ) -> Vec<Decimal> {
        self.raw
            .get(&date)
            .map(|ps| {
                ps.iter()
                    .filter(|(p, _)| ***p != *provider)
                    .filter_map(|(_, day)| value_in_base(day, currency, base))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Adds a parsed batch and publishes a new table. Returns the new table
    /// and the dates that changed.
    pub fn apply(
        &mut self,
        provider: &str,
        batch: &Batch,
        now: DateTime<Utc>,
    ) -> (Arc<RateTable>, Vec<NaiveDate>) {
        let (days, skipped) = normalise(batch);
        if !skipped.is_empty() {
            tracing::warn!(
                provider,
                days = skipped.len(),
                "fixings without a EUR rate cannot be related to the pivot; kept raw only"
            );
        }
        let touched = self.add_normalised(provider, days);
        (self.publish(&touched, now), touched)
    }

    fn build_day(&self, date: NaiveDate) -> Option<Day> {
        let providers = self.raw.get(&date)?;
        let mut by_currency: BTreeMap<CurrencyCode, Vec<(Arc<str>, Decimal)>> = BTreeMap::new();
        for (p, day) in providers {
            for (c, v) in &day.rates {
                by_currency.entry(*c).or_default().push((p.clone(), *v));
            }
        }
        let mut rates = Vec::with_capacity(by_currency.len());
        let mut values = Vec::new();
        for (currency, srcs) in by_currency {
            values.clear();
            values.extend(srcs.iter().map(|s| s.1));
            let o = reconcile(&values, &self.consensus);
            let sources = srcs
                .into_iter()
                .zip(o.outlier)
                .map(|((provider, value), outlier)| Source {
                    provider,
                    value,
                    outlier,
                })
                .collect();
            rates.push(DayRate {
                currency,
                mid: round_rate(o.value),
                disputed: o.disputed,
                sources,
            });
        }
        if rates.is_empty() {
            return None;
        }
        Some(Day::new(date, rates))
    }

    /// Recomputes the given days and publishes a new table.
    ///
    /// The cost follows what changed: untouched days are shared with the
    /// previous table (one pass of `Arc` clones), and coverage is extended
    /// by the touched days rather than recomputed over the whole history,
    /// unless a day lost a currency (raw data is only ever added, so that
    /// does not happen in practice) or most days changed.
    pub fn publish(&mut self, touched: &[NaiveDate], now: DateTime<Utc>) -> Arc<RateTable> {
        if touched.is_empty() {
            return self.table.clone();
        }
        let old = self.table.clone();
        let (days, coverage) = if touched.len() * 4 > self.raw.len() {
            // Most days changed (e.g. the first import): rebuild straight.
            let days: Vec<Arc<Day>> = self
                .raw
                .keys()
                .filter_map(|d| self.build_day(*d).map(Arc::new))
                .collect();
            let coverage = coverage_of(&days);
            (days, coverage)
        } else {
            let mut touched = touched.to_vec();
            touched.sort_unstable();
            touched.dedup();
            let mut days = Vec::with_capacity(old.days.len() + touched.len());
            let mut coverage = old.coverage.clone();
            let mut lost_currency = false;
            let mut rest = old.days.iter().peekable();
            for &date in &touched {
                while let Some(d) = rest.next_if(|d| d.date < date) {
                    days.push(d.clone());
                }
                let previous = rest.next_if(|d| d.date == date);
                let day = self.build_day(date);
                if let Some(p) = previous {
                    lost_currency |= p
                        .rates
                        .iter()
                        .any(|r| day.as_ref().is_none_or(|n| n.get(r.currency).is_none()));
                }
                if let Some(day) = day {
                    extend_coverage(&mut coverage, &day);
                    days.push(Arc::new(day));
                }
            }
            days.extend(rest.cloned());
            if lost_currency {
                coverage = coverage_of(&days);
            }
            (days, coverage)
        };
        self.table = Arc::new(RateTable {
            days,
            coverage,
            version: old.version + 1,
            updated_at: Some(now),
        });
        self.table.clone()
    }
}

/// Units of `currency` per 1 `base` in a provider's pivot-normalised day.
fn value_in_base(day: &ProviderDay, currency: CurrencyCode, base: CurrencyCode) -> Option<Decimal> {
    let per_eur = |c: CurrencyCode| {
        if c == PIVOT {
            Some(Decimal::ONE)
        } else {
            day.rates
                .binary_search_by_key(&c, |r| r.0)
                .ok()
                .map(|i| day.rates[i].1)
        }
    };
    let (c, b) = (per_eur(currency)?, per_eur(base)?);
    if b == Decimal::ONE {
        return Some(c);
    }
    crate::exact::div_rate(c, b)
}

/// Widens each of `day`'s currencies' coverage to include it.
fn extend_coverage(coverage: &mut BTreeMap<CurrencyCode, Coverage>, day: &Day) {
    for r in &day.rates {
        coverage
            .entry(r.currency)
            .and_modify(|c| {
                c.first = c.first.min(day.date);
                c.last = c.last.max(day.date);
            })
            .or_insert(Coverage {
                first: day.date,
                last: day.date,
            });
    }
}

/// Coverage computed over every day (the reference for the incremental
/// update).
fn coverage_of(days: &[Arc<Day>]) -> BTreeMap<CurrencyCode, Coverage> {
    let mut coverage = BTreeMap::new();
    for d in days {
        extend_coverage(&mut coverage, d);
    }
    coverage
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Fixing;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }
    fn c(s: &str) -> CurrencyCode {
        CurrencyCode::parse(s).unwrap()
    }
    fn date(s: &str) -> NaiveDate {
        NaiveDate::from_str(s).unwrap()
    }

    #[test]
    fn usd_based_batches_are_normalised_to_eur() {
        let batch = Batch {
            base: CurrencyCode::USD,
            fixings: vec![Fixing {
                date: date("2026-10-30"),
                rates: vec![(c("EUR"), d("0.8")), (c("JPY"), d("160"))],
            }],
        };
        let (days, skipped) = normalise(&batch);
        assert!(skipped.is_empty());
        assert_eq!(days[0].1, vec![(c("JPY"), d("200")), (c("USD"), d("1.25"))]);
    }

    #[test]
    fn fallback_and_coverage() {
        let mut book = RateBook::new(ConsensusConfig::default());
        let batch = Batch {
            base: PIVOT,
            fixings: vec![
                Fixing {
                    date: date("2026-10-29"),
                    rates: vec![(c("CYP"), d("0.5")), (c("USD"), d("1.1"))],
                },
                Fixing {
                    date: date("2026-10-30"),
                    rates: vec![(c("USD"), d("1.2"))],
                },
            ],
        };
        let (t, _) = book.apply("ecb", &batch, Utc::now());
        assert_eq!(
            t.on_or_before(date("2026-11-01")).unwrap().date,
            date("2026-10-30")
        );
        assert!(t.on_or_before(date("2026-10-28")).is_none());
        assert_eq!(t.coverage(c("CYP")).unwrap().last, date("2026-10-29"));
        assert_eq!(
            t.latest().unwrap().cross(c("USD"), c("EUR")).unwrap(),
            round_rate(d("1") / d("1.2"))
        );
        // Re-applying the same batch changes nothing.
        let v = t.version;
        let (t2, touched) = book.apply("ecb", &batch, Utc::now());
        assert!(touched.is_empty());
        assert_eq!(t2.version, v);
    }

    #[test]
    fn publishing_a_few_days_equals_rebuilding_everything() {
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
        let before = book.table();
        let (t, touched) = book.apply("oxr", &batch, Utc::now());
        assert_eq!(touched.len(), 3);
        assert_eq!(t.version, before.version + 1);
        // Untouched days are shared, not rebuilt.
        let untouched = date("2015-06-01");
        assert!(Arc::ptr_eq(
            before.on_or_before(untouched).unwrap(),
            t.on_or_before(untouched).unwrap()
        ));
        // The reference: every day rebuilt, coverage recomputed.
        let all = book.dates();
        let full = book.publish(&all, Utc::now());
        assert_eq!(t.days().len(), full.days().len());
        for (a, b) in t.days().iter().zip(full.days()) {
            assert_eq!(**a, **b);
        }
        assert_eq!(t.coverage, full.coverage);
        assert_eq!(t.coverage(c("KES")).unwrap().first, date("2026-11-02"));
        // The packed mids follow the rates they were built from.
        for day in t.days() {
            let from_rates: Vec<_> = day.rates.iter().map(|r| (r.currency, r.mid)).collect();
            assert_eq!(day.mids(), &from_rates[..]);
        }
    }

    #[test]
    fn cross_rates_of_the_whole_history_match_the_reference() {
        use crate::exact::div_rate;
        use crate::exact::tests::{same, text};
        let batch = crate::bundled::ecb_history().unwrap();
        let mut book = RateBook::new(ConsensusConfig::default());
        let (table, _) = book.apply("ecb", &batch, Utc::now());
        let mut checked = 0;
        // Every 5th day keeps the debug-build test short; each day checks
        // all ~900 ordered pairs, and its mids and rates as text.
        for day in table.days().iter().step_by(5) {
            for a in day.rates.iter() {
                assert_eq!(text(a.mid), a.mid.to_string());
                same(Decimal::ONE, a.mid);
                for b in day.rates.iter() {
                    same(b.mid, a.mid);
                    let r = div_rate(b.mid, a.mid).unwrap();
                    assert_eq!(text(r), r.to_string());
                    checked += 1;
                }
            }
        }
        assert!(checked > 1_000_000, "{checked}");
    }
}
