//! Plausibility of a new raw rate, per provider and currency.
//!
//! A new value is compared, in the provider's own base, with two
//! references:
//!
//! - the provider's previous fixing of the currency (within
//!   `lookback_days`): it may not move by more than a factor of
//!   `1 + max_move_percent / 100` either way (100: at most double or half);
//! - the other providers' values for the same day, when there are some
//!   (their median): it may not differ by more than a factor of
//!   `1 + max_provider_difference_percent / 100` either way.
//!
//! A value outside a bound is *quarantined*: stored apart, never used by
//! conversions, reported, and published only when someone corrects or
//! approves it (`gatehouse fx import --correct`, `POST
//! /v1/admin/corrections`). The defaults pass every daily move in the
//! ECB's history since 1999 (the largest is TRL's 68% on 22 February 2001)
//! while catching a misplaced decimal point or a wrong unit.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Bounds of the plausibility checks; 0 turns a check off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlausibilityConfig {
    /// Largest move against the provider's previous fixing, in percent of
    /// the smaller value (100: at most double or half).
    pub max_move_percent: u32,
    /// Largest difference from the other providers' median for the same
    /// day, in percent of the smaller value.
    pub max_provider_difference_percent: u32,
    /// How far back the previous fixing is looked for, in days; an older
    /// one (a currency quoted again after a gap) is not compared.
    pub lookback_days: u32,
}

impl Default for PlausibilityConfig {
    fn default() -> Self {
        Self {
            max_move_percent: 100,
            max_provider_difference_percent: 20,
            lookback_days: 31,
        }
    }
}

/// The references a new value is compared with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// The provider's previous fixing of the currency: date and value.
    pub previous: Option<(NaiveDate, Decimal)>,
    /// The other providers' values for the same day.
    pub others: Vec<Decimal>,
}

/// Whether `a` and `b` are further apart than a factor of `1 + percent/100`.
fn beyond(a: Decimal, b: Decimal, percent: u32) -> bool {
    if percent == 0 {
        return false;
    }
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    if lo <= Decimal::ZERO {
        return true;
    }
    let limit = Decimal::ONE + Decimal::from(percent) / Decimal::ONE_HUNDRED;
    match lo.checked_mul(limit) {
        Some(bound) => hi > bound,
        None => false,
    }
}

/// The relative change from `from` to `to`, in percent (for messages).
fn change(from: Decimal, to: Decimal) -> String {
    match (to - from)
        .checked_div(from)
        .and_then(|r| r.checked_mul(Decimal::ONE_HUNDRED))
    {
        Some(p) => {
            let p = p.round_sf(4).unwrap_or(p).normalize();
            if p > Decimal::ZERO {
                format!("+{p}%")
            } else {
                format!("{p}%")
            }
        }
        None => "an unmeasurable change".to_string(),
    }
}

fn median(values: &[Decimal]) -> Option<Decimal> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / Decimal::TWO),
    }
}

impl PlausibilityConfig {
    /// Why `value` is implausible against `refs`, or `None` if it is not.
    pub fn assess(&self, value: Decimal, refs: &References) -> Option<String> {
        if let Some((date, prev)) = refs.previous {
            if beyond(value, prev, self.max_move_percent) {
                return Some(format!(
                    "moves {} against the provider's previous fixing ({prev} on {date}); the bound is {}%",
                    change(prev, value),
                    self.max_move_percent
                ));
            }
        }
        if let Some(m) = median(&refs.others) {
            if beyond(value, m, self.max_provider_difference_percent) {
                return Some(format!(
                    "differs {} from the other providers' value for that day ({}); the bound is {}%",
                    change(m, value),
                    m.round_sf(15).unwrap_or(m).normalize(),
                    self.max_provider_difference_percent
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn moves_beyond_the_bound_are_flagged_both_ways() {
        let cfg = PlausibilityConfig::default();
        let day = NaiveDate::from_ymd_opt(2026, 10, 30).unwrap();
        let prev = References {
            previous: Some((day, d("1.1172"))),
            others: vec![],
        };
        assert_eq!(cfg.assess(d("1.1"), &prev), None);
        assert_eq!(cfg.assess(d("2.2"), &prev), None);
        assert_eq!(cfg.assess(d("0.56"), &prev), None);
        let why = cfg.assess(d("0.0001"), &prev).unwrap();
        assert!(
            why.contains("-99.99%") && why.contains("2026-10-30"),
            "{why}"
        );
        assert!(cfg.assess(d("11.172"), &prev).is_some());
        // TRL on 22 February 2001, the largest daily move in the ECB's history.
        let trl = References {
            previous: Some((day, d("624367"))),
            others: vec![],
        };
        assert_eq!(cfg.assess(d("1050000"), &trl), None);
    }

    #[test]
    fn other_providers_are_compared_through_their_median() {
        let cfg = PlausibilityConfig::default();
        let refs = References {
            previous: None,
            others: vec![d("175.68"), d("175.7"), d("1756.8")],
        };
        assert_eq!(cfg.assess(d("175.1"), &refs), None);
        let why = cfg.assess(d("1756.8"), &refs).unwrap();
        assert!(why.contains("other providers"), "{why}");
        let off = PlausibilityConfig {
            max_provider_difference_percent: 0,
            ..cfg
        };
        assert_eq!(off.assess(d("1756.8"), &refs), None);
    }
}
