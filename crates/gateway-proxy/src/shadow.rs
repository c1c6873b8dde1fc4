//! Dark-launch plumbing on the gateway side: the [`ShadowClient`] that sends
//! mirrored requests through the gateway's own clusters (so candidates get
//! the same pools, TLS and health handling as primaries), and the body tee
//! that hands the primary's request and response bytes to the comparator
//! once the client has them, never before.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use gateway_mirror::{ErrorKind, Observation, ShadowClient, ShadowRequest};
use gateway_upstream::{SendOptions, UpstreamErrorKind};

use crate::body::Observer;
use crate::gateway::WeakGateway;
use http::Request;
use http_body_util::BodyExt as _;
use parking_lot::Mutex;

/// Sends shadow requests to named clusters of the running gateway.
pub(crate) struct UpstreamShadowClient {
    // Weak: the gateway owns the engine that owns this client.
    gateway: WeakGateway,
}

impl UpstreamShadowClient {
    pub(crate) fn new(gateway: WeakGateway) -> Self {
        Self { gateway }
    }
}

#[async_trait::async_trait]
impl ShadowClient for UpstreamShadowClient {
    async fn send(&self, cluster: &str, request: ShadowRequest) -> Observation {
        let started = Instant::now();
        let Some(gateway) = self.gateway.upgrade() else {
            return Observation::failed(
                ErrorKind::Other,
                "the gateway is shutting down",
                started.elapsed(),
            );
        };
        let Some(cluster) = gateway.upstreams().get(cluster) else {
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
        let mut kept = BytesMut::new();
        let mut over = false;
        loop {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => {
                    return Observation::failed(
                        ErrorKind::Timeout,
                        "response body did not finish in time",
                        started.elapsed(),
                    )
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Observation::failed(ErrorKind::Reset, e.to_string(), started.elapsed())
                }
                Ok(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        if !over && kept.len() + data.len() <= request.max_body_bytes {
                            kept.extend_from_slice(data);
                        } else {
                            over = true;
                            kept.clear();
                        }
                    }
                }
            }
        }
        let mut obs = Observation::response(
            parts.status,
            parts.headers,
            kept.freeze(),
            started.elapsed(),
        );
        if over {
            obs.body = None;
        }
        obs
    }
}

/// Bytes copied off a streaming body, up to a cap.
#[derive(Default)]
pub(crate) struct Captured {
    bytes: BytesMut,
    over: bool,
}

impl Captured {
    /// The bytes, or `None` when the body went over the cap.
    pub(crate) fn take(&mut self) -> Option<Bytes> {
        (!self.over).then(|| std::mem::take(&mut self.bytes).freeze())
    }
}

/// Called when a teed body ends; `complete` is false when it broke off.
pub(crate) type OnEnd = Box<dyn FnOnce(Option<Bytes>, bool) + Send>;

/// Copies a body, up to `cap` bytes, as it streams through
/// [`ObservedBody`]; optionally hands the copy on when the body ends.
pub(crate) struct Tee {
    captured: Arc<Mutex<Captured>>,
    cap: usize,
    on_end: Option<OnEnd>,
}

impl Tee {
    pub(crate) fn new(cap: usize, captured: Arc<Mutex<Captured>>, on_end: Option<OnEnd>) -> Self {
        Self {
            captured,
            cap,
            on_end,
        }
    }
}

impl Observer for Tee {
    fn data(&mut self, chunk: &Bytes) {
        let mut c = self.captured.lock();
        if !c.over && c.bytes.len() + chunk.len() <= self.cap {
            c.bytes.extend_from_slice(chunk);
        } else {
            c.over = true;
            c.bytes = BytesMut::new();
        }
    }

    fn end(self, completed: bool) {
        if let Some(f) = self.on_end {
            let bytes = self.captured.lock().take();
            f(bytes, completed);
        }
    }
}
