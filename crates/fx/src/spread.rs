//! Customer spreads: a markup in basis points, per pair and per client tier.
//!
//! The mid rate is never altered; the customer rate is derived from it and
//! both are reported side by side. The markup always works against the
//! customer (they receive `bps` less of the target currency), which is the
//! convention of card schemes and remittance providers.

use std::collections::BTreeMap;

use gateway_core::config_issue::{finish, ConfigIssue};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::currency::CurrencyCode;
use crate::exact::round_rate;

/// The most a spread may be: 10% — anything beyond is a configuration slip.
pub const MAX_SPREAD_BPS: u32 = 1_000;

/// Spread settings for one tier (or the default tier).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TierSpread {
    /// Markup for pairs not listed in `pairs`.
    pub default_bps: Option<u32>,
    /// Markup per pair, keyed `FROM/TO` (e.g. `EUR/USD`); direction matters.
    pub pairs: BTreeMap<String, u32>,
}

/// All spread settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpreadConfig {
    /// Markup when nothing more specific applies.
    pub default_bps: u32,
    /// Markup per pair for every tier, keyed `FROM/TO`.
    pub pairs: BTreeMap<String, u32>,
    /// Per-tier overrides, keyed by tier name (e.g. `gold`).
    pub tiers: BTreeMap<String, TierSpread>,
}

/// Default markup: 50 bps (0.5%).
pub const DEFAULT_SPREAD_BPS: u32 = 50;

impl Default for SpreadConfig {
    fn default() -> Self {
        Self {
            default_bps: DEFAULT_SPREAD_BPS,
            pairs: BTreeMap::new(),
            tiers: BTreeMap::new(),
        }
    }
}

fn pair_key(from: CurrencyCode, to: CurrencyCode) -> String {
    format!("{from}/{to}")
}

/// Checks pair keys and markups; `at` is the path of the table holding
/// `pairs`, relative to `[spread]` (empty for `[spread]` itself).
fn check_pairs(at: &str, pairs: &BTreeMap<String, u32>, issues: &mut Vec<ConfigIssue>) {
    let prefix = if at.is_empty() {
        String::new()
    } else {
        format!("{at}.")
    };
    for (k, bps) in pairs {
        let path = format!("{prefix}pairs.{k}");
        let Some((a, b)) = k.split_once('/') else {
            issues.push(ConfigIssue::new(
                format!("{prefix}pairs"),
                format!("`{k}` must be written FROM/TO, e.g. EUR/USD"),
            ));
            continue;
        };
        for code in [a, b] {
            if let Err(e) = CurrencyCode::parse(code) {
                issues.push(ConfigIssue::new(&path, e.to_string()));
            }
        }
        if *bps > MAX_SPREAD_BPS {
            issues.push(ConfigIssue::new(
                path,
                format!("{bps} bps exceeds the {MAX_SPREAD_BPS} bps maximum"),
            ));
        }
    }
}

impl SpreadConfig {
    /// Checks every pair key and bound; paths are relative to the
    /// `[spread]` table.
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if self.default_bps > MAX_SPREAD_BPS {
            issues.push(ConfigIssue::new(
                "default_bps",
                format!(
                    "{} exceeds the {MAX_SPREAD_BPS} bps maximum",
                    self.default_bps
                ),
            ));
        }
        check_pairs("", &self.pairs, &mut issues);
        for (name, t) in &self.tiers {
            let at = format!("tiers.{name}");
            if t.default_bps.is_some_and(|b| b > MAX_SPREAD_BPS) {
                issues.push(ConfigIssue::new(
                    format!("{at}.default_bps"),
                    format!("exceeds the {MAX_SPREAD_BPS} bps maximum"),
                ));
            }
            check_pairs(&at, &t.pairs, &mut issues);
        }
        finish(issues)
    }

    /// Whether `tier` is configured.
    pub fn has_tier(&self, tier: &str) -> bool {
        self.tiers.contains_key(tier)
    }

    /// The markup for a pair and tier: tier pair, tier default, pair, default.
    pub fn bps(&self, from: CurrencyCode, to: CurrencyCode, tier: Option<&str>) -> u32 {
        if from == to {
            return 0;
        }
        let key = pair_key(from, to);
        if let Some(t) = tier.and_then(|t| self.tiers.get(t)) {
            if let Some(b) = t.pairs.get(&key) {
                return *b;
            }
            if let Some(b) = t.default_bps {
                return b;
            }
        }
        self.pairs.get(&key).copied().unwrap_or(self.default_bps)
    }
}

/// The customer rate for a mid rate and markup.
pub fn customer_rate(mid: Decimal, bps: u32) -> Decimal {
    let factor = Decimal::from(10_000 - bps.min(10_000)) / Decimal::from(10_000);
    round_rate(mid * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CurrencyCode {
        CurrencyCode::parse(s).unwrap()
    }

    #[test]
    fn most_specific_spread_wins() {
        let cfg: SpreadConfig = serde_json::from_str(
            r#"{"default_bps":50,"pairs":{"EUR/USD":30},"tiers":{"gold":{"default_bps":10,"pairs":{"EUR/USD":5}},"silver":{"pairs":{"GBP/USD":20}}}}"#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.bps(c("EUR"), c("USD"), None), 30);
        assert_eq!(cfg.bps(c("USD"), c("EUR"), None), 50);
        assert_eq!(cfg.bps(c("EUR"), c("USD"), Some("gold")), 5);
        assert_eq!(cfg.bps(c("EUR"), c("JPY"), Some("gold")), 10);
        assert_eq!(cfg.bps(c("EUR"), c("USD"), Some("silver")), 30);
        assert_eq!(cfg.bps(c("EUR"), c("EUR"), None), 0);
        assert_eq!(customer_rate(Decimal::from(2), 50).to_string(), "1.99");
    }

    #[test]
    fn bad_spread_config_is_refused() {
        let mut cfg = SpreadConfig::default();
        cfg.pairs.insert("EURUSD".into(), 10);
        let issues = cfg.validate().unwrap_err();
        assert_eq!(issues[0].path, "pairs");
        assert!(issues[0].message.contains("FROM/TO"));
        let mut cfg = SpreadConfig::default();
        cfg.pairs.insert("EUR/XXX".into(), 10);
        assert!(cfg.validate().is_err());
        let cfg = SpreadConfig {
            default_bps: 5000,
            ..Default::default()
        };
        assert!(cfg.validate().is_err());
    }
}
