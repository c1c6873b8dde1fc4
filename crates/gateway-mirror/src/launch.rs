//! One launch's core: what its hot path, its workers and the engine share.
//! Settings derived once from its config (methods, header rules, marker,
//! comparator, scorer), its counters and metric handles, statistics, rate
//! limiter, the memory of repeated requests for noise learning, and its
//! recorder.
//!
//! The work done with it lives elsewhere: admission in `plan.rs`, shadow
//! calls and comparison in `worker.rs`, lifecycle in `engine.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gateway_core::Clock;
use http::{HeaderName, HeaderValue, Method};
use parking_lot::Mutex;

use crate::client::ShadowClient;
use crate::compare::{Comparator, DefaultComparator, Observation};
use crate::config::LaunchConfig;
use crate::outcome::{DropReason, LaunchOrigin, LaunchState, MirrorOutcome, SkipReason};
use crate::recorder::Recorder;
use crate::report::Report;
use crate::runtime::LagProbe;
use crate::sampling::TokenBucket;
use crate::stats::LaunchStats;
use crate::verdict::Scorer;

/// Identical requests remembered per launch for noise learning.
const REPEAT_CACHE: usize = 256;

/// Everything the workers need; the sender is kept out of it so the
/// dispatcher ends when the launch is dropped.
pub(crate) struct Core {
    pub(crate) cfg: Arc<LaunchConfig>,
    pub(crate) origin: LaunchOrigin,
    pub(crate) state: AtomicU8,
    pub(crate) methods: Vec<Method>,
    pub(crate) strip: Vec<HeaderName>,
    pub(crate) set: Vec<(HeaderName, HeaderValue)>,
    pub(crate) marker: HeaderName,
    pub(crate) comparator: Arc<dyn Comparator>,
    pub(crate) scorer: Scorer,
    pub(crate) stats: Mutex<LaunchStats>,
    pub(crate) skips: [AtomicU64; 5],
    pub(crate) drops: [AtomicU64; DROPS.len()],
    /// Registered once so the hot path neither allocates labels nor looks
    /// up the registry.
    pub(crate) skip_metrics: [metrics::Counter; 5],
    pub(crate) drop_metrics: [(metrics::Counter, metrics::Counter); DROPS.len()],
    /// `match`, `differ`, `shadow_failed`, `shadow_timeout`, in that order.
    pub(crate) result_metrics: [metrics::Counter; 4],
    pub(crate) dirty: AtomicBool,
    pub(crate) limiter: Mutex<TokenBucket>,
    pub(crate) repeats: Mutex<RepeatCache>,
    pub(crate) recorder: Option<Recorder>,
    pub(crate) in_flight: AtomicUsize,
    /// Scheduling lag of the shadow thread, when shadow work has its own.
    pub(crate) lag: Option<Arc<LagProbe>>,
    pub(crate) client: Arc<dyn ShadowClient>,
    pub(crate) clock: Arc<dyn Clock>,
}

pub(crate) const RESULTS: [MirrorOutcome; 4] = [
    MirrorOutcome::Match,
    MirrorOutcome::Differ,
    MirrorOutcome::ShadowFailed,
    MirrorOutcome::ShadowTimeout,
];

pub(crate) const SKIPS: [SkipReason; 5] = [
    SkipReason::NotSampled,
    SkipReason::Method,
    SkipReason::Inactive,
    SkipReason::BodyTooLarge,
    SkipReason::PrimaryFailed,
];
pub(crate) const DROPS: [DropReason; 4] = [
    DropReason::RateLimited,
    DropReason::QueueFull,
    DropReason::Shutdown,
    DropReason::Starved,
];

/// Primary responses to recent identical requests (method, URI, body), for
/// learning noise without a secondary: a field that differs between two
/// primary answers to the same request varies by itself.
#[derive(Default)]
pub(crate) struct RepeatCache {
    map: HashMap<u64, Observation>,
    order: VecDeque<u64>,
}

impl RepeatCache {
    pub(crate) fn swap(&mut self, key: u64, obs: Observation) -> Option<Observation> {
        let prev = self.map.insert(key, obs);
        if prev.is_none() {
            self.order.push_back(key);
            if self.order.len() > REPEAT_CACHE {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
        prev
    }
}

impl Core {
    pub(crate) fn new(
        cfg: LaunchConfig,
        state: LaunchState,
        stats: LaunchStats,
        client: Arc<dyn ShadowClient>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let parse = |h: &str| HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok();
        let skips =
            SKIPS.map(|r| AtomicU64::new(stats.skipped.get(r.as_str()).copied().unwrap_or(0)));
        let drops =
            DROPS.map(|r| AtomicU64::new(stats.dropped.get(r.as_str()).copied().unwrap_or(0)));
        let skip_metrics = SKIPS.map(|r| {
            metrics::counter!("gatehouse_mirror_total", "launch" => cfg.name.clone(), "outcome" => MirrorOutcome::Skipped(r).as_str())
        });
        let drop_metrics = DROPS.map(|r| {
            (
                metrics::counter!("gatehouse_mirror_dropped_total", "launch" => cfg.name.clone(), "reason" => r.as_str()),
                metrics::counter!("gatehouse_mirror_total", "launch" => cfg.name.clone(), "outcome" => MirrorOutcome::Dropped(r).as_str()),
            )
        });
        let result_metrics = RESULTS.map(|o| {
            metrics::counter!("gatehouse_mirror_total", "launch" => cfg.name.clone(), "outcome" => o.as_str())
        });
        Self {
            skip_metrics,
            drop_metrics,
            result_metrics,
            methods: cfg.parsed_methods(),
            strip: cfg.strip_headers.iter().filter_map(|h| parse(h)).collect(),
            set: cfg
                .set_headers
                .iter()
                .filter_map(|(k, v)| Some((parse(k)?, HeaderValue::from_str(v).ok()?)))
                .collect(),
            marker: parse(&cfg.marker_header).unwrap_or(HeaderName::from_static(
                crate::config::DEFAULT_MARKER_HEADER,
            )),
            comparator: Arc::new(DefaultComparator::new(&cfg.compare)),
            scorer: Scorer::new(cfg.thresholds.clone()),
            stats: Mutex::new(stats),
            skips,
            drops,
            dirty: AtomicBool::new(false),
            limiter: Mutex::new(TokenBucket::new(cfg.max_rps)),
            repeats: Mutex::new(RepeatCache::default()),
            recorder: cfg
                .record
                .clone()
                .map(|r| Recorder::new(&cfg.name, r, cfg.strip_headers.clone())),
            in_flight: AtomicUsize::new(0),
            lag: None,
            origin: LaunchOrigin::Api,
            state: AtomicU8::new(state.to_u8()),
            client,
            clock,
            cfg: Arc::new(cfg),
        }
    }

    pub(crate) fn state(&self) -> LaunchState {
        LaunchState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub(crate) fn skip(&self, r: SkipReason) {
        if let Some(i) = SKIPS.iter().position(|s| *s == r) {
            self.skips[i].fetch_add(1, Ordering::Relaxed);
            self.skip_metrics[i].increment(1);
        }
        self.mark_dirty();
    }

    pub(crate) fn drop_shadow(&self, r: DropReason) {
        if let Some(i) = DROPS.iter().position(|s| *s == r) {
            self.drops[i].fetch_add(1, Ordering::Relaxed);
            self.drop_metrics[i].0.increment(1);
            self.drop_metrics[i].1.increment(1);
        }
        self.mark_dirty();
    }

    fn mark_dirty(&self) {
        // Read first: on the hot path the flag is almost always set already,
        // and a plain load keeps the cache line shared between cores.
        if !self.dirty.load(Ordering::Relaxed) {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Statistics with the atomic counters folded in.
    pub(crate) fn snapshot(&self) -> LaunchStats {
        let mut s = self.stats.lock().clone();
        for (i, r) in SKIPS.iter().enumerate() {
            let n = self.skips[i].load(Ordering::Relaxed);
            if n > 0 {
                s.skipped.insert(r.as_str().into(), n);
            }
        }
        for (i, r) in DROPS.iter().enumerate() {
            let n = self.drops[i].load(Ordering::Relaxed);
            if n > 0 {
                s.dropped.insert(r.as_str().into(), n);
            }
        }
        s
    }

    pub(crate) fn report(&self, now: DateTime<Utc>) -> Report {
        let snap = self.snapshot();
        Report::build(&self.cfg, self.state(), &snap, &self.scorer, now)
    }
}
