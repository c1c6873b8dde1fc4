//! The shared vocabulary of Gatehouse.
//!
//! Every other crate may depend on this one; it depends on none of them.
//! It holds what must mean the same thing everywhere:
//!
//! - [`problem::Problem`]: the one error body clients ever see
//!   (`application/problem+json`, RFC 9457), made from an entry of
//!   [`errors`], the table of every code with its status, title and owning
//!   system; [`ToProblem`] is how an error names its entry.
//! - [`clock::Clock`]: an injectable source of wall-clock time, so key
//!   expiry, quote expiry and cache freshness are testable without sleeping.
//! - [`config_issue::ConfigIssue`]: one problem in a config table, with
//!   its key path; every section's `validate` returns them all at once.
//! - [`grpc`]: the gRPC status of every entry of the error table, and
//!   the trailers-only response a refused gRPC call gets.
//! - [`json::from_slice`]: how admin APIs read JSON bodies, so a bad one
//!   is refused naming the field at fault, the same way everywhere.

pub mod body;
pub mod clock;
pub mod config_issue;
pub mod errors;
pub mod grpc;
pub mod json;
#[cfg(feature = "axum")]
pub mod openapi;
pub mod problem;
pub mod size;

pub use body::{Body, BoxError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config_issue::ConfigIssue;
pub use errors::ErrorCode;
pub use problem::{Problem, ToProblem};
pub use size::ByteSize;
