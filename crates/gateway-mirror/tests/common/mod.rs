//! Shared setup: local HTTP upstreams and a minimal "proxy" driving the engine
//! the way the gateway does (plan, call the primary, submit).

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use gateway_mirror::{
    EngineOptions, HttpShadowClient, LaunchConfig, MirrorEngine, Observation, ShadowClient,
    ShadowRequest, ShadowStore,
};
use http::{HeaderMap, Method};

/// What an upstream answers: status, JSON body, delay.
pub type Handler = Arc<dyn Fn(&str, &HeaderMap, u64) -> (u16, String, u64) + Send + Sync>;

/// Serves `handler` on 127.0.0.1:0 and returns its base URL.
pub async fn upstream(handler: Handler) -> String {
    let counter = Arc::new(AtomicU64::new(0));
    let app = Router::new().fallback(move |req: Request| {
        let handler = handler.clone();
        let counter = counter.clone();
        async move {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let pq = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            let (status, body, delay) = handler(&pq, req.headers(), n);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap()
        }
    });
    serve(app).await
}

/// Serves an axum app on 127.0.0.1:0.
pub async fn serve(app: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}")
}

/// A launch mirroring route `api` to cluster `candidate`, with caps high
/// enough not to interfere unless a test lowers them.
pub fn launch(name: &str) -> LaunchConfig {
    let mut c = LaunchConfig::new(name, &["api"], "candidate");
    c.max_rps = 1_000_000;
    c.timeout = Duration::from_secs(3);
    c
}

/// Clusters `primary`, `candidate` and optionally `secondary`.
pub fn client(primary: &str, candidate: &str, secondary: Option<&str>) -> HttpShadowClient {
    let mut c = HttpShadowClient::new()
        .with_cluster("primary", primary)
        .unwrap()
        .with_cluster("candidate", candidate)
        .unwrap();
    if let Some(s) = secondary {
        c = c.with_cluster("secondary", s).unwrap();
    }
    c
}

pub async fn engine(
    launches: Vec<LaunchConfig>,
    client: HttpShadowClient,
    store: Option<Arc<dyn ShadowStore>>,
) -> Arc<MirrorEngine> {
    MirrorEngine::start(launches, Arc::new(client), store, EngineOptions::default())
        .await
        .unwrap()
}

/// What the gateway does for one request: plan, forward to the primary,
/// answer the client, submit. Returns the client's response and whether a
/// shadow was planned.
pub async fn proxy(
    engine: &MirrorEngine,
    client: &HttpShadowClient,
    method: Method,
    path: &str,
    request_id: &str,
    headers: &[(&str, &str)],
) -> (Observation, bool) {
    let mut b = http::Request::builder().method(method.clone()).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let (parts, ()) = b.body(()).unwrap().into_parts();
    let plan = engine.plan("api", &parts, request_id, None);
    let primary = client
        .send(
            "primary",
            ShadowRequest {
                method,
                uri: parts.uri.clone(),
                headers: parts.headers.clone(),
                body: Bytes::new(),
                timeout: Duration::from_secs(5),
                max_body_bytes: 1 << 20,
            },
        )
        .await;
    let planned = plan.is_some();
    if let Some(p) = plan {
        let _ = p.submit(Bytes::new(), primary.clone());
    }
    (primary, planned)
}

pub fn body(o: &Observation) -> String {
    String::from_utf8_lossy(o.body.as_ref().unwrap()).into_owned()
}
