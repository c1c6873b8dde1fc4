//! Reconciling several providers' values for the same currency and day.
//!
//! The served mid rate is the consensus of every provider that quoted the
//! pair: the median by default, or a trimmed mean. Before that, a value
//! further than the tolerance from the median of all providers is
//! flagged as an outlier and left out (it is still kept and shown for audit).
//! With only two providers that disagree there is no majority to side with:
//! both are kept, and the result is marked `disputed` instead.

use gateway_core::config_issue::{finish, ConfigIssue};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// How the consensus value is computed from the values that remain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "method", deny_unknown_fields)]
pub enum ConsensusMethod {
    /// The median (the mean of the two middle values for an even count).
    #[default]
    Median,
    /// The mean after dropping `trim_percent` of values from each end.
    TrimmedMean {
        /// Percentage (0–49) trimmed from each end.
        trim_percent: u32,
    },
}

impl ConsensusMethod {
    /// Name for logs and the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            ConsensusMethod::Median => "median",
            ConsensusMethod::TrimmedMean { .. } => "trimmed_mean",
        }
    }
}

/// Reconciliation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusConfig {
    /// How the consensus is computed.
    pub method: ConsensusMethod,
    /// A value further than this many basis points from the median of the
    /// other providers is an outlier.
    pub tolerance_bps: u32,
}

/// Default outlier tolerance: 2%, wide enough for providers sampling at
/// different times of day, narrow enough to catch a wrong decimal point.
pub const DEFAULT_TOLERANCE_BPS: u32 = 200;

impl Default for ConsensusConfig {
    fn default() -> Self {
        Self {
            method: ConsensusMethod::Median,
            tolerance_bps: DEFAULT_TOLERANCE_BPS,
        }
    }
}

impl ConsensusConfig {
    /// Checks the settings; paths are relative to the `[consensus]` table.
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if let ConsensusMethod::TrimmedMean { trim_percent } = self.method {
            if trim_percent >= 50 {
                issues.push(ConfigIssue::new(
                    "trim_percent",
                    format!("must be below 50, got {trim_percent}"),
                ));
            }
        }
        if self.tolerance_bps == 0 || self.tolerance_bps > 10_000 {
            issues.push(ConfigIssue::new(
                "tolerance_bps",
                format!("must be between 1 and 10000, got {}", self.tolerance_bps),
            ));
        }
        finish(issues)
    }
}

/// The outcome of reconciling one currency on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The consensus value.
    pub value: Decimal,
    /// For each input value (same order): whether it was left out as an outlier.
    pub outlier: Vec<bool>,
    /// Two or more providers disagree beyond tolerance with no majority.
    pub disputed: bool,
}

fn median(sorted: &[Decimal]) -> Decimal {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / Decimal::TWO
    }
}

fn combine(method: ConsensusMethod, values: &mut [Decimal]) -> Decimal {
    values.sort_unstable();
    match method {
        ConsensusMethod::Median => median(values),
        ConsensusMethod::TrimmedMean { trim_percent } => {
            let k = values.len() * trim_percent as usize / 100;
            let kept = &values[k..values.len() - k];
            let sum: Decimal = kept.iter().copied().sum();
            sum / Decimal::from(kept.len() as u64)
        }
    }
}

/// Reconciles `values` (at least one).
pub fn reconcile(values: &[Decimal], cfg: &ConsensusConfig) -> Outcome {
    match values {
        [] => Outcome {
            value: Decimal::ZERO,
            outlier: Vec::new(),
            disputed: false,
        },
        [only] => Outcome {
            value: *only,
            outlier: vec![false],
            disputed: false,
        },
        _ => {
            let tol = Decimal::from(cfg.tolerance_bps) / Decimal::from(10_000);
            let mut sorted = values.to_vec();
            sorted.sort_unstable();
            let m = median(&sorted);
            let outlier: Vec<bool> = values.iter().map(|v| ((*v - m) / m).abs() > tol).collect();
            let kept_count = outlier.iter().filter(|o| !**o).count();
            // Leaving out a majority would let the outliers win; keep all.
            if kept_count * 2 <= values.len() {
                let mut all = values.to_vec();
                return Outcome {
                    value: combine(cfg.method, &mut all),
                    outlier: vec![false; values.len()],
                    disputed: outlier.iter().any(|o| *o),
                };
            }
            let mut kept: Vec<Decimal> = values
                .iter()
                .zip(&outlier)
                .filter(|(_, o)| !**o)
                .map(|(v, _)| *v)
                .collect();
            Outcome {
                value: combine(cfg.method, &mut kept),
                outlier,
                disputed: false,
            }
        }
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
    fn an_outlier_is_flagged_and_left_out() {
        let o = reconcile(
            &[d("1.10"), d("1.11"), d("11.0")],
            &ConsensusConfig::default(),
        );
        assert_eq!(o.outlier, vec![false, false, true]);
        assert_eq!(o.value, d("1.105"));
        assert!(!o.disputed);
    }

    #[test]
    fn close_values_give_the_median() {
        let o = reconcile(
            &[d("1.10"), d("1.12"), d("1.11")],
            &ConsensusConfig::default(),
        );
        assert_eq!(o.value, d("1.11"));
        assert_eq!(o.outlier, vec![false; 3]);
    }

    #[test]
    fn two_disagreeing_providers_are_disputed_not_dropped() {
        let o = reconcile(&[d("1.0"), d("2.0")], &ConsensusConfig::default());
        assert!(o.disputed);
        assert_eq!(o.value, d("1.5"));
        assert_eq!(o.outlier, vec![false, false]);
    }

    #[test]
    fn trimmed_mean_drops_extremes() {
        let cfg = ConsensusConfig {
            method: ConsensusMethod::TrimmedMean { trim_percent: 20 },
            tolerance_bps: 10_000,
        };
        let o = reconcile(&[d("1.0"), d("1.1"), d("1.2"), d("1.3"), d("1.9")], &cfg);
        assert_eq!(o.value, d("1.2"));
        assert!(cfg.validate().is_ok());
        let bad = ConsensusConfig {
            method: ConsensusMethod::TrimmedMean { trim_percent: 50 },
            ..cfg
        };
        assert!(bad.validate().is_err());
    }
}
