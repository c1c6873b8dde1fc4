//! When rates go stale, and the expected time of the next fixing.
//!
//! The ECB publishes once per TARGET business day, around 16:00 CET. A
//! fixing is *current* until its successor is due; it is *overdue* by the
//! time elapsed since then. A soft limit flags answers as stale; a hard limit
//! refuses conversions outright. Limits are set per use (rates, conversions,
//! quotes) since a price display tolerates more than a checkout.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};

/// Soft and hard staleness limits for one use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StalenessLimits {
    /// Past this overdue time answers carry `stale: true`.
    pub soft: Duration,
    /// Past this overdue time the operation is refused; `None` never refuses.
    pub hard: Option<Duration>,
}

impl Default for StalenessLimits {
    fn default() -> Self {
        Self {
            soft: Duration::hours(6),
            hard: Some(Duration::days(5)),
        }
    }
}

/// The fixing calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixingCalendar {
    /// Time of day (UTC) by which a fixing is expected to be published.
    pub publish_at_utc: NaiveTime,
}

impl Default for FixingCalendar {
    fn default() -> Self {
        // 16:00 UTC is after the ECB's 16:00 CET/CEST release all year.
        Self {
            publish_at_utc: NaiveTime::from_hms_opt(16, 0, 0).unwrap_or_default(),
        }
    }
}

/// Staleness of a fixing at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// When the successor of the fixing is (or was) expected.
    pub next_expected: DateTime<Utc>,
    /// Time since the successor was due (zero if not due yet).
    pub overdue: Duration,
}

impl FixingCalendar {
    /// Whether the ECB publishes a fixing on `date`: a TARGET2 business
    /// day, i.e. not a weekend nor a TARGET closing day.
    pub fn is_business_day(&self, date: NaiveDate) -> bool {
        !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !is_target_holiday(date)
    }

    /// The next business day after `date`.
    pub fn next_business_day(&self, date: NaiveDate) -> NaiveDate {
        let mut d = date.succ_opt().unwrap_or(date);
        while !self.is_business_day(d) {
            match d.succ_opt() {
                Some(next) => d = next,
                None => break,
            }
        }
        d
    }

    /// When the fixing after `date` should be published.
    pub fn next_expected(&self, date: NaiveDate) -> DateTime<Utc> {
        Utc.from_utc_datetime(&self.next_business_day(date).and_time(self.publish_at_utc))
    }

    /// How fresh a fixing of `date` is at `now`.
    pub fn freshness(&self, date: NaiveDate, now: DateTime<Utc>) -> Freshness {
        let next = self.next_expected(date);
        Freshness {
            next_expected: next,
            overdue: (now - next).max(Duration::zero()),
        }
    }
}

/// TARGET closing days since 2002: New Year's Day, Good Friday, Easter
/// Monday, 1 May, 25 and 26 December. (1999–2001 had a few more, such as
/// 31 December; the calendar only looks forward from recent fixings, so it
/// models the current rule.)
pub fn is_target_holiday(date: NaiveDate) -> bool {
    let (m, d) = (date.month(), date.day());
    if matches!((m, d), (1, 1) | (5, 1) | (12, 25) | (12, 26)) {
        return true;
    }
    match easter_sunday(date.year()) {
        Some(easter) => date == easter - Duration::days(2) || date == easter + Duration::days(1),
        None => false,
    }
}

/// Western Easter Sunday (the anonymous Gregorian computus).
fn easter_sunday(year: i32) -> Option<NaiveDate> {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn easter_dates_match_the_calendar() {
        for (y, m, d) in [
            (2024, 3, 31),
            (2025, 4, 20),
            (2026, 4, 5),
            (2019, 4, 21),
            (2038, 4, 25),
        ] {
            assert_eq!(easter_sunday(y), NaiveDate::from_ymd_opt(y, m, d), "{y}");
        }
    }

    #[test]
    fn target_holidays_push_the_next_fixing() {
        let cal = FixingCalendar::default();
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        // Thursday before Easter 2026 → Tuesday after Easter Monday.
        assert_eq!(cal.next_business_day(day(2026, 4, 2)), day(2026, 4, 7));
        // Christmas Eve 2026 (Thursday) → Monday 28 December.
        assert_eq!(cal.next_business_day(day(2026, 12, 24)), day(2026, 12, 28));
        // 30 April 2026 (Thursday) → Monday 4 May (1 May is a Friday).
        assert_eq!(cal.next_business_day(day(2026, 4, 30)), day(2026, 5, 4));
        assert!(!cal.is_business_day(day(2027, 1, 1)));
        assert!(cal.is_business_day(day(2026, 12, 31)));
    }

    #[test]
    fn friday_fixing_is_fresh_all_weekend() {
        let cal = FixingCalendar::default();
        let fri = NaiveDate::from_ymd_opt(2026, 10, 30).unwrap();
        let sun = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
        let f = cal.freshness(fri, sun);
        assert_eq!(f.overdue, Duration::zero());
        assert_eq!(
            f.next_expected,
            Utc.with_ymd_and_hms(2026, 11, 2, 16, 0, 0).unwrap()
        );
        let tue = Utc.with_ymd_and_hms(2026, 11, 3, 16, 0, 0).unwrap();
        assert_eq!(cal.freshness(fri, tue).overdue, Duration::days(1));
    }
}
