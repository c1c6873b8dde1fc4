//! Per-endpoint statistics of a launch, and the noise model.
//!
//! Everything here is plain serialisable data: the store persists a launch's
//! [`LaunchStats`] as a snapshot and reloads it at start, so statistics
//! survive restarts. Every collection is bounded (endpoints, fields, diff
//! signatures, latency reservoirs, examples) so a launch left running for
//! weeks uses constant memory.
//!
//! ## Noise, retroactively
//!
//! A sample's differences are recorded as a *signature*: the set of fields
//! that differed. Whether a sample matched is decided when the report is
//! computed, against the noise known *then*: a sample matches when every
//! field of its signature is noise. So a timestamp field learnt as noise after
//! 50 samples stops counting against those 50 samples as well.
//!
//! A field is noise when the current version disagrees with itself on it
//! (primary vs secondary, or primary vs an earlier primary response to the
//! identical request) at least half as often as the candidate disagrees with
//! the primary ([`NOISE_RATIO`]). A real change has a noise rate near zero and
//! stays a signal even when it touches a noisy object.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::compare::Diff;
use crate::outcome::DiffCategory;

/// A field is noise when its self-disagreement rate is at least this
/// fraction of its candidate-disagreement rate.
pub const NOISE_RATIO: f64 = 0.5;
/// Latency samples kept per side for the Mann-Whitney test.
pub const RESERVOIR_SIZE: usize = 1000;
/// Endpoints tracked per launch; further ones share one overflow bucket.
pub const MAX_ENDPOINTS: usize = 200;
/// Distinct fields tracked per endpoint.
pub const MAX_FIELDS: usize = 500;
/// Distinct diff signatures tracked per endpoint.
pub const MAX_SIGNATURES: usize = 1000;
/// Example pairs kept per field.
pub const EXAMPLES_PER_FIELD: usize = 3;
/// Example pairs kept per launch.
pub const MAX_EXAMPLES: usize = 100;
/// Upper bounds (ms) of the latency histogram buckets; the last is open.
pub const HISTOGRAM_BOUNDS_MS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];
/// Key of the endpoint bucket collecting endpoints past [`MAX_ENDPOINTS`].
pub const OVERFLOW_ENDPOINT: &str = "* * {other}";
/// Signature standing for "too many distinct signatures": never a match.
const OVERFLOW_SIGNATURE: &str = "\u{1}overflow";
const SIG_SEP: char = '\u{1f}';

/// Statistics of one launch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LaunchStats {
    /// Per endpoint key (`route METHOD /template`).
    pub endpoints: BTreeMap<String, EndpointStats>,
    /// Requests not mirrored by policy, per reason.
    pub skipped: BTreeMap<String, u64>,
    /// Mirrored requests dropped for capacity, per reason.
    pub dropped: BTreeMap<String, u64>,
    /// Stored example pairs (sensitive headers redacted).
    pub examples: Vec<Example>,
}

/// Statistics of one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointStats {
    /// Mirrored requests sent to the candidate.
    pub attempts: u64,
    /// Attempts where the candidate answered (compared samples).
    pub compared: u64,
    /// Candidate transport failures.
    pub candidate_failures: u64,
    /// Candidate timeouts.
    pub candidate_timeouts: u64,
    /// Candidate 5xx responses.
    pub candidate_5xx: u64,
    /// Primary failures or 5xx responses (among attempts).
    pub primary_errors: u64,
    /// Compared samples per diff signature (fields joined by U+001F; empty
    /// for an exact match).
    pub signatures: BTreeMap<String, u64>,
    /// Differences per field.
    pub fields: BTreeMap<String, FieldStats>,
    /// Samples with at least one difference, per category (before noise).
    pub categories: BTreeMap<String, u64>,
    /// Times each field was seen to vary between two responses of the
    /// current version.
    pub noise: BTreeMap<String, u64>,
    /// Self-comparisons performed (secondary or repeated request).
    pub noise_checks: u64,
    /// Primary latency.
    pub primary_latency: LatencyStats,
    /// Candidate latency.
    pub candidate_latency: LatencyStats,
}

/// Differences on one field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldStats {
    /// Category of the field.
    pub category: DiffCategory,
    /// Samples where it differed.
    pub count: u64,
    /// Per diff kind.
    pub kinds: BTreeMap<String, u64>,
}

/// A latency distribution: a uniform reservoir of samples plus a histogram.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencyStats {
    /// Samples observed.
    pub count: u64,
    /// Sum of all samples in ms.
    pub sum_ms: f64,
    /// Counts per [`HISTOGRAM_BOUNDS_MS`] bucket (plus the open last one).
    pub histogram: Vec<u64>,
    /// Uniform random sample (Vitter's algorithm R) of at most
    /// [`RESERVOIR_SIZE`] latencies in ms.
    pub reservoir: Vec<f64>,
}

impl LatencyStats {
    /// Adds one latency.
    pub fn record(&mut self, ms: f64) {
        self.count += 1;
        self.sum_ms += ms;
        if self.histogram.len() != HISTOGRAM_BOUNDS_MS.len() + 1 {
            self.histogram = vec![0; HISTOGRAM_BOUNDS_MS.len() + 1];
        }
        let b = HISTOGRAM_BOUNDS_MS
            .iter()
            .position(|ub| ms <= *ub)
            .unwrap_or(HISTOGRAM_BOUNDS_MS.len());
        self.histogram[b] += 1;
        if self.reservoir.len() < RESERVOIR_SIZE {
            self.reservoir.push(ms);
        } else {
            // Deterministic per count so replays and tests are reproducible;
            // the sequence is still uniform enough for a reservoir.
            let j = (splitmix64(self.count) % self.count) as usize;
            if j < RESERVOIR_SIZE {
                self.reservoir[j] = ms;
            }
        }
    }

    /// Mean latency in ms.
    pub fn mean_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ms / self.count as f64)
    }
}

/// SplitMix64 finaliser: a fast, well-mixed 64-bit hash of `x`.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One side of a stored example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExampleSide {
    /// Status code, if any.
    pub status: Option<u16>,
    /// Headers, sensitive ones redacted.
    pub headers: BTreeMap<String, String>,
    /// Body excerpt (UTF-8, lossy, truncated).
    pub body: Option<String>,
    /// Error, when the call failed.
    pub error: Option<String>,
    /// Latency in ms.
    pub latency_ms: f64,
}

/// A stored example of a difference: the request and both responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Example {
    /// When it was observed.
    pub at: DateTime<Utc>,
    /// Endpoint key.
    pub endpoint: String,
    /// Field key the example illustrates.
    pub field: String,
    /// Category of that field.
    pub category: DiffCategory,
    /// Concrete path and values of the differences (first few).
    pub diffs: Vec<Diff>,
    /// Request method.
    pub method: String,
    /// Request path and query.
    pub uri: String,
    /// Request headers, sensitive ones redacted.
    pub request_headers: BTreeMap<String, String>,
    /// The primary's response.
    pub primary: ExampleSide,
    /// The candidate's response.
    pub candidate: ExampleSide,
}

/// How one processed sample turned out, as fed to [`LaunchStats::record`].
#[derive(Debug, Clone)]
pub struct Sample<'a> {
    /// Endpoint key.
    pub endpoint: &'a str,
    /// Whether the primary failed or answered 5xx.
    pub primary_error: bool,
    /// Primary latency in ms.
    pub primary_ms: f64,
    /// Candidate latency in ms.
    pub candidate_ms: f64,
    /// Whether the latencies count: false when the job waited too long for
    /// a shadow worker for its candidate timing to be fair.
    pub timed: bool,
    /// Candidate result.
    pub candidate: CandidateResult<'a>,
    /// Fields seen varying between two responses of the current version in
    /// this request (`None` when no self-comparison was possible).
    pub noise: Option<&'a [String]>,
}

/// The candidate's side of a sample.
#[derive(Debug, Clone)]
pub enum CandidateResult<'a> {
    /// It answered; these are its differences (after per-request noise).
    Compared {
        /// Differences from the primary.
        diffs: &'a [Diff],
        /// Whether it answered 5xx.
        server_error: bool,
    },
    /// It failed.
    Failed,
    /// It timed out.
    TimedOut,
    /// It answered, but the primary failed: nothing to compare.
    Uncomparable {
        /// Whether it answered 5xx.
        server_error: bool,
    },
}

impl LaunchStats {
    /// The endpoint bucket for `key`, creating it within the bound.
    fn endpoint_mut(&mut self, key: &str) -> &mut EndpointStats {
        let key = if self.endpoints.contains_key(key) || self.endpoints.len() < MAX_ENDPOINTS {
            key
        } else {
            OVERFLOW_ENDPOINT
        };
        // Looked up before `entry`, which would take an owned key on every
        // sample, not just the first of an endpoint.
        if !self.endpoints.contains_key(key) {
            self.endpoints
                .insert(key.to_string(), EndpointStats::default());
        }
        self.endpoints.get_mut(key).expect("inserted above")
    }

    /// Records one processed sample.
    pub fn record(&mut self, s: &Sample<'_>) {
        let e = self.endpoint_mut(s.endpoint);
        e.attempts += 1;
        if s.primary_error {
            e.primary_errors += 1;
        }
        if s.timed {
            e.primary_latency.record(s.primary_ms);
        }
        if let Some(noise) = s.noise {
            e.noise_checks += 1;
            let mut seen: Vec<&String> = noise.iter().collect();
            seen.sort();
            seen.dedup();
            for f in seen {
                if e.noise.contains_key(f) || e.noise.len() < MAX_FIELDS {
                    *e.noise.entry(f.clone()).or_default() += 1;
                }
            }
        }
        match &s.candidate {
            CandidateResult::Uncomparable { server_error } => {
                if *server_error {
                    e.candidate_5xx += 1;
                }
                if s.timed {
                    e.candidate_latency.record(s.candidate_ms);
                }
            }
            CandidateResult::Failed => {
                e.candidate_failures += 1;
                *e.categories
                    .entry(DiffCategory::CandidateError.as_str().into())
                    .or_default() += 1;
            }
            CandidateResult::TimedOut => {
                e.candidate_timeouts += 1;
                *e.categories
                    .entry(DiffCategory::CandidateTimeout.as_str().into())
                    .or_default() += 1;
            }
            CandidateResult::Compared {
                diffs,
                server_error,
            } => {
                e.compared += 1;
                if *server_error {
                    e.candidate_5xx += 1;
                }
                if s.timed {
                    e.candidate_latency.record(s.candidate_ms);
                }
                let mut fields: Vec<&str> = diffs.iter().map(|d| d.field.as_str()).collect();
                fields.sort_unstable();
                fields.dedup();
                let sig = fields.join(&SIG_SEP.to_string());
                let sig = if e.signatures.contains_key(&sig) || e.signatures.len() < MAX_SIGNATURES
                {
                    sig
                } else {
                    OVERFLOW_SIGNATURE.to_string()
                };
                *e.signatures.entry(sig).or_default() += 1;
                let mut cats: Vec<DiffCategory> = diffs.iter().map(|d| d.category).collect();
                cats.sort();
                cats.dedup();
                for c in cats {
                    *e.categories.entry(c.as_str().into()).or_default() += 1;
                }
                let mut counted: Vec<&str> = Vec::new();
                for d in diffs.iter() {
                    if !e.fields.contains_key(&d.field) && e.fields.len() >= MAX_FIELDS {
                        continue;
                    }
                    let f = e.fields.entry(d.field.clone()).or_insert(FieldStats {
                        category: d.category,
                        count: 0,
                        kinds: BTreeMap::new(),
                    });
                    if !counted.contains(&d.field.as_str()) {
                        f.count += 1;
                        counted.push(&d.field);
                    }
                    *f.kinds.entry(d.kind.as_str().into()).or_default() += 1;
                }
            }
        }
    }

    /// Whether an example for `endpoint`/`field` would still be kept.
    pub fn wants_example(&self, endpoint: &str, field: &str) -> bool {
        self.examples.len() < MAX_EXAMPLES
            && self
                .examples
                .iter()
                .filter(|x| x.endpoint == endpoint && x.field == field)
                .count()
                < EXAMPLES_PER_FIELD
    }

    /// Stores an example if there is room for it.
    pub fn add_example(&mut self, ex: Example) {
        if self.wants_example(&ex.endpoint, &ex.field) {
            self.examples.push(ex);
        }
    }

    /// Counts a policy skip.
    pub fn count_skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.into()).or_default() += 1;
    }

    /// Counts a capacity drop.
    pub fn count_drop(&mut self, reason: &str) {
        *self.dropped.entry(reason.into()).or_default() += 1;
    }
}

impl EndpointStats {
    /// Whether `field` is noise under what is known now.
    pub fn is_noise(&self, field: &str) -> bool {
        let Some(n) = self.noise.get(field).copied().filter(|n| *n > 0) else {
            return false;
        };
        if self.noise_checks == 0 {
            return false;
        }
        let noise_rate = n as f64 / self.noise_checks as f64;
        let diff_rate = match self.fields.get(field) {
            Some(f) if self.compared > 0 => f.count as f64 / self.compared as f64,
            _ => 0.0,
        };
        noise_rate >= NOISE_RATIO * diff_rate
    }

    /// Compared samples that match once noise is discounted.
    pub fn matches(&self) -> u64 {
        self.signatures
            .iter()
            .filter(|(sig, _)| {
                sig.as_str() != OVERFLOW_SIGNATURE
                    && (sig.is_empty() || sig.split(SIG_SEP).all(|f| self.is_noise(f)))
            })
            .map(|(_, n)| *n)
            .sum()
    }

    /// Failures, timeouts and 5xx of the candidate.
    pub fn candidate_errors(&self) -> u64 {
        self.candidate_failures + self.candidate_timeouts + self.candidate_5xx
    }
}

/// Redacts `name`'s value if it is sensitive.
pub fn redact_header(name: &str, value: &str, extra: &[String]) -> String {
    let lower = name.to_ascii_lowercase();
    if crate::config::SENSITIVE_HEADERS.contains(&lower.as_str())
        || extra.iter().any(|e| e.eq_ignore_ascii_case(&lower))
    {
        "[redacted]".into()
    } else {
        value.into()
    }
}

/// Headers as a redacted map (repeated headers joined with `, `).
pub fn redacted_headers(h: &http::HeaderMap, extra: &[String]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in h {
        let v = redact_header(k.as_str(), &String::from_utf8_lossy(v.as_bytes()), extra);
        out.entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::DiffKind;

    fn diff(field: &str) -> Diff {
        Diff {
            category: DiffCategory::BodyField,
            field: field.into(),
            path: field.into(),
            kind: DiffKind::Changed,
            primary: None,
            candidate: None,
        }
    }

    fn compared(stats: &mut LaunchStats, fields: &[&str], noise: Option<&[String]>) {
        let diffs: Vec<Diff> = fields.iter().map(|f| diff(f)).collect();
        stats.record(&Sample {
            endpoint: "r GET /x",
            primary_error: false,
            primary_ms: 10.0,
            candidate_ms: 12.0,
            timed: true,
            candidate: CandidateResult::Compared {
                diffs: &diffs,
                server_error: false,
            },
            noise,
        });
    }

    #[test]
    fn noise_learnt_later_reclassifies_earlier_samples() {
        let mut s = LaunchStats::default();
        for _ in 0..10 {
            compared(&mut s, &["$.ts"], None);
        }
        compared(&mut s, &["$.ts", "$.price"], None);
        compared(&mut s, &[], None);
        let e = &s.endpoints["r GET /x"];
        assert_eq!((e.compared, e.matches()), (12, 1));
        // Two repeated identical requests disagree on $.ts only.
        let ts = vec!["$.ts".to_string()];
        compared(&mut s, &["$.ts"], Some(&ts));
        compared(&mut s, &["$.ts"], Some(&ts));
        let e = &s.endpoints["r GET /x"];
        assert!(e.is_noise("$.ts"));
        assert!(!e.is_noise("$.price"));
        // Every $.ts-only sample now matches; the $.price one still differs.
        assert_eq!((e.compared, e.matches()), (14, 13));
    }

    #[test]
    fn rare_self_variation_does_not_mask_a_systematic_change() {
        let mut s = LaunchStats::default();
        let v = vec!["$.v".to_string()];
        for i in 0..100 {
            let noise: Option<&[String]> = if i == 0 { Some(&v) } else { Some(&[]) };
            compared(&mut s, &["$.v"], noise);
        }
        let e = &s.endpoints["r GET /x"];
        assert!(!e.is_noise("$.v"));
        assert_eq!(e.matches(), 0);
    }

    #[test]
    fn collections_are_bounded() {
        let mut s = LaunchStats::default();
        for i in 0..(MAX_ENDPOINTS + 10) {
            s.record(&Sample {
                endpoint: &format!("r GET /e{i}"),
                primary_error: false,
                primary_ms: 1.0,
                candidate_ms: 1.0,
                timed: true,
                candidate: CandidateResult::TimedOut,
                noise: None,
            });
        }
        assert_eq!(s.endpoints.len(), MAX_ENDPOINTS + 1);
        assert_eq!(s.endpoints[OVERFLOW_ENDPOINT].attempts, 10);
        let mut l = LatencyStats::default();
        for i in 0..5000 {
            l.record(i as f64);
        }
        assert_eq!(l.reservoir.len(), RESERVOIR_SIZE);
        assert_eq!(l.count, 5000);
        assert_eq!(l.histogram.iter().sum::<u64>(), 5000);
        // The reservoir is spread over the whole stream, not its head.
        let late = l.reservoir.iter().filter(|v| **v >= 2500.0).count();
        assert!((350..=650).contains(&late), "{late}");
    }

    #[test]
    fn sensitive_headers_are_redacted() {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        h.insert("x-api-key", "k".parse().unwrap());
        h.insert("x-tenant", "t1".parse().unwrap());
        h.insert("x-shadow-token", "t".parse().unwrap());
        let m = redacted_headers(&h, &["X-Shadow-Token".into()]);
        assert_eq!(m["authorization"], "[redacted]");
        assert_eq!(m["x-api-key"], "[redacted]");
        assert_eq!(m["x-shadow-token"], "[redacted]");
        assert_eq!(m["x-tenant"], "t1");
    }
}
