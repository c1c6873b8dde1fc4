//! Dark launch for Gatehouse: mirror live traffic to a candidate version,
//! compare its responses with the primary's, learn noise, score and decide.
//!
//! Pieces, in the order a request meets them:
//!
//! - [`config`]: the launch definition (`[[dark_launches]]`, `POST /v1/shadow`).
//! - [`engine`]: the [`MirrorEngine`] and the launches' lifecycle. Its parts
//!   are private modules: `plan` ([`MirrorEngine::plan`], synchronous on the
//!   hot path, and [`MirrorPlan::submit`], after the primary response, never
//!   blocking, feed a bounded queue), `worker` (a capped set of workers
//!   drains it: shadow calls, noise, comparison), `launch` (a launch's shared
//!   core), `sampling`, `job` and `recorder`.
//! - [`client`]: the [`ShadowClient`] trait the gateway implements over its
//!   upstream clusters, plus a plain HTTP implementation for replay and tests.
//! - [`compare`]: the [`Comparator`] trait and the structural JSON comparator
//!   (ignore patterns in the private `path` module).
//! - [`stats`] and [`verdict`]: bounded per-endpoint statistics, noise model,
//!   Wilson / Mann-Whitney scoring and the verdict.
//! - [`store`]: persistence of launches, statistics and examples.
//! - [`admin`], [`report`], [`cli`], [`record`]: the operator surfaces.
//!
//! Architecture invariant: nothing in this crate can change, delay or fail a
//! primary response. The only hot-path calls are `plan` (no I/O, no await)
//! and `submit` (a `try_send`); everything else runs on the workers.

pub mod admin;
pub mod cli;
pub mod client;
pub mod compare;
pub mod config;
pub mod endpoint;
pub mod engine;
mod job;
mod launch;
pub mod math;
pub mod outcome;
mod path;
mod plan;
pub mod record;
mod recorder;
pub mod report;
pub mod runtime;
mod sampling;
pub mod stats;
pub mod store;
pub mod verdict;
mod worker;

pub use client::{HttpShadowClient, ShadowClient, ShadowRequest};
pub use compare::{Comparator, DefaultComparator, Diff, ErrorKind, Observation, ObservationError};
pub use config::{CompareConfig, LaunchConfig, RecordConfig, SampleBy, Thresholds};
pub use engine::{EngineError, EngineOptions, LaunchSummary, MirrorEngine, MirrorPlan};
pub use outcome::{
    DiffCategory, DiffKind, DropReason, LaunchOrigin, LaunchState, MirrorOutcome, SkipReason,
};
pub use report::{render_text, Report};
pub use runtime::{ShadowRuntime, DEFAULT_SHADOW_IDLE, DEFAULT_SHADOW_NICE};
pub use stats::LaunchStats;
pub use store::{ShadowStore, SqlShadowStore, StoreError};
pub use verdict::{Assessment, EndpointAssessment, Scorer, Verdict};
