//! The floor for `bench/proxy.sh`: the smallest reverse proxy on the same
//! stack as Gatehouse (hyper-util's auto server and pooled legacy client,
//! tokio, the same allocator), with no routing, no headers, no metrics. What
//! Gatehouse costs above this is its own work; what this costs above nginx
//! is the stack's.
//!
//!   cargo run --release --example minimal_proxy -- LISTEN UPSTREAM [MIRROR]
//!
//! With MIRROR, every request (GET only: the floor never replays bodies) is
//! also sent to MIRROR from a spawned task whose response body is read and
//! dropped: the least any dark launch must do at 100%, so the floor for
//! `bench/features.sh`'s mirroring row.
//!
//! Not a product: no error pages, no hop-by-hop handling, no timeouts.

use std::net::SocketAddr;

use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

#[global_allocator]
static GLOBAL: gateway_alloc::MiMalloc = gateway_alloc::MiMalloc;

type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, hyper::Error>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        return Err("usage: minimal_proxy LISTEN UPSTREAM [MIRROR] (host:port each)".into());
    };
    let mirror: Option<&'static str> = args.next().map(|m| &*Box::leak(m.into_boxed_str()));
    let listen: SocketAddr = listen.parse()?;
    let upstream: &'static str = Box::leak(upstream.into_boxed_str());
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(256)
                .build(connector);
            let listener = tokio::net::TcpListener::bind(listen).await?;
            loop {
                let (stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                let client = client.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let client = client.clone();
                        async move {
                            let (mut parts, body) = req.into_parts();
                            let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                            if let Some(mirror) =
                                mirror.filter(|_| parts.method == hyper::Method::GET)
                            {
                                let mut copy = Request::new(Body::default());
                                *copy.headers_mut() = parts.headers.clone();
                                *copy.uri_mut() = Uri::builder()
                                    .scheme("http")
                                    .authority(mirror)
                                    .path_and_query(pq)
                                    .build()
                                    .expect("valid URI");
                                let client = client.clone();
                                tokio::spawn(async move {
                                    if let Ok(res) = client.request(copy).await {
                                        let _ = res.into_body().collect().await;
                                    }
                                });
                            }
                            parts.uri = Uri::builder()
                                .scheme("http")
                                .authority(upstream)
                                .path_and_query(pq)
                                .build()
                                .expect("valid URI");
                            let res = client
                                .request(Request::from_parts(parts, body.boxed_unsync()))
                                .await?;
                            Ok::<_, hyper_util::client::legacy::Error>(
                                res.map(|b| b.boxed_unsync()) as Response<Body>,
                            )
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
}
