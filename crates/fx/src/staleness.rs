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
    /// The next business day after `date`.
    pub fn next_business_day(&self, date: NaiveDate) -> NaiveDate {
        let mut d = date.succ_opt().unwrap_or(date);
        while matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
            d = d.succ_opt().unwrap_or(d);
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

#[cfg(test)]
mod tests {
    use super::*;

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
