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
//! worker slots until its timeout.//!
//! This module is the engine's public face and the launches' lifecycle;
//! the parts it starts live beside it: `plan.rs` (hot path and queue),
//! `worker.rs` (shadow calls and comparison), `launch.rs` (a launch's
//! shared core), `sampling.rs`, `job.rs` and `recorder.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use gateway_core::config_issue::nested;
use gateway_core::errors::{self, ErrorCode};
use gateway_core::{Clock, ConfigIssue, Problem, ToProblem};
use serde::Serialize;
use tokio::sync::Notify;

use crate::client::ShadowClient;
use crate::config::LaunchConfig;
use crate::launch::Core;
use crate::outcome::{LaunchOrigin, LaunchState};
use crate::plan::Launch;
pub use crate::plan::MirrorPlan;
use crate::report::Report;
use crate::runtime::ShadowRuntime;
pub use crate::sampling::sampled;
use crate::stats::LaunchStats;
use crate::store::{ShadowStore, StoreError};

/// Default interval between statistics flushes to the store.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(10);

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

impl ToProblem for EngineError {
    fn code(&self) -> &'static ErrorCode {
        match self {
            Self::NotFound(_) => &errors::SHADOW_NOT_FOUND,
            Self::AlreadyExists(_) => &errors::SHADOW_EXISTS,
            Self::Invalid(_) => &errors::SHADOW_INVALID,
            Self::Conflict { .. } => &errors::SHADOW_STATE_CONFLICT,
            Self::Store(_) => &errors::SHADOW_STORE_UNAVAILABLE,
        }
    }

    /// Store internals are logged, not shown; an invalid launch lists its
    /// `issues`.
    fn to_problem(&self) -> Problem {
        let detail = match self {
            Self::Store(e) => {
                tracing::error!(error = %e, "dark-launch store error");
                "the dark-launch store is unavailable".to_string()
            }
            other => other.to_string(),
        };
        let mut p = Problem::new(self.code(), detail);
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
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
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
        validate_configured(&configured)?;
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
                options.clock.clone(),
                options.shadow_runtime.as_ref(),
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
                options.clock.clone(),
                options.shadow_runtime.as_ref(),
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

    /// Applies a reloaded `[[dark_launches]]` list: a new launch starts, a
    /// changed one is rebuilt with its statistics and state kept (its
    /// `paused` setting wins when that is what changed), one removed from
    /// the config is stopped with its report kept, and launches created from
    /// the admin API are left alone. Nothing changes when the list is
    /// invalid or the store refuses a write before the swap.
    pub async fn reconfigure(&self, configured: Vec<LaunchConfig>) -> Result<(), EngineError> {
        validate_configured(&configured)?;
        let _g = self.admin.lock().await;
        let current = self.launches.load_full();
        let mut next: Vec<Arc<Launch>> = Vec::new();
        let mut saves: Vec<(LaunchConfig, LaunchState, LaunchOrigin)> = Vec::new();
        let mut named = std::collections::HashSet::new();
        for cfg in configured {
            named.insert(cfg.name.clone());
            let (state, stats) = match current.by_name.get(&cfg.name) {
                Some(l) if *l.core.cfg == cfg && l.core.origin == LaunchOrigin::Config => {
                    next.push(l.clone());
                    continue;
                }
                Some(l) => {
                    let state = match l.core.state() {
                        LaunchState::Stopped => LaunchState::Stopped,
                        _ if l.core.cfg.paused != cfg.paused => paused_or_active(cfg.paused),
                        s => s,
                    };
                    (state, l.core.snapshot())
                }
                None => (paused_or_active(cfg.paused), LaunchStats::default()),
            };
            saves.push((cfg.clone(), state, LaunchOrigin::Config));
            let launch = Launch::spawn(
                cfg,
                state,
                LaunchOrigin::Config,
                stats,
                self.client.clone(),
                self.options.clock.clone(),
                self.options.shadow_runtime.as_ref(),
            );
            launch.core.dirty.store(true, Ordering::Release);
            next.push(launch);
        }
        let mut removed = Vec::new();
        for (name, l) in &current.by_name {
            if named.contains(name) {
                continue;
            }
            if l.core.origin == LaunchOrigin::Config && l.core.state() != LaunchState::Stopped {
                saves.push(((*l.core.cfg).clone(), LaunchState::Stopped, l.core.origin));
                removed.push(l.clone());
            }
            next.push(l.clone());
        }
        if let Some(store) = &self.store {
            for (cfg, state, origin) in &saves {
                store.save_launch(cfg, *state, *origin).await?;
            }
        }
        for l in removed {
            l.core
                .state
                .store(LaunchState::Stopped.to_u8(), Ordering::SeqCst);
        }
        self.launches.store(Arc::new(Launches::build(next)));
        Ok(())
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
            self.options.clock.clone(),
            self.options.shadow_runtime.as_ref(),
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

// === impl Core (summaries) ===

impl Core {
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
}

fn paused_or_active(paused: bool) -> LaunchState {
    if paused {
        LaunchState::Paused
    } else {
        LaunchState::Active
    }
}

/// Every launch valid, and no two with one name.
fn validate_configured(configured: &[LaunchConfig]) -> Result<(), EngineError> {
    let mut issues = Vec::new();
    for (i, c) in configured.iter().enumerate() {
        issues.extend(nested(&format!("dark_launches[{i}]"), c.validate()));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, c) in configured.iter().enumerate() {
        if !seen.insert(c.name.clone()) {
            issues.push(ConfigIssue::new(
                format!("dark_launches[{i}].name"),
                format!("duplicate launch name {:?}", c.name),
            ));
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(EngineError::Invalid(issues))
    }
}
