//! Persistence of launches, statistics snapshots and example pairs.
//!
//! The engine keeps statistics in memory and flushes a snapshot of every
//! changed launch periodically and at shutdown; at start it reloads them, so
//! a restart loses at most one flush interval. [`ShadowStore`] is the narrow
//! seam; [`SqlShadowStore`] implements it on SQLite (embedded default) and
//! PostgreSQL (scale-out) with the same schema (migrations 3001+).

use async_trait::async_trait;
use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Row;
use std::str::FromStr;

use crate::config::LaunchConfig;
use crate::outcome::{LaunchOrigin, LaunchState};
use crate::stats::{Example, LaunchStats};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or a statement failed.
    #[error("shadow store: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("shadow store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be decoded.
    #[error("shadow store: corrupt row for launch {launch:?}: {detail}")]
    Corrupt {
        /// Launch name.
        launch: String,
        /// What is wrong.
        detail: String,
    },
    /// The URL names no supported backend.
    #[error("shadow store: unsupported URL {0:?}; use sqlite:PATH or postgres://…")]
    UnsupportedUrl(String),
}

/// A launch as persisted.
#[derive(Debug, Clone)]
pub struct StoredLaunch {
    /// Its definition.
    pub config: LaunchConfig,
    /// Its lifecycle state.
    pub state: LaunchState,
    /// Where it was defined.
    pub origin: LaunchOrigin,
    /// Its statistics (with examples), empty when none were flushed yet.
    pub stats: LaunchStats,
}

/// Durable storage for the mirror engine.
#[async_trait]
pub trait ShadowStore: Send + Sync + 'static {
    /// Every persisted launch with its latest statistics.
    async fn load(&self) -> Result<Vec<StoredLaunch>, StoreError>;
    /// Inserts or replaces a launch definition, state and origin.
    async fn save_launch(
        &self,
        config: &LaunchConfig,
        state: LaunchState,
        origin: LaunchOrigin,
    ) -> Result<(), StoreError>;
    /// Replaces the statistics snapshot and examples of `launch`.
    async fn save_stats(&self, launch: &str, stats: &LaunchStats) -> Result<(), StoreError>;
}

/// SQL implementation of [`ShadowStore`].
#[derive(Debug, Clone)]
pub struct SqlShadowStore {
    pool: Pool,
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same statement body against whichever pool is configured.
macro_rules! with_pool {
    ($self:ident, $p:ident => $body:expr) => {
        match &$self.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

impl SqlShadowStore {
    /// Connects to `url` (`sqlite:PATH`, `sqlite::memory:`, `postgres://…`),
    /// creating a SQLite file if missing, and runs this crate's migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?;
            Self::postgres(opts).await
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(std::time::Duration::from_secs(5));
            // An in-memory database exists per connection: keep exactly one.
            let max = if url.contains(":memory:") { 1 } else { 4 };
            let pool = SqlitePoolOptions::new()
                .max_connections(max)
                .min_connections(if max == 1 { 1 } else { 0 })
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(opts)
                .await?;
            Self::from_sqlite(pool).await
        } else {
            Err(StoreError::UnsupportedUrl(url.to_string()))
        }
    }

    /// Uses a PostgreSQL database described by `opts` (e.g. with a
    /// `search_path` option for isolation) and migrates it.
    pub async fn postgres(opts: PgConnectOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        let mut m = sqlx::migrate!("./migrations/postgres");
        m.set_ignore_missing(true);
        m.run(&pool).await?;
        Ok(Self {
            pool: Pool::Postgres(pool),
        })
    }

    /// Uses an existing SQLite pool and migrates it.
    pub async fn from_sqlite(pool: SqlitePool) -> Result<Self, StoreError> {
        let mut m = sqlx::migrate!("./migrations/sqlite");
        m.set_ignore_missing(true);
        m.run(&pool).await?;
        Ok(Self {
            pool: Pool::Sqlite(pool),
        })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        with_pool!(self, p => p.close().await)
    }
}

fn corrupt(launch: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        launch: launch.to_string(),
        detail: detail.to_string(),
    }
}

#[async_trait]
impl ShadowStore for SqlShadowStore {
    async fn load(&self) -> Result<Vec<StoredLaunch>, StoreError> {
        let launches: Vec<(String, String, String, String)> = with_pool!(self, p => {
            sqlx::query("SELECT name, config, state, origin FROM shadow_launches ORDER BY name")
                .fetch_all(p)
                .await?
                .into_iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        let mut out = Vec::with_capacity(launches.len());
        for (name, config, state, origin) in launches {
            let origin = LaunchOrigin::parse(&origin)
                .ok_or_else(|| corrupt(&name, format!("unknown origin {origin:?}")))?;
            let config: LaunchConfig =
                serde_json::from_str(&config).map_err(|e| corrupt(&name, e))?;
            let state = LaunchState::parse(&state)
                .ok_or_else(|| corrupt(&name, format!("unknown state {state:?}")))?;
            let snapshot: Option<String> = with_pool!(self, p => {
                sqlx::query("SELECT snapshot FROM shadow_stats WHERE launch = $1")
                    .bind(&name)
                    .fetch_optional(p)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?
            });
            let mut stats: LaunchStats = match snapshot {
                Some(s) => serde_json::from_str(&s).map_err(|e| corrupt(&name, e))?,
                None => LaunchStats::default(),
            };
            let examples: Vec<String> = with_pool!(self, p => {
                sqlx::query("SELECT example FROM shadow_examples WHERE launch = $1 ORDER BY seq")
                    .bind(&name)
                    .fetch_all(p)
                    .await?
                    .into_iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<Vec<_>, sqlx::Error>>()?
            });
            stats.examples = examples
                .iter()
                .map(|e| serde_json::from_str::<Example>(e))
                .collect::<Result<_, _>>()
                .map_err(|e| corrupt(&name, e))?;
            out.push(StoredLaunch {
                config,
                state,
                origin,
                stats,
            });
        }
        Ok(out)
    }

    async fn save_launch(
        &self,
        config: &LaunchConfig,
        state: LaunchState,
        origin: LaunchOrigin,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(config).map_err(|e| corrupt(&config.name, e))?;
        let now = Utc::now().to_rfc3339();
        with_pool!(self, p => {
            sqlx::query(
                "INSERT INTO shadow_launches (name, config, state, origin, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (name) DO UPDATE SET config = excluded.config, state = excluded.state, \
                 origin = excluded.origin, updated_at = excluded.updated_at",
            )
            .bind(&config.name)
            .bind(&json)
            .bind(state.as_str())
            .bind(origin.as_str())
            .bind(&now)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    async fn save_stats(&self, launch: &str, stats: &LaunchStats) -> Result<(), StoreError> {
        // Examples live in their own rows (inspectable with plain SQL); the
        // snapshot holds the counters.
        let examples: Vec<(String, String, String)> = stats
            .examples
            .iter()
            .map(|e| {
                serde_json::to_string(e)
                    .map(|j| (e.endpoint.clone(), e.field.clone(), j))
                    .map_err(|err| corrupt(launch, err))
            })
            .collect::<Result<_, _>>()?;
        let mut counters = stats.clone();
        counters.examples.clear();
        let snapshot = serde_json::to_string(&counters).map_err(|e| corrupt(launch, e))?;
        let now = Utc::now().to_rfc3339();
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO shadow_stats (launch, snapshot, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (launch) DO UPDATE SET snapshot = excluded.snapshot, \
                 updated_at = excluded.updated_at",
            )
            .bind(launch)
            .bind(&snapshot)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM shadow_examples WHERE launch = $1")
                .bind(launch)
                .execute(&mut *tx)
                .await?;
            for (seq, (endpoint, field, json)) in examples.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO shadow_examples (launch, seq, endpoint, field, example) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(launch)
                .bind(seq as i64)
                .bind(endpoint)
                .bind(field)
                .bind(json)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
