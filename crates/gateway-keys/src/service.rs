//! [`KeyService`]: the facade the gateway, the admin API and the background
//! tasks share.
//!
//! It owns the store, the in-memory keyring, the limits and the change
//! feed. Mutations (create, rotate, revoke) write the store and its audit
//! entry atomically, patch the local keyring at once (so a revocation holds
//! for the very next request on this node) and publish a [`KeyEvent`] for
//! the other nodes. The hot path ([`KeyService::verify`],
//! [`KeyService::check_limits`]) touches memory only; last-used times,
//! quota counts and hot-path audit entries (scope denials, failure bursts,
//! use of a retiring key) are queued and written by [`KeyService::flush`]
//! in batches.
//!
//! Cheap to clone: one `Arc` inside.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use futures::StreamExt;
use gateway_core::config_issue::nested;
use gateway_core::{Clock, Problem};
use http::StatusCode;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{Identity, IdentityKind};
use crate::config::{KeysConfig, PlanConfig, RouteAuthConfig};
use crate::feed::{ChangeFeed, InProcessFeed, KeyEvent};
use crate::key::{ApiKey, ConsumerId, KeyHash, KeyId};
use crate::keyring::{KeyEntry, Keyring, Snapshot, Verified, VerifyFailure};
use crate::model::{
    AuditAction, AuditEntry, Consumer, KeyRecord, KeyStatus, KeyView, NewAuditEntry,
};
use crate::ratelimit::{
    GcraLimiter, LimitSubject, Limited, Limits, QuotaBook, RateLimitInfo, RateLimiter, SharedQuotas,
};
use crate::scope::{Scope, ScopeError};
use crate::store::{AuditQuery, KeyStore, SqlStore, StoreError};

/// Actor recorded for changes made by the gateway itself.
pub const SYSTEM_ACTOR: &str = "system";

/// How often a retiring key's use is written to the audit log, at most.
const GRACE_USE_AUDIT_EVERY: chrono::Duration = chrono::Duration::hours(1);

/// A refused admin operation. Each variant has a stable code and status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No such key.
    #[error("no key with id `{0}`")]
    KeyNotFound(String),
    /// No such consumer.
    #[error("no consumer with id or name `{0}`")]
    ConsumerNotFound(String),
    /// A scope is malformed.
    #[error(transparent)]
    InvalidScope(#[from] ScopeError),
    /// A scope names a route, tag or custom scope that does not exist.
    #[error("unknown scope `{0}`: no such route, tag or declared custom scope")]
    UnknownScope(String),
    /// A plan name is not configured.
    #[error("unknown plan `{0}`")]
    UnknownPlan(String),
    /// A field is invalid.
    #[error("invalid `{field}`: {message}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The requested grace is longer than allowed.
    #[error("grace {requested} is longer than the maximum {max}")]
    GraceTooLong {
        /// Requested, human readable.
        requested: String,
        /// Maximum, human readable.
        max: String,
    },
    /// The grace period would outlive the key's own expiry.
    #[error(
        "grace would end at {grace_until} but the key expires at {expires_at}; use a shorter grace"
    )]
    GraceExceedsExpiry {
        /// End of the requested grace.
        grace_until: DateTime<Utc>,
        /// The key's expiry.
        expires_at: DateTime<Utc>,
    },
    /// The key is not in a state that allows the operation.
    #[error("key `{id}` is {status}")]
    WrongState {
        /// Which key.
        id: KeyId,
        /// Its state.
        status: &'static str,
    },
    /// A consumer with that name exists.
    #[error("a consumer named `{0}` already exists")]
    ConsumerExists(String),
    /// The store failed.
    #[error("key store unavailable: {0}")]
    Store(StoreError),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::Store(e)
    }
}

impl ServiceError {
    /// Stable public code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::KeyNotFound(_) => "key_not_found",
            Self::ConsumerNotFound(_) => "consumer_not_found",
            Self::InvalidScope(_) => "invalid_scope",
            Self::UnknownScope(_) => "unknown_scope",
            Self::UnknownPlan(_) => "unknown_plan",
            Self::InvalidField { .. } => "invalid_request",
            Self::GraceTooLong { .. } => "grace_too_long",
            Self::GraceExceedsExpiry { .. } => "grace_exceeds_expiry",
            Self::WrongState { .. } => "key_state_conflict",
            Self::ConsumerExists(_) => "consumer_exists",
            Self::Store(_) => "key_store_unavailable",
        }
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::KeyNotFound(_) | Self::ConsumerNotFound(_) => StatusCode::NOT_FOUND,
            Self::WrongState { .. } | Self::ConsumerExists(_) => StatusCode::CONFLICT,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The problem+json body. Store internals are logged, not shown.
    pub fn problem(&self) -> Problem {
        let detail = match self {
            Self::Store(e) => {
                tracing::error!(error = %e, "key store failure");
                "the key store is unavailable; try again".to_string()
            }
            other => other.to_string(),
        };
        let mut p = Problem::new(self.status(), self.code(), detail);
        if let Self::InvalidField { field, .. } = self {
            p = p.with("field", *field);
        }
        p
    }
}

/// Create-key request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Consumer id (`con_...`) or name. A name that does not exist yet
    /// creates the consumer (with `plan`).
    pub owner: String,
    /// Label; defaults to `default`.
    #[serde(default)]
    pub name: Option<String>,
    /// Scopes granted.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Lifetime, e.g. `90d`.
    #[serde(default, with = "humantime_serde")]
    pub expires_in: Option<Duration>,
    /// Plan override for this key (or the new consumer's plan).
    #[serde(default)]
    pub plan: Option<String>,
    /// Consumer group, when the consumer is created here.
    #[serde(default)]
    pub group: Option<String>,
    /// Environment segment; defaults to `keys.environment`.
    #[serde(default)]
    pub environment: Option<String>,
}

/// Rotate request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old key keeps working; defaults to `keys.default_grace`.
    #[serde(default, with = "humantime_serde")]
    pub grace: Option<Duration>,
    /// Lifetime of the successor; defaults to the old key's lifetime, or the
    /// rotation policy.
    #[serde(default, with = "humantime_serde")]
    pub expires_in: Option<Duration>,
}

/// Create-consumer request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConsumer {
    /// Unique name.
    pub name: String,
    /// Plan.
    #[serde(default)]
    pub plan: Option<String>,
    /// Group sharing quotas.
    #[serde(default)]
    pub group: Option<String>,
}

/// A new key and its secret, shown exactly once.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// The key's metadata.
    pub key: KeyView,
    /// The secret.
    pub secret: ApiKey,
    /// For rotations: the old key, now retiring.
    pub previous: Option<KeyView>,
}

impl Serialize for IssuedKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            key: &'a KeyView,
            secret: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            previous: &'a Option<KeyView>,
            notice: &'static str,
        }
        Out {
            key: &self.key,
            secret: self.secret.expose_secret(),
            previous: &self.previous,
            notice: "store this secret now: it is shown only once",
        }
        .serialize(s)
    }
}

/// Filter for [`KeyService::list`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFilter {
    /// Consumer id or name.
    #[serde(default)]
    pub consumer: Option<String>,
    /// Only keys in this state.
    #[serde(default)]
    pub status: Option<KeyStatus>,
}

/// Names of what exists, for checking scopes at key creation. Empty sets
/// mean "not known": any well-formed scope of that kind is accepted.
#[derive(Debug, Clone, Default)]
pub struct ScopeCatalog {
    /// Route names.
    pub routes: HashSet<String>,
    /// Route tags.
    pub tags: HashSet<String>,
    /// Custom scopes (from `keys.custom_scopes` and routes' `required_scopes`).
    pub custom: HashSet<String>,
}

impl ScopeCatalog {
    /// Builds a catalog from the configured routes.
    pub fn from_routes<'a>(
        routes: impl IntoIterator<Item = (&'a str, Option<&'a RouteAuthConfig>)>,
    ) -> Self {
        let mut c = ScopeCatalog::default();
        for (name, auth) in routes {
            c.routes.insert(name.to_string());
            if let Some(a) = auth {
                c.tags.extend(a.tags.iter().cloned());
                c.custom.extend(a.required_scopes.iter().cloned());
            }
        }
        c
    }

    fn check(&self, scope: &Scope) -> bool {
        match scope {
            Scope::All | Scope::Method(_) => true,
            Scope::Route(r) => self.routes.is_empty() || self.routes.contains(r),
            Scope::Tag(t) => self.tags.is_empty() || self.tags.contains(t),
            Scope::Custom(c) => self.custom.is_empty() || self.custom.contains(c),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct UseNote {
    at: DateTime<Utc>,
    retiring: bool,
}

struct Inner {
    store: Arc<dyn KeyStore>,
    keyring: Keyring,
    clock: Arc<dyn Clock>,
    config: KeysConfig,
    plans: ArcSwap<BTreeMap<String, PlanConfig>>,
    feed: Arc<dyn ChangeFeed>,
    limits: Limits,
    catalog: ArcSwap<ScopeCatalog>,
    uses: DashMap<KeyId, UseNote>,
    grace_audited: DashMap<KeyId, DateTime<Utc>>,
    audit_queue: Mutex<Vec<NewAuditEntry>>,
    denials_seen: DashMap<(KeyId, String), ()>,
    blocked_ips: DashMap<IpAddr, ()>,
    /// `blocked_ips.len()`, without visiting every shard.
    blocked_count: AtomicUsize,
    http: reqwest::Client,
    background: Mutex<Option<BackgroundTasks>>,
}

/// The key system's facade. See the module docs.
#[derive(Clone)]
pub struct KeyService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService")
            .field("keys", &self.inner.keyring.snapshot().len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`KeyService`].
pub struct KeyServiceBuilder {
    store: Arc<dyn KeyStore>,
    config: KeysConfig,
    plans: BTreeMap<String, PlanConfig>,
    clock: Arc<dyn Clock>,
    feed: Arc<dyn ChangeFeed>,
    limiter: Arc<dyn RateLimiter>,
    shared_quotas: Option<Arc<dyn SharedQuotas>>,
    catalog: ScopeCatalog,
}

impl KeyServiceBuilder {
    /// Global key settings (default: [`KeysConfig::default`]).
    pub fn config(mut self, config: KeysConfig) -> Self {
        self.config = config;
        self
    }

    /// Plans by name.
    pub fn plans(mut self, plans: BTreeMap<String, PlanConfig>) -> Self {
        self.plans = plans;
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The change feed (default: in-process).
    pub fn feed(mut self, feed: Arc<dyn ChangeFeed>) -> Self {
        self.feed = feed;
        self
    }

    /// Fleet-wide quota counters (default: none, quotas count in memory and
    /// the store only).
    pub fn shared_quotas(mut self, shared: Arc<dyn SharedQuotas>) -> Self {
        self.shared_quotas = Some(shared);
        self
    }

    /// The rate limiter (default: in-memory GCRA).
    pub fn limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Known routes, tags and custom scopes.
    pub fn scope_catalog(mut self, catalog: ScopeCatalog) -> Self {
        self.catalog = catalog;
        self
    }

    /// Validates the configuration and loads the keyring from the store.
    pub async fn build(self) -> Result<KeyService, anyhow::Error> {
        let mut issues = self
            .config
            .validate_with_plans(&self.plans)
            .err()
            .unwrap_or_default();
        for (name, plan) in &self.plans {
            issues.extend(nested(&format!("plans.{name}"), plan.validate()));
        }
        if !issues.is_empty() {
            let list: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
            anyhow::bail!("invalid keys configuration: {}", list.join("; "));
        }
        let mut catalog = self.catalog;
        catalog
            .custom
            .extend(self.config.custom_scopes.iter().cloned());
        let mut limits = Limits::new(self.limiter, Arc::new(QuotaBook::new()), self.clock.clone());
        if let Some(shared) = self.shared_quotas {
            limits = limits.with_shared_quotas(shared);
        }
        let svc = KeyService {
            inner: Arc::new(Inner {
                store: self.store,
                keyring: Keyring::new(),
                clock: self.clock,
                config: self.config,
                plans: ArcSwap::from_pointee(self.plans),
                feed: self.feed,
                limits,
                catalog: ArcSwap::from_pointee(catalog),
                uses: DashMap::new(),
                grace_audited: DashMap::new(),
                audit_queue: Mutex::new(Vec::new()),
                denials_seen: DashMap::new(),
                blocked_ips: DashMap::new(),
                blocked_count: AtomicUsize::new(0),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_default(),
                background: Mutex::new(None),
            }),
        };
        svc.reload().await?;
        Ok(svc)
    }
}

impl KeyService {
    /// Starts building a service over `store`.
    pub fn builder(store: Arc<dyn KeyStore>) -> KeyServiceBuilder {
        KeyServiceBuilder {
            store,
            config: KeysConfig::default(),
            plans: BTreeMap::new(),
            clock: gateway_core::clock::system(),
            feed: Arc::new(InProcessFeed::default()),
            limiter: Arc::new(GcraLimiter::new()),
            shared_quotas: None,
            catalog: ScopeCatalog::default(),
        }
    }

    /// Opens the store named by `config.database` (or `default_database`,
    /// the gateway's shared database), builds a service with defaults and
    /// starts its background loop (batched writes, sweeps, reloads, change
    /// feed).
    pub async fn open(
        config: KeysConfig,
        plans: BTreeMap<String, PlanConfig>,
        default_database: &str,
    ) -> Result<KeyService, anyhow::Error> {
        let db = config
            .database
            .clone()
            .unwrap_or_else(|| default_database.to_string());
        let store = SqlStore::connect(&db).await?;
        let svc = KeyService::builder(Arc::new(store))
            .config(config)
            .plans(plans)
            .build()
            .await?;
        svc.start_background();
        Ok(svc)
    }

    /// Starts the background loop (see [`KeyService::spawn_background`])
    /// owned by the service itself, unless it is already running.
    /// [`KeyService::open`] calls this; [`KeyService::stop_background`]
    /// stops it with a final flush.
    pub fn start_background(&self) {
        let mut slot = self.inner.background.lock();
        if slot.is_none() {
            *slot = Some(self.spawn_background());
        }
    }

    /// Stops the loop started by [`KeyService::start_background`], after a
    /// final flush. Does nothing if it is not running.
    pub async fn stop_background(&self) {
        let tasks = self.inner.background.lock().take();
        if let Some(t) = tasks {
            t.shutdown().await;
        }
    }

    /// The global configuration.
    pub fn config(&self) -> &KeysConfig {
        &self.inner.config
    }

    /// The keyring (read-only use).
    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.inner.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Replaces the plans (config reload).
    pub fn set_plans(&self, plans: BTreeMap<String, PlanConfig>) {
        self.inner.plans.store(Arc::new(plans));
    }

    /// Replaces the scope catalog (config reload).
    pub fn set_scope_catalog(&self, mut catalog: ScopeCatalog) {
        catalog
            .custom
            .extend(self.inner.config.custom_scopes.iter().cloned());
        self.inner.catalog.store(Arc::new(catalog));
    }

    // === hot path ===

    /// Verifies a parsed key against the in-memory keyring and notes its
    /// use for the batched last-used update. No I/O.
    pub fn verify(&self, key: &ApiKey) -> Result<Verified, VerifyFailure> {
        self.verify_hash(&key.hash())
    }

    /// [`KeyService::verify`] for a key already checked and hashed.
    pub(crate) fn verify_hash(&self, hash: &KeyHash) -> Result<Verified, VerifyFailure> {
        let now_us = self.now_micros();
        let v = self.inner.keyring.verify_hash_at(hash, now_us)?;
        self.note_use(&v.entry, v.status, now_us);
        Ok(v)
    }

    /// Looks a key hash up at `now_us` (microseconds since the epoch) and
    /// lends the key's entry and state to `f`, without noting the use: for
    /// a caller that may still refuse the request (and otherwise calls
    /// `note_use`).
    pub(crate) fn lend_hash<R>(
        &self,
        hash: &KeyHash,
        now_us: i64,
        f: impl FnOnce(&Arc<KeyEntry>, KeyStatus) -> R,
    ) -> Result<R, VerifyFailure> {
        self.inner.keyring.lend_hash_at(hash, now_us, f)
    }

    /// Records that a verified key was used at `now_us`, for the batched
    /// last-used update. A key in steady use is noted once a second (and
    /// again at once if it starts retiring): the request path then only
    /// reads the entry's stamp, and `last_used_at` is exact to the second.
    pub(crate) fn note_use(&self, entry: &KeyEntry, status: KeyStatus, now_us: i64) {
        let retiring = status == KeyStatus::Retiring;
        let stamp = now_us.div_euclid(1_000_000) * 2 + i64::from(retiring);
        if entry.noted.load(Ordering::Relaxed) == stamp {
            return;
        }
        entry.noted.store(stamp, Ordering::Relaxed);
        let note = UseNote {
            at: DateTime::from_timestamp_micros(now_us).unwrap_or_default(),
            retiring,
        };
        // Update a note not yet flushed in place rather than cloning the id
        // for a fresh insert.
        let id = &entry.record.id;
        if let Some(mut slot) = self.inner.uses.get_mut(id) {
            *slot = note;
        } else {
            self.inner.uses.insert(id.clone(), note);
        }
    }

    /// The service's clock, in microseconds since the epoch (for callers
    /// that note uses).
    pub(crate) fn now_micros(&self) -> i64 {
        self.inner.clock.now_micros()
    }

    /// Whether [`Self::check_limits`] has anything to check for `identity`
    /// (a consumer whose plan, or the default plan, is configured): lets
    /// the request path skip building its future otherwise.
    pub fn has_limits(&self, identity: &Identity) -> bool {
        identity.consumer_id.is_some()
            && identity
                .plan
                .as_deref()
                .or(self.inner.config.default_plan.as_deref())
                .is_some_and(|p| self.inner.plans.load().contains_key(p))
    }

    /// Checks the identity's plan limits (rate, then quotas). Anonymous
    /// identities and identities without a plan pass with no headers.
    pub async fn check_limits(&self, identity: &Identity) -> Result<RateLimitInfo, Limited> {
        let Some(consumer) = identity.consumer_id.as_deref() else {
            return Ok(RateLimitInfo::default());
        };
        let plans = self.inner.plans.load();
        let plan_name = identity
            .plan
            .as_deref()
            .or(self.inner.config.default_plan.as_deref());
        let Some(plan) = plan_name.and_then(|p| plans.get(p)) else {
            return Ok(RateLimitInfo::default());
        };
        let prefix = match identity.kind {
            IdentityKind::Jwt => "jwt",
            _ => "consumer",
        };
        let rate_key = format!("{prefix}:{consumer}");
        let quota_key = match (&identity.group, plan.shared_by_group) {
            (Some(g), true) => format!("group:{g}"),
            _ => rate_key.clone(),
        };
        let subject = LimitSubject {
            rate_key,
            quota_key,
        };
        self.inner.limits.check(&subject, plan).await
    }

    /// Queues an audit entry written by the next flush (for hot-path events).
    pub(crate) fn queue_audit(&self, entry: NewAuditEntry) {
        let mut q = self.inner.audit_queue.lock();
        // Bound the queue: a flood of denials must not grow memory forever.
        if q.len() < 10_000 {
            q.push(entry);
        }
    }

    /// Records a scope denial (once per key and route between flushes).
    pub(crate) fn note_scope_denial(
        &self,
        key: &KeyId,
        consumer: &ConsumerId,
        route: &str,
        reason: &str,
    ) {
        if self
            .inner
            .denials_seen
            .insert((key.clone(), route.to_string()), ())
            .is_none()
        {
            self.queue_audit(NewAuditEntry {
                at: self.inner.clock.now(),
                actor: SYSTEM_ACTOR.into(),
                action: AuditAction::ScopeDenied,
                key_id: Some(key.clone()),
                consumer_id: Some(consumer.clone()),
                detail: json!({ "route": route, "reason": reason }),
            });
        }
    }

    /// Whether `ip`'s last failed verification on this node left it over
    /// the failure limit (and no request since found it under).
    pub(crate) fn ip_was_blocked(&self, ip: IpAddr) -> bool {
        // The count spares the common case (nobody blocked) a hashed lookup.
        self.inner.blocked_count.load(Ordering::Relaxed) > 0
            && self.inner.blocked_ips.contains_key(&ip)
    }

    /// Records that `ip` tripped (`blocked`) or cleared the failure limit;
    /// a burst is audited once, when it starts.
    pub(crate) fn note_ip_blocked(&self, ip: IpAddr, blocked: bool) {
        if !blocked {
            if self.inner.blocked_ips.remove(&ip).is_some() {
                self.inner.blocked_count.fetch_sub(1, Ordering::Relaxed);
            }
            return;
        }
        if self.inner.blocked_ips.insert(ip, ()).is_none() {
            self.inner.blocked_count.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client_ip = %ip, "burst of failed key verifications; address limited");
            self.queue_audit(NewAuditEntry {
                at: self.inner.clock.now(),
                actor: ip.to_string(),
                action: AuditAction::FailureBurst,
                key_id: None,
                consumer_id: None,
                detail: json!({ "client_ip": ip.to_string() }),
            });
        }
    }

    // === admin operations ===

    fn parse_scopes(&self, scopes: &[String]) -> Result<Vec<Scope>, ServiceError> {
        let catalog = self.inner.catalog.load();
        let mut out = Vec::with_capacity(scopes.len());
        for s in scopes {
            let scope: Scope = s.parse()?;
            if !catalog.check(&scope) {
                return Err(ServiceError::UnknownScope(s.clone()));
            }
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        Ok(out)
    }

    fn check_plan(&self, plan: &Option<String>) -> Result<(), ServiceError> {
        if let Some(p) = plan {
            if !self.inner.plans.load().contains_key(p) {
                return Err(ServiceError::UnknownPlan(p.clone()));
            }
        }
        Ok(())
    }

    fn expiry_after(
        &self,
        now: DateTime<Utc>,
        d: Duration,
        field: &'static str,
    ) -> Result<DateTime<Utc>, ServiceError> {
        if d.is_zero() {
            return Err(ServiceError::InvalidField {
                field,
                message: "must be greater than zero".into(),
            });
        }
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(|| ServiceError::InvalidField {
                field,
                message: "is too far in the future".into(),
            })
    }

    /// Resolves a consumer by id or name.
    pub async fn consumer(&self, id_or_name: &str) -> Result<Consumer, ServiceError> {
        let found = match id_or_name.parse::<ConsumerId>() {
            Ok(id) => self.inner.store.get_consumer(&id).await?,
            Err(_) => self.inner.store.find_consumer_by_name(id_or_name).await?,
        };
        found.ok_or_else(|| ServiceError::ConsumerNotFound(id_or_name.to_string()))
    }

    /// Lists consumers.
    pub async fn consumers(&self) -> Result<Vec<Consumer>, ServiceError> {
        Ok(self.inner.store.list_consumers().await?)
    }

    /// Creates a consumer.
    pub async fn create_consumer(
        &self,
        req: CreateConsumer,
        actor: &str,
    ) -> Result<Consumer, ServiceError> {
        let name = req.name.trim();
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(ServiceError::InvalidField {
                field: "name",
                message: "a consumer name is 1-200 printable characters".into(),
            });
        }
        if name.parse::<ConsumerId>().is_ok() {
            return Err(ServiceError::InvalidField {
                field: "name",
                message: "a consumer name must not look like a consumer id".into(),
            });
        }
        self.check_plan(&req.plan)?;
        let c = Consumer {
            id: ConsumerId::generate(),
            name: name.to_string(),
            plan: req.plan,
            group: req.group.filter(|g| !g.is_empty()),
            created_at: self.inner.clock.now(),
        };
        let audit = NewAuditEntry {
            at: c.created_at,
            actor: actor.to_string(),
            action: AuditAction::ConsumerCreated,
            key_id: None,
            consumer_id: Some(c.id.clone()),
            detail: json!({ "name": c.name, "plan": c.plan, "group": c.group }),
        };
        self.inner
            .store
            .insert_consumer(&c, &audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ServiceError::ConsumerExists(c.name.clone()),
                e => e.into(),
            })?;
        self.inner.keyring.upsert_consumer(c.clone());
        self.publish(KeyEvent::ConsumerChanged { id: c.id.clone() })
            .await;
        tracing::info!(consumer_id = %c.id, consumer = %c.name, actor, "consumer created");
        Ok(c)
    }

    /// Creates a key; the secret is in the result and nowhere else.
    pub async fn create(&self, req: CreateKey, actor: &str) -> Result<IssuedKey, ServiceError> {
        let now = self.inner.clock.now();
        let scopes = self.parse_scopes(&req.scopes)?;
        self.check_plan(&req.plan)?;
        let environment = req
            .environment
            .clone()
            .unwrap_or_else(|| self.inner.config.environment.clone());
        let secret = ApiKey::generate(&environment).map_err(|_| ServiceError::InvalidField {
            field: "environment",
            message: format!("`{environment}` is not 1-16 characters of a-z and 0-9"),
        })?;
        let expires_at = match req.expires_in.or(self.inner.config.rotation.rotate_every) {
            Some(d) => Some(self.expiry_after(now, d, "expires_in")?),
            None => None,
        };
        let name = req.name.clone().unwrap_or_else(|| "default".into());
        if name.len() > 200 || name.chars().any(char::is_control) {
            return Err(ServiceError::InvalidField {
                field: "name",
                message: "a key name is at most 200 printable characters".into(),
            });
        }
        if req.owner.trim().is_empty() {
            return Err(ServiceError::InvalidField {
                field: "owner",
                message: "name the consumer (id or name) that owns the key".into(),
            });
        }
        let consumer = match self.consumer(req.owner.trim()).await {
            Ok(c) => c,
            Err(ServiceError::ConsumerNotFound(_)) if req.owner.parse::<ConsumerId>().is_err() => {
                self.create_consumer(
                    CreateConsumer {
                        name: req.owner.clone(),
                        plan: req.plan.clone(),
                        group: req.group.clone(),
                    },
                    actor,
                )
                .await?
            }
            Err(e) => return Err(e),
        };
        let record = KeyRecord {
            id: KeyId::generate(),
            consumer_id: consumer.id.clone(),
            name,
            environment,
            scopes,
            plan: req.plan.filter(|p| consumer.plan.as_ref() != Some(p)),
            created_at: now,
            created_by: actor.to_string(),
            expires_at,
            revoked_at: None,
            revoked_reason: None,
            last_used_at: None,
            predecessor: None,
            successor: None,
            grace_until: None,
            warned_at: None,
            expiry_noted_at: None,
            hash: secret.hash(),
        };
        let audit = NewAuditEntry {
            at: now,
            actor: actor.to_string(),
            action: AuditAction::KeyCreated,
            key_id: Some(record.id.clone()),
            consumer_id: Some(consumer.id.clone()),
            detail: json!({
                "name": record.name,
                "scopes": record.scopes,
                "expires_at": record.expires_at,
                "plan": record.plan,
            }),
        };
        self.inner.store.insert_key(&record, &audit).await?;
        self.inner.keyring.upsert_key(record.clone());
        self.publish(KeyEvent::KeyChanged {
            id: record.id.clone(),
        })
        .await;
        tracing::info!(key_id = %record.id, consumer_id = %consumer.id, actor, "key created");
        Ok(IssuedKey {
            key: record.view(now),
            secret,
            previous: None,
        })
    }

    /// Rotates a key: issues a successor and lets the old key work for the
    /// grace period.
    pub async fn rotate(
        &self,
        id: &str,
        req: RotateKey,
        actor: &str,
    ) -> Result<IssuedKey, ServiceError> {
        let now = self.inner.clock.now();
        let old = self.get_record(id).await?;
        let status = old.status(now);
        if status != KeyStatus::Active {
            return Err(ServiceError::WrongState {
                id: old.id.clone(),
                status: match status {
                    KeyStatus::Retiring => "already rotated",
                    KeyStatus::Expired => "expired",
                    KeyStatus::Revoked => "revoked",
                    KeyStatus::Active => "active",
                },
            });
        }
        let grace = req.grace.unwrap_or(self.inner.config.default_grace);
        if grace > self.inner.config.max_grace {
            return Err(ServiceError::GraceTooLong {
                requested: humantime::format_duration(grace).to_string(),
                max: humantime::format_duration(self.inner.config.max_grace).to_string(),
            });
        }
        let grace_until = now
            + chrono::Duration::from_std(grace).map_err(|_| ServiceError::InvalidField {
                field: "grace",
                message: "is out of range".into(),
            })?;
        if let Some(exp) = old.expires_at {
            if grace_until > exp {
                return Err(ServiceError::GraceExceedsExpiry {
                    grace_until,
                    expires_at: exp,
                });
            }
        }
        let lifetime = req
            .expires_in
            .or_else(|| {
                old.expires_at
                    .and_then(|e| (e - old.created_at).to_std().ok())
                    .filter(|d| !d.is_zero())
            })
            .or(self.inner.config.rotation.rotate_every);
        let expires_at = match lifetime {
            Some(d) => Some(self.expiry_after(now, d, "expires_in")?),
            None => None,
        };
        let secret =
            ApiKey::generate(&old.environment).map_err(|_| ServiceError::InvalidField {
                field: "environment",
                message: "the old key's environment is invalid".into(),
            })?;
        let successor = KeyRecord {
            id: KeyId::generate(),
            consumer_id: old.consumer_id.clone(),
            name: old.name.clone(),
            environment: old.environment.clone(),
            scopes: old.scopes.clone(),
            plan: old.plan.clone(),
            created_at: now,
            created_by: actor.to_string(),
            expires_at,
            revoked_at: None,
            revoked_reason: None,
            last_used_at: None,
            predecessor: Some(old.id.clone()),
            successor: None,
            grace_until: None,
            warned_at: None,
            expiry_noted_at: None,
            hash: secret.hash(),
        };
        let audits = [
            NewAuditEntry {
                at: now,
                actor: actor.to_string(),
                action: AuditAction::KeyRotated,
                key_id: Some(old.id.clone()),
                consumer_id: Some(old.consumer_id.clone()),
                detail: json!({ "successor": successor.id, "grace_until": grace_until }),
            },
            NewAuditEntry {
                at: now,
                actor: actor.to_string(),
                action: AuditAction::KeyCreated,
                key_id: Some(successor.id.clone()),
                consumer_id: Some(old.consumer_id.clone()),
                detail: json!({ "rotated_from": old.id, "expires_at": expires_at }),
            },
        ];
        self.inner
            .store
            .rotate_key(&old.id, grace_until, &successor, &audits)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ServiceError::WrongState {
                    id: old.id.clone(),
                    status: "already rotated or revoked",
                },
                e => e.into(),
            })?;
        let mut old_after = old.clone();
        old_after.successor = Some(successor.id.clone());
        old_after.grace_until = Some(grace_until);
        self.inner.keyring.upsert_key(old_after.clone());
        self.inner.keyring.upsert_key(successor.clone());
        self.publish(KeyEvent::KeyChanged { id: old.id.clone() })
            .await;
        self.publish(KeyEvent::KeyChanged {
            id: successor.id.clone(),
        })
        .await;
        tracing::info!(key_id = %old.id, successor = %successor.id, consumer_id = %old.consumer_id, grace_until = %grace_until, actor, "key rotated");
        Ok(IssuedKey {
            key: successor.view(now),
            secret,
            previous: Some(old_after.view(now)),
        })
    }

    /// Revokes a key; effective for the next request on this node.
    pub async fn revoke(
        &self,
        id: &str,
        reason: Option<String>,
        actor: &str,
    ) -> Result<KeyView, ServiceError> {
        let now = self.inner.clock.now();
        let key = self.get_record(id).await?;
        if let Some(r) = &reason {
            if r.len() > 500 {
                return Err(ServiceError::InvalidField {
                    field: "reason",
                    message: "at most 500 characters".into(),
                });
            }
        }
        let audit = NewAuditEntry {
            at: now,
            actor: actor.to_string(),
            action: AuditAction::KeyRevoked,
            key_id: Some(key.id.clone()),
            consumer_id: Some(key.consumer_id.clone()),
            detail: json!({ "reason": reason }),
        };
        self.inner
            .store
            .revoke_key(&key.id, now, reason.as_deref(), &audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ServiceError::WrongState {
                    id: key.id.clone(),
                    status: "already revoked",
                },
                StoreError::NotFound(_) => ServiceError::KeyNotFound(key.id.to_string()),
                e => e.into(),
            })?;
        let mut after = key.clone();
        after.revoked_at = Some(now);
        after.revoked_reason = reason;
        self.inner.keyring.upsert_key(after.clone());
        self.publish(KeyEvent::KeyRevoked { id: key.id.clone() })
            .await;
        tracing::info!(key_id = %key.id, consumer_id = %key.consumer_id, actor, "key revoked");
        Ok(after.view(now))
    }

    async fn get_record(&self, id: &str) -> Result<KeyRecord, ServiceError> {
        let kid: KeyId = id
            .parse()
            .map_err(|_| ServiceError::KeyNotFound(id.to_string()))?;
        self.inner
            .store
            .get_key(&kid)
            .await?
            .ok_or_else(|| ServiceError::KeyNotFound(id.to_string()))
    }

    /// One key's metadata and status.
    pub async fn get(&self, id: &str) -> Result<KeyView, ServiceError> {
        let now = self.inner.clock.now();
        let mut rec = self.get_record(id).await?;
        // Show uses not yet flushed, so `last_used_at` is current.
        if let Some(n) = self.inner.uses.get(&rec.id) {
            if rec.last_used_at.is_none_or(|t| t < n.at) {
                rec.last_used_at = Some(n.at);
            }
        }
        Ok(rec.view(now))
    }

    /// Keys, optionally filtered.
    pub async fn list(&self, filter: &KeyFilter) -> Result<Vec<KeyView>, ServiceError> {
        let now = self.inner.clock.now();
        let consumer = match &filter.consumer {
            Some(c) => Some(self.consumer(c).await?.id),
            None => None,
        };
        let keys = self.inner.store.list_keys(consumer.as_ref()).await?;
        Ok(keys
            .into_iter()
            .map(|mut k| {
                if let Some(n) = self.inner.uses.get(&k.id) {
                    if k.last_used_at.is_none_or(|t| t < n.at) {
                        k.last_used_at = Some(n.at);
                    }
                }
                k.view(now)
            })
            .filter(|v| filter.status.is_none_or(|s| v.status == s))
            .collect())
    }

    /// Audit entries, newest first; of one key when `key` is given.
    pub async fn audit(
        &self,
        key: Option<&str>,
        limit: u32,
        before_id: Option<i64>,
    ) -> Result<Vec<AuditEntry>, ServiceError> {
        let key_id = match key {
            Some(k) => Some(self.get_record(k).await?.id),
            None => None,
        };
        Ok(self
            .inner
            .store
            .audit(&AuditQuery {
                key_id,
                consumer_id: None,
                before_id,
                limit,
            })
            .await?)
    }

    // === background work ===

    async fn publish(&self, ev: KeyEvent) {
        if let Err(e) = self.inner.feed.publish(ev.clone()).await {
            tracing::warn!(event = ev.as_str(), error = %e, "change feed publish failed; other nodes catch up when the feed retries or at their next reload");
        }
    }

    /// Reloads consumers, keys and quota counts from the store.
    pub async fn reload(&self) -> Result<(), ServiceError> {
        let consumers = self.inner.store.list_consumers().await?;
        let keys = self.inner.store.list_keys(None).await?;
        self.inner.keyring.replace(Snapshot::build(consumers, keys));
        let periods = self.inner.limits.current_periods();
        let usage = self.inner.store.quota_usage(&periods).await?;
        self.inner.limits.quotas().load(usage, &periods);
        Ok(())
    }

    /// Applies one change-feed event to the local keyring.
    pub async fn apply_event(&self, ev: &KeyEvent) -> Result<(), ServiceError> {
        match ev {
            KeyEvent::KeyChanged { id } | KeyEvent::KeyRevoked { id } => {
                if let Some(k) = self.inner.store.get_key(id).await? {
                    self.inner.keyring.upsert_key(k);
                }
            }
            KeyEvent::ConsumerChanged { id } => {
                if let Some(c) = self.inner.store.get_consumer(id).await? {
                    self.inner.keyring.upsert_consumer(c);
                }
            }
            KeyEvent::ReloadAll => self.reload().await?,
        }
        Ok(())
    }

    /// Writes queued last-used times, audit entries and quota counts.
    pub async fn flush(&self) -> Result<(), ServiceError> {
        let now = self.inner.clock.now();
        let keys: Vec<KeyId> = self.inner.uses.iter().map(|e| e.key().clone()).collect();
        let mut batch = Vec::with_capacity(keys.len());
        let mut grace_audits = Vec::new();
        for id in keys {
            if let Some((id, note)) = self.inner.uses.remove(&id) {
                if note.retiring {
                    let due = self
                        .inner
                        .grace_audited
                        .get(&id)
                        .is_none_or(|last| now - *last >= GRACE_USE_AUDIT_EVERY);
                    if due {
                        self.inner.grace_audited.insert(id.clone(), now);
                        let entry = self.inner.keyring.key(&id);
                        tracing::warn!(key_id = %id, consumer_id = ?entry.as_ref().map(|e| e.record.consumer_id.to_string()), "retiring key still in use during its grace period");
                        grace_audits.push(NewAuditEntry {
                            at: note.at,
                            actor: SYSTEM_ACTOR.into(),
                            action: AuditAction::UsedInGrace,
                            key_id: Some(id.clone()),
                            consumer_id: entry.as_ref().map(|e| e.record.consumer_id.clone()),
                            detail: json!({
                                "successor": entry.as_ref().and_then(|e| e.record.successor.clone()),
                                "grace_until": entry.as_ref().and_then(|e| e.record.grace_until),
                                "last_used_at": note.at,
                            }),
                        });
                    }
                }
                batch.push((id, note.at));
            }
        }
        if let Err(e) = self.inner.store.record_last_used(&batch).await {
            // Keep the notes for the next attempt.
            for (id, at) in batch {
                self.inner.uses.entry(id).or_insert(UseNote {
                    at,
                    retiring: false,
                });
            }
            return Err(e.into());
        }
        let mut audits = std::mem::take(&mut *self.inner.audit_queue.lock());
        audits.extend(grace_audits);
        if let Err(e) = self.inner.store.append_audit(&audits).await {
            self.inner.audit_queue.lock().extend(audits);
            return Err(e.into());
        }
        self.inner.denials_seen.clear();
        let deltas = self.inner.limits.quotas().drain_pending();
        if let Err(e) = self.inner.store.add_quota_usage(&deltas).await {
            self.inner.limits.quotas().restore_pending(&deltas);
            return Err(e.into());
        }
        Ok(())
    }

    /// The rotation-policy sweep: notes expiries in the audit log and sends
    /// expiry warnings (log event, audit entry, optional webhook).
    pub async fn sweep(&self) -> Result<SweepReport, ServiceError> {
        let now = self.inner.clock.now();
        let mut report = SweepReport::default();
        let warn_before = chrono::Duration::from_std(self.inner.config.rotation.warn_before)
            .unwrap_or(chrono::Duration::MAX);
        for k in self.inner.store.list_keys(None).await? {
            if k.revoked_at.is_some() {
                continue;
            }
            let status = k.status(now);
            if status == KeyStatus::Expired {
                if k.expiry_noted_at.is_none() {
                    let reason = if k.grace_until.is_some_and(|g| g <= now) {
                        "grace_ended"
                    } else {
                        "expired"
                    };
                    let audit = NewAuditEntry {
                        at: now,
                        actor: SYSTEM_ACTOR.into(),
                        action: AuditAction::KeyExpired,
                        key_id: Some(k.id.clone()),
                        consumer_id: Some(k.consumer_id.clone()),
                        detail: json!({ "reason": reason, "at": k.effective_expiry() }),
                    };
                    self.inner
                        .store
                        .mark_expiry_noted(&k.id, now, &audit)
                        .await?;
                    tracing::info!(key_id = %k.id, consumer_id = %k.consumer_id, reason, "key expired");
                    report.expired.push(k.id.clone());
                }
                continue;
            }
            if status != KeyStatus::Active || k.warned_at.is_some() {
                continue;
            }
            let Some(exp) = k.expires_at else { continue };
            if exp - now > warn_before {
                continue;
            }
            let consumer = self.inner.keyring.consumer(&k.consumer_id);
            let payload = json!({
                "event": "key.expiring",
                "key_id": k.id,
                "key_name": k.name,
                "consumer_id": k.consumer_id,
                "consumer_name": consumer.as_ref().map(|c| c.name.clone()),
                "expires_at": exp,
                "seconds_left": (exp - now).num_seconds(),
            });
            tracing::warn!(key_id = %k.id, consumer_id = %k.consumer_id, expires_at = %exp, "key expires soon; rotate it");
            let mut webhook = serde_json::Value::Null;
            if let Some(url) = &self.inner.config.rotation.webhook_url {
                let outcome = match self.inner.http.post(url).json(&payload).send().await {
                    Ok(r) if r.status().is_success() => "delivered".to_string(),
                    Ok(r) => format!("http {}", r.status().as_u16()),
                    Err(e) => {
                        tracing::warn!(key_id = %k.id, error = %e, "expiry webhook failed");
                        "failed".to_string()
                    }
                };
                webhook = json!(outcome);
            }
            let audit = NewAuditEntry {
                at: now,
                actor: SYSTEM_ACTOR.into(),
                action: AuditAction::KeyExpiring,
                key_id: Some(k.id.clone()),
                consumer_id: Some(k.consumer_id.clone()),
                detail: json!({ "expires_at": exp, "webhook": webhook }),
            };
            self.inner.store.mark_warned(&k.id, now, &audit).await?;
            report.warned.push(k.id.clone());
        }
        // Expired keys can also leave the keyring's view of "usable" keys,
        // but they stay in memory so the 401 says "expired", not "unknown".
        Ok(report)
    }

    /// Spawns the background loop: change-feed listener, periodic flush,
    /// sweep, full reload and limiter pruning. Call
    /// [`BackgroundTasks::shutdown`] to stop it with a final flush.
    pub fn spawn_background(&self) -> BackgroundTasks {
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let svc = self.clone();
        let handle = tokio::spawn(async move {
            let cfg = &svc.inner.config;
            let mut events = svc.inner.feed.subscribe();
            let mut flush = tokio::time::interval(cfg.flush_interval);
            let mut sweep = tokio::time::interval(cfg.sweep_interval);
            let mut reload = tokio::time::interval(cfg.reload_interval);
            for t in [&mut flush, &mut sweep, &mut reload] {
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            }
            // The first tick of an interval fires at once; the keyring was
            // just loaded, so skip the immediate reload.
            reload.tick().await;
            loop {
                tokio::select! {
                    _ = rx.changed() => break,
                    ev = events.next() => match ev {
                        Some(ev) => {
                            if let Err(e) = svc.apply_event(&ev).await {
                                tracing::warn!(event = ev.as_str(), error = %e, "applying key change failed");
                            }
                        }
                        None => {
                            tracing::warn!("change feed closed; relying on periodic reloads");
                            events = Box::pin(futures::stream::pending());
                        }
                    },
                    _ = flush.tick() => {
                        if let Err(e) = svc.flush().await {
                            tracing::warn!(error = %e, "key usage flush failed; will retry");
                        }
                    }
                    _ = sweep.tick() => {
                        if let Err(e) = svc.sweep().await {
                            tracing::warn!(error = %e, "key sweep failed; will retry");
                        }
                        svc.inner.limits.prune().await;
                    }
                    _ = reload.tick() => {
                        if let Err(e) = svc.reload().await {
                            tracing::warn!(error = %e, "keyring reload failed; serving the previous snapshot");
                        }
                    }
                }
            }
            if let Err(e) = svc.flush().await {
                tracing::warn!(error = %e, "final key usage flush failed");
            }
        });
        BackgroundTasks { stop: tx, handle }
    }
}

/// What one [`KeyService::sweep`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Keys whose expiry was newly noted.
    pub expired: Vec<KeyId>,
    /// Keys newly warned about.
    pub warned: Vec<KeyId>,
}

/// Handle on the background loop.
#[derive(Debug)]
pub struct BackgroundTasks {
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl BackgroundTasks {
    /// Stops the loop after a final flush.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}
