//! `application/problem+json` bodies (RFC 9457).
//!
//! Every error a client sees from Gatehouse, whatever the stage that produced
//! it, is a [`Problem`]: an HTTP status, a stable machine-readable `code`
//! (documented in `docs/errors.md`), a short title and a detail sentence that
//! says what and where. Internals (stack traces, SQL, secrets) never go here;
//! they go to the logs.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

/// The media type of problem details.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem details object.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    /// A URI reference naming the problem type; `about:blank` style tags here.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary, the same for every occurrence of this code.
    pub title: String,
    /// The HTTP status code, repeated in the body as RFC 9457 recommends.
    pub status: u16,
    /// What went wrong this time, in one sentence.
    pub detail: String,
    /// Stable machine-readable error code, e.g. `upstream_unavailable`.
    pub code: String,
    /// Extension members (e.g. `upstream`, `parameter`, `request_id`).
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

impl Problem {
    /// A problem with the given status, stable code and detail sentence.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            type_uri: format!("https://gatehouse.dev/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_string(),
            extensions: Map::new(),
        }
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_string(), value.into());
        self
    }

    /// Replaces the title.
    pub fn titled(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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

impl Problem {
    /// Renders the problem as a response with the pipeline's body type.
    pub fn response(self) -> Response<crate::Body> {
        self.into_response::<Bytes>().map(crate::body::full)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc9457_body_with_extensions() {
        let p = Problem::new(
            StatusCode::BAD_GATEWAY,
            "upstream_connect_failed",
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
        assert_eq!(v["title"], "Bad Gateway");
    }
}
