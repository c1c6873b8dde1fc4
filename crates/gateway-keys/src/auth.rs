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

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use dashmap::DashMap;
use gateway_core::errors::{self, ErrorCode};
use gateway_core::{Problem, ToProblem};
use http::request::Parts;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::client_cert::ClientCertNames;
use crate::config::{AuthMethodKind, JwtConfig, RouteAuthConfig};
use crate::jwt::JwtVerifier;
use crate::key::{ApiKey, KeyHash};
use crate::keyring::{KeyEntry, VerifyFailure};
use crate::model::KeyStatus;
use crate::ratelimit::{LimitKind, Limited};
use crate::scope::{check_access, Scope};
use crate::service::KeyService;

// The identity types live in `identity`; these paths stay for callers.
use crate::identity::IdentityHeaders;
pub use crate::identity::{Identity, IdentityKind};

/// The client address, inserted into request extensions by the listener.
/// (A plain `SocketAddr` extension or axum's `ConnectInfo<SocketAddr>` is
/// also understood.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

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
    /// How many outcomes there are (the size of a per-route counter table).
    const COUNT: usize = 11;

    /// Position in a per-route counter table.
    fn index(self) -> usize {
        self as usize
    }

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
        code: &'static ErrorCode,
        detail: impl Into<String>,
        challenge: String,
    ) -> Self {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        AuthError {
            outcome,
            problem: Problem::new(code, detail),
            headers,
        }
    }

    fn limited(l: Limited) -> Self {
        AuthError {
            outcome: AuthOutcome::IpLimited,
            problem: l.to_problem(),
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

/// Where the credential was found: what [`strip_credential`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CredentialKind {
    Bearer,
    Header,
    Query,
}

/// The per-request key of a per-IP limiter (`authfail:<ip>`, `anon:<ip>`),
/// written on the stack: the failed-verification limit is peeked on every
/// authenticated request, so the key must not cost an allocation.
struct IpKey {
    buf: [u8; IpKey::CAP],
    len: usize,
}

impl IpKey {
    /// `authfail:` plus the longest IPv6 text (45 bytes) fits.
    const CAP: usize = 64;

    fn new(prefix: &str, ip: IpAddr) -> Self {
        let mut k = IpKey {
            buf: [0; Self::CAP],
            len: 0,
        };
        // Cannot fail: every prefix used here plus any address fits in CAP.
        let _ = k.write_str(prefix);
        match ip {
            // The same text as `Display`, without the formatting machinery
            // (which cost more than the rest of building the key).
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        let _ = k.push_bytes(b".");
                    }
                    k.push_decimal(octet);
                }
            }
            IpAddr::V6(_) => {
                let _ = write!(k, "{ip}");
            }
        }
        k
    }

    fn push_decimal(&mut self, n: u8) {
        let digits = [b'0' + n / 100, b'0' + n / 10 % 10, b'0' + n % 10];
        let skip = match n {
            0..=9 => 2,
            10..=99 => 1,
            _ => 0,
        };
        // ASCII digits: the buffer stays UTF-8.
        let _ = self.push_bytes(&digits[skip..]);
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> std::fmt::Result {
        let end = self.len + bytes.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so this is UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Write for IpKey {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push_bytes(s.as_bytes())
    }
}

/// What the request path needs from a route's auth config, worked out once
/// (by [`Authenticator::prepare_route`], or by the first request after the
/// config changed) instead of on every request: parsed header names and
/// scopes, the JWT verifier, and the metric handles.
struct PreparedRoute {
    /// The config this was built from. A request that brings a different
    /// config (a reload that skipped `prepare_route`, or a test) rebuilds.
    config: RouteAuthConfig,
    /// The route's name, for logs and metrics.
    name: Arc<str>,
    /// The route's JWT verifier and the settings it was built from. As
    /// before preparation existed, it outlives a config that drops its
    /// `jwt` table, so its claim headers are still stripped.
    jwt: Option<(JwtConfig, Arc<JwtVerifier>)>,
    /// Why the current `jwt` table has no verifier yet.
    jwt_issues: Option<Vec<gateway_core::ConfigIssue>>,
    /// `required_scopes`, parsed.
    required: Vec<Scope>,
    /// Names of the consumer id, consumer name, key id and plan headers
    /// (`None`: turned off).
    forward: [Option<HeaderName>; 4],
    /// Every header only the gateway may set: the `forward` names and the
    /// JWT claim headers.
    strip: Vec<HeaderName>,
    /// `gatehouse_auth_total{route, outcome}`, one handle per outcome,
    /// registered on first use: building the labelled key and looking it
    /// up in the registry on every request cost more than the rest of the
    /// key check. (A handle registered before the process installs its
    /// recorder stays a no-op; the gateway installs it before it serves.)
    counters: [OnceLock<metrics::Counter>; AuthOutcome::COUNT],
}

impl PreparedRoute {
    /// Prepares `cfg`; `previous` is what the route had before. Its JWT
    /// verifier is reused when `reuse_jwt` and the settings did not change;
    /// otherwise the key material is read again (a reload picks up a
    /// rotated key file).
    fn build(
        name: &str,
        cfg: &RouteAuthConfig,
        previous: Option<&PreparedRoute>,
        reuse_jwt: bool,
    ) -> Self {
        let previous_jwt = previous.and_then(|p| p.jwt.clone());
        let (jwt, jwt_issues) = match &cfg.jwt {
            None => (previous_jwt, None),
            Some(j) => match previous_jwt {
                Some((pj, v)) if reuse_jwt && pj == *j => (Some((pj, v)), None),
                previous_jwt => match JwtVerifier::from_config(j) {
                    Ok(v) => (Some((j.clone(), Arc::new(v))), None),
                    Err(issues) => (previous_jwt, Some(issues)),
                },
            },
        };
        let f = &cfg.forward;
        let forward =
            [&f.consumer_id, &f.consumer_name, &f.key_id, &f.plan].map(|n| header_name(n));
        let strip = forward
            .iter()
            .flatten()
            .cloned()
            .chain(
                jwt.iter()
                    .flat_map(|(_, v)| v.header_names())
                    .chain(
                        cfg.jwt
                            .iter()
                            .flat_map(|j| j.claims_to_headers.values().map(String::as_str)),
                    )
                    .filter_map(header_name),
            )
            .collect();
        PreparedRoute {
            config: cfg.clone(),
            name: Arc::from(name),
            jwt,
            jwt_issues,
            required: parse_required(cfg),
            forward,
            strip,
            counters: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn count(&self, route_name: &str, outcome: AuthOutcome) {
        self.counters[outcome.index()]
            .get_or_init(|| {
                metrics::counter!("gatehouse_auth_total", "route" => route_name.to_string(), "outcome" => outcome.as_str())
            })
            .increment(1);
    }
}

/// A configured header name; `None` when empty (turned off) or invalid
/// (refused by config validation; never set, as before).
///
/// The default names are static: a parsed custom name is reference
/// counted, and every request sets these headers and copies the header
/// map (once per upstream attempt that may be retried), each a count
/// update and its release.
fn header_name(name: &str) -> Option<HeaderName> {
    if name.is_empty() {
        return None;
    }
    if let Some(known) = crate::config::ForwardHeaders::DEFAULT_NAMES
        .into_iter()
        .find(|d| d.eq_ignore_ascii_case(name))
    {
        return Some(HeaderName::from_static(known));
    }
    HeaderName::from_bytes(name.as_bytes()).ok()
}

/// A route's prepared authentication state, for a router to keep with the
/// route it belongs to (see [`Authenticator::prepared_auth`]), so a request
/// does not look it up by name. Cheap to clone.
#[derive(Clone)]
pub struct PreparedAuth(Arc<PreparedRoute>);

impl PreparedAuth {
    /// Builds a route's prepared state without installing it anywhere:
    /// validates `cfg` and reads its JWT key material (again, even when the
    /// settings did not change, so a rotated key file is picked up).
    /// `previous` is the route's state before: its verifier is kept while
    /// `cfg` drops its `jwt` table, so claim headers are still stripped.
    pub fn build(
        route_name: &str,
        cfg: &RouteAuthConfig,
        previous: Option<&PreparedAuth>,
    ) -> Result<Self, Vec<gateway_core::ConfigIssue>> {
        cfg.validate()?;
        let prepared = PreparedRoute::build(route_name, cfg, previous.map(|p| &*p.0), false);
        if let Some(issues) = prepared.jwt_issues {
            return Err(issues.into_iter().map(|i| i.under("jwt")).collect());
        }
        Ok(Self(Arc::new(prepared)))
    }
}

impl std::fmt::Debug for PreparedAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedAuth").finish_non_exhaustive()
    }
}

/// What [`Authenticator::decide`] returns: the identity at once, or the
/// rest of the work as a future. Awaiting a `Decision` gives the result
/// either way.
pub enum Decision<'a> {
    /// Accepted without waiting.
    Now(Arc<Identity>),
    /// To be awaited: accepted or refused.
    Later(futures::future::BoxFuture<'a, Result<Arc<Identity>, AuthError>>),
}

impl<'a> std::future::IntoFuture for Decision<'a> {
    type Output = Result<Arc<Identity>, AuthError>;
    type IntoFuture = futures::future::Either<
        std::future::Ready<Self::Output>,
        futures::future::BoxFuture<'a, Self::Output>,
    >;

    fn into_future(self) -> Self::IntoFuture {
        match self {
            Decision::Now(id) => futures::future::Either::Left(std::future::ready(Ok(id))),
            Decision::Later(f) => futures::future::Either::Right(f),
        }
    }
}

/// The authentication stage. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    service: KeyService,
    /// Prepared routes by name.
    routes: Arc<DashMap<String, Arc<PreparedRoute>>>,
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
            routes: Arc::new(DashMap::new()),
        }
    }

    /// The service.
    pub fn service(&self) -> &KeyService {
        &self.service
    }

    /// Validates a route's auth config and loads its JWT key material, so
    /// no file is read on the request path, and installs it. Returns the
    /// problems found.
    pub fn prepare_route(
        &self,
        route_name: &str,
        cfg: &RouteAuthConfig,
    ) -> Result<(), Vec<gateway_core::ConfigIssue>> {
        let prepared = PreparedAuth::build(route_name, cfg, self.route_state(route_name).as_ref())?;
        self.routes.insert(route_name.to_string(), prepared.0);
        Ok(())
    }

    /// The prepared state installed for `route_name`, if any.
    pub fn route_state(&self, route_name: &str) -> Option<PreparedAuth> {
        self.routes.get(route_name).map(|p| PreparedAuth(p.clone()))
    }

    /// Installs the prepared states of a whole config (built beforehand
    /// with [`PreparedAuth::build`]), dropping routes that no longer exist.
    pub fn install_routes(&self, routes: impl IntoIterator<Item = (String, PreparedAuth)>) {
        let routes: std::collections::HashMap<String, PreparedAuth> = routes.into_iter().collect();
        self.routes.retain(|name, _| routes.contains_key(name));
        for (name, prepared) in routes {
            self.routes.insert(name, prepared.0);
        }
    }

    /// The route's prepared state, rebuilt when `cfg` is not what it was
    /// prepared from.
    fn prepared(&self, route_name: &str, cfg: &RouteAuthConfig) -> Arc<PreparedRoute> {
        let previous = match self.routes.get(route_name) {
            Some(p) if p.config == *cfg => return p.clone(),
            Some(p) => Some(p.clone()),
            None => None,
        };
        let prepared = Arc::new(PreparedRoute::build(
            route_name,
            cfg,
            previous.as_deref(),
            true,
        ));
        self.routes.insert(route_name.to_string(), prepared.clone());
        prepared
    }

    /// The JWT verifier for `cfg`. When the route's settings could not be
    /// loaded when it was prepared, tries again (a key file may have been
    /// fixed), as every JWT request did before routes were prepared.
    fn verifier(
        &self,
        route_name: &str,
        route: &RouteAuthConfig,
        prepared: &PreparedRoute,
    ) -> Result<Arc<JwtVerifier>, AuthError> {
        if let (None, Some((_, v))) = (&prepared.jwt_issues, &prepared.jwt) {
            return Ok(v.clone());
        }
        let retried = PreparedRoute::build(route_name, route, Some(prepared), true);
        match (&retried.jwt_issues, &retried.jwt) {
            (None, Some((_, v))) => {
                let v = v.clone();
                self.routes
                    .insert(route_name.to_string(), Arc::new(retried));
                Ok(v)
            }
            (issues, _) => {
                let list: Vec<String> = issues.iter().flatten().map(|i| i.to_string()).collect();
                tracing::error!(route = route_name, issues = %list.join("; "), "JWT settings unusable");
                Err(misconfigured())
            }
        }
    }

    /// Authenticates a request for `route_name` whose settings are `route`,
    /// preparing them first when they are not what the route was prepared
    /// with: [`Self::decide`] for callers without prepared routes. The
    /// client address comes from the request's extensions ([`ClientIp`]).
    pub async fn authenticate(
        &self,
        parts: &mut Parts,
        route: &RouteAuthConfig,
        route_name: &str,
    ) -> Result<Arc<Identity>, AuthError> {
        let prepared = PreparedAuth(self.prepared(route_name, route));
        let ip = client_ip(parts);
        self.decide(parts, &prepared, ip).await
    }

    /// Authenticates a request on a prepared route, in one call: the
    /// decision comes at once when nothing has to be waited for (a known,
    /// valid API key within its scopes, from an address not over the
    /// failed-verification limit: the common case), and as a future only
    /// when something must be awaited (a limiter for a blocked or
    /// credential-less address, a failure to count) or the credential is a
    /// JWT. Either way the same steps run: credential stripped, identity
    /// headers set, outcome counted.
    pub fn decide<'a>(
        &'a self,
        parts: &'a mut Parts,
        route: &'a PreparedAuth,
        ip: Option<IpAddr>,
    ) -> Decision<'a> {
        match self.decide_now(parts, &route.0, ip) {
            Some(identity) => Decision::Now(identity),
            None => Decision::Later(Box::pin(self.authenticate_prepared(
                parts,
                &route.0.config,
                &route.0.name,
                &route.0,
                ip,
            ))),
        }
    }

    /// The part of [`Self::decide`] that needs no waiting: a valid key is
    /// accepted and the request rewritten. Anything else returns `None`
    /// having changed nothing that matters (only identity headers the
    /// client sent are dropped, which the full path does first too), and
    /// the full path decides, logs and counts the refusal.
    ///
    /// The key's format and checksum are not checked here: a key whose
    /// hash is in the keyring was issued by us and is well-formed, and
    /// any other goes to the full path, which checks the format before
    /// anything else and refuses a malformed key as such.
    fn decide_now(
        &self,
        parts: &mut Parts,
        prepared: &PreparedRoute,
        ip: Option<IpAddr>,
    ) -> Option<Arc<Identity>> {
        let route_name: &str = &prepared.name;
        let route = &prepared.config;
        if !route.methods.contains(&AuthMethodKind::ApiKey)
            || prepared.jwt_issues.is_some()
            || ip.is_some_and(|ip| self.service.ip_was_blocked(ip))
        {
            return None;
        }
        strip_reserved(parts, prepared);
        let (kind, text) = extract(parts, route)?;
        // A `gh_` credential on a route that takes keys is always a key
        // (see `run`); anything else may be a JWT.
        if !text.starts_with(crate::key::KEY_PREFIX) {
            return None;
        }
        let hash = KeyHash::of(&text);
        drop(text);
        let now_us = self.service.now_micros();
        self.service
            .lend_hash(&hash, now_us, |entry, status| {
                let rec = &entry.record;
                check_access(
                    &rec.scopes,
                    route_name,
                    &route.tags,
                    &parts.method,
                    &prepared.required,
                )
                .ok()?;
                self.service.note_use(entry, status, now_us);
                if status == KeyStatus::Retiring {
                    self.service
                        .note_grace_client(&rec.id, ip, user_agent(parts), now_us);
                }
                tracing::debug!(route = route_name, key_id = %rec.id, consumer_id = %rec.consumer_id, status = status.as_str(), "API key verified");
                let identity = key_identity(entry, status);
                strip_credential(parts, kind, route);
                set_identity_headers(parts, prepared, &entry.headers);
                prepared.count(route_name, AuthOutcome::Ok);
                Some(identity)
            })
            .ok()
            .flatten()
    }

    async fn authenticate_prepared(
        &self,
        parts: &mut Parts,
        route: &RouteAuthConfig,
        route_name: &str,
        prepared: &PreparedRoute,
        ip: Option<IpAddr>,
    ) -> Result<Arc<Identity>, AuthError> {
        let result = self.run(parts, route, route_name, prepared, ip).await;
        let outcome = match &result {
            Ok(id) if id.kind == IdentityKind::Anonymous => AuthOutcome::Anonymous,
            Ok(_) => AuthOutcome::Ok,
            Err(e) => e.outcome,
        };
        prepared.count(route_name, outcome);
        result
    }

    async fn run(
        &self,
        parts: &mut Parts,
        route: &RouteAuthConfig,
        route_name: &str,
        prepared: &PreparedRoute,
        ip: Option<IpAddr>,
    ) -> Result<Arc<Identity>, AuthError> {
        let cfg = self.service.config();
        // A client that keeps failing is stopped before any lookup. Only an
        // address whose last failure here tripped the limit can be over it
        // (failures are counted only after a failure), so the others skip
        // the limiter. With a shared limiter, an address blocked through
        // other nodes gets one more attempt on this one, whose failure
        // blocks it here too.
        if let Some(ip) = ip.filter(|ip| self.service.ip_was_blocked(*ip)) {
            match self
                .service
                .limits()
                .refusal_ip(
                    IpKey::new("authfail:", ip).as_str(),
                    &cfg.failed_auth_per_ip,
                    LimitKind::FailedAuthIp,
                )
                .await
            {
                Some(l) => return Err(AuthError::limited(l)),
                None => self.service.note_ip_blocked(ip, false),
            }
        }
        strip_reserved(parts, prepared);

        let Some((kind, text)) = extract(parts, route) else {
            // No key or token: the client certificate, on routes that take
            // one, names the consumer.
            let cert = route
                .methods
                .contains(&AuthMethodKind::ClientCert)
                .then(|| crate::client_cert::of_request(parts))
                .flatten();
            if let Some(names) = cert {
                return match self.cert_path(route, route_name, &names, ip) {
                    Ok((id, values)) => {
                        set_identity_headers(parts, prepared, &values);
                        Ok(id)
                    }
                    Err(e) => {
                        self.note_failure(ip).await;
                        Err(e)
                    }
                };
            }
            if let Some(ip) = ip {
                self.service
                    .limits()
                    .check_ip(
                        IpKey::new("anon:", ip).as_str(),
                        &cfg.unauthenticated_per_ip,
                        LimitKind::UnauthenticatedIp,
                    )
                    .await
                    .map_err(AuthError::limited)?;
            }
            if route.anonymous {
                return Ok(Arc::new(Identity::anonymous()));
            }
            tracing::debug!(route = route_name, client_ip = ?ip, "request without credentials");
            return Err(AuthError::new(
                AuthOutcome::Missing,
                &errors::MISSING_CREDENTIALS,
                missing_detail(route),
                challenge(None),
            ));
        };

        let is_key = text.starts_with(crate::key::KEY_PREFIX);
        let allow_key = route.methods.contains(&AuthMethodKind::ApiKey);
        let allow_jwt =
            route.methods.contains(&AuthMethodKind::Jwt) && kind == CredentialKind::Bearer;
        let res = if allow_jwt && (!is_key || !allow_key) && text.matches('.').count() == 2 {
            // The JWT path adds claim headers, so it cannot borrow the
            // token from the request; it is the rarer and costlier path.
            let token = text.into_owned();
            self.jwt_path(parts, route, route_name, prepared, &token, ip)
                .await
        } else if allow_key {
            self.key_path(parts, route, route_name, prepared, &text, ip)
                .await
        } else {
            Err(AuthError::new(
                AuthOutcome::InvalidToken,
                &errors::INVALID_TOKEN,
                "this route accepts JWT bearer tokens only",
                challenge(Some(("invalid_token", "expected a JWT"))),
            ))
        };
        match res {
            Ok((id, values)) => {
                strip_credential(parts, kind, route);
                set_identity_headers(parts, prepared, &values);
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
                    self.note_failure(ip).await;
                }
                Err(e)
            }
        }
    }

    async fn note_failure(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else {
            return;
        };
        let key = IpKey::new("authfail:", ip);
        let key = key.as_str();
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
                .refusal_ip(key, cfg, LimitKind::FailedAuthIp)
                .await
                .is_some();
        self.service.note_ip_blocked(ip, blocked);
    }

    /// The consumer whose name is the certificate's `client_cert_consumer`
    /// field (the first of its values that names one).
    fn cert_path(
        &self,
        route: &RouteAuthConfig,
        route_name: &str,
        names: &ClientCertNames,
        ip: Option<IpAddr>,
    ) -> Result<(Arc<Identity>, IdentityHeaders), AuthError> {
        let field = route.client_cert_consumer;
        let keyring = self.service.keyring();
        let Some(consumer) = names
            .values(field)
            .into_iter()
            .find_map(|name| keyring.consumer_named(name))
        else {
            tracing::info!(route = route_name, client_ip = ?ip, subject = %names.subject, field = field.as_str(), "client certificate names no consumer");
            let detail = format!(
                "the client certificate `{}` names no consumer by its {} field",
                names.subject,
                field.as_str()
            );
            return Err(AuthError::new(
                AuthOutcome::Unknown,
                &errors::UNKNOWN_CLIENT_CERT,
                detail,
                challenge(None),
            ));
        };
        tracing::debug!(route = route_name, consumer_id = %consumer.id, subject = %names.subject, "client certificate verified");
        let headers = IdentityHeaders::new(
            Some(consumer.id.as_str()),
            Some(&consumer.name),
            None,
            consumer.plan.as_deref(),
        );
        Ok((Arc::new(Identity::for_certificate(&consumer)), headers))
    }

    async fn key_path(
        &self,
        parts: &Parts,
        route: &RouteAuthConfig,
        route_name: &str,
        prepared: &PreparedRoute,
        text: &str,
        ip: Option<IpAddr>,
    ) -> Result<(Arc<Identity>, IdentityHeaders), AuthError> {
        let hash = ApiKey::hash_checked(text).map_err(|e: crate::key::KeyFormatError| {
            tracing::info!(route = route_name, client_ip = ?ip, reason = e.as_str(), "malformed API key refused");
            AuthError::new(
                AuthOutcome::Malformed,
                &errors::MALFORMED_API_KEY,
                format!("the API key is malformed: {e}"),
                challenge(Some(("invalid_token", "malformed API key"))),
            )
        })?;
        let verified = self.service.verify_hash(&hash).map_err(|f| {
            tracing::info!(route = route_name, client_ip = ?ip, reason = f.as_str(), "API key refused");
            let (outcome, code, detail) = match f {
                VerifyFailure::Unknown => (AuthOutcome::Unknown, &errors::UNKNOWN_API_KEY, "the API key is not valid"),
                VerifyFailure::Expired => (AuthOutcome::Expired, &errors::EXPIRED_API_KEY, "the API key has expired"),
                VerifyFailure::Revoked => (AuthOutcome::Revoked, &errors::REVOKED_API_KEY, "the API key has been revoked"),
            };
            AuthError::new(outcome, code, detail, challenge(Some(("invalid_token", detail))))
        })?;
        let rec = &verified.entry.record;
        if let Err(denial) = check_access(
            &rec.scopes,
            route_name,
            &route.tags,
            &parts.method,
            &prepared.required,
        ) {
            tracing::info!(route = route_name, key_id = %rec.id, consumer_id = %rec.consumer_id, reason = denial.as_str(), "key outside its scopes");
            self.service
                .note_scope_denial(&rec.id, &rec.consumer_id, route_name, denial.as_str());
            let scope_hint = route.required_scopes.join(" ");
            let mut e = AuthError::new(
                AuthOutcome::ScopeDenied,
                &errors::KEY_SCOPE_DENIED,
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
        if verified.status == KeyStatus::Retiring {
            let now_us = self.service.now_micros();
            self.service
                .note_grace_client(&rec.id, ip, user_agent(parts), now_us);
        }
        let consumer = &verified.entry.consumer;
        tracing::debug!(route = route_name, key_id = %rec.id, consumer_id = %consumer.id, status = verified.status.as_str(), "API key verified");
        // Built with the keyring entry, so forwarding costs no parsing.
        Ok((
            key_identity(&verified.entry, verified.status),
            verified.entry.headers.clone(),
        ))
    }

    async fn jwt_path(
        &self,
        parts: &mut Parts,
        route: &RouteAuthConfig,
        route_name: &str,
        prepared: &PreparedRoute,
        token: &str,
        ip: Option<IpAddr>,
    ) -> Result<(Arc<Identity>, IdentityHeaders), AuthError> {
        let Some(cfg) = &route.jwt else {
            return Err(misconfigured());
        };
        let verifier = self.verifier(route_name, route, prepared)?;
        let invalid = |msg: String| {
            AuthError::new(
                AuthOutcome::InvalidToken,
                &errors::INVALID_TOKEN,
                msg.clone(),
                challenge(Some(("invalid_token", &msg))),
            )
        };
        let claims = verifier.verify(token).await.map_err(|e| {
            tracing::info!(route = route_name, client_ip = ?ip, reason = e.reason, "JWT refused");
            if e.reason == crate::jwt::KEYS_UNAVAILABLE {
                // Not the caller's fault: the provider has never answered.
                return AuthError::new(
                    AuthOutcome::Misconfigured,
                    &errors::SIGNING_KEYS_UNAVAILABLE,
                    format!("{} (route `{route_name}`); retry later", e.message),
                    challenge(None),
                );
            }
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
        for r in &prepared.required {
            if !held.contains(r) && !held.contains(&Scope::All) {
                return Err(AuthError::new(
                    AuthOutcome::ScopeDenied,
                    &errors::TOKEN_SCOPE_DENIED,
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
        let identity = Identity {
            kind: IdentityKind::Jwt,
            consumer_id: Some(consumer.as_str().into()),
            consumer_name: None,
            key_id: None,
            key_status: None,
            plan: verifier.plan().map(Arc::from),
            group: None,
        };
        let headers = IdentityHeaders::new(
            identity.consumer_id.as_deref(),
            None,
            None,
            identity.plan.as_deref(),
        );
        Ok((Arc::new(identity), headers))
    }
}

fn misconfigured() -> AuthError {
    AuthError {
        outcome: AuthOutcome::Misconfigured,
        problem: Problem::new(
            &errors::AUTH_MISCONFIGURED,
            "this route's authentication is misconfigured",
        ),
        headers: HeaderMap::new(),
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
    let by_cert = route.methods.contains(&AuthMethodKind::ClientCert);
    if by_cert && route.methods.len() == 1 {
        return "a client certificate is required: connect with one the listener's `client_ca` \
                signed"
            .into();
    }
    let mut ways = vec!["`Authorization: Bearer <key>`".to_string()];
    if route.methods.contains(&AuthMethodKind::ApiKey) {
        ways.push(format!("the `{}` header", route.header));
        if let Some(q) = &route.query_param {
            ways.push(format!("the `{q}` query parameter"));
        }
    }
    format!(
        "credentials are required: send them in {}{}",
        ways.join(" or "),
        if by_cert {
            ", or connect with a client certificate"
        } else {
            ""
        }
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

/// The credential and where it was. Borrowed from the request unless it
/// had to be percent-decoded.
fn extract<'a>(
    parts: &'a Parts,
    route: &RouteAuthConfig,
) -> Option<(CredentialKind, Cow<'a, str>)> {
    if let Some(v) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            let t = v[7..].trim();
            if !t.is_empty() {
                return Some((CredentialKind::Bearer, Cow::Borrowed(t)));
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
                return Some((CredentialKind::Header, Cow::Borrowed(t)));
            }
        }
        if let Some(q) = &route.query_param {
            if let Some(query) = parts.uri.query() {
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if k == q && !v.is_empty() {
                        let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
                        return Some((CredentialKind::Query, v));
                    }
                }
            }
        }
    }
    None
}

fn strip_credential(parts: &mut Parts, kind: CredentialKind, route: &RouteAuthConfig) {
    match kind {
        CredentialKind::Bearer => {
            parts.headers.remove(header::AUTHORIZATION);
        }
        CredentialKind::Header => {
            parts.headers.remove(route.header.as_str());
        }
        CredentialKind::Query => {
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

/// The identity of a verified key's request: the entry's, whose state is
/// the one a working key has (see [`Identity::for_key`]).
/// The request's `User-Agent`, when it is text.
fn user_agent(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

fn key_identity(entry: &KeyEntry, status: KeyStatus) -> Arc<Identity> {
    debug_assert_eq!(entry.identity.key_status, Some(status));
    entry.identity.clone()
}

/// Identity headers come only from us; drops any the client sent. Most
/// requests carry none: looking at the few headers there are is cheaper
/// than a hashed removal per reserved name.
fn strip_reserved(parts: &mut Parts, prepared: &PreparedRoute) {
    if parts.headers.keys().any(|k| prepared.strip.contains(k)) {
        for name in &prepared.strip {
            parts.headers.remove(name);
        }
    }
}

/// Sets the identity headers the route forwards (in `forward` order:
/// consumer id, consumer name, key id, plan).
fn set_identity_headers(parts: &mut Parts, prepared: &PreparedRoute, values: &IdentityHeaders) {
    for (name, value) in prepared.forward.iter().zip(&values.0) {
        if let (Some(n), Some(v)) = (name, value) {
            parts.headers.insert(n.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_keys_read_as_the_address_displays() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "9.10.99.100",
            "255.255.255.255",
            "::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                IpKey::new("authfail:", ip).as_str(),
                format!("authfail:{ip}")
            );
            assert_eq!(IpKey::new("anon:", ip).as_str(), format!("anon:{ip}"));
        }
    }
}
