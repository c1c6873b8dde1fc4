//! The authentication stage the proxy runs per request.
//!
//! [`Authenticator::authenticate`] finds a credential (an API key in
//! `Authorization: Bearer`, a configurable header, or an opt-in query
//! parameter; or a JWT bearer token), verifies it against memory only,
//! checks scopes, strips the credential from the request and sets the
//! consumer identity headers for the upstream. Failures are
//! [`AuthError`]s: 401 (missing, malformed, unknown, expired, revoked
//! credential) or 403 (outside the key's scopes), each problem+json with a
//! `WWW-Authenticate` challenge; or 429 when the client IP is over its
//! failed-verification or unauthenticated limit.
//!
//! Malformed keys are refused by [`ApiKey`]'s parser (prefix, charset,
//! length, CRC32) before anything is looked up. The secret never reaches a
//! log line: events carry the key id and consumer only.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use gateway_core::Problem;
use http::request::Parts;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::config::{AuthMethodKind, JwtConfig, RouteAuthConfig};
use crate::jwt::JwtVerifier;
use crate::key::{ApiKey, KeyId};
use crate::keyring::VerifyFailure;
use crate::model::KeyStatus;
use crate::ratelimit::{LimitKind, Limited};
use crate::scope::{check_access, Scope};
use crate::service::KeyService;

/// The client address, inserted into request extensions by the listener.
/// (A plain `SocketAddr` extension or axum's `ConnectInfo<SocketAddr>` is
/// also understood.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// By API key.
    ApiKey,
    /// By JWT.
    Jwt,
    /// Not at all (route allows anonymous access).
    Anonymous,
}

impl IdentityKind {
    /// Stable identifier.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Jwt => "jwt",
            Self::Anonymous => "anonymous",
        }
    }
}

/// Who is calling, as established by the authentication stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    /// How.
    pub kind: IdentityKind,
    /// Consumer id (`con_...`), or the JWT consumer claim.
    pub consumer_id: Option<String>,
    /// Consumer name.
    pub consumer_name: Option<String>,
    /// Key id (API keys only).
    pub key_id: Option<KeyId>,
    /// Key state (`active` or `retiring`).
    pub key_status: Option<KeyStatus>,
    /// Plan whose limits apply.
    pub plan: Option<String>,
    /// Consumer group.
    pub group: Option<String>,
    /// Client address, when known.
    pub client_ip: Option<IpAddr>,
}

impl Identity {
    fn anonymous(ip: Option<IpAddr>) -> Self {
        Identity {
            kind: IdentityKind::Anonymous,
            consumer_id: None,
            consumer_name: None,
            key_id: None,
            key_status: None,
            plan: None,
            group: None,
            client_ip: ip,
        }
    }
}

/// Why authentication failed, as data for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Authenticated.
    Ok,
    /// Anonymous access allowed.
    Anonymous,
    /// No credential.
    Missing,
    /// Not a well-formed key.
    Malformed,
    /// Well-formed but unknown.
    Unknown,
    /// Expired or past grace.
    Expired,
    /// Revoked.
    Revoked,
    /// Outside the key's scopes.
    ScopeDenied,
    /// JWT refused.
    InvalidToken,
    /// Client IP over a limit.
    IpLimited,
    /// Route misconfigured (e.g. unreadable JWT key file).
    Misconfigured,
}

impl AuthOutcome {
    /// Stable identifier (the `outcome` label of `gatehouse_auth_total`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Anonymous => "anonymous",
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::ScopeDenied => "scope_denied",
            Self::InvalidToken => "invalid_token",
            Self::IpLimited => "ip_limited",
            Self::Misconfigured => "misconfigured",
        }
    }
}

/// A refused request: problem+json plus the headers it needs
/// (`WWW-Authenticate`, or `Retry-After` and RateLimit-* for 429).
#[derive(Debug, Clone)]
pub struct AuthError {
    /// What happened.
    pub outcome: AuthOutcome,
    /// The body.
    pub problem: Problem,
    /// Extra response headers.
    pub headers: HeaderMap,
}

impl AuthError {
    fn new(
        outcome: AuthOutcome,
        status: StatusCode,
        code: &str,
        detail: impl Into<String>,
        challenge: String,
    ) -> Self {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        AuthError {
            outcome,
            problem: Problem::new(status, code, detail),
            headers,
        }
    }

    fn limited(l: Limited) -> Self {
        AuthError {
            outcome: AuthOutcome::IpLimited,
            problem: l.problem(),
            headers: l.headers(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.problem.status()
    }

    /// The full response.
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let mut res = self.problem.into_response();
        res.headers_mut().extend(self.headers);
        res
    }
}

impl From<AuthError> for Problem {
    fn from(e: AuthError) -> Problem {
        e.problem
    }
}

const REALM: &str = "gatehouse";

fn challenge(error: Option<(&str, &str)>) -> String {
    match error {
        None => format!("Bearer realm=\"{REALM}\""),
        Some((code, desc)) => format!(
            "Bearer realm=\"{REALM}\", error=\"{code}\", error_description=\"{}\"",
            desc.replace(['"', '\\'], "'")
        ),
    }
}

enum Credential {
    Bearer(String),
    Header(String),
    Query(String),
}

impl Credential {
    fn text(&self) -> &str {
        match self {
            Credential::Bearer(s) | Credential::Header(s) | Credential::Query(s) => s,
        }
    }
}

/// The authentication stage. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    service: KeyService,
    jwt: Arc<DashMap<String, (JwtConfig, Arc<JwtVerifier>)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator over `service`.
    pub fn new(service: KeyService) -> Self {
        Self {
            service,
            jwt: Arc::new(DashMap::new()),
        }
    }

    /// The service.
    pub fn service(&self) -> &KeyService {
        &self.service
    }

    /// Validates a route's auth config and loads its JWT key material, so
    /// no file is read on the request path. Call at startup and on config
    /// reload; returns the problems found.
    pub fn prepare_route(
        &self,
        route_name: &str,
        cfg: &RouteAuthConfig,
    ) -> Result<(), Vec<crate::config::ConfigIssue>> {
        cfg.validate()?;
        if let Some(j) = &cfg.jwt {
            let v = JwtVerifier::from_config(j)
                .map_err(|e| e.into_iter().map(|i| i.under("jwt")).collect::<Vec<_>>())?;
            self.jwt
                .insert(route_name.to_string(), (j.clone(), Arc::new(v)));
        }
        Ok(())
    }

    fn verifier(&self, route_name: &str, cfg: &JwtConfig) -> Result<Arc<JwtVerifier>, AuthError> {
        if let Some(e) = self.jwt.get(route_name) {
            if e.0 == *cfg {
                return Ok(e.1.clone());
            }
        }
        // Not prepared (or the config changed): build once and cache.
        let v = JwtVerifier::from_config(cfg).map_err(|issues| {
            let list: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
            tracing::error!(route = route_name, issues = %list.join("; "), "JWT settings unusable");
            AuthError {
                outcome: AuthOutcome::Misconfigured,
                problem: Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "auth_misconfigured",
                    "this route's authentication is misconfigured",
                ),
                headers: HeaderMap::new(),
            }
        })?;
        let v = Arc::new(v);
        self.jwt
            .insert(route_name.to_string(), (cfg.clone(), v.clone()));
        Ok(v)
    }

    /// Authenticates a request for `route_name`. See the module docs.
    pub async fn authenticate(
        &self,
        parts: &mut Parts,
        route: &RouteAuthConfig,
        route_name: &str,
    ) -> Result<Identity, AuthError> {
        let result = self.run(parts, route, route_name).await;
        let outcome = match &result {
            Ok(id) if id.kind == IdentityKind::Anonymous => AuthOutcome::Anonymous,
            Ok(_) => AuthOutcome::Ok,
            Err(e) => e.outcome,
        };
        metrics::counter!("gatehouse_auth_total", "route" => route_name.to_string(), "outcome" => outcome.as_str())
            .increment(1);
        result
    }

    async fn run(
        &self,
        parts: &mut Parts,
        route: &RouteAuthConfig,
        route_name: &str,
    ) -> Result<Identity, AuthError> {
        let ip = client_ip(parts);
        let cfg = self.service.config();
        let ip_key = ip.map(|ip| format!("authfail:{ip}"));
        // A client that keeps failing is stopped before any lookup.
        if let Some(k) = &ip_key {
            if let Err(l) = self
                .service
                .limits()
                .peek_ip(k, &cfg.failed_auth_per_ip, LimitKind::FailedAuthIp)
                .await
            {
                return Err(AuthError::limited(l));
            }
        }
        // Identity headers come only from us; drop any the client sent.
        strip_identity_headers(parts, route, self.jwt_header_names(route_name));

        let Some(cred) = extract(parts, route) else {
            if let Some(ip) = ip {
                self.service
                    .limits()
                    .check_ip(
                        &format!("anon:{ip}"),
                        &cfg.unauthenticated_per_ip,
                        LimitKind::UnauthenticatedIp,
                    )
                    .await
                    .map_err(AuthError::limited)?;
            }
            if route.anonymous {
                return Ok(Identity::anonymous(ip));
            }
            tracing::debug!(route = route_name, client_ip = ?ip, "request without credentials");
            return Err(AuthError::new(
                AuthOutcome::Missing,
                StatusCode::UNAUTHORIZED,
                "missing_credentials",
                missing_detail(route),
                challenge(None),
            ));
        };

        let text = cred.text().to_string();
        let is_key = text.starts_with(crate::key::KEY_PREFIX);
        let allow_key = route.methods.contains(&AuthMethodKind::ApiKey);
        let allow_jwt =
            route.methods.contains(&AuthMethodKind::Jwt) && matches!(cred, Credential::Bearer(_));
        let res = if allow_jwt && (!is_key || !allow_key) && text.matches('.').count() == 2 {
            self.jwt_path(parts, route, route_name, &text, ip).await
        } else if allow_key {
            self.key_path(parts, route, route_name, &text, ip).await
        } else {
            Err(AuthError::new(
                AuthOutcome::InvalidToken,
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "this route accepts JWT bearer tokens only",
                challenge(Some(("invalid_token", "expected a JWT"))),
            ))
        };
        match res {
            Ok(id) => {
                strip_credential(parts, &cred, route);
                set_identity_headers(parts, route, &id);
                Ok(id)
            }
            Err(e) => {
                if matches!(
                    e.outcome,
                    AuthOutcome::Malformed
                        | AuthOutcome::Unknown
                        | AuthOutcome::Expired
                        | AuthOutcome::Revoked
                        | AuthOutcome::InvalidToken
                ) {
                    self.note_failure(ip, ip_key.as_deref()).await;
                }
                Err(e)
            }
        }
    }

    async fn note_failure(&self, ip: Option<IpAddr>, ip_key: Option<&str>) {
        let (Some(ip), Some(key)) = (ip, ip_key) else {
            return;
        };
        let cfg = &self.service.config().failed_auth_per_ip;
        let blocked = self
            .service
            .limits()
            .check_ip(key, cfg, LimitKind::FailedAuthIp)
            .await
            .is_err()
            || self
                .service
                .limits()
                .peek_ip(key, cfg, LimitKind::FailedAuthIp)
                .await
                .is_err();
        self.service.note_ip_blocked(ip, blocked);
    }

    async fn key_path(
        &self,
        parts: &Parts,
        route: &RouteAuthConfig,
        route_name: &str,
        text: &str,
        ip: Option<IpAddr>,
    ) -> Result<Identity, AuthError> {
        let key: ApiKey = text.parse().map_err(|e: crate::key::KeyFormatError| {
            tracing::info!(route = route_name, client_ip = ?ip, reason = e.as_str(), "malformed API key refused");
            AuthError::new(
                AuthOutcome::Malformed,
                StatusCode::UNAUTHORIZED,
                "malformed_api_key",
                format!("the API key is malformed: {e}"),
                challenge(Some(("invalid_token", "malformed API key"))),
            )
        })?;
        let verified = self.service.verify(&key).map_err(|f| {
            tracing::info!(route = route_name, client_ip = ?ip, reason = f.as_str(), "API key refused");
            let (outcome, code, detail) = match f {
                VerifyFailure::Unknown => (AuthOutcome::Unknown, "unknown_api_key", "the API key is not valid"),
                VerifyFailure::Expired => (AuthOutcome::Expired, "expired_api_key", "the API key has expired"),
                VerifyFailure::Revoked => (AuthOutcome::Revoked, "revoked_api_key", "the API key has been revoked"),
            };
            AuthError::new(outcome, StatusCode::UNAUTHORIZED, code, detail, challenge(Some(("invalid_token", detail))))
        })?;
        let rec = &verified.entry.record;
        let required = parse_required(route);
        if let Err(denial) = check_access(
            &rec.scopes,
            route_name,
            &route.tags,
            &parts.method,
            &required,
        ) {
            tracing::info!(route = route_name, key_id = %rec.id, consumer_id = %rec.consumer_id, reason = denial.as_str(), "key outside its scopes");
            self.service
                .note_scope_denial(&rec.id, &rec.consumer_id, route_name, denial.as_str());
            let scope_hint = route.required_scopes.join(" ");
            let mut e = AuthError::new(
                AuthOutcome::ScopeDenied,
                StatusCode::FORBIDDEN,
                "key_scope_denied",
                denial.describe(route_name, &parts.method),
                format!(
                    "Bearer realm=\"{REALM}\", error=\"insufficient_scope\"{}",
                    if scope_hint.is_empty() {
                        String::new()
                    } else {
                        format!(", scope=\"{scope_hint}\"")
                    }
                ),
            );
            e.problem = e.problem.with("key_id", rec.id.to_string());
            return Err(e);
        }
        let consumer = &verified.entry.consumer;
        tracing::debug!(route = route_name, key_id = %rec.id, consumer_id = %consumer.id, status = verified.status.as_str(), "API key verified");
        Ok(Identity {
            kind: IdentityKind::ApiKey,
            consumer_id: Some(consumer.id.to_string()),
            consumer_name: Some(consumer.name.clone()),
            key_id: Some(rec.id.clone()),
            key_status: Some(verified.status),
            plan: rec.plan.clone().or_else(|| consumer.plan.clone()),
            group: consumer.group.clone(),
            client_ip: ip,
        })
    }

    async fn jwt_path(
        &self,
        parts: &mut Parts,
        route: &RouteAuthConfig,
        route_name: &str,
        token: &str,
        ip: Option<IpAddr>,
    ) -> Result<Identity, AuthError> {
        let Some(cfg) = &route.jwt else {
            return Err(AuthError {
                outcome: AuthOutcome::Misconfigured,
                problem: Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "auth_misconfigured",
                    "this route's authentication is misconfigured",
                ),
                headers: HeaderMap::new(),
            });
        };
        let verifier = self.verifier(route_name, cfg)?;
        let invalid = |msg: String| {
            AuthError::new(
                AuthOutcome::InvalidToken,
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                msg.clone(),
                challenge(Some(("invalid_token", &msg))),
            )
        };
        let claims = verifier.verify(token).map_err(|e| {
            tracing::info!(route = route_name, client_ip = ?ip, reason = e.reason, "JWT refused");
            invalid(e.message.clone())
        })?;
        let consumer = verifier.consumer(&claims).ok_or_else(|| {
            invalid(format!(
                "the token has no usable `{}` claim",
                cfg.consumer_claim
            ))
        })?;
        let held: Vec<Scope> = verifier
            .scopes(&claims)
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        let required = parse_required(route);
        for r in &required {
            if !held.contains(r) && !held.contains(&Scope::All) {
                return Err(AuthError::new(
                    AuthOutcome::ScopeDenied,
                    StatusCode::FORBIDDEN,
                    "token_scope_denied",
                    format!("route `{route_name}` requires scope `{r}`"),
                    format!(
                        "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{r}\""
                    ),
                ));
            }
        }
        for (name, value) in verifier.forwarded(&claims) {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                parts.headers.insert(n, v);
            }
        }
        tracing::debug!(route = route_name, consumer = %consumer, "JWT verified");
        Ok(Identity {
            kind: IdentityKind::Jwt,
            consumer_id: Some(consumer.clone()),
            consumer_name: None,
            key_id: None,
            key_status: None,
            plan: verifier.plan().map(str::to_string),
            group: None,
            client_ip: ip,
        })
    }

    fn jwt_header_names(&self, route_name: &str) -> Vec<String> {
        self.jwt
            .get(route_name)
            .map(|e| e.1.header_names().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

fn parse_required(route: &RouteAuthConfig) -> Vec<Scope> {
    // Validated at config load; an unparsable entry can only deny.
    route
        .required_scopes
        .iter()
        .map(|s| s.parse().unwrap_or_else(|_| Scope::Custom(s.clone())))
        .collect()
}

fn missing_detail(route: &RouteAuthConfig) -> String {
    let mut ways = vec!["`Authorization: Bearer <key>`".to_string()];
    if route.methods.contains(&AuthMethodKind::ApiKey) {
        ways.push(format!("the `{}` header", route.header));
        if let Some(q) = &route.query_param {
            ways.push(format!("the `{q}` query parameter"));
        }
    }
    format!(
        "credentials are required: send them in {}",
        ways.join(" or ")
    )
}

/// The client address from request extensions.
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    if let Some(ClientIp(ip)) = parts.extensions.get::<ClientIp>() {
        return Some(*ip);
    }
    if let Some(sa) = parts.extensions.get::<SocketAddr>() {
        return Some(sa.ip());
    }
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

fn extract(parts: &Parts, route: &RouteAuthConfig) -> Option<Credential> {
    if let Some(v) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            let t = v[7..].trim();
            if !t.is_empty() {
                return Some(Credential::Bearer(t.to_string()));
            }
        }
    }
    if route.methods.contains(&AuthMethodKind::ApiKey) {
        if let Some(v) = parts
            .headers
            .get(route.header.as_str())
            .and_then(|v| v.to_str().ok())
        {
            let t = v.trim();
            if !t.is_empty() {
                return Some(Credential::Header(t.to_string()));
            }
        }
        if let Some(q) = &route.query_param {
            if let Some(query) = parts.uri.query() {
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if k == q && !v.is_empty() {
                        let v = percent_encoding::percent_decode_str(v)
                            .decode_utf8_lossy()
                            .to_string();
                        return Some(Credential::Query(v));
                    }
                }
            }
        }
    }
    None
}

fn strip_credential(parts: &mut Parts, cred: &Credential, route: &RouteAuthConfig) {
    match cred {
        Credential::Bearer(_) => {
            parts.headers.remove(header::AUTHORIZATION);
        }
        Credential::Header(_) => {
            parts.headers.remove(route.header.as_str());
        }
        Credential::Query(_) => {
            if let Some(q) = &route.query_param {
                let path = parts.uri.path().to_string();
                let rest: Vec<&str> = parts
                    .uri
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .filter(|p| !p.is_empty() && p.split_once('=').map_or(*p, |(k, _)| k) != q)
                    .collect();
                let pq = if rest.is_empty() {
                    path
                } else {
                    format!("{path}?{}", rest.join("&"))
                };
                let mut b = http::uri::Parts::from(parts.uri.clone());
                if let Ok(pq) = pq.parse() {
                    b.path_and_query = Some(pq);
                    if let Ok(u) = http::Uri::from_parts(b) {
                        parts.uri = u;
                    }
                }
            }
        }
    }
}

fn strip_identity_headers(parts: &mut Parts, route: &RouteAuthConfig, extra: Vec<String>) {
    let f = &route.forward;
    for name in [&f.consumer_id, &f.consumer_name, &f.key_id, &f.plan]
        .into_iter()
        .filter(|n| !n.is_empty())
        .map(String::as_str)
        .chain(extra.iter().map(String::as_str))
        .chain(
            route
                .jwt
                .iter()
                .flat_map(|j| j.claims_to_headers.values().map(String::as_str)),
        )
    {
        parts.headers.remove(name);
    }
}

fn set_identity_headers(parts: &mut Parts, route: &RouteAuthConfig, id: &Identity) {
    let f = &route.forward;
    let key_id = id.key_id.as_ref().map(|k| k.to_string());
    for (name, value) in [
        (&f.consumer_id, id.consumer_id.as_deref()),
        (&f.consumer_name, id.consumer_name.as_deref()),
        (&f.key_id, key_id.as_deref()),
        (&f.plan, id.plan.as_deref()),
    ] {
        let (Some(v), false) = (value, name.is_empty()) else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            parts.headers.insert(n, v);
        }
    }
}
