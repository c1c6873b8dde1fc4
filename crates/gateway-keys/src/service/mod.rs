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
//!
//! One job per module, each an `impl KeyService` block over the shared
//! state:
//!
//! - `state`: the service's state ([`KeyService`], its one `Arc`) and the
//!   plain accessors; every other module builds on it, it on none of them.
//! - `builder`: [`KeyServiceBuilder`] and [`KeyService::open`].
//! - `hot_path`: what the request path calls: verification, use notes,
//!   limits, scope denials and blocked addresses (memory only).
//! - `checks`: admin requests checked against what exists (scopes through
//!   the [`ScopeCatalog`] of `catalog`, plans, lifetimes).
//! - `consumers`, `issue`, `rotate`, `revoke`, `update`, `lookup`: the admin
//!   operations, with their request types in `requests` and their one
//!   error, [`ServiceError`], in `error`.
//! - `sync`: the keyring kept in step with the store (publish, reload,
//!   change-feed events).
//! - `background`: the background loop: batched writes, expiry sweep.
//!
//! [`KeyEvent`]: crate::feed::KeyEvent

mod background;
mod builder;
mod catalog;
mod checks;
mod consumers;
mod error;
mod hot_path;
mod issue;
mod lookup;
mod requests;
mod revoke;
mod rotate;
mod state;
mod sync;
mod update;

pub use background::SweepReport;
pub use builder::KeyServiceBuilder;
pub use catalog::ScopeCatalog;
pub use error::ServiceError;
pub use requests::{CreateConsumer, CreateKey, IssuedKey, KeyFilter, RotateKey, UpdateKey};
pub use state::{BackgroundTasks, KeyService, SYSTEM_ACTOR};
pub use update::MAX_METADATA_BYTES;
