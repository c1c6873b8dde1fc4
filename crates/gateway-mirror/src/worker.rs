//! The workers: each launch's dispatcher takes live requests off its queue,
//! holds at most `concurrency` in flight, derives the shadow request, calls
//! the candidate (and the secondary), learns noise, compares, records the
//! statistics and examples, and writes the recording.
//!
//! Runs on the shadow runtime; nothing here is on the primary's path.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Method, Uri};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use crate::client::ShadowRequest;
use crate::compare::{Diff, ErrorKind, Observation};
use crate::endpoint::endpoint_key;
use crate::job::{Job, LiveJob, OriginalHeaders};
use crate::launch::{Core, RESULTS, SKIPS};
use crate::outcome::{DiffCategory, DropReason, MirrorOutcome, SkipReason};
use crate::stats::{redacted_headers, splitmix64, CandidateResult, Example, ExampleSide, Sample};

/// Larger primary bodies are not remembered for noise learning, bounding the
/// cache to 256 × 64 KiB = 16 MiB per launch.
const REPEAT_MAX_BODY: usize = 64 * 1024;
/// Longest body excerpt stored in an example.
const EXAMPLE_BODY: usize = 2048;

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

fn fingerprint(method: &Method, uri: &Uri, body: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in method
        .as_str()
        .bytes()
        .chain([0])
        .chain(uri.authority().map_or("", |a| a.as_str()).bytes())
        .chain(uri.path_and_query().map_or("/", |p| p.as_str()).bytes())
        .chain([0])
        .chain(body.iter().copied())
    {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix64(h)
}

impl Core {
    /// Turns a live request into a job: the headers the shadow gets
    /// (hop-by-hop, Host and the launch's strip list removed, its set list
    /// and marker added) and the endpoint key.
    fn job(&self, live: LiveJob) -> Job {
        let mut headers = live.headers.clone();
        for h in HOP_BY_HOP {
            headers.remove(*h);
        }
        headers.remove(header::HOST);
        for h in &self.strip {
            headers.remove(h);
        }
        for (k, v) in &self.set {
            headers.insert(k.clone(), v.clone());
        }
        headers.insert(self.marker.clone(), HeaderValue::from_static("1"));
        let route = self.cfg.routes.get(live.route).map_or("", String::as_str);
        Job {
            endpoint: endpoint_key(route, live.method.as_str(), live.uri.path()),
            method: live.method,
            uri: live.uri,
            headers,
            original_headers: OriginalHeaders::Raw(live.headers),
            body: live.body,
            primary: live.primary,
            request_id: live.request_id,
        }
    }

    fn shadow_request(&self, job: &Job) -> ShadowRequest {
        ShadowRequest {
            method: job.method.clone(),
            uri: job.uri.clone(),
            headers: job.headers.clone(),
            body: job.body.clone(),
            timeout: self.cfg.timeout,
            max_body_bytes: self.cfg.max_body_bytes,
        }
    }

    async fn call(&self, cluster: &str, req: ShadowRequest) -> Observation {
        let timeout = self.cfg.timeout;
        let start = Instant::now();
        // Enforced here too: a ShadowClient that ignores the deadline must
        // not hold a worker slot forever.
        match tokio::time::timeout(timeout, self.client.send(cluster, req)).await {
            Ok(o) => o,
            Err(_) => Observation::failed(
                ErrorKind::Timeout,
                format!("no response within {timeout:?}"),
                start.elapsed(),
            ),
        }
    }

    /// Sends one job to the shadow(s), compares and records. Returns the
    /// outcome for metrics and tests.
    pub(crate) async fn process(&self, job: Job) -> MirrorOutcome {
        let started = std::time::Instant::now();
        let req = self.shadow_request(&job);
        let secondary_req = self.cfg.secondary.as_ref().map(|s| (s, req.clone()));
        let secondary_fut = async {
            match secondary_req {
                Some((s, req)) => Some(self.call(s, req).await),
                None => None,
            }
        };
        let (candidate, secondary) =
            tokio::join!(self.call(&self.cfg.candidate, req), secondary_fut);
        let primary = &job.primary;
        let primary_ok = primary.error.is_none();
        // A shadow thread that waited for the CPU during the call would
        // charge that wait to the candidate: such a sample is compared but
        // not timed.
        let timed = !self.lag.as_ref().is_some_and(|l| l.lagged_since(started));
        // Likewise a timeout: the deadline may have passed while this
        // thread waited for the CPU, so it says nothing about the candidate.
        if !timed
            && candidate
                .error
                .as_ref()
                .is_some_and(|e| e.kind == ErrorKind::Timeout)
        {
            self.drop_shadow(DropReason::Starved);
            return MirrorOutcome::Dropped(DropReason::Starved);
        }

        // Per-request noise: what the current version disagrees with itself on.
        let noise: Option<Vec<String>> = match secondary {
            Some(sec) if primary_ok && sec.error.is_none() => Some(
                self.comparator
                    .compare(primary, &sec)
                    .into_iter()
                    .map(|d| d.field)
                    .collect(),
            ),
            Some(_) => None,
            None if self.cfg.compare.learn_noise
                && primary_ok
                && primary
                    .body
                    .as_ref()
                    .is_some_and(|b| b.len() <= REPEAT_MAX_BODY) =>
            {
                let key = fingerprint(&job.method, &job.uri, &job.body);
                let prev = self.repeats.lock().swap(key, primary.clone());
                prev.map(|p| {
                    self.comparator
                        .compare(&p, primary)
                        .into_iter()
                        .map(|d| d.field)
                        .collect()
                })
            }
            None => None,
        };

        let diffs: Vec<Diff>;
        let result = match &candidate.error {
            Some(e) if e.kind == ErrorKind::Timeout => CandidateResult::TimedOut,
            Some(_) => CandidateResult::Failed,
            // Nothing to compare against: a candidate answering where the
            // primary failed is not a mismatch (nor a match).
            None if !primary_ok => CandidateResult::Uncomparable {
                server_error: candidate.status.is_some_and(|s| s.is_server_error()),
            },
            None => {
                let all = self.comparator.compare(primary, &candidate);
                diffs = match (&self.cfg.secondary, &noise) {
                    (Some(_), Some(n)) => {
                        all.into_iter().filter(|d| !n.contains(&d.field)).collect()
                    }
                    _ => all,
                };
                CandidateResult::Compared {
                    diffs: &diffs,
                    server_error: candidate.status.is_some_and(|s| s.is_server_error()),
                }
            }
        };
        let sample = Sample {
            endpoint: &job.endpoint,
            primary_error: primary.is_error(),
            primary_ms: ms(primary.latency),
            candidate_ms: ms(candidate.latency),
            timed,
            candidate: result.clone(),
            noise: noise.as_deref(),
        };
        let outcome;
        {
            let mut stats = self.stats.lock();
            stats.record(&sample);
            let ep_key = if stats.endpoints.contains_key(&job.endpoint) {
                job.endpoint.clone()
            } else {
                crate::stats::OVERFLOW_ENDPOINT.to_string()
            };
            let (o, example_field) = match &result {
                CandidateResult::Uncomparable { .. } => {
                    (MirrorOutcome::Skipped(SkipReason::PrimaryFailed), None)
                }
                CandidateResult::TimedOut => (
                    MirrorOutcome::ShadowTimeout,
                    Some((
                        DiffCategory::CandidateTimeout.as_str().to_string(),
                        DiffCategory::CandidateTimeout,
                    )),
                ),
                CandidateResult::Failed => (
                    MirrorOutcome::ShadowFailed,
                    Some((
                        DiffCategory::CandidateError.as_str().to_string(),
                        DiffCategory::CandidateError,
                    )),
                ),
                CandidateResult::Compared { diffs, .. } => {
                    let e = &stats.endpoints[&ep_key];
                    let signal: Vec<&Diff> =
                        diffs.iter().filter(|d| !e.is_noise(&d.field)).collect();
                    if signal.is_empty() {
                        (MirrorOutcome::Match, None)
                    } else {
                        let f = signal
                            .iter()
                            .find(|d| stats.wants_example(&ep_key, &d.field))
                            .map(|d| (d.field.clone(), d.category));
                        (MirrorOutcome::Differ, f)
                    }
                }
            };
            outcome = o;
            if let Some((field, category)) = example_field {
                if stats.wants_example(&ep_key, &field) {
                    let shown: Vec<Diff> = match &result {
                        CandidateResult::Compared { diffs, .. } => {
                            diffs.iter().take(10).cloned().collect()
                        }
                        _ => Vec::new(),
                    };
                    let redact = &self.cfg.strip_headers;
                    stats.add_example(Example {
                        at: self.clock.now(),
                        endpoint: ep_key,
                        field,
                        category,
                        diffs: shown,
                        method: job.method.to_string(),
                        uri: job.uri.to_string(),
                        request_headers: job.original_headers.redacted(redact),
                        primary: side(primary, redact),
                        candidate: side(&candidate, redact),
                    });
                }
            }
        }
        if let MirrorOutcome::Skipped(r) = outcome {
            if let Some(i) = SKIPS.iter().position(|x| *x == r) {
                self.skips[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.dirty.store(true, Ordering::Relaxed);
        match outcome {
            MirrorOutcome::Skipped(r) => {
                if let Some(i) = SKIPS.iter().position(|x| *x == r) {
                    self.skip_metrics[i].increment(1);
                }
            }
            o => {
                if let Some(i) = RESULTS.iter().position(|x| *x == o) {
                    self.result_metrics[i].increment(1);
                }
            }
        }
        if let Some(r) = &self.recorder {
            r.maybe_record(&job, &self.clock.now());
        }
        outcome
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn side(o: &Observation, redact: &[String]) -> ExampleSide {
    ExampleSide {
        status: o.status.map(|s| s.as_u16()),
        headers: redacted_headers(&o.headers, redact),
        body: o.body.as_ref().map(|b| {
            let s = String::from_utf8_lossy(&b[..b.len().min(EXAMPLE_BODY)]).into_owned();
            if b.len() > EXAMPLE_BODY {
                format!("{s}…")
            } else {
                s
            }
        }),
        error: o
            .error
            .as_ref()
            .map(|e| format!("{}: {}", e.kind.as_str(), e.message)),
        latency_ms: ms(o.latency),
    }
}

pub(crate) async fn dispatch(core: Arc<Core>, mut rx: mpsc::Receiver<LiveJob>) {
    let permits = Arc::new(Semaphore::new(core.cfg.concurrency.max(1)));
    while let Some(job) = rx.recv().await {
        // Waiting for a permit here (not in a spawned task) keeps the total
        // held at queue_capacity + concurrency: the queue is the only buffer.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let core = core.clone();
        tokio::spawn(async move {
            let job = core.job(job);
            core.process(job).await;
            core.in_flight.fetch_sub(1, Ordering::AcqRel);
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use crate::client::ShadowClient;
    use crate::config::LaunchConfig;
    use crate::outcome::LaunchState;
    use crate::runtime::LagProbe;
    use crate::stats::LaunchStats;

    /// Answers every call with a timeout, as a candidate that hangs would.
    struct TimesOut;

    #[async_trait::async_trait]
    impl ShadowClient for TimesOut {
        async fn send(&self, _cluster: &str, _request: ShadowRequest) -> Observation {
            Observation::failed(ErrorKind::Timeout, "no response", Duration::from_secs(1))
        }
    }

    #[tokio::test]
    async fn a_timeout_while_the_shadow_thread_lagged_is_not_charged_to_the_candidate() {
        let core = |lag: LagProbe| {
            let mut c = Core::new(
                LaunchConfig::new("l", &["r"], "candidate"),
                LaunchState::Active,
                LaunchStats::default(),
                Arc::new(TimesOut),
                gateway_core::clock::system(),
            );
            c.lag = Some(Arc::new(lag));
            c
        };
        let job = || Job {
            method: Method::GET,
            uri: Uri::from_static("/x"),
            headers: HeaderMap::new(),
            original_headers: OriginalHeaders::Raw(HeaderMap::new()),
            body: Bytes::new(),
            primary: Observation {
                status: Some(StatusCode::OK),
                ..Observation::default()
            },
            endpoint: "r GET /x".into(),
            request_id: "1".into(),
        };
        // A thread that kept up: the candidate timed out.
        let steady = core(LagProbe::new());
        assert_eq!(steady.process(job()).await, MirrorOutcome::ShadowTimeout);
        // A starved one: dropped and counted, the candidate's record clean.
        let lagging = LagProbe::new();
        lagging.note_lag();
        let starved = core(lagging);
        assert_eq!(
            starved.process(job()).await,
            MirrorOutcome::Dropped(DropReason::Starved)
        );
        let snap = starved.snapshot();
        assert_eq!(snap.dropped.get("starved"), Some(&1));
        assert!(snap.endpoints.values().all(|e| e.attempts == 0));
    }
}
