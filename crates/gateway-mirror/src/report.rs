//! The launch report: what `GET /v1/shadow/{name}` returns and what
//! `gatehouse shadow report NAME` prints.
//!
//! [`Report`] is serialisable both ways so the CLI renders the admin API's
//! JSON with the same [`render_text`] used for offline replays.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::LaunchConfig;
use crate::outcome::{DiffCategory, LaunchState};
use crate::stats::{Example, LaunchStats};
use crate::verdict::{Assessment, Scorer};

/// Differing fields listed in a report.
const TOP_FIELDS: usize = 20;
/// Examples included in a report.
const REPORT_EXAMPLES: usize = 10;

/// One differing field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldSummary {
    /// Endpoint key.
    pub endpoint: String,
    /// Field key.
    pub field: String,
    /// Category.
    pub category: DiffCategory,
    /// Samples where it differed.
    pub count: u64,
    /// `count / compared` of the endpoint.
    pub rate: f64,
    /// Whether it is currently classified as noise (not counted).
    pub noise: bool,
}

/// A launch report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    /// Launch name.
    pub name: String,
    /// State.
    pub state: LaunchState,
    /// Candidate cluster.
    pub candidate: String,
    /// Secondary cluster, if any.
    pub secondary: Option<String>,
    /// When the report was computed.
    pub generated_at: DateTime<Utc>,
    /// Score, verdict, reasons and per-endpoint assessments (worst first).
    pub assessment: Assessment,
    /// Samples with a difference, per category (before noise filtering).
    pub categories: BTreeMap<String, u64>,
    /// Requests not mirrored by policy, per reason.
    pub skipped: BTreeMap<String, u64>,
    /// Mirrored requests dropped for capacity, per reason.
    pub dropped: BTreeMap<String, u64>,
    /// Differing fields counted against the candidate, most frequent first.
    pub top_fields: Vec<FieldSummary>,
    /// Fields classified as noise.
    pub noise_fields: Vec<FieldSummary>,
    /// A few stored example pairs (sensitive headers redacted).
    pub examples: Vec<Example>,
}

impl Report {
    /// Builds the report of a launch from its statistics.
    pub fn build(
        cfg: &LaunchConfig,
        state: LaunchState,
        stats: &LaunchStats,
        scorer: &Scorer,
        now: DateTime<Utc>,
    ) -> Self {
        let assessment = scorer.assess(stats);
        let mut fields = Vec::new();
        let mut categories: BTreeMap<String, u64> = BTreeMap::new();
        for (ep, e) in &stats.endpoints {
            for (c, n) in &e.categories {
                *categories.entry(c.clone()).or_default() += n;
            }
            for (f, s) in &e.fields {
                fields.push(FieldSummary {
                    endpoint: ep.clone(),
                    field: f.clone(),
                    category: s.category,
                    count: s.count,
                    rate: if e.compared == 0 {
                        0.0
                    } else {
                        s.count as f64 / e.compared as f64
                    },
                    noise: e.is_noise(f),
                });
            }
        }
        fields.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.endpoint.cmp(&b.endpoint))
                .then_with(|| a.field.cmp(&b.field))
        });
        let (noise_fields, mut top_fields): (Vec<_>, Vec<_>) =
            fields.into_iter().partition(|f| f.noise);
        top_fields.truncate(TOP_FIELDS);
        let examples = stats
            .examples
            .iter()
            .filter(|x| {
                top_fields
                    .iter()
                    .any(|f| f.endpoint == x.endpoint && f.field == x.field)
                    || matches!(
                        x.category,
                        DiffCategory::CandidateError | DiffCategory::CandidateTimeout
                    )
            })
            .take(REPORT_EXAMPLES)
            .cloned()
            .collect();
        Self {
            name: cfg.name.clone(),
            state,
            candidate: cfg.candidate.clone(),
            secondary: cfg.secondary.clone(),
            generated_at: now,
            assessment,
            categories,
            skipped: stats.skipped.clone(),
            dropped: stats.dropped.clone(),
            top_fields,
            noise_fields,
            examples,
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!(
            "{}…",
            s.chars().take(n.saturating_sub(1)).collect::<String>()
        )
    }
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        "none".into()
    } else {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Renders a report as a readable plain-text table.
pub fn render_text(r: &Report) -> String {
    let a = &r.assessment;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Dark launch {}  [{}]  candidate={}{}",
        r.name,
        r.state.as_str(),
        r.candidate,
        r.secondary
            .as_ref()
            .map(|s| format!(" secondary={s}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        o,
        "Score {}/100   Verdict: {}",
        a.score,
        a.verdict.as_str().to_uppercase().replace('_', " ")
    );
    for reason in &a.reasons {
        let _ = writeln!(o, "  - {reason}");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Endpoints (worst first)");
    let _ = writeln!(
        o,
        "  {:<40} {:>7} {:>8} {:>9} {:>9} {:>9} {:>5}  VERDICT",
        "ENDPOINT", "SAMPLES", "MATCH", "LOWER", "ERR PRIM", "ERR CAND", "SCORE"
    );
    for e in &a.endpoints {
        let _ = writeln!(
            o,
            "  {:<40} {:>7} {:>8} {:>9} {:>9} {:>9} {:>5}  {}",
            cut(&e.endpoint, 40),
            e.attempts,
            pct(e.match_rate),
            pct(e.match_lower),
            pct(e.primary_error_rate),
            pct(e.candidate_error_rate),
            e.score,
            e.verdict.as_str()
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Latency (ms)");
    let _ = writeln!(
        o,
        "  {:<40} {:>9} {:>9} {:>9} {:>9} {:>10}  REGRESSION",
        "ENDPOINT", "P50 PRIM", "P50 CAND", "P99 PRIM", "P99 CAND", "p-value"
    );
    for e in &a.endpoints {
        if let Some(l) = &e.latency {
            let _ = writeln!(
                o,
                "  {:<40} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10}  {}",
                cut(&e.endpoint, 40),
                l.primary_p50_ms,
                l.candidate_p50_ms,
                l.primary_p99_ms,
                l.candidate_p99_ms,
                crate::verdict::format_p(l.p_value).trim_start_matches("= "),
                if l.regression { "yes" } else { "no" }
            );
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Top differing fields");
    if r.top_fields.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for f in &r.top_fields {
        let _ = writeln!(
            o,
            "  {:<40} {:<30} {:<16} {:>7} {:>8}",
            cut(&f.endpoint, 40),
            cut(&f.field, 30),
            f.category.as_str(),
            f.count,
            pct(f.rate)
        );
    }
    if !r.noise_fields.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "Noise (ignored)");
        for f in &r.noise_fields {
            let _ = writeln!(
                o,
                "  {:<40} {:<30} {:>7}",
                cut(&f.endpoint, 40),
                cut(&f.field, 30),
                f.count
            );
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Categories: {}", counts(&r.categories));
    let _ = writeln!(o, "Skipped:    {}", counts(&r.skipped));
    let _ = writeln!(o, "Dropped:    {}", counts(&r.dropped));
    if !r.examples.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "Examples");
        for x in &r.examples {
            let _ = writeln!(
                o,
                "  {} {}  ({}, {})",
                x.method,
                x.uri,
                x.field,
                x.category.as_str()
            );
            for d in x.diffs.iter().take(5) {
                let _ = writeln!(
                    o,
                    "    {} {}: {} -> {}",
                    d.path,
                    d.kind.as_str(),
                    cut(d.primary.as_deref().unwrap_or("∅"), 60),
                    cut(d.candidate.as_deref().unwrap_or("∅"), 60)
                );
            }
            let status = |s: Option<u16>| s.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                o,
                "    primary {} in {:.1} ms; candidate {} in {:.1} ms{}",
                status(x.primary.status),
                x.primary.latency_ms,
                status(x.candidate.status),
                x.candidate.latency_ms,
                x.candidate
                    .error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
    }
    o
}
