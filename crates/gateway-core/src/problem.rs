//! `application/problem+json` bodies (RFC 9457).
//!
//! Every error a client sees from Gatehouse, whatever the stage that produced
//! it, is a [`Problem`]: an entry of the [error table](crate::errors) (a
//! stable machine-readable `code`, its HTTP status and title, documented in
//! `docs/errors.md`) and a detail sentence that says what and where. Internals (stack traces, SQL, secrets) never go here;
//! they go to the logs.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::errors::ErrorCode;

/// The media type of problem details.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem details object: an entry of the [error table](crate::errors)
/// and what went wrong this time.
///
/// Serialized as `type`, `title`, `status`, `detail`, `code`, then the
/// extension members.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The table entry: code, status, title and owning system.
    pub error: &'static ErrorCode,
    /// What went wrong this time, in one sentence.
    pub detail: String,
    /// Extension members (e.g. `upstream`, `parameter`, `request_id`).
    pub extensions: Map<String, Value>,
}

impl Problem {
    /// A problem of kind `error` (an entry of [`crate::errors`]) with a
    /// detail sentence.
    pub fn new(error: &'static ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            error,
            detail: detail.into(),
            extensions: Map::new(),
        }
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_string(), value.into());
        self
    }

    /// The stable machine-readable code, e.g. `upstream_unavailable`.
    pub fn code(&self) -> &'static str {
        self.error.code
    }

    /// The short summary of this kind of problem.
    pub fn title(&self) -> &'static str {
        self.error.title
    }

    /// The URI naming the problem type.
    pub fn type_uri(&self) -> String {
        format!("{TYPE_BASE}{}", self.error.code)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.error.status
    }

    /// The serialized JSON body.
    pub fn body(&self) -> Bytes {
        // Serializing a struct of strings and JSON values cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Renders the problem as an HTTP response with any body type that can be
    /// built from `Bytes`.
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let body = self.body();
        let mut res = Response::new(B::from(body));
        *res.status_mut() = self.status();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// Where problem type URIs start; the code follows.
pub const TYPE_BASE: &str = "https://gatehouse.dev/problems/";

impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "type")]
            type_uri: String,
            title: &'a str,
            status: u16,
            detail: &'a str,
            code: &'a str,
            #[serde(flatten)]
            extensions: &'a Map<String, Value>,
        }
        Wire {
            type_uri: self.type_uri(),
            title: self.error.title,
            status: self.error.status.as_u16(),
            detail: &self.detail,
            code: self.error.code,
            extensions: &self.extensions,
        }
        .serialize(s)
    }
}

impl Problem {
    /// Renders the problem as a response with the pipeline's body type.
    pub fn response(self) -> Response<crate::Body> {
        self.into_response::<Bytes>().map(crate::body::full)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.error.status.as_u16(),
            self.error.code,
            self.detail
        )
    }
}

/// An error a client may see: it names its entry of the error table, and
/// renders as a [`Problem`].
///
/// This is the one way an error becomes a problem: implement `code` (and
/// `to_problem` when the detail must hide internals or the problem needs
/// extension members); `?` then converts the error into a `Problem`.
pub trait ToProblem: std::fmt::Display {
    /// Its entry of the error table.
    fn code(&self) -> &'static ErrorCode;

    /// The HTTP status clients get (the entry's).
    fn status(&self) -> StatusCode {
        self.code().status
    }

    /// The problem+json. Default: the entry and the error's `Display` text
    /// as the detail.
    fn to_problem(&self) -> Problem {
        Problem::new(self.code(), self.to_string())
    }
}

impl<E: ToProblem> From<E> for Problem {
    fn from(e: E) -> Problem {
        e.to_problem()
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Problem {
    fn into_response(self) -> axum::response::Response {
        Problem::into_response::<axum::body::Body>(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc9457_body_with_extensions() {
        let p = Problem::new(
            &crate::errors::UPSTREAM_CONNECT_FAILED,
            "connection refused",
        )
        .with("upstream", "fx");
        let res: Response<Bytes> = p.into_response();
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(res.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let v: Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(v["status"], 502);
        assert_eq!(v["code"], "upstream_connect_failed");
        assert_eq!(v["upstream"], "fx");
        assert_eq!(v["title"], "Upstream connection failed");
        assert_eq!(
            v["type"],
            "https://gatehouse.dev/problems/upstream_connect_failed"
        );
        assert_eq!(
            std::str::from_utf8(res.body()).unwrap(),
            r#"{"type":"https://gatehouse.dev/problems/upstream_connect_failed","title":"Upstream connection failed","status":502,"detail":"connection refused","code":"upstream_connect_failed","upstream":"fx"}"#
        );
    }
}
