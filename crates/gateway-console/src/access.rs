//! Who may do what on the admin API: the one check every admin router sits
//! behind.
//!
//! A caller presents either `Authorization: Bearer <token>` (the CLI,
//! scripts) or a console session cookie (the browser). The admin token
//! grants [`Access::Admin`], the viewer token [`Access::Viewer`]. A viewer
//! may read (`GET`, `HEAD`) and nothing else (403 `admin_read_only`).
//!
//! A cookie is sent by the browser on its own, so a session is also
//! checked against cross-site requests: a state-changing call must carry
//! the session's CSRF token in `X-CSRF-Token`, and is refused when its
//! `Origin` is not the admin address itself or `Sec-Fetch-Site` says
//! another site sent it (403 `admin_csrf_rejected`). A bearer token is
//! never sent by a browser on its own, so it needs neither.

use gateway_core::{errors, Problem};
use http::{header, HeaderMap, Method};
use subtle::ConstantTimeEq;

pub use crate::role::{is_safe, Access};
use crate::session::{Sessions, SESSION_COOKIE};

/// Header carrying the session's CSRF token on state-changing calls.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The admin and (optional) viewer tokens.
#[derive(Clone)]
pub struct Tokens {
    admin: String,
    viewer: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("viewer", &self.viewer.is_some())
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// `viewer` is ignored when empty or equal to the admin token (it
    /// would be ambiguous).
    pub fn new(admin: String, viewer: Option<String>) -> Self {
        let viewer = viewer.filter(|v| !v.is_empty() && *v != admin);
        Self { admin, viewer }
    }

    /// The access a presented token grants, compared in constant time.
    pub fn access_for(&self, presented: &str) -> Option<Access> {
        if presented.is_empty() {
            return None;
        }
        let admin: bool = presented.as_bytes().ct_eq(self.admin.as_bytes()).into();
        let viewer: bool = self
            .viewer
            .as_ref()
            .is_some_and(|v| presented.as_bytes().ct_eq(v.as_bytes()).into());
        if admin {
            Some(Access::Admin)
        } else if viewer {
            Some(Access::Viewer)
        } else {
            None
        }
    }
}

/// How a caller was recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// What it may do.
    pub access: Access,
    /// `token` or `session`, for the audit log's actor name.
    pub via: &'static str,
}

impl Caller {
    /// The actor name recorded in audit logs: `admin`, `viewer`,
    /// `console:admin`, ...
    pub fn actor(&self) -> String {
        match self.via {
            "session" => format!("console:{}", self.access.as_str()),
            _ => self.access.as_str().to_string(),
        }
    }
}

/// Decides whether a request to a protected admin endpoint may go on.
pub fn authorize(
    method: &Method,
    headers: &HeaderMap,
    tokens: &Tokens,
    sessions: &Sessions,
) -> Result<Caller, Problem> {
    if let Some(bearer) = bearer(headers) {
        let access = tokens.access_for(bearer).ok_or_else(unauthorized)?;
        return allow(access, method).map(|access| Caller {
            access,
            via: "token",
        });
    }
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Err(unauthorized());
    };
    let session = sessions.get(id).ok_or_else(unauthorized)?;
    if !is_safe(method) {
        same_site(headers)?;
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let ok: bool = sent.as_bytes().ct_eq(session.csrf.as_bytes()).into();
        if !ok || sent.is_empty() {
            return Err(Problem::new(
                &errors::ADMIN_CSRF_REJECTED,
                format!("a console session's state-changing call needs its `{CSRF_HEADER}` header"),
            ));
        }
    }
    allow(session.access, method).map(|access| Caller {
        access,
        via: "session",
    })
}

fn allow(access: Access, method: &Method) -> Result<Access, Problem> {
    if access.allows(method) {
        Ok(access)
    } else {
        Err(Problem::new(
            &errors::ADMIN_READ_ONLY,
            format!("the viewer token can read but not change anything ({method} refused)"),
        ))
    }
}

/// Refuses a request another site made the browser send: `Origin` must
/// name this host, and `Sec-Fetch-Site` (when the browser sends it) must
/// be `same-origin` or `none`.
pub fn same_site(headers: &HeaderMap) -> Result<(), Problem> {
    let refuse = |why: String| Problem::new(&errors::ADMIN_CSRF_REJECTED, why);
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return Err(refuse(format!(
                "the browser says another site sent this request (Sec-Fetch-Site: {site})"
            )));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let own = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host));
        if !own {
            return Err(refuse(format!(
                "Origin `{origin}` is not this admin address (`{host}`)"
            )));
        }
    }
    Ok(())
}

fn unauthorized() -> Problem {
    Problem::new(
        &errors::ADMIN_UNAUTHORIZED,
        "the admin API needs `Authorization: Bearer <admin or viewer token>` or a console session",
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(""))
}

/// The value of cookie `name`, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn tokens() -> Tokens {
        Tokens::new("admin-secret".into(), Some("viewer-secret".into()))
    }

    #[test]
    fn tokens_grant_their_access() {
        let t = tokens();
        let s = Sessions::new(Duration::from_secs(60));
        let ok = |tok: &str, m: Method| {
            authorize(
                &m,
                &headers(&[("authorization", &format!("Bearer {tok}"))]),
                &t,
                &s,
            )
        };
        assert_eq!(
            ok("admin-secret", Method::POST).unwrap().access,
            Access::Admin
        );
        assert_eq!(
            ok("viewer-secret", Method::GET).unwrap().access,
            Access::Viewer
        );
        assert_eq!(
            ok("viewer-secret", Method::POST).unwrap_err().code(),
            "admin_read_only"
        );
        assert_eq!(
            ok("wrong", Method::GET).unwrap_err().code(),
            "admin_unauthorized"
        );
        assert_eq!(
            ok("", Method::GET).unwrap_err().code(),
            "admin_unauthorized"
        );
    }

    #[test]
    fn a_session_needs_its_csrf_token_and_its_own_origin_to_change_things() {
        let t = tokens();
        let s = Sessions::new(Duration::from_secs(60));
        let (id, csrf) = s.create(Access::Admin);
        let cookie = format!("{SESSION_COOKIE}={id}");
        let base = [("cookie", cookie.as_str()), ("host", "127.0.0.1:9090")];
        let get = authorize(&Method::GET, &headers(&base), &t, &s).unwrap();
        assert_eq!(get.actor(), "console:admin");
        let no_csrf = authorize(&Method::POST, &headers(&base), &t, &s).unwrap_err();
        assert_eq!(no_csrf.code(), "admin_csrf_rejected");
        let mut with = base.to_vec();
        with.push(("x-csrf-token", &csrf));
        assert!(authorize(&Method::POST, &headers(&with), &t, &s).is_ok());
        let mut cross = with.clone();
        cross.push(("origin", "https://evil.example"));
        assert_eq!(
            authorize(&Method::POST, &headers(&cross), &t, &s)
                .unwrap_err()
                .code(),
            "admin_csrf_rejected"
        );
        let mut own = with.clone();
        own.push(("origin", "http://127.0.0.1:9090"));
        own.push(("sec-fetch-site", "same-origin"));
        assert!(authorize(&Method::POST, &headers(&own), &t, &s).is_ok());
        let mut site = with;
        site.push(("sec-fetch-site", "cross-site"));
        assert!(authorize(&Method::POST, &headers(&site), &t, &s).is_err());
        s.remove(&id);
        assert_eq!(
            authorize(&Method::GET, &headers(&base), &t, &s)
                .unwrap_err()
                .code(),
            "admin_unauthorized"
        );
    }

    #[test]
    fn a_viewer_session_reads_only() {
        let t = tokens();
        let s = Sessions::new(Duration::from_secs(60));
        let (id, csrf) = s.create(Access::Viewer);
        let cookie = format!("{SESSION_COOKIE}={id}");
        let h = headers(&[("cookie", &cookie), ("x-csrf-token", &csrf)]);
        assert!(authorize(&Method::GET, &h, &t, &s).is_ok());
        assert_eq!(
            authorize(&Method::DELETE, &h, &t, &s).unwrap_err().code(),
            "admin_read_only"
        );
    }

    #[test]
    fn a_viewer_token_equal_to_the_admin_token_is_ignored() {
        let t = Tokens::new("same".into(), Some("same".into()));
        assert_eq!(t.access_for("same"), Some(Access::Admin));
    }
}
