//! The hot path into a launch: [`Launch`] is a launch's core plus the
//! sender of its bounded queue; `Launch::plan` decides, with no I/O and no
//! await, whether to mirror a request, and [`MirrorPlan::submit`] hands it
//! to the workers with a `try_send` once the primary response is complete.
//!
//! Architecture invariant: nothing here can block, delay or fail the
//! primary; a full queue drops the shadow and counts it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use gateway_core::Clock;
use http::{header, HeaderMap, Method, Uri};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::ShadowClient;
use crate::compare::Observation;
use crate::config::{LaunchConfig, SampleBy};
use crate::job::LiveJob;
use crate::launch::Core;
use crate::outcome::{DropReason, LaunchOrigin, LaunchState, MirrorOutcome, SkipReason};
use crate::runtime::ShadowRuntime;
use crate::sampling::sampled;
use crate::stats::LaunchStats;
use crate::worker::dispatch;

pub(crate) struct Launch {
    pub(crate) core: Arc<Core>,
    pub(crate) tx: mpsc::Sender<LiveJob>,
}

impl Launch {
    pub(crate) fn spawn(
        cfg: LaunchConfig,
        state: LaunchState,
        origin: LaunchOrigin,
        stats: LaunchStats,
        client: Arc<dyn ShadowClient>,
        clock: Arc<dyn Clock>,
        shadow_runtime: Option<&Arc<ShadowRuntime>>,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel::<LiveJob>(cfg.queue_capacity.max(1));
        let mut core = Core::new(cfg, state, stats, client, clock);
        core.origin = origin;
        core.lag = shadow_runtime.map(|r| r.lag().clone());
        let core = Arc::new(core);
        match shadow_runtime {
            Some(rt) => drop(rt.handle().spawn(dispatch(core.clone(), rx))),
            None => drop(tokio::spawn(dispatch(core.clone(), rx))),
        }
        Arc::new(Self { core, tx })
    }

    pub(crate) fn plan(
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

/// A decision to mirror one request, made by [`MirrorEngine::plan`](crate::MirrorEngine::plan).
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
