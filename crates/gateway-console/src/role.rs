//! What a caller may do: the vocabulary shared by the access check and the
//! sessions it issues.

use http::Method;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Everything.
    Admin,
    /// Read everything, change nothing.
    Viewer,
}

impl Access {
    /// Stable name, for the audit log and the console.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Viewer => "viewer",
        }
    }

    /// Whether this access may make a request with `method`.
    pub fn allows(&self, method: &Method) -> bool {
        matches!(self, Self::Admin) || is_safe(method)
    }
}

/// `GET`, `HEAD` and `OPTIONS` change nothing.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}
