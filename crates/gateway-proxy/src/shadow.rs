//! Dark-launch plumbing on the gateway side: the [`ShadowClient`] that sends
//! mirrored requests through the gateway's own clusters (so candidates get
//! the same pools, TLS and health handling as primaries), and the body tee
//! that hands the primary's request and response bytes to the comparator
//! once the client has them, never before.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use gateway_core::{Body, BoxError};
use gateway_mirror::{ErrorKind, Observation, ShadowClient, ShadowRequest};
use gateway_upstream::{SendOptions, UpstreamErrorKind};

use crate::gateway::WeakGateway;
use http::Request;
use http_body::{Body as _, Frame, SizeHint};
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

/// Streams a body through unchanged while copying it, up to `cap` bytes.
pub(crate) struct TeeBody {
    inner: Body,
    captured: Arc<Mutex<Captured>>,
    cap: usize,
    on_end: Option<OnEnd>,
}

impl TeeBody {
    pub(crate) fn new(
        inner: Body,
        cap: usize,
        captured: Arc<Mutex<Captured>>,
        on_end: Option<OnEnd>,
    ) -> Self {
        Self {
            inner,
            captured,
            cap,
            on_end,
        }
    }

    fn end(&mut self, complete: bool) {
        if let Some(f) = self.on_end.take() {
            let bytes = self.captured.lock().take();
            f(bytes, complete);
        }
    }
}

impl http_body::Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let mut c = this.captured.lock();
                    if !c.over && c.bytes.len() + data.len() <= this.cap {
                        c.bytes.extend_from_slice(data);
                    } else {
                        c.over = true;
                        c.bytes = BytesMut::new();
                    }
                }
                if this.inner.is_end_stream() {
                    this.end(true);
                }
            }
            Poll::Ready(None) => this.end(true),
            Poll::Ready(Some(Err(_))) => this.end(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TeeBody {
    fn drop(&mut self) {
        let complete = self.inner.is_end_stream();
        self.end(complete);
    }
}
