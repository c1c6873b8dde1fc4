//! Durable storage of consumers, key metadata, the audit log and quota
//! usage, behind the narrow [`KeyStore`] trait.
//!
//! [`SqlStore`] implements it once over `sqlx::AnyPool`, so the embedded
//! default (SQLite) and the scale-out backend (PostgreSQL) share one code
//! path and one logical schema; only the migration files differ (audit ids
//! and the append-only triggers). All SQL here uses `$N` placeholders, which
//! both backends accept, and times are stored as Unix milliseconds so no
//! backend-specific time types are involved.
//!
//! Architecture invariant: the store never sees a secret. Keys arrive as
//! [`KeyRecord`]s holding only the SHA-256 hash.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::key::{ConsumerId, KeyHash, KeyId};
use crate::model::{AuditAction, AuditEntry, Consumer, KeyRecord, NewAuditEntry};
use crate::scope::Scope;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named record does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The change conflicts with the current state (e.g. a duplicate name,
    /// or rotating a key that was already rotated).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored row could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Stable identifier for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Corrupt(_) => "corrupt",
            Self::Database(_) => "database",
            Self::Migrate(_) => "migrate",
        }
    }
}

/// Filter for [`KeyStore::audit`].
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only entries about this key.
    pub key_id: Option<KeyId>,
    /// Only entries about this consumer.
    pub consumer_id: Option<ConsumerId>,
    /// Only entries with an id below this (paging backwards).
    pub before_id: Option<i64>,
    /// At most this many (newest first). Zero means 100.
    pub limit: u32,
}

/// A quota counter row or delta: `used` requests by `subject` in `period`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaUsage {
    /// `consumer:<id>` or `group:<name>`.
    pub subject: String,
    /// `d:YYYY-MM-DD`, `m:YYYY-MM` or `total`.
    pub period: String,
    /// Count (a delta when writing).
    pub used: i64,
}

/// Durable storage for the key system. Each mutation takes the audit entry
/// that describes it and writes both atomically, so the audit log cannot
/// miss a change.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// One cheap round trip, for readiness probes and store health metrics.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Inserts a consumer. `Conflict` if the name is taken.
    async fn insert_consumer(&self, c: &Consumer, audit: &NewAuditEntry) -> Result<(), StoreError>;
    /// A consumer by id.
    async fn get_consumer(&self, id: &ConsumerId) -> Result<Option<Consumer>, StoreError>;
    /// A consumer by unique name.
    async fn find_consumer_by_name(&self, name: &str) -> Result<Option<Consumer>, StoreError>;
    /// Every consumer, by name.
    async fn list_consumers(&self) -> Result<Vec<Consumer>, StoreError>;
    /// Inserts a key record (hash only).
    async fn insert_key(&self, k: &KeyRecord, audit: &NewAuditEntry) -> Result<(), StoreError>;
    /// Links `successor` to `old`, sets the old key's grace end and inserts
    /// the successor, atomically, with every audit entry given. `Conflict`
    /// if `old` was already rotated or revoked.
    async fn rotate_key(
        &self,
        old: &KeyId,
        grace_until: DateTime<Utc>,
        successor: &KeyRecord,
        audit: &[NewAuditEntry],
    ) -> Result<(), StoreError>;
    /// Marks a key revoked. `NotFound` if missing, `Conflict` if already revoked.
    async fn revoke_key(
        &self,
        id: &KeyId,
        at: DateTime<Utc>,
        reason: Option<&str>,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError>;
    /// Writes a key's editable fields (name, scopes, plan, expiry,
    /// metadata) from `k`, with its audit entry. `NotFound` if missing.
    async fn update_key(&self, k: &KeyRecord, audit: &NewAuditEntry) -> Result<(), StoreError>;
    /// A key by id.
    async fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError>;
    /// Keys, optionally of one consumer, oldest first.
    async fn list_keys(&self, consumer: Option<&ConsumerId>) -> Result<Vec<KeyRecord>, StoreError>;
    /// Writes last-used times in one batch (keeps the later of stored and given).
    async fn record_last_used(&self, batch: &[(KeyId, DateTime<Utc>)]) -> Result<(), StoreError>;
    /// Records that an expiry warning went out.
    async fn mark_warned(
        &self,
        id: &KeyId,
        at: DateTime<Utc>,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError>;
    /// Records that the expiry was noted in the audit log.
    async fn mark_expiry_noted(
        &self,
        id: &KeyId,
        at: DateTime<Utc>,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError>;
    /// Appends audit entries.
    async fn append_audit(&self, entries: &[NewAuditEntry]) -> Result<(), StoreError>;
    /// Reads audit entries, newest first.
    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// Adds quota usage deltas.
    async fn add_quota_usage(&self, deltas: &[QuotaUsage]) -> Result<(), StoreError>;
    /// Current usage of every subject in the given periods.
    async fn quota_usage(&self, periods: &[String]) -> Result<Vec<QuotaUsage>, StoreError>;
}

/// Which SQL backend a [`SqlStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// Stable name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// [`KeyStore`] over SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

/// Turns a configured database value into a connection URL: `postgres://`
/// and `sqlite:` URLs pass through; anything else is a SQLite file path,
/// created if missing.
pub fn database_url(value: &str) -> (String, Backend) {
    if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        (value.to_string(), Backend::Postgres)
    } else if value.starts_with("sqlite:") {
        (value.to_string(), Backend::Sqlite)
    } else {
        (format!("sqlite://{value}?mode=rwc"), Backend::Sqlite)
    }
}

impl SqlStore {
    /// Connects to `database` (see [`database_url`]) and runs migrations.
    pub async fn connect(database: &str) -> Result<Self, StoreError> {
        Self::connect_with(database, None).await
    }

    /// Like [`SqlStore::connect`]; on PostgreSQL, every connection first
    /// runs `SET search_path TO <schema>` (used to isolate tests and
    /// tenants).
    pub async fn connect_with(database: &str, pg_schema: Option<&str>) -> Result<Self, StoreError> {
        Self::connect_opts(database, pg_schema, Duration::from_secs(10)).await
    }

    /// Like [`SqlStore::connect_with`], with the bound on waiting for a
    /// pooled connection: when the database is unreachable, an admin write
    /// fails after `acquire_timeout` (a 503) instead of hanging.
    pub async fn connect_opts(
        database: &str,
        pg_schema: Option<&str>,
        acquire_timeout: Duration,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (url, backend) = database_url(database);
        if let Some(dir) = sqlite_parent_dir(&url) {
            // A missing data directory is the usual first-run failure; create it.
            std::fs::create_dir_all(&dir).map_err(|e| {
                StoreError::Database(sqlx::Error::Configuration(
                    format!("cannot create data directory {}: {e}", dir.display()).into(),
                ))
            })?;
        }
        let opts: AnyConnectOptions = url.parse()?;
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut pool = AnyPoolOptions::new();
        if memory {
            // Every connection to `sqlite::memory:` is its own database, so
            // keep exactly one connection alive forever.
            pool = pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else if backend == Backend::Sqlite {
            pool = pool.max_connections(4);
        } else {
            pool = pool.max_connections(8);
        }
        pool = pool.acquire_timeout(acquire_timeout);
        if let Some(schema) = pg_schema.filter(|_| backend == Backend::Postgres) {
            if !schema
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(StoreError::Conflict(format!(
                    "invalid schema name `{schema}`"
                )));
            }
            let stmt = format!("SET search_path TO {schema}");
            pool = pool.after_connect(move |conn, _| {
                let stmt = stmt.clone();
                Box::pin(async move {
                    sqlx::query(&stmt).execute(conn).await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect_with(opts).await?;
        if backend == Backend::Sqlite {
            // Foreign keys are off by default in SQLite; WAL lets readers
            // proceed while the flusher writes.
            sqlx::query("PRAGMA foreign_keys = ON")
                .execute(&pool)
                .await?;
            if !memory {
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&pool)
                    .await?;
            }
        }
        let store = Self { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    /// Runs this crate's migrations (versions 1001+), ignoring versions
    /// applied by other crates sharing the database.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut m = match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        m.set_ignore_missing(true);
        m.run(&self.pool).await?;
        Ok(())
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for tests and tooling.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

fn sqlite_parent_dir(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://")?;
    let path = path.split('?').next()?;
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.to_path_buf())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn opt_ms(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(ms)
}

fn from_ms(v: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(v)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {v} out of range")))
}

fn from_opt_ms(v: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    v.map(from_ms).transpose()
}

fn corrupt<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError::Corrupt(format!("{what}: {e}"))
}

const CONSUMER_COLS: &str = "id, name, plan, consumer_group, created_at";
const KEY_COLS: &str = "id, hash, consumer_id, name, environment, scopes, plan, created_at, created_by, \
     expires_at, revoked_at, revoked_reason, last_used_at, predecessor_id, successor_id, grace_until, \
     warned_at, expiry_noted_at, metadata";

fn consumer_from_row(r: &AnyRow) -> Result<Consumer, StoreError> {
    Ok(Consumer {
        id: r
            .try_get::<String, _>(0)?
            .parse()
            .map_err(corrupt("consumer id"))?,
        name: r.try_get(1)?,
        plan: r.try_get(2)?,
        group: r.try_get(3)?,
        created_at: from_ms(r.try_get(4)?)?,
    })
}

fn key_from_row(r: &AnyRow) -> Result<KeyRecord, StoreError> {
    let hash: String = r.try_get(1)?;
    let scopes: String = r.try_get(5)?;
    let parse_id = |v: Option<String>| -> Result<Option<KeyId>, StoreError> {
        v.map(|s| s.parse().map_err(corrupt("key id"))).transpose()
    };
    Ok(KeyRecord {
        id: r
            .try_get::<String, _>(0)?
            .parse()
            .map_err(corrupt("key id"))?,
        hash: KeyHash::from_hex(&hash).ok_or_else(|| StoreError::Corrupt("key hash".into()))?,
        consumer_id: r
            .try_get::<String, _>(2)?
            .parse()
            .map_err(corrupt("consumer id"))?,
        name: r.try_get(3)?,
        environment: r.try_get(4)?,
        scopes: serde_json::from_str::<Vec<Scope>>(&scopes).map_err(corrupt("scopes"))?,
        plan: r.try_get(6)?,
        created_at: from_ms(r.try_get(7)?)?,
        created_by: r.try_get(8)?,
        expires_at: from_opt_ms(r.try_get(9)?)?,
        revoked_at: from_opt_ms(r.try_get(10)?)?,
        revoked_reason: r.try_get(11)?,
        last_used_at: from_opt_ms(r.try_get(12)?)?,
        predecessor: parse_id(r.try_get(13)?)?,
        successor: parse_id(r.try_get(14)?)?,
        grace_until: from_opt_ms(r.try_get(15)?)?,
        warned_at: from_opt_ms(r.try_get(16)?)?,
        expiry_noted_at: from_opt_ms(r.try_get(17)?)?,
        metadata: match r.try_get::<Option<String>, _>(18)? {
            Some(text) => serde_json::from_str(&text).map_err(corrupt("metadata"))?,
            None => serde_json::Map::new(),
        },
    })
}

/// Metadata as stored: `NULL` when empty.
fn metadata_text(m: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    (!m.is_empty()).then(|| serde_json::Value::Object(m.clone()).to_string())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.kind() == sqlx::error::ErrorKind::UniqueViolation
                // The Any driver does not always carry the kind through.
                || db.message().contains("UNIQUE")
                || db.message().contains("duplicate key")
        }
        _ => false,
    }
}

async fn insert_audit<'c, E>(exec: E, a: &NewAuditEntry) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO gk_audit (at, actor, action, key_id, consumer_id, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(ms(a.at))
    .bind(a.actor.clone())
    .bind(a.action.as_str())
    .bind(a.key_id.as_ref().map(|k| k.as_str().to_string()))
    .bind(a.consumer_id.as_ref().map(|c| c.as_str().to_string()))
    .bind(a.detail.to_string())
    .execute(exec)
    .await?;
    Ok(())
}

async fn insert_key_row<'c, E>(exec: E, k: &KeyRecord) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let scopes = serde_json::to_string(&k.scopes).map_err(corrupt("scopes"))?;
    sqlx::query(&format!(
        "INSERT INTO gk_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
    ))
    .bind(k.id.as_str().to_string())
    .bind(k.hash.to_hex())
    .bind(k.consumer_id.as_str().to_string())
    .bind(k.name.clone())
    .bind(k.environment.clone())
    .bind(scopes)
    .bind(k.plan.clone())
    .bind(ms(k.created_at))
    .bind(k.created_by.clone())
    .bind(opt_ms(k.expires_at))
    .bind(opt_ms(k.revoked_at))
    .bind(k.revoked_reason.clone())
    .bind(opt_ms(k.last_used_at))
    .bind(k.predecessor.as_ref().map(|p| p.as_str().to_string()))
    .bind(k.successor.as_ref().map(|p| p.as_str().to_string()))
    .bind(opt_ms(k.grace_until))
    .bind(opt_ms(k.warned_at))
    .bind(opt_ms(k.expiry_noted_at))
    .bind(metadata_text(&k.metadata))
    .execute(exec)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(format!("key {} already exists", k.id))
        } else {
            e.into()
        }
    })?;
    Ok(())
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_consumer(&self, c: &Consumer, audit: &NewAuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO gk_consumers ({CONSUMER_COLS}) VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind(c.id.as_str().to_string())
        .bind(c.name.clone())
        .bind(c.plan.clone())
        .bind(c.group.clone())
        .bind(ms(c.created_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("a consumer named `{}` already exists", c.name))
            } else {
                e.into()
            }
        })?;
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_consumer(&self, id: &ConsumerId) -> Result<Option<Consumer>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CONSUMER_COLS} FROM gk_consumers WHERE id = $1"
        ))
        .bind(id.as_str().to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(consumer_from_row).transpose()
    }

    async fn find_consumer_by_name(&self, name: &str) -> Result<Option<Consumer>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CONSUMER_COLS} FROM gk_consumers WHERE name = $1"
        ))
        .bind(name.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(consumer_from_row).transpose()
    }

    async fn list_consumers(&self) -> Result<Vec<Consumer>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CONSUMER_COLS} FROM gk_consumers ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(consumer_from_row).collect()
    }

    async fn insert_key(&self, k: &KeyRecord, audit: &NewAuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_key_row(&mut *tx, k).await?;
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_key(
        &self,
        old: &KeyId,
        grace_until: DateTime<Utc>,
        successor: &KeyRecord,
        audit: &[NewAuditEntry],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE gk_keys SET successor_id = $1, grace_until = $2 \
             WHERE id = $3 AND successor_id IS NULL AND revoked_at IS NULL",
        )
        .bind(successor.id.as_str().to_string())
        .bind(ms(grace_until))
        .bind(old.as_str().to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "key {old} was already rotated or revoked"
            )));
        }
        insert_key_row(&mut *tx, successor).await?;
        for a in audit {
            insert_audit(&mut *tx, a).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_key(
        &self,
        id: &KeyId,
        at: DateTime<Utc>,
        reason: Option<&str>,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE gk_keys SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(ms(at))
        .bind(reason.map(str::to_string))
        .bind(id.as_str().to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            let exists = sqlx::query("SELECT id FROM gk_keys WHERE id = $1")
                .bind(id.as_str().to_string())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            return Err(if exists {
                StoreError::Conflict(format!("key {id} is already revoked"))
            } else {
                StoreError::NotFound(format!("key {id}"))
            });
        }
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_key(&self, k: &KeyRecord, audit: &NewAuditEntry) -> Result<(), StoreError> {
        let scopes = serde_json::to_string(&k.scopes).map_err(corrupt("scopes"))?;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE gk_keys SET name = $1, scopes = $2, plan = $3, expires_at = $4, metadata = $5 WHERE id = $6",
        )
        .bind(k.name.clone())
        .bind(scopes)
        .bind(k.plan.clone())
        .bind(opt_ms(k.expires_at))
        .bind(metadata_text(&k.metadata))
        .bind(k.id.as_str().to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("key {}", k.id)));
        }
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {KEY_COLS} FROM gk_keys WHERE id = $1"))
            .bind(id.as_str().to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_keys(&self, consumer: Option<&ConsumerId>) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = match consumer {
            Some(c) => {
                sqlx::query(&format!(
                    "SELECT {KEY_COLS} FROM gk_keys WHERE consumer_id = $1 ORDER BY created_at, id"
                ))
                .bind(c.as_str().to_string())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {KEY_COLS} FROM gk_keys ORDER BY created_at, id"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(key_from_row).collect()
    }

    async fn record_last_used(&self, batch: &[(KeyId, DateTime<Utc>)]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (id, at) in batch {
            sqlx::query(
                "UPDATE gk_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(ms(*at))
            .bind(id.as_str().to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn mark_warned(
        &self,
        id: &KeyId,
        at: DateTime<Utc>,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE gk_keys SET warned_at = $1 WHERE id = $2")
            .bind(ms(at))
            .bind(id.as_str().to_string())
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mark_expiry_noted(
        &self,
        id: &KeyId,
        at: DateTime<Utc>,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE gk_keys SET expiry_noted_at = $1 WHERE id = $2")
            .bind(ms(at))
            .bind(id.as_str().to_string())
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn append_audit(&self, entries: &[NewAuditEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for a in entries {
            insert_audit(&mut *tx, a).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = if q.limit == 0 { 100 } else { q.limit.min(1000) };
        let rows = sqlx::query(
            "SELECT id, at, actor, action, key_id, consumer_id, detail FROM gk_audit \
             WHERE ($1 IS NULL OR key_id = $1) AND ($2 IS NULL OR consumer_id = $2) \
             AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        )
        .bind(q.key_id.as_ref().map(|k| k.as_str().to_string()))
        .bind(q.consumer_id.as_ref().map(|c| c.as_str().to_string()))
        .bind(q.before_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let action: String = r.try_get(3)?;
                let detail: String = r.try_get(6)?;
                Ok(AuditEntry {
                    id: r.try_get(0)?,
                    at: from_ms(r.try_get(1)?)?,
                    actor: r.try_get(2)?,
                    action: AuditAction::parse(&action)
                        .ok_or_else(|| StoreError::Corrupt(format!("audit action `{action}`")))?,
                    key_id: r
                        .try_get::<Option<String>, _>(4)?
                        .map(|s| s.parse().map_err(corrupt("key id")))
                        .transpose()?,
                    consumer_id: r
                        .try_get::<Option<String>, _>(5)?
                        .map(|s| s.parse().map_err(corrupt("consumer id")))
                        .transpose()?,
                    detail: serde_json::from_str(&detail).map_err(corrupt("audit detail"))?,
                })
            })
            .collect()
    }

    async fn add_quota_usage(&self, deltas: &[QuotaUsage]) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for d in deltas {
            sqlx::query(
                "INSERT INTO gk_quota_usage (subject, period, used) VALUES ($1, $2, $3) \
                 ON CONFLICT (subject, period) DO UPDATE SET used = gk_quota_usage.used + excluded.used",
            )
            .bind(d.subject.clone())
            .bind(d.period.clone())
            .bind(d.used)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn quota_usage(&self, periods: &[String]) -> Result<Vec<QuotaUsage>, StoreError> {
        let mut out = Vec::new();
        for p in periods {
            let rows =
                sqlx::query("SELECT subject, period, used FROM gk_quota_usage WHERE period = $1")
                    .bind(p.clone())
                    .fetch_all(&self.pool)
                    .await?;
            for r in rows {
                out.push(QuotaUsage {
                    subject: r.try_get(0)?,
                    period: r.try_get(1)?,
                    used: r.try_get(2)?,
                });
            }
        }
        Ok(out)
    }
}
