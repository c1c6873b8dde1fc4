//! gateway-keys: the API key system of Gatehouse.
//!
//! A library the gateway wires in at four points:
//!
//! - the **authentication stage**: [`Authenticator::authenticate`] finds and
//!   verifies an API key (or a JWT) on a request, checks scopes, strips the
//!   credential and forwards the consumer identity upstream;
//! - the **rate-limit stage**: [`KeyService::check_limits`] applies the
//!   consumer's plan (GCRA rate limit, daily/monthly/total quotas) and
//!   returns RateLimit-* headers or a 429;
//! - the **admin API**: [`admin::router`] serves `/v1/keys`, `/v1/audit` and
//!   `/v1/consumers` for the admin listener;
//! - the **CLI**: [`cli::KeysArgs`] / [`cli::run`] implement
//!   `gatehouse keys ...` as a client of that API.
//!
//! Code map: [`key`] (secret format, ids, hashing), [`scope`], [`model`]
//! (records, lifecycle states, audit actions), [`config`], [`store`]
//! (SQLite/PostgreSQL), [`keyring`] (in-memory snapshot), [`feed`] (change
//! propagation), [`ratelimit`], [`jwt`], [`client_cert`] (a verified client
//! certificate's names, for mutual TLS as an authentication method), [`identity`] (who is calling,
//! shared by the keyring, the service and the authentication stage),
//! [`usage`] (per-key requests and refusals per hour, in memory),
//! [`service`] (the facade: state, hot path, admin operations, background
//! loop, one module each), [`auth`], [`admin`], [`cli`]. No two modules
//! use each other.
//!
//! Architecture invariants:
//! - The secret exists only in [`key::ApiKey`], in the response that issues
//!   it, and on the wire. The store, the keyring, logs and admin reads hold
//!   the SHA-256 hash or the key id.
//! - The request path does no I/O: verification and limits read memory;
//!   last-used times, quota counts and hot-path audit entries are flushed
//!   in batches by the background task.
//! - This crate knows nothing about the HTTP server: it works on
//!   `http::request::Parts` and returns responses as values.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod client_cert;
pub mod config;
pub mod feed;
pub mod grace_clients;
pub mod identity;
pub mod jwks;
pub mod jwt;
pub mod key;
pub mod keyring;
pub mod model;
pub mod ratelimit;
pub mod scope;
pub mod service;
pub mod store;
pub mod usage;

pub use auth::{AuthError, Authenticator, ClientIp};
pub use client_cert::ClientCertNames;
pub use config::{KeysConfig, PlanConfig, RouteAuthConfig};
pub use feed::{ChangeFeed, InProcessFeed, KeyEvent};
pub use identity::{Identity, IdentityKind};
pub use key::{ApiKey, ConsumerId, KeyId};
pub use keyring::Keyring;
pub use model::{Consumer, KeyRecord, KeyStatus};
pub use ratelimit::{Limited, RateLimitInfo, RateLimiter};
pub use service::{BackgroundTasks, KeyService, ScopeCatalog, ServiceError};
pub use store::{KeyStore, SqlStore};
