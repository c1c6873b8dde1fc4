//! Hit-path cost: `HttpCache::handle` answering a fresh stored response,
//! with and without a `Vary` secondary key, and the key normalisation alone.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use futures::future::BoxFuture;
use gateway_cache::{
    CacheConfig, HttpCache, Origin, OriginError, RouteCacheConfig, RouteCacheContext,
};
use gateway_core::{body, Body, SystemClock};
use http::{Request, Response};
use http_body_util::BodyExt;

struct StaticOrigin;

impl Origin for StaticOrigin {
    fn fetch(
        &self,
        _req: Request<Body>,
    ) -> BoxFuture<'static, Result<Response<Body>, OriginError>> {
        Box::pin(async {
            let mut res = Response::new(body::full(vec![b'x'; 2048]));
            res.headers_mut()
                .insert("cache-control", "max-age=3600".parse().unwrap());
            res.headers_mut()
                .insert("vary", "accept-encoding".parse().unwrap());
            res.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok(res)
        })
    }
}

fn request() -> Request<Body> {
    Request::get("/v1/items/42?b=2&a=1&utm_source=x")
        .header("accept-encoding", "gzip, br")
        .body(body::empty())
        .unwrap()
}

fn bench_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cfg = CacheConfig {
        ignore_query_params: vec!["utm_*".into()],
        ..CacheConfig::default()
    };
    let cache = HttpCache::new(cfg, Arc::new(SystemClock));
    let route = RouteCacheContext::new("bench", Arc::new(RouteCacheConfig::default()))
        .with_authority("https", "api.example.com");
    let origin: Arc<dyn Origin> = Arc::new(StaticOrigin);
    rt.block_on(async {
        let res = cache.handle(request(), &route, origin.clone()).await;
        res.into_body().collect().await.unwrap();
    });
    c.bench_function("cache_hit_vary_2KiB", |b| {
        b.to_async(&rt).iter(|| async {
            let res = cache.handle(request(), &route, origin.clone()).await;
            assert!(res.headers()["cache-status"]
                .to_str()
                .unwrap()
                .contains("hit"));
            res.into_body().collect().await.unwrap()
        })
    });
    let ignore = vec!["utm_*".to_string()];
    c.bench_function("normalize_url", |b| {
        b.iter(|| {
            gateway_cache::key::normalize_url(
                "https",
                "API.example.com:443",
                "/v1/%7Eitems/42?b=2&a=1&utm_source=x",
                &[&ignore],
            )
            .unwrap()
        })
    });
}

criterion_group!(benches, bench_hit);
criterion_main!(benches);
