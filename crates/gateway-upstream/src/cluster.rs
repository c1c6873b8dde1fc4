//! A cluster at runtime, and [`Cluster::send`]: the one call the proxy's
//! upstream stage makes.
//!
//! `send` runs, in order: circuit breaker admission → concurrency slot
//! (`max_concurrent`, queueing up to `max_pending`) → request body
//! preparation (small bodies with a known length are buffered so the request
//! can be replayed) → pick a target → send over the target's pool → classify
//! the outcome (passive ejection, breaker, metrics) → maybe retry on another
//! target, within `attempts`, the retry budget and the deadline. The
//! response body streams straight from the target's connection; the
//! concurrency slot and the target's in-flight count are held until it ends.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use gateway_core::body::{boxed, empty, full, read_capped, Capped};
use gateway_core::{Body, ConfigIssue};
use http::{header, Method, Request, Response, Version};
use http_body::{Body as _, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::breaker::{Admission, Breaker, CircuitState};
use crate::config::{ClusterConfig, HashOn, TargetSpec};
use crate::error::{UpstreamError, UpstreamErrorKind};
use crate::members::Members;
use crate::observe::{Attempt, AttemptObserver, AttemptOutcome};
use crate::retry::{backoff, RetryBudget};
use crate::target::{Target, TargetStatus};
use crate::{discovery, health, metrics};

/// Per-request instructions from the proxy.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Time allowed until response headers arrive, across all attempts
    /// (including waiting for a concurrency slot and backoff). `None`: no limit.
    pub timeout: Option<Duration>,
    /// Key for consistent hashing. When `None` the cluster derives it from
    /// the request per its `hash_on` (header value or path); when that is
    /// missing too, the request is balanced round robin.
    pub hash_key: Option<Bytes>,
    /// Whether the request may be sent more than once (retried after a
    /// reset or a 502/503/504). Requests whose connection failed before
    /// anything was sent are retried regardless, if their body is replayable.
    pub idempotent: bool,
    /// Keep the client's `Host` header (default). When false, `Host` is set
    /// to the target's `host:port`.
    pub preserve_host: bool,
    /// Told about every attempt (tracing); `None` for most requests.
    pub observer: Option<Arc<dyn AttemptObserver>>,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            timeout: None,
            hash_key: None,
            idempotent: false,
            preserve_host: true,
            observer: None,
        }
    }
}

impl SendOptions {
    /// Options for a request with `method`: idempotent per RFC 9110
    /// (GET, HEAD, OPTIONS, PUT, DELETE, TRACE), no timeout, `Host` kept.
    pub fn for_method(method: &Method) -> Self {
        Self {
            idempotent: is_idempotent(method),
            ..Self::default()
        }
    }

    /// Sets the time-to-response-headers limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the consistent hashing key.
    pub fn with_hash_key(mut self, key: impl Into<Bytes>) -> Self {
        self.hash_key = Some(key.into());
        self
    }
}

/// Whether `method` is idempotent (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// A snapshot of a cluster for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterStatus {
    /// Cluster name.
    pub name: String,
    /// Circuit breaker state.
    pub circuit: CircuitState,
    /// Requests holding a concurrency slot.
    pub in_flight: usize,
    /// Every current target, in config order (or DNS answer order).
    pub targets: Vec<TargetStatus>,
}

/// One upstream cluster: targets, balancer, limits, breaker, retry budget.
#[derive(Debug)]
pub struct Cluster {
    name: Arc<str>,
    config: ClusterConfig,
    /// The current targets; replaced whole when DNS discovery changes
    /// them. A request keeps the snapshot it started with.
    members: Arc<ArcSwap<Members>>,
    breaker: Arc<Breaker>,
    budget: RetryBudget,
    slots: Arc<Semaphore>,
    pending: AtomicUsize,
    cancel: CancellationToken,
    handles: metrics::ClusterHandles,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Cluster {
    /// Builds a cluster, reusing targets (pool and health state) from
    /// `previous` whose address and client settings are unchanged. Reads
    /// TLS files; starts nothing (see [`Self::start`]).
    pub(crate) fn build(
        name: &str,
        config: ClusterConfig,
        previous: Option<&Cluster>,
    ) -> Result<Self, Vec<ConfigIssue>> {
        config.validate()?;
        let mut issues = Vec::new();
        let mut targets = Vec::with_capacity(config.targets.len());
        let mut weights = Vec::with_capacity(config.targets.len());
        for (i, t) in config.targets.iter().enumerate() {
            let addr = match TargetSpec::parse(&t.address) {
                Ok(TargetSpec::Addr(a)) => a,
                // Its instances join with the first refresh (`discovery`).
                Ok(TargetSpec::Srv(_)) => continue,
                Err(message) => {
                    issues.push(ConfigIssue {
                        path: format!("targets[{i}]"),
                        message,
                    });
                    continue;
                }
            };
            let key = Target::key_for(&addr, &config);
            let reused = previous.and_then(|p| {
                p.members
                    .load()
                    .targets
                    .iter()
                    .find(|t| t.key() == key)
                    .cloned()
            });
            match reused {
                Some(t) => targets.push(t),
                None => match Target::build(Arc::from(name), addr, &config) {
                    Ok(t) => targets.push(Arc::new(t)),
                    Err(issue) => issues.push(issue),
                },
            }
            weights.push(t.weight);
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        // A reload keeps what discovery found rather than going back to
        // the names until the first refresh.
        if let Some((t, w)) =
            previous.and_then(|p| discovery::carried_over(&config, &p.config, &p.members.load()))
        {
            targets = t;
            weights = w;
        }
        let cluster = Self {
            name: Arc::from(name),
            members: Arc::new(ArcSwap::from_pointee(Members::new(
                &config, targets, weights,
            ))),
            breaker: Arc::new(Breaker::new(&config.circuit_breaker)),
            budget: RetryBudget::new(&config.retry),
            slots: Arc::new(Semaphore::new(config.circuit_breaker.max_concurrent)),
            pending: AtomicUsize::new(0),
            cancel: CancellationToken::new(),
            handles: Default::default(),
            config,
        };
        Ok(cluster)
    }

    /// Starts what a serving cluster runs in the background (active health
    /// checks) and publishes its initial state to metrics. Building has no
    /// side effects, so a config can be checked or built and thrown away;
    /// only the registry's commit starts a cluster. Inside a Tokio runtime.
    pub(crate) fn start(&self) {
        let now = Instant::now();
        let mut checks = HashMap::new();
        for t in &self.members.load().targets {
            metrics::healthy(&self.name, &t.display, t.is_available(now));
            // One token per target, so discovery can stop the checks of a
            // target that left without stopping the others.
            let token = self.cancel.child_token();
            if let Some(hc) = &self.config.health_check {
                health::spawn(self.name.clone(), t.clone(), hc.clone(), token.clone());
            }
            checks.insert(t.key().to_string(), token);
        }
        metrics::circuit(&self.name, CircuitState::Closed);
        if discovery::enabled(&self.config) {
            discovery::spawn(
                self.name.clone(),
                self.config.clone(),
                self.members.clone(),
                checks,
                self.cancel.clone(),
            );
        }
    }

    /// Stops background tasks (health checks). In-flight requests finish.
    pub(crate) fn stop(&self) {
        self.cancel.cancel();
    }

    /// The cluster name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The config the cluster was built from.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The circuit breaker's current state.
    pub fn circuit_state(&self) -> CircuitState {
        self.breaker.state(Instant::now())
    }

    /// Health of every current target, in config order (under DNS
    /// discovery, in the order of the last answer); for the admin API.
    pub fn targets_status(&self) -> Vec<TargetStatus> {
        let now = Instant::now();
        let m = self.members.load();
        m.targets
            .iter()
            .zip(&m.weights)
            .map(|(t, w)| t.status(*w, now))
            .collect()
    }

    /// Everything the admin API shows about the cluster.
    pub fn status(&self) -> ClusterStatus {
        ClusterStatus {
            name: self.name.to_string(),
            circuit: self.circuit_state(),
            in_flight: self.in_flight(),
            targets: self.targets_status(),
        }
    }

    /// Requests currently holding a concurrency slot.
    pub fn in_flight(&self) -> usize {
        self.config.circuit_breaker.max_concurrent - self.slots.available_permits()
    }

    /// Sends `req` to one of the cluster's targets and returns the
    /// response with its body streaming from the target.
    ///
    /// `req` must be ready to forward: URI in origin-form (path and query;
    /// any scheme/authority is replaced by the chosen target's), hop-by-hop
    /// headers removed, forwarding headers added. Responses with any status
    /// are `Ok`; `Err` means no usable response (see [`UpstreamErrorKind`]).
    pub async fn send(
        &self,
        req: Request<Body>,
        opts: SendOptions,
    ) -> Result<Response<Body>, UpstreamError> {
        let started = Instant::now();
        let result = self.send_inner(req, &opts, started).await;
        self.handles.duration(&self.name, started.elapsed());
        if let Err(e) = &result {
            if e.target().is_none() {
                metrics::attempt(&self.name, "none", e.as_str());
            }
            tracing::debug!(cluster = %self.name, code = e.as_str(), error = %e, "upstream request failed");
        }
        result
    }

    async fn send_inner(
        &self,
        req: Request<Body>,
        opts: &SendOptions,
        started: Instant,
    ) -> Result<Response<Body>, UpstreamError> {
        let deadline = opts.timeout.map(|t| started + t);
        let mut admission = self.breaker.admit(started).map_err(|()| {
            self.error(
                UpstreamErrorKind::CircuitOpen,
                format!(
                    "upstream `{}` is failing; its circuit breaker is open and rejects requests for up to {}",
                    self.name,
                    humantime::format_duration(self.config.circuit_breaker.open_for)
                ),
            )
        })?;
        // The waits below (a queued slot, a body to buffer, a retry's
        // backoff) are boxed and only entered when needed: inline, their
        // states would make every request's future larger, and a future is
        // moved and dropped whole.
        let mut waited = false;
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                waited = true;
                Box::pin(self.acquire_slot(deadline)).await?
            }
        };

        let (mut parts, body) = req.into_parts();
        let mut payload = if body.is_end_stream() {
            Payload::Replayable(Bytes::new())
        } else {
            waited = true;
            Box::pin(self.prepare_body(body, deadline)).await?
        };
        let key = self.hash_key(&parts, opts);
        let members = self.members.load_full();
        let m = &*members;
        // Without a wait, the instant the exchange started is still `now`
        // for the first pick: a clock read costs more than what passed.
        let now = if waited { Instant::now() } else { started };
        self.budget.deposit(now);

        // The request is readied for each attempt in place: its `Host`
        // (the client's, kept only with `preserve_host`) and what the
        // observer adds. The native client encodes it from here, so
        // retries cost no copy of the headers. Its version is HTTP/1.1:
        // hyper's pooled client picks HTTP/1.1 or HTTP/2 per connection,
        // and an HTTP/2 version left over from the client side would be
        // refused on an HTTP/1.1 connection.
        parts.version = Version::HTTP_11;
        let keep_host = opts.preserve_host && parts.headers.contains_key(header::HOST);
        let mut tried = Tried::default();
        let mut next = self
            .pick(m, key.as_deref(), tried.as_slice(), now)
            .ok_or_else(|| self.no_healthy(m))?;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let target = &m.targets[next];
            tried.push(next);
            let can_try_again = attempt < self.config.retry.attempts && payload.replayable();
            let body = payload.take().unwrap_or_else(empty);
            if !keep_host {
                parts.headers.insert(header::HOST, target.host.clone());
            }
            if let Some(observer) = &opts.observer {
                observer.started(
                    &Attempt {
                        number: attempt,
                        cluster: &self.name,
                        target: &target.display,
                        host: target.authority.host(),
                        port: target.authority.port_u16().unwrap_or(0),
                    },
                    &mut parts.headers,
                );
            }
            let guard = InFlightGuard::new(target.clone());

            let sent = target.send(&mut parts, body, !can_try_again);
            let outcome = match deadline {
                Some(d) => match tokio::time::timeout_at(d, sent).await {
                    Ok(r) => r,
                    Err(_) => Err(self.timeout_error(target, opts)),
                },
                None => sent.await,
            };
            let now = Instant::now();
            if let Some(observer) = &opts.observer {
                observer.ended(match &outcome {
                    Ok(res) => AttemptOutcome::Answered(res.status()),
                    Err(e) => AttemptOutcome::Failed(e),
                });
            }

            match outcome {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let failed = matches!(status, 502..=504);
                    if failed {
                        self.on_failure(
                            m,
                            next,
                            &format!("responded {status}"),
                            &mut admission,
                            now,
                        );
                        metrics::attempt(&self.name, &target.display, "failure_status");
                        if can_try_again
                            && opts.idempotent
                            && self.config.retry.retries_status(status)
                        {
                            if let Some(n) = Box::pin(self.plan_retry(
                                m,
                                key.as_deref(),
                                tried.as_slice(),
                                attempt,
                                deadline,
                            ))
                            .await
                            {
                                drop(res);
                                drop(guard);
                                next = n;
                                continue;
                            }
                        }
                    } else {
                        self.on_success(m, next, &mut admission, now);
                        target.metrics.success(&self.name, &target.display);
                    }
                    return Ok(res.map(|inner| {
                        boxed(GuardedBody {
                            inner,
                            held: Some((guard, permit)),
                        })
                    }));
                }
                Err(err) => {
                    drop(guard);
                    metrics::attempt(&self.name, &target.display, err.as_str());
                    if err.kind().is_target_failure() {
                        self.on_failure(m, next, err.detail(), &mut admission, now);
                    }
                    let retryable = match err.kind() {
                        k if k.before_send() => true,
                        UpstreamErrorKind::Reset | UpstreamErrorKind::Protocol => opts.idempotent,
                        _ => false,
                    };
                    if retryable && can_try_again {
                        if let Some(n) = Box::pin(self.plan_retry(
                            m,
                            key.as_deref(),
                            tried.as_slice(),
                            attempt,
                            deadline,
                        ))
                        .await
                        {
                            next = n;
                            continue;
                        }
                    }
                    return Err(err);
                }
            }
        }
    }

    /// Decides whether a retry happens and where; sleeps the backoff.
    /// `None`: give up and return the last outcome.
    async fn plan_retry(
        &self,
        m: &Members,
        key: Option<&[u8]>,
        tried: &[usize],
        attempt: u32,
        deadline: Option<Instant>,
    ) -> Option<usize> {
        let pause = backoff(&self.config.retry, attempt);
        if deadline.is_some_and(|d| Instant::now() + pause >= d) {
            return None;
        }
        // The failure just recorded may have opened the circuit: a retry
        // now would be exactly the traffic the breaker is there to stop.
        if self.breaker.state(Instant::now()) == CircuitState::Open {
            return None;
        }
        let next = self.pick(m, key, tried, Instant::now())?;
        if !self.budget.try_withdraw(Instant::now()) {
            metrics::budget_exhausted(&self.name);
            return None;
        }
        metrics::retry(&self.name);
        tokio::time::sleep(pause).await;
        // Health may have changed during the pause; re-pick if needed.
        let now = Instant::now();
        if m.targets[next].is_available(now) {
            Some(next)
        } else {
            self.pick(m, key, tried, now)
        }
    }

    /// Picks a target, preferring ones this request has not tried:
    ///
    /// 1. an ejected target whose trial is due (see
    ///    [`crate::config::PassiveConfig::trial_interval`]), so it can come
    ///    back as soon as it answers;
    /// 2. below the panic threshold (too few targets available), any
    ///    target, as if all were healthy;
    /// 3. otherwise an available one.
    fn pick(
        &self,
        m: &Members,
        key: Option<&[u8]>,
        tried: &[usize],
        now: Instant,
    ) -> Option<usize> {
        if self.config.passive.consecutive_failures > 0 {
            let interval = self.config.passive.trial_interval;
            if let Some(i) = (0..m.targets.len())
                .find(|&i| !tried.contains(&i) && m.targets[i].claim_trial(now, interval))
            {
                return Some(i);
            }
        }
        let in_flight = |i: usize| m.targets[i].in_flight();
        let retry = !tried.is_empty();
        if self.in_panic(m, now) {
            metrics::panic(&self.name);
            return m
                .balancer
                .pick(key, &m.weights, retry, in_flight, |i| !tried.contains(&i))
                .or_else(|| m.balancer.pick(key, &m.weights, retry, in_flight, |_| true));
        }
        let fresh = m.balancer.pick(key, &m.weights, retry, in_flight, |i| {
            !tried.contains(&i) && m.targets[i].is_available(now)
        });
        fresh.or_else(|| {
            if tried.is_empty() {
                None
            } else {
                m.balancer.pick(key, &m.weights, retry, in_flight, |i| {
                    m.targets[i].is_available(now)
                })
            }
        })
    }

    /// Whether fewer than `panic_threshold` percent of the targets are
    /// available (Envoy's panic threshold).
    fn in_panic(&self, m: &Members, now: Instant) -> bool {
        let threshold = self.config.panic_threshold as usize;
        if threshold == 0 {
            return false;
        }
        let available = m.targets.iter().filter(|t| t.is_available(now)).count();
        available * 100 < threshold * m.targets.len()
    }

    fn hash_key(&self, parts: &http::request::Parts, opts: &SendOptions) -> Option<Bytes> {
        if let Some(k) = &opts.hash_key {
            return Some(k.clone());
        }
        match &self.config.hash_on {
            Some(HashOn::Header(name)) => parts
                .headers
                .get(name)
                .map(|v| Bytes::copy_from_slice(v.as_bytes())),
            Some(HashOn::Path) => Some(Bytes::copy_from_slice(parts.uri.path().as_bytes())),
            None => None,
        }
    }

    async fn acquire_slot(
        &self,
        deadline: Option<Instant>,
    ) -> Result<OwnedSemaphorePermit, UpstreamError> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        let max_pending = self.config.circuit_breaker.max_pending;
        let max_concurrent = self.config.circuit_breaker.max_concurrent;
        let overloaded = |why: String| self.error(UpstreamErrorKind::Overloaded, why);
        if self.pending.fetch_add(1, Ordering::AcqRel) >= max_pending {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(overloaded(format!(
                "upstream `{}` is at its limit of {max_concurrent} concurrent requests with {max_pending} queued",
                self.name
            )));
        }
        let _pending = PendingGuard::new(self);
        let acquire = self.slots.clone().acquire_owned();
        let permit = match deadline {
            Some(d) => tokio::time::timeout_at(d, acquire).await.map_err(|_| {
                overloaded(format!(
                    "upstream `{}` stayed at its limit of {max_concurrent} concurrent requests for the whole request timeout",
                    self.name
                ))
            })?,
            None => acquire.await,
        };
        permit.map_err(|_| overloaded(format!("upstream `{}` is shutting down", self.name)))
    }

    async fn prepare_body(
        &self,
        body: Body,
        deadline: Option<Instant>,
    ) -> Result<Payload, UpstreamError> {
        if body.is_end_stream() {
            return Ok(Payload::Replayable(Bytes::new()));
        }
        let limit = self.config.retry.max_replay_body_bytes;
        match body.size_hint().exact() {
            Some(n) if n <= limit as u64 => {
                // `ClientBody` gives the error a concrete type; see its docs.
                let mut body = crate::target::ClientBody(body);
                let collect = read_capped(&mut body, limit);
                let collected = match deadline {
                    Some(d) => tokio::time::timeout_at(d, collect).await.map_err(|_| {
                        self.error(
                            UpstreamErrorKind::Timeout,
                            format!(
                                "the request body for upstream `{}` did not arrive within the request timeout",
                                self.name
                            ),
                        )
                    })?,
                    None => collect.await,
                };
                let failed = |e: &dyn std::fmt::Display| {
                    self.error(
                        UpstreamErrorKind::RequestBody,
                        format!(
                            "reading the request body for upstream `{}` failed: {e}",
                            self.name
                        ),
                    )
                };
                let bytes = match collected.map_err(|e| failed(&e))? {
                    Capped::Complete(bytes) => bytes,
                    // The body is longer than it declared.
                    Capped::TooLarge => return Err(failed(&"length limit exceeded")),
                };
                Ok(Payload::Replayable(bytes))
            }
            _ => Ok(Payload::Streaming(Some(body))),
        }
    }

    fn on_success(&self, m: &Members, idx: usize, admission: &mut Admission, now: Instant) {
        let target = &m.targets[idx];
        if target.record_success() {
            metrics::healthy(&self.name, &target.display, true);
            tracing::info!(cluster = %self.name, target = %target.display, "ejected upstream target answered; back in rotation");
        }
        if let Some(state) = self.breaker.record(true, admission, now) {
            self.circuit_changed(state);
        }
    }

    fn on_failure(
        &self,
        m: &Members,
        idx: usize,
        why: &str,
        admission: &mut Admission,
        now: Instant,
    ) {
        let target = &m.targets[idx];
        let failures = target.record_failure(why);
        let passive = &self.config.passive;
        if passive.consecutive_failures > 0
            && failures >= passive.consecutive_failures
            && !target.is_ejected(now)
        {
            let ejected = m.targets.iter().filter(|t| t.is_ejected(now)).count();
            // One target may always be ejected, whatever the percentage.
            let max = (m.targets.len() * passive.max_ejection_percent as usize / 100).max(1);
            if ejected < max {
                let for_ = target.eject(passive.base_ejection_time, passive.trial_interval, now);
                metrics::ejected(&self.name, &target.display);
                metrics::healthy(&self.name, &target.display, false);
                tracing::warn!(
                    cluster = %self.name,
                    target = %target.display,
                    failures,
                    ejected_for = %humantime::format_duration(for_),
                    reason = why,
                    "upstream target ejected after consecutive failures"
                );
            }
        }
        if let Some(state) = self.breaker.record(false, admission, now) {
            self.circuit_changed(state);
        }
    }

    fn circuit_changed(&self, state: CircuitState) {
        metrics::circuit(&self.name, state);
        tracing::warn!(cluster = %self.name, state = state.as_str(), "upstream circuit breaker changed state");
    }

    fn error(&self, kind: UpstreamErrorKind, detail: String) -> UpstreamError {
        UpstreamError::new(kind, self.name.as_ref(), None, detail)
    }

    fn no_healthy(&self, m: &Members) -> UpstreamError {
        if m.targets.is_empty() {
            return self.error(
                UpstreamErrorKind::NoHealthyTargets,
                format!(
                    "upstream `{}` has no target yet: its SRV names have not resolved since it started",
                    self.name
                ),
            );
        }
        let now = Instant::now();
        let states: Vec<String> = m
            .targets
            .iter()
            .map(|t| format!("{} {}", t.display, t.state(now).as_str()))
            .collect();
        self.error(
            UpstreamErrorKind::NoHealthyTargets,
            format!(
                "upstream `{}` has no healthy target ({})",
                self.name,
                states.join(", ")
            ),
        )
    }

    fn timeout_error(&self, target: &Target, opts: &SendOptions) -> UpstreamError {
        let limit = opts.timeout.map(humantime::format_duration);
        UpstreamError::new(
            UpstreamErrorKind::Timeout,
            self.name.as_ref(),
            Some(target.display.clone()),
            format!(
                "upstream `{}` target {} sent no response headers within {}",
                self.name,
                target.display,
                limit.map(|l| l.to_string()).unwrap_or_default()
            ),
        )
    }
}

/// The targets one request has tried, in order, without a heap allocation
/// (attempts are at most [`crate::config::MAX_ATTEMPTS`]).
#[derive(Default)]
struct Tried {
    targets: [usize; crate::config::MAX_ATTEMPTS as usize],
    len: usize,
}

impl Tried {
    fn push(&mut self, target: usize) {
        if let Some(slot) = self.targets.get_mut(self.len) {
            *slot = target;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[usize] {
        &self.targets[..self.len]
    }
}

/// The request body for the attempts of one request.
enum Payload {
    /// Held in memory (empty or small with a known length): every attempt
    /// gets a copy.
    Replayable(Bytes),
    /// Streamed from the client: only one attempt can have it.
    Streaming(Option<Body>),
}

impl Payload {
    fn take(&mut self) -> Option<Body> {
        match self {
            Payload::Replayable(b) if b.is_empty() => Some(empty()),
            Payload::Replayable(b) => Some(full(b.clone())),
            Payload::Streaming(b) => b.take(),
        }
    }

    fn replayable(&self) -> bool {
        matches!(self, Payload::Replayable(_))
    }
}

/// Counts a request against its target until the response body is done.
struct InFlightGuard {
    target: Arc<Target>,
}

impl InFlightGuard {
    fn new(target: Arc<Target>) -> Self {
        target.begin();
        Self { target }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.target.end();
    }
}

struct PendingGuard<'a> {
    cluster: &'a Cluster,
}

impl<'a> PendingGuard<'a> {
    fn new(cluster: &'a Cluster) -> Self {
        metrics::pending(&cluster.name, cluster.pending.load(Ordering::Relaxed));
        Self { cluster }
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let n = self
            .cluster
            .pending
            .fetch_sub(1, Ordering::AcqRel)
            .saturating_sub(1);
        metrics::pending(&self.cluster.name, n);
    }
}

/// The target's response body, holding the concurrency slot and the
/// in-flight count until it ends, fails or is dropped.
struct GuardedBody {
    inner: Body,
    held: Option<(InFlightGuard, OwnedSemaphorePermit)>,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = gateway_core::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            // Free the slot as soon as the exchange is over, not when the
            // consumer gets round to dropping the body.
            this.held = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
