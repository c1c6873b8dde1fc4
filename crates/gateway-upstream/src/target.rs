//! One upstream target at runtime: its pooled client and its health.
//!
//! A [`Target`] owns its clients: hyper-util's pooled client (TLS, h2c,
//! and cleartext HTTP/1.1 under the hyper engine) and, for cleartext
//! HTTP/1.1 under the native engine, the native client, whose pools are
//! per worker thread (see `native`). It also owns the state that outlives a reconfigure: active-check health, passive
//! failure counts, ejection and in-flight count. Clusters share targets by
//! `Arc`; on reconfigure a target whose address and client settings are
//! unchanged (same [`Target::key`]) is carried over as is, pool and state
//! included.
//!
//! Health reads are on the request path, so the two facts the balancer asks
//! for ("failing active checks", "ejected") are atomics; the rest sits
//! behind a mutex touched only when outcomes are recorded.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gateway_core::{Body, BoxError, ConfigIssue};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use http_body_util::BodyExt as _;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::config::{ClientEngine, ClusterConfig, Protocol, Scheme, TargetAddr};
use crate::connector::{ConnStats, CountingConnector, SetupTimeout};
use crate::error::{UpstreamError, UpstreamErrorKind};
use crate::native::NativeClient;

pub(crate) type HttpClient = Client<SetupTimeout<HttpsConnector<CountingConnector>>, ClientBody>;

/// The request body handed to hyper's client: the pipeline's [`Body`] with a
/// concrete error type. With `Box<dyn Error>` as the body error, rustc cannot
/// prove the client's future `Send` for every lifetime (a known limitation of
/// higher-ranked inference), and `Cluster::send` could not be awaited inside
/// a spawned task.
pub(crate) struct ClientBody(pub(crate) Body);

/// A request body error, carried through hyper's client.
#[derive(Debug)]
pub(crate) struct ClientBodyError(gateway_core::BoxError);

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl http_body::Body for ClientBody {
    type Data = bytes::Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, ClientBodyError>>> {
        std::pin::Pin::new(&mut self.0)
            .poll_frame(cx)
            .map_err(ClientBodyError)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

/// Where a target stands, as shown by the admin API and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Receiving traffic.
    Healthy,
    /// Failing active health checks; skipped until they pass again.
    Unhealthy,
    /// Ejected by passive outlier detection; skipped until the ejection
    /// expires or an active check passes.
    Ejected,
}

impl TargetState {
    /// Stable name for logs, metrics and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Healthy => "healthy",
            TargetState::Unhealthy => "unhealthy",
            TargetState::Ejected => "ejected",
        }
    }
}

/// A snapshot of one target's health, for the admin API (serializes to
/// JSON with durations as humantime strings).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TargetStatus {
    /// `scheme://host:port`.
    pub address: String,
    /// Configured weight.
    pub weight: u32,
    /// Current state.
    pub state: TargetState,
    /// Requests in flight (until their response body ends).
    pub in_flight: usize,
    /// Open TCP connections (idle in the pool plus active).
    pub open_connections: usize,
    /// Consecutive failed requests (resets on success).
    pub consecutive_failures: u32,
    /// How many times passive detection ejected this target.
    pub times_ejected: u32,
    /// Time left in the current ejection (e.g. `12s 500ms`).
    #[serde(with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub ejected_for: Option<Duration>,
    /// The most recent failure (request or health check), if any.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Detail {
    consecutive_failures: u32,
    check_passes: u32,
    check_failures: u32,
    ejected_until: Option<Instant>,
    /// While ejected: when the next trial request may go.
    next_trial: Option<Instant>,
    times_ejected: u32,
    last_error: Option<String>,
}

/// One target: address, pooled client, health.
pub(crate) struct Target {
    // Targets are only ever carried over within the same cluster name, so
    // the target can label its own metrics.
    cluster: Arc<str>,
    pub(crate) addr: TargetAddr,
    pub(crate) display: String,
    pub(crate) authority: http::uri::Authority,
    /// `authority` as the `Host` the target gets.
    pub(crate) host: http::HeaderValue,
    key: String,
    pub(crate) client: HttpClient,
    /// The native HTTP/1.1 client, for a cleartext HTTP/1.1 target when
    /// the gateway runs the native engine; `None`: `client` serves.
    native: Option<NativeClient>,
    /// Per-request metric handles (success count, in-flight gauge).
    pub(crate) metrics: crate::metrics::TargetHandles,
    conns: Arc<ConnStats>,
    in_flight: AtomicUsize,
    check_failing: AtomicBool,
    ejected: AtomicBool,
    detail: Mutex<Detail>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.display)
            .finish()
    }
}

impl Target {
    /// The identity used to decide whether a target survives a reconfigure:
    /// its address plus every setting baked into its client.
    pub(crate) fn key_for(addr: &TargetAddr, cfg: &ClusterConfig) -> String {
        format!("{addr}|{}", Self::client_settings(cfg))
    }

    /// Every setting baked into a target's client, as one comparable value:
    /// two configs with the same one can share targets.
    pub(crate) fn client_settings(cfg: &ClusterConfig) -> String {
        format!(
            "{}|{:?}|{:?}|{:?}|{:?}",
            cfg.protocol.as_str(),
            cfg.connect_timeout,
            cfg.pool,
            cfg.tls,
            cfg.client_engine
        )
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Builds a target with a fresh pool and a clean, healthy state.
    pub(crate) fn build(
        cluster: Arc<str>,
        addr: TargetAddr,
        cfg: &ClusterConfig,
    ) -> Result<Self, ConfigIssue> {
        let conns = ConnStats::new(cluster.clone(), addr.to_string());
        let client = build_client(&addr, cfg, conns.clone())?;
        let native = (cfg.client_engine == ClientEngine::Native
            && addr.scheme == Scheme::Http
            && cfg.protocol != Protocol::H2c)
            .then(|| NativeClient::new(&addr, cfg, conns.clone()));
        let authority =
            http::uri::Authority::try_from(addr.authority()).map_err(|e| ConfigIssue {
                path: "targets".into(),
                message: format!("`{addr}` is not a valid authority: {e}"),
            })?;
        let host = http::HeaderValue::from_str(authority.as_str()).map_err(|e| ConfigIssue {
            path: "targets".into(),
            message: format!("`{addr}` is not a valid `Host` value: {e}"),
        })?;
        Ok(Self {
            cluster,
            display: addr.to_string(),
            authority,
            host,
            key: Self::key_for(&addr, cfg),
            addr,
            client,
            native,
            metrics: Default::default(),
            conns,
            in_flight: AtomicUsize::new(0),
            check_failing: AtomicBool::new(false),
            ejected: AtomicBool::new(false),
            detail: Mutex::new(Detail::default()),
        })
    }

    /// Sends the request `parts` describes (origin-form URI, `Host` and
    /// forwarding headers set) with `body` on the target's client and waits
    /// for the response head. The native client encodes the head from
    /// `parts` as they are; hyper's gets a request of its own, with the
    /// headers copied unless `last` (no attempt follows: they are taken).
    pub(crate) async fn send(
        &self,
        parts: &mut http::request::Parts,
        body: Body,
        last: bool,
    ) -> Result<Response<Body>, UpstreamError> {
        match &self.native {
            // Boxed: the exchange's state would otherwise sit inline in
            // every request's (much moved) future.
            Some(native) => Box::pin(native.send(parts, body))
                .await
                .map_err(|e| UpstreamError::from_native(&self.cluster, &self.display, e)),
            None => {
                let req = self.hyper_request(parts, body, last)?;
                match self.client.request(req.map(ClientBody)).await {
                    Ok(res) => Ok(res.map(|body| body.map_err(BoxError::from).boxed_unsync())),
                    Err(e) => Err(UpstreamError::from_client(&self.cluster, &self.display, e)),
                }
            }
        }
    }

    /// The request for hyper's client: an absolute URI on this target.
    fn hyper_request(
        &self,
        parts: &mut http::request::Parts,
        body: Body,
        last: bool,
    ) -> Result<Request<Body>, UpstreamError> {
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(match self.addr.scheme {
            Scheme::Http => http::uri::Scheme::HTTP,
            Scheme::Https => http::uri::Scheme::HTTPS,
        });
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = Some(path);
        // Every component is an already-parsed value, so this cannot fail
        // in practice; still, a failure is an error, never a panic.
        let uri = Uri::from_parts(uri).map_err(|e| {
            UpstreamError::new(
                UpstreamErrorKind::Protocol,
                self.cluster.as_ref(),
                Some(self.display.clone()),
                format!(
                    "cannot address upstream `{}` target {}: {e}",
                    self.cluster, self.display
                ),
            )
        })?;
        let mut req = Request::new(body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = parts.version;
        *req.headers_mut() = if last {
            std::mem::take(&mut parts.headers)
        } else {
            parts.headers.clone()
        };
        Ok(req)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one more request in flight, and sets the gauge.
    pub(crate) fn begin(&self) {
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics.in_flight(&self.cluster, &self.display, n);
    }

    /// Counts one request fewer in flight, and sets the gauge.
    pub(crate) fn end(&self) {
        let n = self
            .in_flight
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        self.metrics.in_flight(&self.cluster, &self.display, n);
    }

    /// Whether the balancer may pick this target now. Lifts an expired
    /// ejection on the way.
    pub(crate) fn is_available(&self, now: Instant) -> bool {
        if self.check_failing.load(Ordering::Relaxed) {
            return false;
        }
        if self.ejected.load(Ordering::Relaxed) {
            let mut d = self.detail.lock();
            match d.ejected_until {
                Some(until) if until > now => return false,
                _ => {
                    d.ejected_until = None;
                    d.next_trial = None;
                    if self.ejected.swap(false, Ordering::Relaxed) {
                        crate::metrics::healthy(&self.cluster, &self.display, true);
                        tracing::info!(cluster = %self.cluster, target = %self.display, "upstream target ejection expired");
                    }
                }
            }
        }
        true
    }

    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        self.ejected.load(Ordering::Relaxed)
            && self.detail.lock().ejected_until.is_some_and(|u| u > now)
    }

    pub(crate) fn state(&self, now: Instant) -> TargetState {
        if self.is_ejected(now) {
            TargetState::Ejected
        } else if self.check_failing.load(Ordering::Relaxed) {
            TargetState::Unhealthy
        } else {
            TargetState::Healthy
        }
    }

    /// Records a request that got a usable response. An ejected target
    /// that answered (a trial, or a request sent in panic mode) works
    /// again: its ejection ends. Returns whether it did.
    pub(crate) fn record_success(&self) -> bool {
        let mut d = self.detail.lock();
        d.consecutive_failures = 0;
        if self.ejected.load(Ordering::Relaxed) && self.ejected.swap(false, Ordering::Relaxed) {
            d.ejected_until = None;
            d.next_trial = None;
            return true;
        }
        false
    }

    /// Takes the ejected target's trial if one is due at `now`: this
    /// request may go to it although it is ejected. The next trial is
    /// `interval` later, whatever becomes of this one.
    pub(crate) fn claim_trial(&self, now: Instant, interval: Duration) -> bool {
        if !self.ejected.load(Ordering::Relaxed) || self.check_failing.load(Ordering::Relaxed) {
            return false;
        }
        let mut d = self.detail.lock();
        match d.next_trial {
            Some(at) if at <= now && d.ejected_until.is_some_and(|u| u > now) => {
                d.next_trial = Some(now + interval);
                true
            }
            _ => false,
        }
    }

    /// Records a failed request; returns the consecutive failure count.
    pub(crate) fn record_failure(&self, why: &str) -> u32 {
        let mut d = self.detail.lock();
        d.consecutive_failures = d.consecutive_failures.saturating_add(1);
        d.last_error = Some(why.to_string());
        d.consecutive_failures
    }

    /// Ejects the target for `base × (times ejected so far + 1)`, with a
    /// first trial `trial_interval` from now.
    pub(crate) fn eject(&self, base: Duration, trial_interval: Duration, now: Instant) -> Duration {
        let mut d = self.detail.lock();
        d.times_ejected = d.times_ejected.saturating_add(1);
        let for_ = base.saturating_mul(d.times_ejected);
        d.ejected_until = Some(now + for_);
        d.next_trial = Some(now + trial_interval);
        d.consecutive_failures = 0;
        self.ejected.store(true, Ordering::Relaxed);
        for_
    }

    /// Records an active health check; returns whether the target's health
    /// flipped or an ejection was lifted.
    pub(crate) fn record_check(
        &self,
        passed: bool,
        why: Option<&str>,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> bool {
        let mut d = self.detail.lock();
        let mut changed = false;
        if passed {
            d.check_passes = d.check_passes.saturating_add(1);
            d.check_failures = 0;
            if self.check_failing.load(Ordering::Relaxed) && d.check_passes >= healthy_threshold {
                self.check_failing.store(false, Ordering::Relaxed);
                changed = true;
            }
            // A passing check re-admits an ejected target early: the origin
            // answers again, so waiting out the ejection only loses capacity.
            if self.ejected.load(Ordering::Relaxed) {
                d.ejected_until = None;
                d.next_trial = None;
                d.consecutive_failures = 0;
                self.ejected.store(false, Ordering::Relaxed);
                changed = true;
            }
        } else {
            d.check_failures = d.check_failures.saturating_add(1);
            d.check_passes = 0;
            if let Some(why) = why {
                d.last_error = Some(why.to_string());
            }
            if !self.check_failing.load(Ordering::Relaxed)
                && d.check_failures >= unhealthy_threshold
            {
                self.check_failing.store(true, Ordering::Relaxed);
                changed = true;
            }
        }
        changed
    }

    pub(crate) fn status(&self, weight: u32, now: Instant) -> TargetStatus {
        let state = self.state(now);
        let d = self.detail.lock();
        TargetStatus {
            address: self.display.clone(),
            weight,
            state,
            in_flight: self.in_flight(),
            open_connections: self.conns.open(),
            consecutive_failures: d.consecutive_failures,
            times_ejected: d.times_ejected,
            ejected_for: d
                .ejected_until
                .filter(|u| *u > now)
                .map(|u| u.saturating_duration_since(now)),
            last_error: d.last_error.clone(),
        }
    }
}

/// Builds the pooled client for one target from the cluster settings.
fn build_client(
    addr: &TargetAddr,
    cfg: &ClusterConfig,
    conns: Arc<ConnStats>,
) -> Result<HttpClient, ConfigIssue> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(cfg.connect_timeout));
    let http = CountingConnector::new(http, conns);

    let tls = tls_config(cfg)?;
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let builder = match &cfg.tls.server_name {
        Some(name) if addr.scheme == Scheme::Https => {
            let name =
                rustls::pki_types::ServerName::try_from(name.clone()).map_err(|_| ConfigIssue {
                    path: "tls.server_name".into(),
                    message: format!("`{name}` is not a valid DNS name or IP address"),
                })?;
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        _ => builder,
    };
    let connector = match cfg.protocol {
        // No ALPN offered: the server speaks HTTP/1.1.
        Protocol::Http1 => builder.enable_http1().wrap_connector(http),
        Protocol::H2c | Protocol::Auto => {
            builder.enable_http1().enable_http2().wrap_connector(http)
        }
    };

    let mut client = Client::builder(TokioExecutor::new());
    client
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(cfg.pool.idle_timeout)
        .pool_max_idle_per_host(cfg.pool.max_idle_per_target);
    if cfg.protocol == Protocol::H2c {
        client.http2_only(true);
    }
    Ok(client.build(SetupTimeout::new(connector, cfg.connect_timeout)))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_config(cfg: &ClusterConfig) -> Result<rustls::ClientConfig, ConfigIssue> {
    let issue = |message: String| ConfigIssue {
        path: "tls.ca_file".into(),
        message,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigIssue {
            path: "tls".into(),
            message: format!("no usable TLS versions: {e}"),
        })?;
    let client_cert = client_cert(cfg)?;
    if cfg.tls.insecure_skip_verify {
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())));
        return with_client_cert(builder, client_cert);
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &cfg.tls.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| issue(format!("cannot read `{}`: {e}", path.display())))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert =
                cert.map_err(|e| issue(format!("`{}` is not valid PEM: {e}", path.display())))?;
            roots.add(cert).map_err(|e| {
                issue(format!(
                    "`{}` holds an unusable certificate: {e}",
                    path.display()
                ))
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(issue(format!(
                "`{}` contains no PEM certificates",
                path.display()
            )));
        }
    }
    with_client_cert(builder.with_root_certificates(roots), client_cert)
}

/// A certificate chain and its key.
type ClientCert = (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
);

/// `tls.client_cert_file` and `client_key_file`, read, when given.
fn client_cert(cfg: &ClusterConfig) -> Result<Option<ClientCert>, ConfigIssue> {
    let (Some(cert_path), Some(key_path)) = (&cfg.tls.client_cert_file, &cfg.tls.client_key_file)
    else {
        return Ok(None);
    };
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| ConfigIssue {
            path: format!("tls.{key}"),
            message: format!("cannot read `{}`: {e}", path.display()),
        })
    };
    let cert_issue = |message: String| ConfigIssue {
        path: "tls.client_cert_file".into(),
        message,
    };
    let pem = read("client_cert_file", cert_path)?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_issue(format!("`{}` is not valid PEM: {e}", cert_path.display())))?;
    if chain.is_empty() {
        return Err(cert_issue(format!(
            "`{}` contains no PEM certificates",
            cert_path.display()
        )));
    }
    let pem = read("client_key_file", key_path)?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| ConfigIssue {
            path: "tls.client_key_file".into(),
            message: format!(
                "`{}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                key_path.display()
            ),
        })?;
    Ok(Some((chain, key)))
}

/// Finishes a client config with the client certificate, when there is one.
fn with_client_cert(
    builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    cert: Option<ClientCert>,
) -> Result<rustls::ClientConfig, ConfigIssue> {
    match cert {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| ConfigIssue {
                path: "tls.client_key_file".into(),
                message: format!("the key does not fit the certificate: {e}"),
            }),
    }
}

/// Accepts any server certificate (`tls.insecure_skip_verify`, tests only).
/// Signatures are still checked so the handshake itself is sound.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
