//! Refusals as `application/problem+json`.
//!
//! Handlers return [`Problem`]s (which axum serves). Every refusal names
//! the parameter at fault (`parameter` extension) when there is one; the
//! code and status come from the error table ([`gateway_core::errors`]).
//! Internal faults are logged with their detail and answered generically.

use fx::FxError;
use gateway_core::{ErrorCode, Problem, ToProblem};
use http::StatusCode;

/// A problem about `parameter`.
pub fn param(code: &'static ErrorCode, parameter: &str, detail: impl Into<String>) -> Problem {
    Problem::new(code, detail).with("parameter", parameter)
}

/// A domain error as a problem, naming the parameter it concerns (if any).
pub fn fx(e: FxError, parameter: Option<&str>) -> Problem {
    let code = e.code();
    if code.status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "fx internal error");
        return Problem::new(code, "an internal error occurred; it has been logged");
    }
    let mut p = e.to_problem();
    // "Rates too stale" or "no data" is about the service, not a parameter.
    let about_request = code.status != StatusCode::SERVICE_UNAVAILABLE;
    if let Some(name) = parameter.filter(|_| about_request) {
        p = p.with("parameter", name);
    }
    p
}
