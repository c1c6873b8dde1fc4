//! Verifications per second: parse (prefix, charset, CRC32) + SHA-256 +
//! keyring lookup + constant-time compare, against a keyring of 10 000
//! keys; and the whole authentication stage on a request.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway_keys::auth::Authenticator;
use gateway_keys::config::RouteAuthConfig;
use gateway_keys::key::ApiKey;
use gateway_keys::service::{CreateKey, KeyService};
use gateway_keys::store::SqlStore;

fn setup(rt: &tokio::runtime::Runtime, n: usize) -> (KeyService, Vec<String>) {
    rt.block_on(async {
        let store = SqlStore::connect("sqlite::memory:").await.unwrap();
        let svc = KeyService::builder(Arc::new(store)).build().await.unwrap();
        let mut secrets = Vec::new();
        for i in 0..n {
            let k = svc
                .create(
                    CreateKey {
                        owner: format!("consumer-{}", i % 100),
                        ..CreateKey::default()
                    },
                    "bench",
                )
                .await
                .unwrap();
            if i % 1000 == 0 {
                secrets.push(k.secret.expose_secret().to_string());
            }
        }
        (svc, secrets)
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (svc, secrets) = setup(&rt, 10_000);
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("parse_and_verify_hit", |b| {
        b.iter(|| {
            i = (i + 1) % secrets.len();
            let k: ApiKey = secrets[i].parse().unwrap();
            svc.verify(&k).unwrap();
        })
    });
    let miss = ApiKey::generate("live")
        .unwrap()
        .expose_secret()
        .to_string();
    g.bench_function("parse_and_verify_miss", |b| {
        b.iter(|| {
            let k: ApiKey = miss.parse().unwrap();
            assert!(svc.verify(&k).is_err());
        })
    });
    let mut typo = secrets[0].clone().into_bytes();
    typo[12] = if typo[12] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    g.bench_function("reject_typo_by_checksum", |b| {
        b.iter(|| assert!(typo.parse::<ApiKey>().is_err()))
    });
    let auth = Authenticator::new(svc.clone());
    let route = RouteAuthConfig::default();
    let header = format!("Bearer {}", secrets[0]);
    g.bench_function("authenticate_request", |b| {
        b.to_async(&rt).iter(|| async {
            let (mut parts, _) = http::Request::builder()
                .uri("/orders")
                .header("authorization", &header)
                .body(())
                .unwrap()
                .into_parts();
            auth.authenticate(&mut parts, &route, "orders")
                .await
                .unwrap();
        })
    });
    let prepared = gateway_keys::auth::PreparedAuth::build("orders", &route, None).unwrap();
    let ip: std::net::IpAddr = [127, 0, 0, 1].into();
    let request = http::Request::builder()
        .uri("/orders")
        .header("host", "api.example.com")
        .header("user-agent", "bench")
        .header("accept", "*/*")
        .header("authorization", &header)
        .body(())
        .unwrap();
    let (template, _) = request.into_parts();
    g.bench_function("decide_valid_key", |b| {
        b.iter_batched(
            || {
                let (mut parts, _) = http::Request::new(()).into_parts();
                parts.uri = template.uri.clone();
                parts.headers = template.headers.clone();
                parts
            },
            |mut parts| {
                assert!(matches!(
                    auth.decide(&mut parts, &prepared, Some(ip)),
                    gateway_keys::auth::Decision::Now(_)
                ));
                parts
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
