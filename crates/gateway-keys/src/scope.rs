//! Scopes: what a key may reach.
//!
//! A key holds a list of scopes, each one of:
//!
//! - `*`: everything;
//! - `route:NAME`: the route named `NAME`;
//! - `tag:NAME`: any route tagged `NAME`;
//! - `method:VERB`: requests with that HTTP method (e.g. `method:GET`);
//! - a custom scope such as `orders:write`, which routes can require with
//!   `required_scopes`.
//!
//! Rules, in order: a key with `*` passes everything. If it holds any
//! `route:`/`tag:` scope, the route must match one of them. If it holds any
//! `method:` scope, the request method must match one. Every scope the
//! route requires must be held. A key with no scopes at all can reach any
//! route that requires none, which keeps the simplest setup simple.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest accepted scope text.
pub const MAX_SCOPE_LEN: usize = 128;

/// A parsed scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Scope {
    /// `*`
    All,
    /// `route:NAME`
    Route(String),
    /// `tag:NAME`
    Tag(String),
    /// `method:VERB` (upper-cased)
    Method(String),
    /// Any other name.
    Custom(String),
}

/// A malformed scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope `{scope}`: {reason}")]
pub struct ScopeError {
    /// The offending text (never a secret).
    pub scope: String,
    /// What is expected.
    pub reason: &'static str,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, ScopeError> {
        let err = |reason| ScopeError {
            scope: s.chars().take(MAX_SCOPE_LEN).collect(),
            reason,
        };
        if s.len() > MAX_SCOPE_LEN {
            return Err(err("longer than 128 characters"));
        }
        if s == "*" {
            return Ok(Scope::All);
        }
        if let Some(name) = s.strip_prefix("route:") {
            return valid_name(name)
                .then(|| Scope::Route(name.to_string()))
                .ok_or(err("a route name is letters, digits, `_`, `-`, `.` or `/`"));
        }
        if let Some(name) = s.strip_prefix("tag:") {
            return valid_name(name)
                .then(|| Scope::Tag(name.to_string()))
                .ok_or(err("a tag is letters, digits, `_`, `-`, `.` or `/`"));
        }
        if let Some(verb) = s.strip_prefix("method:") {
            let verb = verb.to_ascii_uppercase();
            return http::Method::from_bytes(verb.as_bytes())
                .ok()
                .filter(|_| !verb.is_empty() && verb.bytes().all(|b| b.is_ascii_uppercase()))
                .map(|_| Scope::Method(verb))
                .ok_or(err("expected an HTTP method such as `method:GET`"));
        }
        let ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'/')
            });
        if ok {
            Ok(Scope::Custom(s.to_string()))
        } else {
            Err(err(
                "expected `*`, `route:NAME`, `tag:NAME`, `method:VERB` or a name of letters, digits, `_-.:/`",
            ))
        }
    }
}

impl TryFrom<String> for Scope {
    type Error = ScopeError;
    fn try_from(s: String) -> Result<Self, ScopeError> {
        s.parse()
    }
}

/// On the wire: the scope's text (`*`, `route:NAME`, `tag:NAME`,
/// `method:VERB` or any other name).
impl utoipa::PartialSchema for Scope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .max_length(Some(MAX_SCOPE_LEN))
            .description(Some(
                "`*`, `route:NAME`, `tag:NAME`, `method:VERB` or any other name.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Scope {}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.to_string()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("*"),
            Scope::Route(n) => write!(f, "route:{n}"),
            Scope::Tag(n) => write!(f, "tag:{n}"),
            Scope::Method(m) => write!(f, "method:{m}"),
            Scope::Custom(c) => f.write_str(c),
        }
    }
}

/// Why a key may not reach a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeDenial {
    /// The key is limited to other routes/tags.
    Route,
    /// The key is limited to other methods.
    Method,
    /// The key lacks a scope the route requires.
    MissingScope(String),
}

impl ScopeDenial {
    /// Stable identifier.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Route => "route_not_in_scope",
            Self::Method => "method_not_in_scope",
            Self::MissingScope(_) => "missing_required_scope",
        }
    }

    /// A sentence for the problem detail.
    pub fn describe(&self, route: &str, method: &http::Method) -> String {
        match self {
            Self::Route => format!("this key is not scoped for route `{route}`"),
            Self::Method => format!("this key is not scoped for {method} requests"),
            Self::MissingScope(s) => format!("route `{route}` requires scope `{s}`"),
        }
    }
}

/// Decides whether `held` scopes reach a route.
pub fn check_access(
    held: &[Scope],
    route: &str,
    tags: &[String],
    method: &http::Method,
    required: &[Scope],
) -> Result<(), ScopeDenial> {
    if held.contains(&Scope::All) {
        return Ok(());
    }
    let mut route_limited = false;
    let mut route_ok = false;
    let mut method_limited = false;
    let mut method_ok = false;
    for s in held {
        match s {
            Scope::Route(r) => {
                route_limited = true;
                route_ok |= r == route;
            }
            Scope::Tag(t) => {
                route_limited = true;
                route_ok |= tags.iter().any(|x| x == t);
            }
            Scope::Method(m) => {
                method_limited = true;
                method_ok |= m == method.as_str();
            }
            Scope::All | Scope::Custom(_) => {}
        }
    }
    if route_limited && !route_ok {
        return Err(ScopeDenial::Route);
    }
    if method_limited && !method_ok {
        return Err(ScopeDenial::Method);
    }
    for r in required {
        if !held.contains(r) {
            return Err(ScopeDenial::MissingScope(r.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(s: &[&str]) -> Vec<Scope> {
        s.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn parses_and_prints() {
        for s in [
            "*",
            "route:orders",
            "tag:public",
            "method:GET",
            "orders:write",
        ] {
            assert_eq!(s.parse::<Scope>().unwrap().to_string(), s);
        }
        assert_eq!(
            "method:get".parse::<Scope>().unwrap(),
            Scope::Method("GET".into())
        );
        for bad in [
            "",
            "route:",
            "tag:a b",
            "method:",
            "method:G T",
            "has space",
            ":x",
            "a\"b",
        ] {
            assert!(bad.parse::<Scope>().is_err(), "{bad:?}");
        }
    }

    type Case<'a> = (
        &'a [&'a str],
        &'a str,
        &'a http::Method,
        &'a [&'a str],
        Result<(), ScopeDenial>,
    );

    #[test]
    fn access_rules() {
        let get = http::Method::GET;
        let post = http::Method::POST;
        let tags = vec!["public".to_string()];
        // (held, route, method, required, expected)
        let cases: Vec<Case<'_>> = vec![
            (&[], "orders", &get, &[], Ok(())),
            (
                &[],
                "orders",
                &get,
                &["orders:write"],
                Err(ScopeDenial::MissingScope("orders:write".into())),
            ),
            (&["*"], "orders", &post, &["orders:write"], Ok(())),
            (&["route:orders"], "orders", &get, &[], Ok(())),
            (
                &["route:orders"],
                "billing",
                &get,
                &[],
                Err(ScopeDenial::Route),
            ),
            (&["tag:public"], "billing", &get, &[], Ok(())),
            (
                &["route:orders", "method:GET"],
                "orders",
                &post,
                &[],
                Err(ScopeDenial::Method),
            ),
            (&["route:orders", "method:GET"], "orders", &get, &[], Ok(())),
            (
                &["orders:write"],
                "orders",
                &post,
                &["orders:write"],
                Ok(()),
            ),
        ];
        for (held, route, method, required, want) in cases {
            let got = check_access(&scopes(held), route, &tags, method, &scopes(required));
            assert_eq!(
                got, want,
                "held {held:?} route {route} {method} required {required:?}"
            );
        }
    }
}
