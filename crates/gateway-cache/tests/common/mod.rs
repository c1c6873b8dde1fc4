//! Shared test fixtures: a scripted origin over a real local socket, an
//! in-process origin, and a harness driving `HttpCache::handle`.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use gateway_cache::{
    CacheConfig, HttpCache, Origin, OriginError, RouteCacheConfig, RouteCacheContext,
};
use gateway_core::{body, Body, Clock, ManualClock, Problem};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;

/// A fixed starting time, so Date headers are predictable.
pub fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

pub fn http_date(at: DateTime<Utc>) -> String {
    gateway_cache::directives::fmt_http_date(at)
}

/// What the scripted origin answers.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: &str) -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: Bytes::copy_from_slice(body.as_bytes()),
            delay: Duration::ZERO,
        }
    }
    pub fn status(mut self, s: u16) -> Self {
        self.status = s;
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    pub fn cc(self, v: &str) -> Self {
        self.header("cache-control", v)
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

/// A request as the origin saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
}

pub type Script = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

/// A scripted HTTP origin on 127.0.0.1:0, reached through a hyper client.
pub struct SocketOrigin {
    addr: std::net::SocketAddr,
    client: Client<HttpConnector, Body>,
    pub calls: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl SocketOrigin {
    /// Starts the server; every reply gets `Date` from `clock` unless set.
    pub async fn start(clock: ManualClock, script: Script) -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        {
            let calls = calls.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let calls = calls.clone();
                    let seen = seen.clone();
                    let script = script.clone();
                    let clock = clock.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let n = calls.fetch_add(1, Ordering::SeqCst);
                            let s = Seen {
                                method: req.method().clone(),
                                uri: req.uri().to_string(),
                                headers: req.headers().clone(),
                            };
                            seen.lock().push(s.clone());
                            let reply = script(&s, n);
                            let now = clock.now();
                            async move {
                                if !reply.delay.is_zero() {
                                    tokio::time::sleep(reply.delay).await;
                                }
                                let mut res = Response::new(Full::new(reply.body));
                                *res.status_mut() = StatusCode::from_u16(reply.status).unwrap();
                                if !reply
                                    .headers
                                    .iter()
                                    .any(|(k, _)| k.eq_ignore_ascii_case("date"))
                                {
                                    res.headers_mut()
                                        .insert("date", http_date(now).parse().unwrap());
                                }
                                for (k, v) in reply.headers {
                                    res.headers_mut().append(
                                        http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                                        v.parse().unwrap(),
                                    );
                                }
                                Ok::<_, std::convert::Infallible>(res)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        }
        let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
        Arc::new(Self {
            addr,
            client,
            calls,
            seen,
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn last_seen(&self) -> Seen {
        self.seen.lock().last().cloned().unwrap()
    }
}

impl Origin for SocketOrigin {
    fn fetch(&self, req: Request<Body>) -> BoxFuture<'static, Result<Response<Body>, OriginError>> {
        let (mut parts, b) = req.into_parts();
        let pq = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        parts.uri = format!("http://{}{}", self.addr, pq).parse().unwrap();
        let fut = self.client.request(Request::from_parts(parts, b));
        Box::pin(async move {
            match fut.await {
                Ok(res) => Ok(res.map(body::boxed)),
                Err(e) => Err(OriginError::new(Problem::new(
                    &gateway_core::errors::UPSTREAM_CONNECT_FAILED,
                    format!("origin unreachable: {e}"),
                ))),
            }
        })
    }
}

/// An in-process origin: a closure per call, counting calls.
pub struct FnOrigin {
    pub calls: AtomicUsize,
    #[allow(clippy::type_complexity)]
    f: Box<dyn Fn(usize) -> BoxFuture<'static, Result<Response<Body>, OriginError>> + Send + Sync>,
}

impl FnOrigin {
    pub fn new(
        f: impl Fn(usize) -> BoxFuture<'static, Result<Response<Body>, OriginError>>
            + Send
            + Sync
            + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            f: Box::new(f),
        })
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Origin for FnOrigin {
    fn fetch(
        &self,
        _req: Request<Body>,
    ) -> BoxFuture<'static, Result<Response<Body>, OriginError>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        (self.f)(n)
    }
}

pub fn origin_down() -> OriginError {
    OriginError::new(Problem::new(
        &gateway_core::errors::UPSTREAM_CONNECT_FAILED,
        "connection refused",
    ))
}

/// A collected response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn cache_status(&self) -> String {
        self.headers
            .get_all("cache-status")
            .iter()
            .next_back()
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
    pub fn age(&self) -> Option<u64> {
        self.headers
            .get("age")
            .map(|v| v.to_str().unwrap().parse().unwrap())
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// A cache with a manual clock and one route.
pub struct Harness {
    pub cache: HttpCache,
    pub clock: ManualClock,
    pub route: RouteCacheContext,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(CacheConfig::default(), RouteCacheConfig::default())
    }

    pub fn with(cfg: CacheConfig, route: RouteCacheConfig) -> Self {
        cfg.validate().unwrap();
        let clock = ManualClock::new(start_time());
        let cache = HttpCache::new(cfg, Arc::new(clock.clone()));
        let route = RouteCacheContext::new("api", Arc::new(route))
            .with_authority("https", "api.example.com");
        Self {
            cache,
            clock,
            route,
        }
    }

    /// A cache opened with [`HttpCache::open`] (with its disk tier, when
    /// `cfg.disk` is set) on `clock`, so a restart can keep the time.
    pub fn open(cfg: CacheConfig, route: RouteCacheConfig, clock: ManualClock) -> Self {
        cfg.validate().unwrap();
        let cache = HttpCache::open(cfg, Arc::new(clock.clone())).unwrap();
        let route = RouteCacheContext::new("api", Arc::new(route))
            .with_authority("https", "api.example.com");
        Self {
            cache,
            clock,
            route,
        }
    }

    pub fn advance(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub async fn send(&self, req: Request<Body>, origin: Arc<dyn Origin>) -> Resp {
        self.send_as(req, &self.route, origin).await
    }

    pub async fn send_as(
        &self,
        req: Request<Body>,
        route: &RouteCacheContext,
        origin: Arc<dyn Origin>,
    ) -> Resp {
        let res = self.cache.handle(req, route, origin).await;
        let (parts, b) = res.into_parts();
        let body = b.collect().await.unwrap().to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, origin: Arc<dyn Origin>) -> Resp {
        self.send(get(path).body(body::empty()).unwrap(), origin)
            .await
    }
}

pub fn get(path: &str) -> http::request::Builder {
    Request::builder().method(Method::GET).uri(path)
}

pub fn req(method: Method, path: &str) -> http::request::Builder {
    Request::builder().method(method).uri(path)
}
