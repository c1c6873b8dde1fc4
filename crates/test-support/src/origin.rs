//! A programmable mock origin: a real hyper server on `127.0.0.1`, so tests
//! exercise real sockets, pools and protocol negotiation.
//!
//! Each connection is served by hyper-util's auto server, which detects
//! HTTP/1.1 or HTTP/2 prior knowledge (h2c) from the first bytes; with
//! [`OriginBuilder::tls`] it terminates TLS first (ALPN `h2`, `http/1.1`).
//! What it answers is a [`Handler`], replaceable at runtime with
//! [`Origin::set_handler`]; every request is counted and logged before the
//! handler runs, so tests can assert what reached the origin.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::tls::TestCerts;

/// The response body type handlers produce.
pub type OriginBody = BoxBody<Bytes, std::io::Error>;

/// What a handler does with a request.
pub enum Reply {
    /// Send this response.
    Response(Response<OriginBody>),
    /// Drop the connection without answering (HTTP/1.1: the socket closes;
    /// HTTP/2: the stream is reset).
    Close,
}

type BoxFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// How the origin answers requests. Cheap to clone.
#[derive(Clone)]
pub struct Handler(Arc<dyn Fn(Request<Incoming>) -> BoxFuture + Send + Sync>);

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handler")
    }
}

impl Handler {
    /// A handler from an async function.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        Self(Arc::new(move |req| Box::pin(f(req))))
    }

    /// Answers with JSON describing the request, read in full:
    /// `{"method", "path", "query", "version", "headers": {name: "v1, v2"},
    /// "body_len", "body_sha256"}` (header names lower-case, `query` null
    /// when absent, `version` like `"HTTP/1.1"`).
    pub fn echo() -> Self {
        Self::new(|req: Request<Incoming>| async move {
            let (parts, body) = req.into_parts();
            let bytes = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => return Reply::Close,
            };
            let mut headers = serde_json::Map::new();
            for name in parts.headers.keys() {
                let values: Vec<&str> = parts
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap_or("<non-ascii>"))
                    .collect();
                headers.insert(name.as_str().to_string(), values.join(", ").into());
            }
            let report = serde_json::json!({
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "query": parts.uri.query(),
                "version": format!("{:?}", parts.version),
                "headers": headers,
                "body_len": bytes.len(),
                "body_sha256": hex(&Sha256::digest(&bytes)),
            });
            let mut res = Response::new(full(report.to_string()));
            res.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Reply::Response(res)
        })
    }

    /// Answers every request with `status`, `headers` and `body`.
    ///
    /// # Panics
    /// If a header name or value is invalid (a bug in the test).
    pub fn fixed(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Self {
        let status = StatusCode::from_u16(status).expect("valid status");
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::try_from(*k).expect("valid header name"),
                HeaderValue::try_from(*v).expect("valid header value"),
            );
        }
        let body: Bytes = body.into();
        Self::new(move |_req| {
            let mut res = Response::new(full(body.clone()));
            *res.status_mut() = status;
            *res.headers_mut() = map.clone();
            async move { Reply::Response(res) }
        })
    }

    /// Answers every request with an empty body and `status`.
    pub fn status(status: u16) -> Self {
        Self::fixed(status, &[], Bytes::new())
    }

    /// Closes the connection without answering.
    pub fn close() -> Self {
        Self::new(|_req| async { Reply::Close })
    }

    /// Answers 200 with `total` generated bytes (a repeating `a`-`z`
    /// pattern) sent lazily in chunks of `chunk` bytes, with a
    /// `content-length`; the origin never holds the whole body.
    pub fn stream(total: u64, chunk: usize) -> Self {
        let chunk = chunk.max(1);
        Self::new(move |_req| async move {
            let pattern: Bytes = (0..chunk)
                .map(|i| b'a' + (i % 26) as u8)
                .collect::<Vec<u8>>()
                .into();
            let stream = futures_util::stream::unfold(0u64, move |sent| {
                let pattern = pattern.clone();
                async move {
                    if sent >= total {
                        return None;
                    }
                    let n = (total - sent).min(pattern.len() as u64) as usize;
                    Some((
                        Ok::<_, std::io::Error>(Frame::data(pattern.slice(..n))),
                        sent + n as u64,
                    ))
                }
            });
            let mut res = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            res.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(total));
            Reply::Response(res)
        })
    }

    /// Waits `delay` before running this handler.
    pub fn delay(self, delay: Duration) -> Self {
        Self::new(move |req| {
            let inner = self.clone();
            async move {
                tokio::time::sleep(delay).await;
                (inner.0)(req).await
            }
        })
    }

    /// Uses `handler` for requests whose path is exactly `path`, and this
    /// handler for the rest (e.g. a health endpoint beside echo).
    pub fn on_path(self, path: &str, handler: Handler) -> Self {
        let path = path.to_string();
        Self::new(move |req: Request<Incoming>| {
            let chosen = if req.uri().path() == path {
                handler.clone()
            } else {
                self.clone()
            };
            (chosen.0)(req)
        })
    }
}

fn full(body: impl Into<Bytes>) -> OriginBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A request as received by the origin (body not included).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Request method.
    pub method: Method,
    /// Request target as received (origin-form for HTTP/1.1, absolute for HTTP/2).
    pub uri: Uri,
    /// HTTP version of the connection.
    pub version: Version,
    /// Request headers.
    pub headers: HeaderMap,
}

struct State {
    handler: RwLock<Handler>,
    log: Mutex<Vec<RecordedRequest>>,
    count: AtomicUsize,
    connections: AtomicUsize,
}

impl State {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<OriginBody>, std::io::Error> {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(RecordedRequest {
                method: req.method().clone(),
                uri: req.uri().clone(),
                version: req.version(),
                headers: req.headers().clone(),
            });
        let handler = self
            .handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match (handler.0)(req).await {
            Reply::Response(res) => Ok(res),
            // An error from the service makes hyper drop the connection
            // (HTTP/1.1) or reset the stream (HTTP/2) without a response.
            Reply::Close => Err(std::io::Error::other("origin closes without answering")),
        }
    }
}

/// Configures an [`Origin`] before starting it.
#[derive(Debug)]
pub struct OriginBuilder {
    handler: Handler,
    certs: Option<Arc<TestCerts>>,
    client_ca: Option<Arc<TestCerts>>,
    addr: Option<SocketAddr>,
}

impl OriginBuilder {
    /// With TLS, refuses handshakes from clients without a certificate
    /// signed by `client_ca` (mutual TLS).
    pub fn require_client_cert(mut self, client_ca: Arc<TestCerts>) -> Self {
        self.client_ca = Some(client_ca);
        self
    }

    /// Serves TLS with freshly generated certificates (see [`Origin::certs`]).
    pub fn tls(mut self) -> Self {
        self.certs = Some(Arc::new(TestCerts::generate()));
        self
    }

    /// Serves TLS with the given certificates (e.g. to restart an origin
    /// that clients already trust).
    pub fn tls_with(mut self, certs: Arc<TestCerts>) -> Self {
        self.certs = Some(certs);
        self
    }

    /// Binds `addr` instead of `127.0.0.1:0` (e.g. to restart a stopped origin
    /// on its old port).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// Binds and starts serving.
    pub async fn try_start(self) -> std::io::Result<Origin> {
        let listener = TcpListener::bind(
            self.addr
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
        )
        .await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            handler: RwLock::new(self.handler),
            log: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        let acceptor = self.certs.as_ref().map(|c| {
            tokio_rustls::TlsAcceptor::from(match &self.client_ca {
                Some(ca) => c.server_config_requiring_clients(ca),
                None => c.server_config(),
            })
        });
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, state.clone(), acceptor, rx));
        Ok(Origin {
            addr,
            state,
            certs: self.certs,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Binds and starts serving.
    ///
    /// # Panics
    /// If the address cannot be bound.
    pub async fn start(self) -> Origin {
        self.try_start().await.expect("bind mock origin")
    }
}

async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: oneshot::Receiver<()>,
) {
    // Connections live in the JoinSet so that dropping it (on shutdown)
    // aborts them and closes their sockets, like a crashed process would.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                state.connections.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let acceptor = acceptor.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| state.clone().handle(req));
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(stream).await else { return };
                            let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

/// A running mock origin. Stops (closing its listener and every connection)
/// on [`Origin::stop`] or when dropped.
#[derive(Debug)]
pub struct Origin {
    addr: SocketAddr,
    state: Arc<State>,
    certs: Option<Arc<TestCerts>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("count", &self.count.load(Ordering::SeqCst))
            .finish()
    }
}

impl Origin {
    /// Starts a cleartext origin (HTTP/1.1 and h2c) on `127.0.0.1:0`.
    pub async fn start(handler: Handler) -> Self {
        Self::builder(handler).start().await
    }

    /// A builder for TLS or a fixed address.
    pub fn builder(handler: Handler) -> OriginBuilder {
        OriginBuilder {
            handler,
            certs: None,
            client_ca: None,
            addr: None,
        }
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT` or `https://localhost:PORT` (TLS; the
    /// certificate is also valid for `127.0.0.1`).
    pub fn url(&self) -> String {
        match self.certs {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }

    /// The TLS material, when serving TLS.
    pub fn certs(&self) -> Option<&Arc<TestCerts>> {
        self.certs.as_ref()
    }

    /// Requests received so far (all paths).
    pub fn requests(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far; tells whether clients reuse
    /// keep-alive connections.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Requests received so far whose path is exactly `path`.
    pub fn requests_to(&self, path: &str) -> usize {
        self.state
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.uri.path() == path)
            .count()
    }

    /// A copy of the request log.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.state
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the handler for requests from now on.
    pub fn set_handler(&self, handler: Handler) {
        *self
            .state
            .handler
            .write()
            .unwrap_or_else(|e| e.into_inner()) = handler;
    }

    /// Stops accepting, closes every open connection and waits until the
    /// port is released.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
