//! Throughput of the upstream path: one `Cluster::send` round trip over a
//! pooled keep-alive connection to a local origin (HTTP/1.1 and h2c), and
//! the consistent-hash key function. Run with
//! `cargo bench -p gateway-upstream --bench send`.

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway_core::body::empty;
use gateway_upstream::config::Protocol;
use gateway_upstream::{hash_key, ClusterConfig, SendOptions, Upstreams};
use http::Request;
use http_body_util::BodyExt;
use test_support::{Handler, Origin};

fn send(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let origin = rt.block_on(Origin::start(Handler::fixed(200, &[], "ok")));
    let mut group = c.benchmark_group("cluster_send");
    group.throughput(Throughput::Elements(1));
    for protocol in [Protocol::Http1, Protocol::H2c] {
        let mut cfg = ClusterConfig::with_targets([origin.authority()]);
        cfg.protocol = protocol;
        let upstreams = rt
            .block_on(async { Upstreams::new(BTreeMap::from([("bench".to_string(), cfg)])) })
            .unwrap();
        let cluster = upstreams.get("bench").unwrap();
        group.bench_function(protocol.as_str(), |b| {
            b.to_async(&rt).iter(|| {
                let cluster = cluster.clone();
                async move {
                    let req = Request::get("/").body(empty()).unwrap();
                    let res = cluster.send(req, SendOptions::default()).await.unwrap();
                    res.into_body().collect().await.unwrap();
                }
            })
        });
    }
    group.finish();
}

fn hashing(c: &mut Criterion) {
    c.bench_function("hash_key_36_bytes", |b| {
        b.iter(|| {
            hash_key(std::hint::black_box(
                b"user-5f0c1d5e-7b7e-4c1e-9d1a-1b2c3d4e",
            ))
        })
    });
}

criterion_group!(benches, send, hashing);
criterion_main!(benches);
