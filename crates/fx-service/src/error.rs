//! Mapping errors to `application/problem+json` responses.
//!
//! Every refusal names the parameter at fault (`parameter` extension) and a
//! stable `code`; the HTTP status comes from the domain error's class.
//! Internal faults are logged with their detail and answered generically.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use fx::{ErrorClass, FxError};
use gateway_core::Problem;
use http::StatusCode;

/// An error response.
#[derive(Debug)]
pub struct ApiError(pub Problem);

impl ApiError {
    /// A problem for `parameter`.
    pub fn param(
        status: StatusCode,
        code: &str,
        parameter: &str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError(Problem::new(status, code, detail).with("parameter", parameter))
    }

    /// Wraps a domain error, naming the parameter it concerns (if any).
    pub fn fx(e: FxError, parameter: Option<&str>) -> Self {
        let status = match e.class() {
            ErrorClass::BadRequest => StatusCode::BAD_REQUEST,
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::Gone => StatusCode::GONE,
            ErrorClass::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "fx internal error");
            return ApiError(Problem::new(
                status,
                e.code(),
                "an internal error occurred; it has been logged",
            ));
        }
        let mut p = Problem::new(status, e.code(), e.to_string());
        // "Rates too stale" or "no data" is about the service, not a parameter.
        let about_request = status != StatusCode::SERVICE_UNAVAILABLE;
        if let Some(name) = parameter.filter(|_| about_request) {
            p = p.with("parameter", name);
        }
        ApiError(p)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let res: http::Response<Bytes> = self.0.into_response();
        let (parts, body) = res.into_parts();
        Response::from_parts(parts, axum::body::Body::from(body))
    }
}
