//! Scoring a launch: a confidence score from 0 to 100 and a verdict with
//! its reasons, per endpoint and for the whole launch.
//!
//! Method (defaults in `config`; rationale in `docs/dark-launch.md`):
//!
//! 1. **Sample size.** An endpoint with fewer than `min_samples` attempts gets
//!    `keep_observing`, whatever it looks like.
//! 2. **Match rate.** The Wilson score interval at the one-sided `confidence`
//!    level bounds the true match rate (noise discounted). Promotion needs
//!    the *lower* bound at or above `target_match_rate`; roll back when the
//!    *upper* bound is below it (confidently worse).
//! 3. **Errors.** Candidate error rate (failures, timeouts, 5xx) against the
//!    primary's: roll back when even the Wilson lower bound of the
//!    candidate's rate exceeds the primary's rate by more than
//!    `max_error_rate_increase`; promotion needs the point difference within it.
//! 4. **Latency.** One-sided Mann-Whitney U test (as Kayenta) of candidate vs
//!    primary latency reservoirs: a regression is a p-value below
//!    `latency_p_value` *and* a median slower by more than
//!    `max_latency_increase`, so a statistically significant 1 % shift on huge
//!    samples is not a regression. A regression rolls back.
//!
//! Score: `100 × clamp(1 − (target − lower) / (10 × (1 − target)), 0, 1)`,
//! i.e. 100 once the lower bound reaches the target and 0 when it is ten
//! allowed-error-rates below it; halved for a latency regression and halved
//! for an error-rate regression. The launch score is the attempt-weighted
//! mean of endpoint scores.

use serde::{Deserialize, Serialize};

use crate::config::Thresholds;
use crate::math::{mann_whitney, normal_quantile, quantile, wilson_interval};
use crate::stats::{EndpointStats, LaunchStats};

/// The recommendation for a launch or endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The candidate behaves like the primary with the required confidence.
    Promote,
    /// Not enough evidence either way yet.
    KeepObserving,
    /// The candidate is confidently worse.
    RollBack,
}

impl Verdict {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::KeepObserving => "keep_observing",
            Self::RollBack => "roll_back",
        }
    }
}

/// Latency comparison of one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LatencyComparison {
    /// Primary median (ms) of the reservoir.
    pub primary_p50_ms: f64,
    /// Primary 99th percentile (ms).
    pub primary_p99_ms: f64,
    /// Candidate median (ms).
    pub candidate_p50_ms: f64,
    /// Candidate 99th percentile (ms).
    pub candidate_p99_ms: f64,
    /// One-sided Mann-Whitney p-value of "candidate slower".
    pub p_value: f64,
    /// P(candidate latency > primary latency).
    pub effect: f64,
    /// Whether this counts as a regression.
    pub regression: bool,
}

/// Assessment of one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EndpointAssessment {
    /// Endpoint key.
    pub endpoint: String,
    /// Mirrored requests sent to the candidate.
    pub attempts: u64,
    /// Attempts the candidate answered.
    pub compared: u64,
    /// Compared samples that matched (noise discounted).
    pub matches: u64,
    /// `matches / compared`.
    pub match_rate: f64,
    /// Wilson lower bound of the match rate.
    pub match_lower: f64,
    /// Wilson upper bound of the match rate.
    pub match_upper: f64,
    /// Primary error rate over attempts.
    pub primary_error_rate: f64,
    /// Candidate error rate over attempts.
    pub candidate_error_rate: f64,
    /// Latency comparison, when both sides have samples.
    pub latency: Option<LatencyComparison>,
    /// 0–100.
    pub score: u8,
    /// Recommendation.
    pub verdict: Verdict,
    /// Why, in sentences.
    pub reasons: Vec<String>,
}

/// Assessment of a whole launch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assessment {
    /// 0–100.
    pub score: u8,
    /// Recommendation.
    pub verdict: Verdict,
    /// Why, in sentences.
    pub reasons: Vec<String>,
    /// Per endpoint, worst score first.
    pub endpoints: Vec<EndpointAssessment>,
}

/// Computes scores and verdicts from statistics.
#[derive(Debug, Clone)]
pub struct Scorer {
    t: Thresholds,
    z: f64,
}

/// A p-value for people: `= 0.0123`, `= 3.1e-5` or `< 1e-12`.
pub fn format_p(p: f64) -> String {
    if p < 1e-12 {
        "< 1e-12".into()
    } else if p < 1e-3 {
        format!("= {p:.1e}")
    } else {
        format!("= {p:.4}")
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

impl Scorer {
    /// A scorer with these thresholds.
    pub fn new(thresholds: Thresholds) -> Self {
        let z = normal_quantile(thresholds.confidence);
        Self {
            z: if z.is_finite() { z } else { 1.644_854 },
            t: thresholds,
        }
    }

    /// Assesses one endpoint.
    pub fn endpoint(&self, key: &str, e: &EndpointStats) -> EndpointAssessment {
        let t = &self.t;
        let matches = e.matches();
        let (lower, upper) = wilson_interval(matches, e.compared, self.z);
        let rate = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
        let match_rate = rate(matches, e.compared);
        let primary_err = rate(e.primary_errors, e.attempts);
        let cand_err = rate(e.candidate_errors(), e.attempts);
        let (cand_err_lower, _) = wilson_interval(e.candidate_errors(), e.attempts, self.z);

        let latency = self.latency(e);
        let mut score = 100.0
            * (1.0 - (t.target_match_rate - lower) / (10.0 * (1.0 - t.target_match_rate)))
                .clamp(0.0, 1.0);
        let latency_regression = latency.as_ref().is_some_and(|l| l.regression);
        let error_regression = cand_err_lower - primary_err > t.max_error_rate_increase;
        if latency_regression {
            score *= 0.5;
        }
        if error_regression {
            score *= 0.5;
        }

        let mut reasons = Vec::new();
        let verdict = if e.attempts < t.min_samples {
            reasons.push(format!(
                "{} of {} minimum samples",
                e.attempts, t.min_samples
            ));
            Verdict::KeepObserving
        } else {
            let mut back = Vec::new();
            if e.compared > 0 && upper < t.target_match_rate {
                back.push(format!(
                    "match rate {} (upper bound {}) is below the target {}",
                    pct(match_rate),
                    pct(upper),
                    pct(t.target_match_rate)
                ));
            }
            if error_regression {
                back.push(format!(
                    "candidate error rate {} vs primary {} exceeds the allowed increase of {}",
                    pct(cand_err),
                    pct(primary_err),
                    pct(t.max_error_rate_increase)
                ));
            }
            if let Some(l) = latency.as_ref().filter(|l| l.regression) {
                back.push(format!(
                    "candidate is slower: median {:.1} ms vs {:.1} ms (Mann-Whitney p {})",
                    l.candidate_p50_ms,
                    l.primary_p50_ms,
                    format_p(l.p_value)
                ));
            }
            if !back.is_empty() {
                reasons = back;
                Verdict::RollBack
            } else if e.compared >= t.min_samples
                && lower >= t.target_match_rate
                && cand_err - primary_err <= t.max_error_rate_increase
            {
                reasons.push(format!(
                    "match rate {} (lower bound {}) meets the target {}",
                    pct(match_rate),
                    pct(lower),
                    pct(t.target_match_rate)
                ));
                reasons.push("no latency or error-rate regression".into());
                Verdict::Promote
            } else {
                if e.compared < t.min_samples {
                    reasons.push(format!(
                        "only {} of {} attempts were answered by the candidate",
                        e.compared, e.attempts
                    ));
                }
                if lower < t.target_match_rate {
                    reasons.push(format!(
                        "match rate {} (lower bound {}) not yet confidently above the target {}",
                        pct(match_rate),
                        pct(lower),
                        pct(t.target_match_rate)
                    ));
                }
                if cand_err - primary_err > t.max_error_rate_increase {
                    reasons.push(format!(
                        "candidate error rate {} vs primary {} not yet conclusive",
                        pct(cand_err),
                        pct(primary_err)
                    ));
                }
                Verdict::KeepObserving
            }
        };
        EndpointAssessment {
            endpoint: key.to_string(),
            attempts: e.attempts,
            compared: e.compared,
            matches,
            match_rate,
            match_lower: lower,
            match_upper: upper,
            primary_error_rate: primary_err,
            candidate_error_rate: cand_err,
            latency,
            score: score.round() as u8,
            verdict,
            reasons,
        }
    }

    fn latency(&self, e: &EndpointStats) -> Option<LatencyComparison> {
        let p = &e.primary_latency.reservoir;
        let c = &e.candidate_latency.reservoir;
        let mw = mann_whitney(c, p)?;
        let (p50, c50) = (quantile(p, 0.5)?, quantile(c, 0.5)?);
        let regression = mw.p_greater < self.t.latency_p_value
            && c50 > p50 * (1.0 + self.t.max_latency_increase);
        Some(LatencyComparison {
            primary_p50_ms: p50,
            primary_p99_ms: quantile(p, 0.99)?,
            candidate_p50_ms: c50,
            candidate_p99_ms: quantile(c, 0.99)?,
            p_value: mw.p_greater,
            effect: mw.effect,
            regression,
        })
    }

    /// Assesses a launch.
    pub fn assess(&self, stats: &LaunchStats) -> Assessment {
        let mut endpoints: Vec<EndpointAssessment> = stats
            .endpoints
            .iter()
            .map(|(k, e)| self.endpoint(k, e))
            .collect();
        endpoints.sort_by(|a, b| {
            a.score
                .cmp(&b.score)
                .then(b.attempts.cmp(&a.attempts))
                .then(a.endpoint.cmp(&b.endpoint))
        });
        let total: u64 = endpoints.iter().map(|e| e.attempts).sum();
        let score = if total == 0 {
            0
        } else {
            (endpoints
                .iter()
                .map(|e| e.score as f64 * e.attempts as f64)
                .sum::<f64>()
                / total as f64)
                .round() as u8
        };
        let mut reasons = Vec::new();
        let verdict = if total == 0 {
            reasons.push("no mirrored samples yet".into());
            Verdict::KeepObserving
        } else if endpoints.iter().any(|e| e.verdict == Verdict::RollBack) {
            for e in endpoints.iter().filter(|e| e.verdict == Verdict::RollBack) {
                for r in &e.reasons {
                    reasons.push(format!("{}: {r}", e.endpoint));
                }
            }
            Verdict::RollBack
        } else {
            let promoted = endpoints
                .iter()
                .filter(|e| e.verdict == Verdict::Promote)
                .count();
            let under: u64 = endpoints
                .iter()
                .filter(|e| e.verdict == Verdict::KeepObserving && e.attempts < self.t.min_samples)
                .map(|e| e.attempts)
                .sum();
            let undecided = endpoints
                .iter()
                .any(|e| e.verdict == Verdict::KeepObserving && e.attempts >= self.t.min_samples);
            let under_share = under as f64 / total as f64;
            if promoted > 0 && !undecided && under_share <= self.t.max_unevaluated_share {
                reasons.push(format!("{promoted} endpoint(s) meet every threshold"));
                if under > 0 {
                    reasons.push(format!(
                        "under-sampled endpoints hold {} of traffic (allowed {})",
                        pct(under_share),
                        pct(self.t.max_unevaluated_share)
                    ));
                }
                Verdict::Promote
            } else {
                for e in endpoints
                    .iter()
                    .filter(|e| e.verdict == Verdict::KeepObserving)
                {
                    if let Some(r) = e.reasons.first() {
                        reasons.push(format!("{}: {r}", e.endpoint));
                    }
                }
                Verdict::KeepObserving
            }
        };
        Assessment {
            score,
            verdict,
            reasons,
            endpoints,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::Diff;
    use crate::outcome::{DiffCategory, DiffKind};
    use crate::stats::{CandidateResult, Sample};

    fn feed(
        stats: &mut LaunchStats,
        endpoint: &str,
        n: usize,
        mismatch_every: usize,
        p_ms: f64,
        c_ms: f64,
    ) {
        let d = vec![Diff {
            category: DiffCategory::BodyField,
            field: "$.total".into(),
            path: "$.total".into(),
            kind: DiffKind::Changed,
            primary: None,
            candidate: None,
        }];
        for i in 0..n {
            let jitter = (i % 7) as f64;
            let diffs: &[Diff] = if mismatch_every > 0 && i % mismatch_every == 0 {
                &d
            } else {
                &[]
            };
            stats.record(&Sample {
                endpoint,
                primary_error: false,
                primary_ms: p_ms + jitter,
                candidate_ms: c_ms + jitter,
                timed: true,
                candidate: CandidateResult::Compared {
                    diffs,
                    server_error: false,
                },
                noise: None,
            });
        }
    }

    fn scorer() -> Scorer {
        Scorer::new(Thresholds::default())
    }

    #[test]
    fn identical_candidate_promotes_after_min_samples() {
        let mut s = LaunchStats::default();
        feed(&mut s, "r GET /a", 299, 0, 10.0, 10.0);
        let a = scorer().assess(&s);
        assert_eq!(a.verdict, Verdict::KeepObserving);
        assert!(
            a.reasons[0].contains("299 of 300 minimum samples"),
            "{:?}",
            a.reasons
        );
        feed(&mut s, "r GET /a", 1, 0, 10.0, 10.0);
        let a = scorer().assess(&s);
        assert_eq!(a.verdict, Verdict::Promote, "{:?}", a.reasons);
        assert_eq!(a.score, 100);
    }

    #[test]
    fn five_percent_mismatch_rolls_back() {
        let mut s = LaunchStats::default();
        feed(&mut s, "r GET /a", 400, 20, 10.0, 10.0);
        let a = scorer().assess(&s);
        assert_eq!(a.verdict, Verdict::RollBack);
        assert!(
            a.reasons[0].contains("match rate 95.00%"),
            "{:?}",
            a.reasons
        );
        assert!(a.score < 50, "{}", a.score);
    }

    #[test]
    fn slower_candidate_is_flagged_by_the_latency_test() {
        let mut s = LaunchStats::default();
        feed(&mut s, "r GET /a", 400, 0, 10.0, 15.0);
        let a = scorer().assess(&s);
        assert_eq!(a.verdict, Verdict::RollBack);
        let l = a.endpoints[0].latency.as_ref().unwrap();
        assert!(l.regression && l.p_value < 1e-6, "{l:?}");
        assert!(a.reasons[0].contains("slower"), "{:?}", a.reasons);
        assert_eq!(a.score, 50);
        // A 2 % slower median is within the tolerated increase.
        let mut s = LaunchStats::default();
        feed(&mut s, "r GET /a", 400, 0, 100.0, 102.0);
        assert_eq!(scorer().assess(&s).verdict, Verdict::Promote);
    }

    #[test]
    fn failing_candidate_rolls_back_on_error_rate() {
        let mut s = LaunchStats::default();
        feed(&mut s, "r GET /a", 300, 0, 10.0, 10.0);
        for _ in 0..30 {
            s.record(&Sample {
                endpoint: "r GET /a",
                primary_error: false,
                primary_ms: 10.0,
                candidate_ms: 0.0,
                timed: true,
                candidate: CandidateResult::TimedOut,
                noise: None,
            });
        }
        let a = scorer().assess(&s);
        assert_eq!(a.verdict, Verdict::RollBack);
        assert!(a.reasons[0].contains("error rate"), "{:?}", a.reasons);
    }

    #[test]
    fn a_rare_under_sampled_endpoint_does_not_block_promotion() {
        let mut s = LaunchStats::default();
        feed(&mut s, "r GET /a", 1000, 0, 10.0, 10.0);
        feed(&mut s, "r GET /rare", 10, 0, 10.0, 10.0);
        assert_eq!(scorer().assess(&s).verdict, Verdict::Promote);
        feed(&mut s, "r GET /rare", 100, 0, 10.0, 10.0);
        let a = scorer().assess(&s);
        assert_eq!(a.verdict, Verdict::KeepObserving);
        assert_eq!(a.endpoints[0].endpoint, "r GET /rare");
        assert_eq!(LaunchStats::default().endpoints.len(), 0);
        assert_eq!(
            scorer().assess(&LaunchStats::default()).verdict,
            Verdict::KeepObserving
        );
    }
}
