//! The mirror engine: the two hot-path calls, the bounded queue and workers,
//! the lifecycle of launches, and periodic persistence.
//!
//! ```text
//!  proxy (hot path)                      mirror workers (per launch)
//!  ───────────────                       ───────────────────────────
//!  plan(route, parts, id, consumer)      ┌─► send to candidate ─┐
//!    sample? method? rate? queue room?   │   (and secondary)    ├─► compare,
//!  … primary response completes …        │                      │   noise,
//!  plan.submit(req_body, primary) ─try_send─► queue (bounded) ──┘   stats,
//!                          full? drop + count                       example,
//!                                                                   record
//! ```
//!
//! Architecture invariant: `plan` does no I/O and never awaits; `submit`
//! only `try_send`s. A full queue drops the shadow, never the primary, and a
//! candidate that hangs only occupies one of the launch's `concurrency`
//! worker slots until its timeout.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use gateway_core::{Clock, Problem};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::time::Instant;

use crate::client::{ShadowClient, ShadowRequest};
use crate::compare::{Comparator, DefaultComparator, Diff, ErrorKind, Observation};
use crate::config::{ConfigIssue, LaunchConfig, SampleBy};
use crate::endpoint::endpoint_key;
use crate::outcome::{
    DiffCategory, DropReason, LaunchOrigin, LaunchState, MirrorOutcome, SkipReason,
};
use crate::record::Recorder;
use crate::report::Report;
use crate::runtime::{LagProbe, ShadowRuntime};
use crate::stats::{
    redacted_headers, splitmix64, CandidateResult, Example, ExampleSide, LaunchStats, Sample,
};
use crate::store::{ShadowStore, StoreError};
use crate::verdict::Scorer;

/// Default interval between statistics flushes to the store.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// Identical requests remembered per launch for noise learning.
const REPEAT_CACHE: usize = 256;
/// Larger primary bodies are not remembered for noise learning, bounding the
/// cache to 256 × 64 KiB = 16 MiB per launch.
const REPEAT_MAX_BODY: usize = 64 * 1024;
/// Longest body excerpt stored in an example.
const EXAMPLE_BODY: usize = 2048;

/// Engine-wide options.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Interval between statistics flushes to the store.
    pub flush_interval: Duration,
    /// Wall clock for timestamps of examples and reports.
    pub clock: Arc<dyn Clock>,
    /// Where shadow calls and comparisons run: a lower-priority thread (see
    /// [`crate::runtime`]), or with `None` the caller's runtime.
    pub shadow_runtime: Option<Arc<ShadowRuntime>>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            clock: gateway_core::clock::system(),
            shadow_runtime: None,
        }
    }
}

/// Errors of engine operations, each with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No launch with that name.
    #[error("no dark launch named {0:?}")]
    NotFound(String),
    /// A launch with that name exists.
    #[error("a dark launch named {0:?} already exists")]
    AlreadyExists(String),
    /// The launch definition is invalid.
    #[error("invalid dark launch: {}", .0.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ConfigIssue>),
    /// The transition is not allowed from the current state.
    #[error("dark launch {name:?} is {state}; cannot {action}")]
    Conflict {
        /// Launch name.
        name: String,
        /// Current state.
        state: &'static str,
        /// Requested action.
        action: &'static str,
    },
    /// Persistence failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "shadow_not_found",
            Self::AlreadyExists(_) => "shadow_exists",
            Self::Invalid(_) => "shadow_invalid",
            Self::Conflict { .. } => "shadow_state_conflict",
            Self::Store(_) => "shadow_store_unavailable",
        }
    }

    /// HTTP status for the admin API.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::AlreadyExists(_) | Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The problem+json body (store internals are not exposed).
    pub fn to_problem(&self) -> Problem {
        let detail = match self {
            Self::Store(_) => "the dark-launch store is unavailable".to_string(),
            other => other.to_string(),
        };
        let mut p = Problem::new(self.status(), self.code(), detail);
        if let Self::Invalid(issues) = self {
            p = p.with(
                "issues",
                serde_json::to_value(issues).unwrap_or(serde_json::Value::Null),
            );
        }
        p
    }
}

/// One line of `GET /v1/shadow`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LaunchSummary {
    /// Name.
    pub name: String,
    /// Lifecycle state.
    pub state: LaunchState,
    /// Routes mirrored.
    pub routes: Vec<String>,
    /// Candidate cluster.
    pub candidate: String,
    /// Mirrored requests processed.
    pub samples: u64,
    /// 0–100.
    pub score: u8,
    /// Recommendation.
    pub verdict: crate::verdict::Verdict,
}

// === impl MirrorEngine ===

/// The dark-launch engine shared by the proxy, the admin API and the flusher.
pub struct MirrorEngine {
    launches: ArcSwap<Launches>,
    client: Arc<dyn ShadowClient>,
    store: Option<Arc<dyn ShadowStore>>,
    clock: Arc<dyn Clock>,
    /// Kept for launches created later from the admin API.
    options: EngineOptions,
    admin: tokio::sync::Mutex<()>,
    shutdown: Arc<Notify>,
    closed: AtomicBool,
}

impl std::fmt::Debug for MirrorEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorEngine")
            .field(
                "launches",
                &self.launches.load().by_name.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Default)]
struct Launches {
    by_name: BTreeMap<String, Arc<Launch>>,
    by_route: HashMap<String, Vec<Arc<Launch>>>,
}

impl Launches {
    fn build(list: impl IntoIterator<Item = Arc<Launch>>) -> Self {
        let mut me = Self::default();
        for l in list {
            for r in &l.core.cfg.routes {
                me.by_route.entry(r.clone()).or_default().push(l.clone());
            }
            me.by_name.insert(l.core.cfg.name.clone(), l);
        }
        me
    }
}

impl MirrorEngine {
    /// Starts the engine: reloads persisted launches and statistics, applies
    /// the configured launches over them, starts workers and the periodic
    /// flusher. Must be called within a tokio runtime.
    ///
    /// State precedence: a launch stopped earlier stays stopped; one paused
    /// from the admin API stays paused across restarts; `paused = true` in
    /// the config always pauses.
    pub async fn start(
        configured: Vec<LaunchConfig>,
        client: Arc<dyn ShadowClient>,
        store: Option<Arc<dyn ShadowStore>>,
        options: EngineOptions,
    ) -> Result<Arc<Self>, EngineError> {
        let mut issues = Vec::new();
        for (i, c) in configured.iter().enumerate() {
            if let Err(mut e) = c.validate_at(&format!("dark_launches[{i}]")) {
                issues.append(&mut e);
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in configured.iter().enumerate() {
            if !seen.insert(c.name.clone()) {
                issues.push(ConfigIssue {
                    path: format!("dark_launches[{i}].name"),
                    message: format!("duplicate launch name {:?}", c.name),
                });
            }
        }
        if !issues.is_empty() {
            return Err(EngineError::Invalid(issues));
        }
        let mut stored: BTreeMap<String, crate::store::StoredLaunch> = BTreeMap::new();
        if let Some(s) = &store {
            for l in s.load().await? {
                stored.insert(l.config.name.clone(), l);
            }
        }
        let mut list = Vec::new();
        for cfg in configured {
            let prev = stored.remove(&cfg.name);
            let state = match prev.as_ref().map(|p| p.state) {
                Some(LaunchState::Stopped) => LaunchState::Stopped,
                _ if cfg.paused => LaunchState::Paused,
                Some(s) => s,
                None => LaunchState::Active,
            };
            let stats = prev.map(|p| p.stats).unwrap_or_default();
            if let Some(s) = &store {
                s.save_launch(&cfg, state, LaunchOrigin::Config).await?;
            }
            list.push(Launch::spawn(
                cfg,
                state,
                LaunchOrigin::Config,
                stats,
                client.clone(),
                &options,
            ));
        }
        for (_, prev) in stored {
            // Created from the admin API earlier: keep it as it was. One that
            // came from the config and was removed from it is stopped; its
            // report stays available.
            let state = match prev.origin {
                LaunchOrigin::Api => prev.state,
                LaunchOrigin::Config => {
                    if prev.state != LaunchState::Stopped {
                        if let Some(s) = &store {
                            s.save_launch(&prev.config, LaunchState::Stopped, prev.origin)
                                .await?;
                        }
                    }
                    LaunchState::Stopped
                }
            };
            list.push(Launch::spawn(
                prev.config,
                state,
                prev.origin,
                prev.stats,
                client.clone(),
                &options,
            ));
        }
        let engine = Arc::new(Self {
            launches: ArcSwap::from_pointee(Launches::build(list)),
            client,
            store,
            clock: options.clock.clone(),
            options: options.clone(),
            admin: tokio::sync::Mutex::new(()),
            shutdown: Arc::new(Notify::new()),
            closed: AtomicBool::new(false),
        });
        if engine.store.is_some() {
            let weak = Arc::downgrade(&engine);
            tokio::spawn(flush_loop(
                weak,
                engine.shutdown.clone(),
                options.flush_interval,
            ));
        }
        Ok(engine)
    }

    /// Decides whether to mirror this request: launch for the route active,
    /// method allowed, request sampled, rate cap and queue room. No I/O, no
    /// await; cheap enough for every request.
    pub fn plan(
        &self,
        route: &str,
        parts: &http::request::Parts,
        request_id: &str,
        consumer: Option<&str>,
    ) -> Option<MirrorPlan> {
        if self.closed.load(Ordering::Relaxed) {
            return None;
        }
        let snap = self.launches.load();
        let launches = snap.by_route.get(route)?;
        for l in launches {
            if let Some(plan) = l.plan(route, parts, request_id, consumer) {
                return Some(plan);
            }
        }
        None
    }

    /// Summaries of every launch.
    pub fn list(&self) -> Vec<LaunchSummary> {
        self.launches
            .load()
            .by_name
            .values()
            .map(|l| l.core.summary())
            .collect()
    }

    /// The full report of `name`.
    pub fn report(&self, name: &str) -> Result<Report, EngineError> {
        let l = self.get(name)?;
        Ok(l.core.report(self.clock.now()))
    }

    /// A launch's definition.
    pub fn config(&self, name: &str) -> Result<LaunchConfig, EngineError> {
        Ok(self.get(name)?.core.cfg.as_ref().clone())
    }

    fn get(&self, name: &str) -> Result<Arc<Launch>, EngineError> {
        self.launches
            .load()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(name.to_string()))
    }

    /// Creates and starts a launch (admin API / CLI).
    pub async fn create(&self, cfg: LaunchConfig) -> Result<LaunchSummary, EngineError> {
        cfg.validate().map_err(EngineError::Invalid)?;
        let _g = self.admin.lock().await;
        if self.launches.load().by_name.contains_key(&cfg.name) {
            return Err(EngineError::AlreadyExists(cfg.name));
        }
        let state = if cfg.paused {
            LaunchState::Paused
        } else {
            LaunchState::Active
        };
        if let Some(s) = &self.store {
            s.save_launch(&cfg, state, LaunchOrigin::Api).await?;
        }
        let launch = Launch::spawn(
            cfg,
            state,
            LaunchOrigin::Api,
            LaunchStats::default(),
            self.client.clone(),
            &self.options,
        );
        let summary = launch.core.summary();
        let cur = self.launches.load();
        let list = cur.by_name.values().cloned().chain(std::iter::once(launch));
        self.launches.store(Arc::new(Launches::build(list)));
        Ok(summary)
    }

    /// Pauses mirroring; statistics are kept.
    pub async fn pause(&self, name: &str) -> Result<LaunchSummary, EngineError> {
        self.transition(name, "pause", |s| match s {
            LaunchState::Active | LaunchState::Paused => Some(LaunchState::Paused),
            LaunchState::Stopped => None,
        })
        .await
    }

    /// Resumes a paused launch.
    pub async fn resume(&self, name: &str) -> Result<LaunchSummary, EngineError> {
        self.transition(name, "resume", |s| match s {
            LaunchState::Active | LaunchState::Paused => Some(LaunchState::Active),
            LaunchState::Stopped => None,
        })
        .await
    }

    /// Stops a launch for good; its report stays available.
    pub async fn stop(&self, name: &str) -> Result<LaunchSummary, EngineError> {
        self.transition(name, "stop", |_| Some(LaunchState::Stopped))
            .await
    }

    async fn transition(
        &self,
        name: &str,
        action: &'static str,
        next: impl Fn(LaunchState) -> Option<LaunchState>,
    ) -> Result<LaunchSummary, EngineError> {
        let _g = self.admin.lock().await;
        let l = self.get(name)?;
        let cur = l.core.state();
        let Some(to) = next(cur) else {
            return Err(EngineError::Conflict {
                name: name.to_string(),
                state: cur.as_str(),
                action,
            });
        };
        if let Some(s) = &self.store {
            s.save_launch(&l.core.cfg, to, l.core.origin).await?;
            s.save_stats(name, &l.core.snapshot()).await?;
        }
        l.core.state.store(to.to_u8(), Ordering::SeqCst);
        Ok(l.core.summary())
    }

    /// Writes the statistics of every launch changed since the last flush.
    pub async fn flush(&self) -> Result<(), EngineError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let launches: Vec<Arc<Launch>> = self.launches.load().by_name.values().cloned().collect();
        for l in launches {
            if l.core.dirty.swap(false, Ordering::AcqRel) {
                let snap = l.core.snapshot();
                if let Err(e) = store.save_stats(&l.core.cfg.name, &snap).await {
                    l.core.dirty.store(true, Ordering::Release);
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Waits until no mirrored request is queued or in flight.
    pub async fn idle(&self) {
        loop {
            let busy: usize = self
                .launches
                .load()
                .by_name
                .values()
                .map(|l| l.core.in_flight.load(Ordering::Acquire))
                .sum();
            if busy == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops accepting new shadows, lets in-flight ones finish for up to
    /// `grace`, and flushes statistics.
    pub async fn shutdown(&self, grace: Duration) -> Result<(), EngineError> {
        self.closed.store(true, Ordering::SeqCst);
        self.shutdown.notify_waiters();
        let _ = tokio::time::timeout(grace, self.idle()).await;
        self.flush().await
    }
}

async fn flush_loop(engine: Weak<MirrorEngine>, shutdown: Arc<Notify>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let notified = shutdown.notified();
        tokio::select! {
            _ = tick.tick() => {}
            _ = notified => return,
        }
        let Some(e) = engine.upgrade() else { return };
        if e.closed.load(Ordering::Relaxed) {
            return;
        }
        if let Err(err) = e.flush().await {
            tracing::warn!(error = %err, "dark-launch statistics flush failed; will retry");
        }
    }
}

// === impl Launch ===

struct Launch {
    core: Arc<Core>,
    tx: mpsc::Sender<LiveJob>,
}

/// Everything the workers need; the sender is kept out of it so the
/// dispatcher ends when the launch is dropped.
pub(crate) struct Core {
    pub(crate) cfg: Arc<LaunchConfig>,
    origin: LaunchOrigin,
    state: AtomicU8,
    methods: Vec<Method>,
    strip: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    marker: HeaderName,
    comparator: Arc<dyn Comparator>,
    scorer: Scorer,
    stats: Mutex<LaunchStats>,
    skips: [AtomicU64; 5],
    drops: [AtomicU64; DROPS.len()],
    /// Registered once so the hot path neither allocates labels nor looks
    /// up the registry.
    skip_metrics: [metrics::Counter; 5],
    drop_metrics: [(metrics::Counter, metrics::Counter); DROPS.len()],
    /// `match`, `differ`, `shadow_failed`, `shadow_timeout`, in that order.
    result_metrics: [metrics::Counter; 4],
    dirty: AtomicBool,
    limiter: Mutex<TokenBucket>,
    repeats: Mutex<RepeatCache>,
    recorder: Option<Recorder>,
    pub(crate) in_flight: AtomicUsize,
    /// Scheduling lag of the shadow thread, when shadow work has its own.
    lag: Option<Arc<LagProbe>>,
    client: Arc<dyn ShadowClient>,
    clock: Arc<dyn Clock>,
}

const RESULTS: [MirrorOutcome; 4] = [
    MirrorOutcome::Match,
    MirrorOutcome::Differ,
    MirrorOutcome::ShadowFailed,
    MirrorOutcome::ShadowTimeout,
];

const SKIPS: [SkipReason; 5] = [
    SkipReason::NotSampled,
    SkipReason::Method,
    SkipReason::Inactive,
    SkipReason::BodyTooLarge,
    SkipReason::PrimaryFailed,
];
const DROPS: [DropReason; 4] = [
    DropReason::RateLimited,
    DropReason::QueueFull,
    DropReason::Shutdown,
    DropReason::Starved,
];

/// A live request handed over by the primary path: as received, so the
/// primary does no shadow work beyond copying it.
pub(crate) struct LiveJob {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    primary: Observation,
    /// Index into the launch's routes.
    route: usize,
    request_id: String,
}

/// A queued shadow request, ready to send and compare.
pub(crate) struct Job {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    /// Headers to send to the shadow (stripped, replaced, marked).
    pub(crate) headers: HeaderMap,
    /// The original request headers, redacted, for examples and recordings.
    pub(crate) original_headers: OriginalHeaders,
    pub(crate) body: Bytes,
    pub(crate) primary: Observation,
    pub(crate) endpoint: String,
    pub(crate) request_id: String,
}

impl Launch {
    fn spawn(
        cfg: LaunchConfig,
        state: LaunchState,
        origin: LaunchOrigin,
        stats: LaunchStats,
        client: Arc<dyn ShadowClient>,
        options: &EngineOptions,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel::<LiveJob>(cfg.queue_capacity.max(1));
        let mut core = Core::new(cfg, state, stats, client, options.clock.clone());
        core.origin = origin;
        core.lag = options.shadow_runtime.as_ref().map(|r| r.lag().clone());
        let core = Arc::new(core);
        match &options.shadow_runtime {
            Some(rt) => drop(rt.handle().spawn(dispatch(core.clone(), rx))),
            None => drop(tokio::spawn(dispatch(core.clone(), rx))),
        }
        Arc::new(Self { core, tx })
    }

    fn plan(
        &self,
        route: &str,
        parts: &http::request::Parts,
        request_id: &str,
        consumer: Option<&str>,
    ) -> Option<MirrorPlan> {
        let core = &self.core;
        if core.state() != LaunchState::Active {
            return None;
        }
        if !core.methods.contains(&parts.method) {
            core.skip(SkipReason::Method);
            return None;
        }
        let key = match (core.cfg.sample_by, consumer) {
            (SampleBy::Consumer, Some(c)) => c,
            _ => request_id,
        };
        if !sampled(&core.cfg.name, key, core.cfg.sample_percent) {
            core.skip(SkipReason::NotSampled);
            return None;
        }
        if let Some(len) = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
        {
            if len > core.cfg.max_body_bytes {
                core.skip(SkipReason::BodyTooLarge);
                return None;
            }
        }
        if self.tx.capacity() == 0 {
            core.drop_shadow(DropReason::QueueFull);
            return None;
        }
        if !core.limiter.lock().try_take(Instant::now()) {
            core.drop_shadow(DropReason::RateLimited);
            return None;
        }
        // The primary pays only for copying what it hands over; the shadow
        // thread derives the shadow's headers and the endpoint key.
        let route = core.cfg.routes.iter().position(|r| r == route).unwrap_or(0);
        Some(MirrorPlan {
            core: core.clone(),
            tx: self.tx.clone(),
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            route,
            request_id: request_id.to_string(),
        })
    }
}

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

/// Deterministic sampling: the same key always gets the same decision for a
/// launch, so a consumer sampled in stays in across restarts and replicas.
pub fn sampled(launch: &str, key: &str, percent: f64) -> bool {
    if percent >= 100.0 {
        return true;
    }
    if percent <= 0.0 {
        return false;
    }
    // FNV-1a over "launch\0key", then SplitMix64 to spread sequential ids.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in launch.bytes().chain(std::iter::once(0)).chain(key.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let bucket = splitmix64(h) % 1_000_000;
    (bucket as f64) < percent * 10_000.0
}

/// A token bucket holding up to one second of `rate`.
struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        Self {
            rate: rate as f64,
            tokens: rate as f64,
            last: Instant::now(),
        }
    }

    fn try_take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Primary responses to recent identical requests (method, URI, body), for
/// learning noise without a secondary: a field that differs between two
/// primary answers to the same request varies by itself.
#[derive(Default)]
struct RepeatCache {
    map: HashMap<u64, Observation>,
    order: VecDeque<u64>,
}

impl RepeatCache {
    fn swap(&mut self, key: u64, obs: Observation) -> Option<Observation> {
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

    fn skip(&self, r: SkipReason) {
        if let Some(i) = SKIPS.iter().position(|s| *s == r) {
            self.skips[i].fetch_add(1, Ordering::Relaxed);
            self.skip_metrics[i].increment(1);
        }
        self.mark_dirty();
    }

    fn drop_shadow(&self, r: DropReason) {
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

    fn summary(&self) -> LaunchSummary {
        let snap = self.snapshot();
        let a = self.scorer.assess(&snap);
        LaunchSummary {
            name: self.cfg.name.clone(),
            state: self.state(),
            routes: self.cfg.routes.clone(),
            candidate: self.cfg.candidate.clone(),
            samples: snap.endpoints.values().map(|e| e.attempts).sum(),
            score: a.score,
            verdict: a.verdict,
        }
    }

    pub(crate) fn report(&self, now: DateTime<Utc>) -> Report {
        let snap = self.snapshot();
        Report::build(&self.cfg, self.state(), &snap, &self.scorer, now)
    }

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

async fn dispatch(core: Arc<Core>, mut rx: mpsc::Receiver<LiveJob>) {
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

/// The client's request headers as the example and the recording show them.
pub(crate) enum OriginalHeaders {
    /// As received; redacted only when shown (most samples never are).
    Raw(HeaderMap),
    /// Already redacted (a replayed recording).
    Redacted(BTreeMap<String, String>),
}

impl OriginalHeaders {
    pub(crate) fn redacted(&self, strip: &[String]) -> BTreeMap<String, String> {
        match self {
            Self::Raw(h) => redacted_headers(h, strip),
            Self::Redacted(m) => m.clone(),
        }
    }
}

// === impl MirrorPlan ===

/// A decision to mirror one request, made by [`MirrorEngine::plan`].
pub struct MirrorPlan {
    core: Arc<Core>,
    tx: mpsc::Sender<LiveJob>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    route: usize,
    request_id: String,
}

impl std::fmt::Debug for MirrorPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorPlan")
            .field("launch", &self.core.cfg.name)
            .field("uri", &self.uri)
            .field("request_id", &self.request_id)
            .finish()
    }
}

impl MirrorPlan {
    /// The launch this plan belongs to.
    pub fn launch(&self) -> &str {
        &self.core.cfg.name
    }

    /// The body cap the proxy should tee request and response bodies up to.
    pub fn max_body_bytes(&self) -> usize {
        self.core.cfg.max_body_bytes
    }

    /// The headers the shadow copy will carry (stripped, replaced, marked).
    pub fn shadow_headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Hands the request to the workers once the primary response is
    /// complete. Never blocks or awaits: when the queue is full the shadow
    /// is dropped and counted.
    pub fn submit(self, request_body: Bytes, primary: Observation) -> Result<(), MirrorOutcome> {
        let core = self.core;
        if request_body.len() > core.cfg.max_body_bytes {
            core.skip(SkipReason::BodyTooLarge);
            return Err(MirrorOutcome::Skipped(SkipReason::BodyTooLarge));
        }
        let job = LiveJob {
            method: self.method,
            uri: self.uri,
            headers: self.headers,
            body: request_body,
            primary,
            route: self.route,
            request_id: self.request_id,
        };
        core.in_flight.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                core.in_flight.fetch_sub(1, Ordering::AcqRel);
                let r = match e {
                    mpsc::error::TrySendError::Full(_) => DropReason::QueueFull,
                    mpsc::error::TrySendError::Closed(_) => DropReason::Shutdown,
                };
                core.drop_shadow(r);
                Err(MirrorOutcome::Dropped(r))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn sampling_is_deterministic_and_proportional() {
        let n = 10_000;
        for pct in [1.0, 10.0, 50.0] {
            let hits = (0..n)
                .filter(|i| sampled("rates-v2", &format!("req-{i:08}"), pct))
                .count() as f64;
            let expect = n as f64 * pct / 100.0;
            // Within 4 standard deviations of a binomial(n, p).
            let sd = (n as f64 * pct / 100.0 * (1.0 - pct / 100.0)).sqrt();
            assert!(
                (hits - expect).abs() <= 4.0 * sd,
                "{pct}%: {hits} vs {expect}"
            );
        }
        assert_eq!(sampled("a", "x", 37.0), sampled("a", "x", 37.0));
        assert!(sampled("a", "x", 100.0));
        assert!(!sampled("a", "x", 0.0));
    }

    #[test]
    fn token_bucket_caps_rate() {
        let mut b = TokenBucket::new(5);
        let now = b.last;
        let got = (0..20).filter(|_| b.try_take(now)).count();
        assert_eq!(got, 5);
        let later = now + Duration::from_millis(400);
        let got = (0..20).filter(|_| b.try_take(later)).count();
        assert_eq!(got, 2);
    }
}
