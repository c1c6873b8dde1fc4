//! Sending a prepared shadow request to a named cluster.
//!
//! [`ShadowClient`] is the narrow seam between the mirror workers and the
//! gateway's upstream layer: the gateway implements it over its clusters
//! (load balancing, TLS, health), so shadows reach exactly the cluster named
//! in the launch. [`HttpShadowClient`] is a plain hyper client over fixed base
//! URLs, used by `gatehouse shadow replay` and by tests.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use gateway_core::body::{drain, read_capped, Capped};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use crate::compare::{ErrorKind, Observation};

/// A shadow request, ready to send: headers already stripped, replaced and
/// marked.
#[derive(Debug, Clone)]
pub struct ShadowRequest {
    /// Method.
    pub method: Method,
    /// Path and query (no scheme or authority: the cluster decides those).
    pub uri: Uri,
    /// Headers to send.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// Deadline for the complete response. Implementations should honour it;
    /// the workers enforce it regardless.
    pub timeout: Duration,
    /// Bodies larger than this are read and discarded; the observation's
    /// `body` is then `None` (not compared).
    pub max_body_bytes: usize,
}

/// Sends shadow requests. Called only from mirror workers, never on the
/// primary path; must never panic.
#[async_trait]
pub trait ShadowClient: Send + Sync + 'static {
    /// Sends `request` to `cluster` and observes the complete response, or
    /// the failure (unknown cluster, connect error, reset, timeout).
    async fn send(&self, cluster: &str, request: ShadowRequest) -> Observation;
}

/// A [`ShadowClient`] over plain HTTP/1.1 to fixed base URLs per cluster name.
#[derive(Clone)]
pub struct HttpShadowClient {
    clusters: HashMap<String, Uri>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for HttpShadowClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpShadowClient")
            .field("clusters", &self.clusters)
            .finish()
    }
}

impl HttpShadowClient {
    /// A client knowing no cluster yet.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Self {
            clusters: HashMap::new(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Routes `cluster` to `base_url` (`http://host:port[/prefix]`).
    pub fn with_cluster(mut self, cluster: &str, base_url: &str) -> Result<Self, String> {
        let uri: Uri = base_url
            .parse()
            .map_err(|e| format!("{base_url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(s) => {
                return Err(format!(
                    "{base_url:?}: scheme {s:?} is not supported here, use http://"
                ))
            }
            None => return Err(format!("{base_url:?} has no scheme; use http://host:port")),
        }
        if uri.authority().is_none() {
            return Err(format!("{base_url:?} has no host"));
        }
        self.clusters.insert(cluster.to_string(), uri);
        Ok(self)
    }

    fn target(base: &Uri, path_and_query: &Uri) -> Result<Uri, String> {
        let prefix = base.path().trim_end_matches('/');
        let pq = path_and_query
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        format!(
            "{}://{}{}{}",
            base.scheme_str().unwrap_or("http"),
            base.authority().map(|a| a.as_str()).unwrap_or(""),
            prefix,
            pq
        )
        .parse()
        .map_err(|e| format!("cannot build target URL: {e}"))
    }

    async fn exchange(&self, base: &Uri, req: ShadowRequest) -> Result<Observation, Observation> {
        let start = Instant::now();
        let fail = |kind, msg: String| Observation::failed(kind, msg, start.elapsed());
        let uri = Self::target(base, &req.uri).map_err(|e| fail(ErrorKind::Other, e))?;
        let mut builder = Request::builder().method(req.method).uri(uri);
        if let Some(h) = builder.headers_mut() {
            *h = req.headers;
        }
        let request = builder
            .body(Full::new(req.body))
            .map_err(|e| fail(ErrorKind::Other, format!("invalid request: {e}")))?;
        let response = self.client.request(request).await.map_err(|e| {
            let kind = if e.is_connect() {
                ErrorKind::Connect
            } else {
                ErrorKind::Reset
            };
            fail(kind, format!("{e}"))
        })?;
        let (parts, mut body) = response.into_parts();
        let body_err = |e: hyper::Error| fail(ErrorKind::Reset, format!("body: {e}"));
        let kept = read_capped(&mut body, req.max_body_bytes)
            .await
            .map_err(body_err)?;
        let over = kept == Capped::TooLarge;
        if over {
            // Keep reading past the cap so latency covers the whole
            // response, but keep no more than the cap in memory.
            drain(&mut body).await.map_err(body_err)?;
        }
        let mut obs = Observation::response(
            parts.status,
            parts.headers,
            kept.into_bytes().unwrap_or_default(),
            start.elapsed(),
        );
        if over {
            obs.body = None;
        }
        Ok(obs)
    }
}

impl Default for HttpShadowClient {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl ShadowClient for HttpShadowClient {
    async fn send(&self, cluster: &str, request: ShadowRequest) -> Observation {
        let Some(base) = self.clusters.get(cluster) else {
            return Observation::failed(
                ErrorKind::Other,
                format!("unknown cluster {cluster:?}"),
                Duration::ZERO,
            );
        };
        let timeout = request.timeout;
        let start = Instant::now();
        match tokio::time::timeout(timeout, self.exchange(base, request)).await {
            Ok(Ok(obs)) | Ok(Err(obs)) => obs,
            Err(_) => Observation::failed(
                ErrorKind::Timeout,
                format!("no response within {timeout:?}"),
                start.elapsed(),
            ),
        }
    }
}
