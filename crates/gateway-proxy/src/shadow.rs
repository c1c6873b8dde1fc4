//! The [`ShadowClient`] the dark-launch engine sends candidates with: the
//! gateway's own clusters, so candidates get the same pools, TLS, health
//! handling and timeouts as primaries.

use std::sync::Arc;
use std::time::Instant;

use gateway_core::body::{drain, read_capped, Capped};
use gateway_mirror::{ErrorKind, Observation, ShadowClient, ShadowRequest};
use gateway_upstream::{SendOptions, UpstreamErrorKind, Upstreams};
use http::Request;

/// Sends shadow requests to named clusters of the running config.
pub(crate) struct UpstreamShadowClient {
    upstreams: Arc<Upstreams>,
}

impl UpstreamShadowClient {
    pub(crate) fn new(upstreams: Arc<Upstreams>) -> Self {
        Self { upstreams }
    }
}
#[async_trait::async_trait]
impl ShadowClient for UpstreamShadowClient {
    async fn send(&self, cluster: &str, request: ShadowRequest) -> Observation {
        let started = Instant::now();
        let Some(cluster) = self.upstreams.get(cluster) else {
            return Observation::failed(
                ErrorKind::Other,
                format!("no cluster named `{cluster}`"),
                started.elapsed(),
            );
        };
        let mut req = Request::new(gateway_core::body::full(request.body));
        *req.method_mut() = request.method;
        *req.uri_mut() = request.uri;
        *req.headers_mut() = request.headers;
        let opts = SendOptions::for_method(req.method()).with_timeout(request.timeout);
        let deadline = tokio::time::Instant::now() + request.timeout;
        let res = match cluster.send(req, opts).await {
            Ok(res) => res,
            Err(e) => {
                let kind = match e.kind() {
                    UpstreamErrorKind::Timeout | UpstreamErrorKind::ConnectTimeout => {
                        ErrorKind::Timeout
                    }
                    UpstreamErrorKind::ConnectFailed | UpstreamErrorKind::Tls => ErrorKind::Connect,
                    UpstreamErrorKind::Reset | UpstreamErrorKind::Protocol => ErrorKind::Reset,
                    _ => ErrorKind::Other,
                };
                return Observation::failed(kind, e.to_string(), started.elapsed());
            }
        };
        let (parts, mut body) = res.into_parts();
        // Read the whole body (the connection stays reusable) but keep at
        // most the cap; over it, the body is not compared.
        let read = async {
            match read_capped(&mut body, request.max_body_bytes).await? {
                Capped::Complete(kept) => Ok(Some(kept)),
                Capped::TooLarge => drain(&mut body).await.map(|_| None),
            }
        };
        let kept = match tokio::time::timeout_at(deadline, read).await {
            Err(_) => {
                return Observation::failed(
                    ErrorKind::Timeout,
                    "response body did not finish in time",
                    started.elapsed(),
                )
            }
            Ok(Err(e)) => {
                return Observation::failed(ErrorKind::Reset, e.to_string(), started.elapsed())
            }
            Ok(Ok(kept)) => kept,
        };
        let over = kept.is_none();
        let mut obs = Observation::response(
            parts.status,
            parts.headers,
            kept.unwrap_or_default(),
            started.elapsed(),
        );
        if over {
            obs.body = None;
        }
        obs
    }
}
