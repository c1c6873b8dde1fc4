//! End-to-end key lifecycle at library level, on an injectable clock:
//! create, use, rotate (both keys work during grace), grace end, revoke,
//! expiry, scopes, limits, the store suite on SQLite (and PostgreSQL when
//! `GATEHOUSE_TEST_POSTGRES_URL` is set), and that the secret never lands
//! in logs, responses or the database file.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use gateway_core::{Clock, ManualClock, ToProblem};
use gateway_keys::auth::{Authenticator, ClientIp, Decision, Identity, PreparedAuth};
use gateway_keys::config::{ForwardHeaders, KeysConfig, PlanConfig, RouteAuthConfig};
use gateway_keys::key::{ApiKey, KeyId};
use gateway_keys::model::{AuditAction, KeyStatus};
use gateway_keys::service::{CreateKey, KeyService, RotateKey};
use gateway_keys::store::{KeyStore, SqlStore};
use http::request::Parts;
use http::{Method, Request, StatusCode};

mod common;
use common::*;

fn req(method: Method, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let (mut parts, _) = b.body(()).unwrap().into_parts();
    parts
        .extensions
        .insert(ClientIp("203.0.113.7".parse::<IpAddr>().unwrap()));
    parts
}

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

#[tokio::test]
async fn lifecycle_create_use_rotate_grace_revoke_expire() {
    let (svc, clock, _store) = service(KeysConfig::default(), BTreeMap::new()).await;
    let auth = Authenticator::new(svc.clone());
    let route = RouteAuthConfig::default();

    // Create and use.
    let issued = svc.create(create("acme"), "alice").await.unwrap();
    let old_secret = issued.secret.expose_secret().to_string();
    let mut parts = req(
        Method::GET,
        "/orders",
        &[("authorization", &bearer(&old_secret))],
    );
    let id = auth
        .authenticate(&mut parts, &route, "orders")
        .await
        .unwrap();
    assert_eq!(id.key_id.as_ref(), Some(&issued.key.record.id));
    assert_eq!(id.consumer_name.as_deref(), Some("acme"));
    // The credential is stripped and the identity forwarded.
    assert!(parts.headers.get("authorization").is_none());
    assert_eq!(parts.headers["x-key-id"], issued.key.record.id.as_str());
    assert_eq!(parts.headers["x-consumer-name"], "acme");

    // Rotate with a 1 h grace: both keys work.
    let rotated = svc
        .rotate(
            issued.key.record.id.as_str(),
            RotateKey {
                grace: Some(Duration::from_secs(3600)),
                expires_in: None,
            },
            "alice",
        )
        .await
        .unwrap();
    let new_secret = rotated.secret.expose_secret().to_string();
    assert_eq!(
        rotated.key.record.predecessor.as_ref(),
        Some(&issued.key.record.id)
    );
    assert_eq!(
        rotated.previous.as_ref().unwrap().status,
        KeyStatus::Retiring
    );
    clock.advance(chrono::Duration::minutes(59));
    for (s, agent) in [
        (&old_secret, "billing-batch/2.1"),
        (&old_secret, "billing-batch/2.1"),
        (&new_secret, "billing-web/3.0"),
    ] {
        let mut p = req(
            Method::GET,
            "/orders",
            &[("authorization", &bearer(s)), ("user-agent", agent)],
        );
        auth.authenticate(&mut p, &route, "orders").await.unwrap();
    }
    // Who still sends the old key: only the client that has not moved.
    let usage = svc.usage(issued.key.record.id.as_str()).await.unwrap();
    let still = usage.grace_clients.expect("the old key is retiring");
    let agents: Vec<_> = still
        .clients
        .iter()
        .map(|c| (c.user_agent.as_deref(), c.requests))
        .collect();
    assert_eq!(agents, [(Some("billing-batch/2.1"), 2)]);
    let usage = svc.usage(rotated.key.record.id.as_str()).await.unwrap();
    assert!(usage.grace_clients.is_none(), "the new key is not retiring");
    // The audit shows who still uses the old key during grace.
    svc.flush().await.unwrap();
    let trail = svc
        .audit(Some(issued.key.record.id.as_str()), 50, None)
        .await
        .unwrap();
    let actions: Vec<_> = trail.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            AuditAction::UsedInGrace,
            AuditAction::KeyRotated,
            AuditAction::KeyCreated
        ]
    );
    assert_eq!(
        trail[0].consumer_id.as_ref(),
        Some(&issued.key.record.consumer_id)
    );
    assert_eq!(
        trail[0].detail["clients"]["clients"][0]["user_agent"],
        "billing-batch/2.1"
    );

    // After the grace period the old key fails, the new one works.
    clock.advance(chrono::Duration::minutes(2));
    let mut p = req(
        Method::GET,
        "/orders",
        &[("authorization", &bearer(&old_secret))],
    );
    let err = auth
        .authenticate(&mut p, &route, "orders")
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(err.problem.code(), "expired_api_key");
    assert!(err.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer realm="));
    let mut p = req(Method::GET, "/orders", &[("x-api-key", &new_secret)]);
    auth.authenticate(&mut p, &route, "orders").await.unwrap();
    assert!(p.headers.get("x-api-key").is_none());
    let report = svc.sweep().await.unwrap();
    assert_eq!(report.expired.len(), 1);
    assert_eq!(report.expired[0], issued.key.record.id);

    // Revocation takes effect for the very next request.
    svc.revoke(rotated.key.record.id.as_str(), Some("leaked".into()), "bob")
        .await
        .unwrap();
    let mut p = req(
        Method::GET,
        "/orders",
        &[("authorization", &bearer(&new_secret))],
    );
    let err = auth
        .authenticate(&mut p, &route, "orders")
        .await
        .unwrap_err();
    assert_eq!(err.problem.code(), "revoked_api_key");
    assert_eq!(
        svc.get(rotated.key.record.id.as_str())
            .await
            .unwrap()
            .status,
        KeyStatus::Revoked
    );

    // Expiry.
    let short = svc
        .create(
            CreateKey {
                expires_in: Some(Duration::from_secs(600)),
                ..create("acme")
            },
            "alice",
        )
        .await
        .unwrap();
    let s = short.secret.expose_secret().to_string();
    let mut p = req(Method::GET, "/orders", &[("authorization", &bearer(&s))]);
    auth.authenticate(&mut p, &route, "orders").await.unwrap();
    clock.advance(chrono::Duration::minutes(10));
    let mut p = req(Method::GET, "/orders", &[("authorization", &bearer(&s))]);
    assert_eq!(
        auth.authenticate(&mut p, &route, "orders")
            .await
            .unwrap_err()
            .problem
            .code(),
        "expired_api_key"
    );
}

#[tokio::test]
async fn grace_zero_retires_immediately_and_bad_rotations_are_refused() {
    let (svc, _clock, _store) = service(KeysConfig::default(), BTreeMap::new()).await;
    let issued = svc.create(create("acme"), "alice").await.unwrap();
    let id = issued.key.record.id.to_string();
    let rotated = svc
        .rotate(
            &id,
            RotateKey {
                grace: Some(Duration::ZERO),
                expires_in: None,
            },
            "alice",
        )
        .await
        .unwrap();
    assert!(svc.verify(&issued.secret).is_err());
    assert!(svc.verify(&rotated.secret).is_ok());
    // A key can only be rotated once.
    let err = svc
        .rotate(&id, RotateKey::default(), "alice")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "key_state_conflict");
    // Unknown id.
    let err = svc
        .rotate(KeyId::generate().as_str(), RotateKey::default(), "alice")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "key_not_found");
    assert_eq!(err.status(), StatusCode::NOT_FOUND);
    // Grace longer than the key's expiry.
    let short = svc
        .create(
            CreateKey {
                expires_in: Some(Duration::from_secs(3600)),
                ..create("acme")
            },
            "a",
        )
        .await
        .unwrap();
    let err = svc
        .rotate(
            short.key.record.id.as_str(),
            RotateKey {
                grace: Some(Duration::from_secs(7200)),
                expires_in: None,
            },
            "a",
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "grace_exceeds_expiry");
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    // Grace over the configured maximum.
    let err = svc
        .rotate(
            rotated.key.record.id.as_str(),
            RotateKey {
                grace: Some(Duration::from_secs(90 * 86400)),
                expires_in: None,
            },
            "a",
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "grace_too_long");
}

#[tokio::test]
async fn scopes_give_403_with_challenge_and_are_audited() {
    let (svc, _clock, _store) = service(KeysConfig::default(), BTreeMap::new()).await;
    let auth = Authenticator::new(svc.clone());
    let issued = svc
        .create(
            CreateKey {
                scopes: vec!["route:orders".into(), "method:GET".into()],
                ..create("acme")
            },
            "alice",
        )
        .await
        .unwrap();
    let s = bearer(issued.secret.expose_secret());
    let route = RouteAuthConfig::default();
    let mut p = req(Method::GET, "/orders", &[("authorization", &s)]);
    auth.authenticate(&mut p, &route, "orders").await.unwrap();
    let mut p = req(Method::GET, "/billing", &[("authorization", &s)]);
    let err = auth
        .authenticate(&mut p, &route, "billing")
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::FORBIDDEN);
    assert_eq!(err.problem.code(), "key_scope_denied");
    assert!(err.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    let mut p = req(Method::POST, "/orders", &[("authorization", &s)]);
    assert_eq!(
        auth.authenticate(&mut p, &route, "orders")
            .await
            .unwrap_err()
            .status(),
        StatusCode::FORBIDDEN
    );
    let needs = RouteAuthConfig {
        required_scopes: vec!["orders:write".into()],
        ..RouteAuthConfig::default()
    };
    let mut p = req(Method::GET, "/orders", &[("authorization", &s)]);
    let err = auth
        .authenticate(&mut p, &needs, "orders")
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::FORBIDDEN);
    assert!(err.problem.detail.contains("orders:write"));
    svc.flush().await.unwrap();
    let trail = svc
        .audit(Some(issued.key.record.id.as_str()), 50, None)
        .await
        .unwrap();
    assert!(trail
        .iter()
        .any(|e| e.action == AuditAction::ScopeDenied && e.detail["route"] == "billing"));
}

#[tokio::test]
async fn malformed_missing_and_unknown_keys_get_401_and_typos_never_reach_the_store() {
    let (svc, _clock, _store) = service(KeysConfig::default(), BTreeMap::new()).await;
    let auth = Authenticator::new(svc.clone());
    let issued = svc.create(create("acme"), "alice").await.unwrap();
    let secret = issued.secret.expose_secret().to_string();
    let route = RouteAuthConfig::default();

    let mut p = req(Method::GET, "/", &[]);
    let err = auth.authenticate(&mut p, &route, "r").await.unwrap_err();
    assert_eq!(
        (err.status(), err.problem.code()),
        (StatusCode::UNAUTHORIZED, "missing_credentials")
    );
    assert_eq!(
        err.headers["www-authenticate"],
        "Bearer realm=\"gatehouse\""
    );

    // One-character typo: refused by the checksum as malformed.
    let mut typo = secret.clone().into_bytes();
    let last = typo.len() - 10;
    typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let mut p = req(Method::GET, "/", &[("authorization", &bearer(&typo))]);
    let err = auth.authenticate(&mut p, &route, "r").await.unwrap_err();
    assert_eq!(err.problem.code(), "malformed_api_key");
    assert!(
        err.problem.detail.contains("checksum"),
        "{}",
        err.problem.detail
    );

    // Well-formed but unknown.
    let other = ApiKey::generate("live").unwrap();
    let mut p = req(
        Method::GET,
        "/",
        &[("authorization", &bearer(other.expose_secret()))],
    );
    assert_eq!(
        auth.authenticate(&mut p, &route, "r")
            .await
            .unwrap_err()
            .problem
            .code(),
        "unknown_api_key"
    );

    // Query parameter only when opted in, and stripped from the URI.
    let uri = format!("/x?a=1&api_key={secret}&b=2");
    let mut p = req(Method::GET, &uri, &[]);
    assert!(auth.authenticate(&mut p, &route, "r").await.is_err());
    let q = RouteAuthConfig {
        query_param: Some("api_key".into()),
        ..RouteAuthConfig::default()
    };
    let mut p = req(Method::GET, &uri, &[]);
    auth.authenticate(&mut p, &q, "r").await.unwrap();
    assert_eq!(p.uri.to_string(), "/x?a=1&b=2");

    // A forged identity header never reaches the upstream.
    let mut p = req(
        Method::GET,
        "/",
        &[
            ("x-consumer-id", "con_forgedforged"),
            ("authorization", &bearer(&secret)),
        ],
    );
    auth.authenticate(&mut p, &route, "r").await.unwrap();
    assert_eq!(
        p.headers["x-consumer-id"],
        issued.key.record.consumer_id.as_str()
    );
    let anon = RouteAuthConfig {
        anonymous: true,
        ..RouteAuthConfig::default()
    };
    let mut p = req(Method::GET, "/", &[("x-consumer-id", "con_forgedforged")]);
    auth.authenticate(&mut p, &anon, "r").await.unwrap();
    assert!(p.headers.get("x-consumer-id").is_none());
}

#[tokio::test]
async fn failed_verifications_per_ip_are_limited_and_the_burst_audited() {
    let mut cfg = KeysConfig::default();
    cfg.failed_auth_per_ip.burst = 3;
    cfg.failed_auth_per_ip.rate_per_second = 0.1;
    let (svc, clock, _store) = service(cfg, BTreeMap::new()).await;
    let auth = Authenticator::new(svc.clone());
    let issued = svc.create(create("acme"), "alice").await.unwrap();
    let route = RouteAuthConfig::default();
    let bad = bearer(ApiKey::generate("live").unwrap().expose_secret());
    for _ in 0..3 {
        let mut p = req(Method::GET, "/", &[("authorization", &bad)]);
        assert_eq!(
            auth.authenticate(&mut p, &route, "r")
                .await
                .unwrap_err()
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Now even a valid key from that address waits.
    let good = bearer(issued.secret.expose_secret());
    let mut p = req(Method::GET, "/", &[("authorization", &good)]);
    let err = auth.authenticate(&mut p, &route, "r").await.unwrap_err();
    assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(err.problem.code(), "too_many_failed_attempts");
    assert_eq!(err.headers["retry-after"], "10");
    assert_eq!(failure_bursts_audited(&svc).await, 1);
    clock.advance(chrono::Duration::seconds(10));
    let mut p = req(Method::GET, "/", &[("authorization", &good)]);
    auth.authenticate(&mut p, &route, "r").await.unwrap();

    // Recovered, the address is a new client: failing again is limited
    // again, and that second burst is audited too.
    clock.advance(chrono::Duration::seconds(60));
    for _ in 0..3 {
        let mut p = req(Method::GET, "/", &[("authorization", &bad)]);
        let e = auth.authenticate(&mut p, &route, "r").await.unwrap_err();
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
    }
    let mut p = req(Method::GET, "/", &[("authorization", &good)]);
    let err = auth.authenticate(&mut p, &route, "r").await.unwrap_err();
    assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(failure_bursts_audited(&svc).await, 2);
}

async fn failure_bursts_audited(svc: &KeyService) -> usize {
    svc.flush().await.unwrap();
    let all = svc.audit(None, 50, None).await.unwrap();
    all.iter()
        .filter(|e| e.action == AuditAction::FailureBurst)
        .count()
}

#[tokio::test]
async fn plan_limits_count_per_consumer_across_keys() {
    let mut plans = BTreeMap::new();
    plans.insert(
        "starter".to_string(),
        PlanConfig {
            rate_per_second: Some(1.0),
            burst: Some(2),
            quota_per_day: Some(100),
            ..PlanConfig::default()
        },
    );
    let (svc, clock, store) = service(KeysConfig::default(), plans).await;
    let auth = Authenticator::new(svc.clone());
    let a = svc
        .create(
            CreateKey {
                plan: Some("starter".into()),
                ..create("acme")
            },
            "x",
        )
        .await
        .unwrap();
    let b = svc.create(create("acme"), "x").await.unwrap();
    let route = RouteAuthConfig::default();
    let mut infos = vec![];
    for k in [&a, &b] {
        let mut p = req(
            Method::GET,
            "/",
            &[("authorization", &bearer(k.secret.expose_secret()))],
        );
        let id = auth.authenticate(&mut p, &route, "r").await.unwrap();
        assert_eq!(id.plan.as_deref(), Some("starter"));
        infos.push(svc.check_limits(&id).await);
    }
    assert!(infos.iter().all(|i| i.is_ok()));
    let mut p = req(
        Method::GET,
        "/",
        &[("authorization", &bearer(a.secret.expose_secret()))],
    );
    let id = auth.authenticate(&mut p, &route, "r").await.unwrap();
    let limited = svc.check_limits(&id).await.unwrap_err();
    let res: http::Response<bytes::Bytes> = limited.into_response();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(res.headers()["ratelimit-policy"], "2;w=2, 100;w=86400");
    let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(body["code"], "rate_limited");
    clock.advance(chrono::Duration::seconds(1));
    let info = svc.check_limits(&id).await.unwrap();
    let mut h = http::HeaderMap::new();
    info.apply(&mut h);
    assert_eq!(h["ratelimit-remaining"], "0");
    // Quota counts reach the store in a batch, not per request.
    svc.flush().await.unwrap();
    let usage = store
        .quota_usage(&svc.limits().current_periods())
        .await
        .unwrap();
    assert_eq!(usage.iter().map(|u| u.used).sum::<i64>(), 3);
}

#[tokio::test]
async fn changes_made_on_one_node_reach_another_through_the_feed() {
    let store = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let feed = Arc::new(gateway_keys::feed::InProcessFeed::default());
    let node = |s: Arc<SqlStore>| {
        KeyService::builder(s)
            .clock(Arc::new(clock.clone()))
            .feed(feed.clone())
            .build()
    };
    let a = node(store.clone()).await.unwrap();
    let b = node(store.clone()).await.unwrap();
    let tasks = b.spawn_background();
    let issued = a.create(create("acme"), "x").await.unwrap();
    wait_until(|| b.verify(&issued.secret).is_ok()).await;
    a.revoke(issued.key.record.id.as_str(), None, "x")
        .await
        .unwrap();
    wait_until(|| b.verify(&issued.secret).is_err()).await;
    tasks.shutdown().await;
}

#[tokio::test]
async fn store_suite_sqlite() {
    let store = SqlStore::connect("sqlite::memory:").await.unwrap();
    store_suite(&store).await;
}

#[tokio::test]
async fn store_suite_postgres() {
    let Ok(url) = std::env::var("GATEHOUSE_TEST_POSTGRES_URL") else {
        eprintln!("skipping store_suite_postgres: GATEHOUSE_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("gh_keys_{}", uuid::Uuid::new_v4().simple());
    let admin = SqlStore::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(admin.pool())
        .await
        .unwrap();
    let store = SqlStore::connect_with(&url, Some(&schema)).await.unwrap();
    store_suite(&store).await;
    // Whole service lifecycle on PostgreSQL too.
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let svc = KeyService::builder(Arc::new(store.clone()))
        .clock(Arc::new(clock))
        .build()
        .await
        .unwrap();
    let k = svc.create(create("pg"), "x").await.unwrap();
    svc.rotate(k.key.record.id.as_str(), RotateKey::default(), "x")
        .await
        .unwrap();
    svc.revoke(k.key.record.id.as_str(), None, "x")
        .await
        .unwrap();
    assert_eq!(
        svc.audit(Some(k.key.record.id.as_str()), 10, None)
            .await
            .unwrap()
            .len(),
        3
    );
    store.pool().close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(admin.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_secret_never_reaches_logs_responses_or_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    let logs = capture_logs();
    let store = Arc::new(SqlStore::connect(db.to_str().unwrap()).await.unwrap());
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let svc = KeyService::builder(store.clone())
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    let auth = Authenticator::new(svc.clone());
    let route = RouteAuthConfig::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());

    let issued = svc.create(create("acme"), "alice").await.unwrap();
    let secrets = vec![issued.secret.expose_secret().to_string()];
    let rotated = svc
        .rotate(issued.key.record.id.as_str(), RotateKey::default(), "alice")
        .await
        .unwrap();
    let secrets = [secrets, vec![rotated.secret.expose_secret().to_string()]].concat();
    for s in &secrets {
        let mut p = req(Method::GET, "/", &[("authorization", &bearer(s))]);
        auth.authenticate(&mut p, &route, "r").await.unwrap();
        let mut p = req(Method::GET, "/", &[("authorization", &bearer(s))]);
        let _ = auth.authenticate(&mut p, &route, "other").await;
    }
    svc.revoke(issued.key.record.id.as_str(), Some("test".into()), "alice")
        .await
        .unwrap();
    let mut p = req(Method::GET, "/", &[("authorization", &bearer(&secrets[0]))]);
    let _ = auth.authenticate(&mut p, &route, "r").await;
    svc.flush().await.unwrap();
    svc.sweep().await.unwrap();

    let mut views = serde_json::to_string(&svc.list(&Default::default()).await.unwrap()).unwrap();
    views.push_str(&serde_json::to_string(&svc.audit(None, 100, None).await.unwrap()).unwrap());
    views.push_str(
        &serde_json::to_string(&svc.get(issued.key.record.id.as_str()).await.unwrap()).unwrap(),
    );
    store.pool().close().await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let text = logs.text();
    assert!(
        text.contains(issued.key.record.id.as_str()),
        "logs carry the key id"
    );
    for s in &secrets {
        let random = &s["gh_live_".len()..];
        assert!(!text.contains(random), "secret in logs");
        assert!(!views.contains(random), "secret in admin output");
        assert!(
            !contains(&bytes, random.as_bytes()),
            "secret in the database file"
        );
        let hash = ApiKey::hash(&s.parse().unwrap()).to_hex();
        assert!(contains(&bytes, hash.as_bytes()), "only the hash is stored");
    }
}

#[tokio::test]
async fn rotation_policy_sets_lifetime_and_warns_once_through_log_audit_and_webhook() {
    let received = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut cfg = KeysConfig::default();
    cfg.rotation.rotate_every = Some(Duration::from_secs(30 * 86400));
    cfg.rotation.warn_before = Duration::from_secs(7 * 86400);
    cfg.rotation.webhook_url = Some(hook);
    let (svc, clock, _store) = service(cfg, BTreeMap::new()).await;
    let issued = svc.create(create("acme"), "alice").await.unwrap();
    assert_eq!(
        issued.key.record.expires_at,
        Some(t0() + chrono::Duration::days(30)),
        "rotate_every is the default lifetime"
    );
    clock.advance(chrono::Duration::days(22));
    assert!(svc.sweep().await.unwrap().warned.is_empty());
    clock.advance(chrono::Duration::days(1) + chrono::Duration::seconds(1));
    assert_eq!(svc.sweep().await.unwrap().warned.len(), 1);
    assert!(svc.sweep().await.unwrap().warned.is_empty(), "warned once");
    {
        let got = received.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["event"], "key.expiring");
        assert_eq!(got[0]["key_id"], issued.key.record.id.as_str());
        assert_eq!(got[0]["consumer_name"], "acme");
    }
    let trail = svc
        .audit(Some(issued.key.record.id.as_str()), 10, None)
        .await
        .unwrap();
    assert_eq!(trail[0].action, AuditAction::KeyExpiring);
    assert_eq!(trail[0].detail["webhook"], "delivered");
    clock.advance(chrono::Duration::days(7));
    assert_eq!(svc.sweep().await.unwrap().expired.len(), 1);
    assert!(svc.verify(&issued.secret).is_err());
    server.abort();
}

#[tokio::test]
async fn the_audit_log_is_append_only_in_the_database() {
    let (svc, _clock, store) = service(KeysConfig::default(), BTreeMap::new()).await;
    svc.create(create("acme"), "alice").await.unwrap();
    for stmt in [
        "UPDATE gk_audit SET actor = 'mallory'",
        "DELETE FROM gk_audit",
    ] {
        let err = sqlx::query(stmt).execute(store.pool()).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    assert_eq!(svc.audit(None, 10, None).await.unwrap()[0].actor, "alice");
}

#[tokio::test]
async fn unauthenticated_traffic_is_limited_per_ip() {
    let mut cfg = KeysConfig::default();
    cfg.unauthenticated_per_ip.burst = 2;
    cfg.unauthenticated_per_ip.rate_per_second = 1.0;
    let (svc, clock, _store) = service(cfg, BTreeMap::new()).await;
    let auth = Authenticator::new(svc.clone());
    let anon = RouteAuthConfig {
        anonymous: true,
        ..RouteAuthConfig::default()
    };
    for _ in 0..2 {
        let mut p = req(Method::GET, "/", &[]);
        let id = auth.authenticate(&mut p, &anon, "public").await.unwrap();
        assert_eq!(id.kind, gateway_keys::IdentityKind::Anonymous);
    }
    let mut p = req(Method::GET, "/", &[]);
    let err = auth
        .authenticate(&mut p, &anon, "public")
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(err.problem.code(), "ip_rate_limited");
    assert_eq!(err.headers["retry-after"], "1");
    assert_eq!(err.headers["ratelimit-policy"], "2;w=2");
    // Another address is unaffected; the same one recovers with time.
    let (mut p, _) = Request::builder().uri("/").body(()).unwrap().into_parts();
    p.extensions
        .insert(ClientIp("198.51.100.1".parse::<IpAddr>().unwrap()));
    auth.authenticate(&mut p, &anon, "public").await.unwrap();
    clock.advance(chrono::Duration::seconds(1));
    let mut p = req(Method::GET, "/", &[]);
    auth.authenticate(&mut p, &anon, "public").await.unwrap();
}

#[tokio::test]
async fn open_runs_the_background_loop_that_flushes_usage() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("gatehouse.db");
    let cfg = KeysConfig {
        flush_interval: Duration::from_millis(20),
        ..KeysConfig::default()
    };
    let svc = KeyService::open(cfg, BTreeMap::new(), db.to_str().unwrap())
        .await
        .unwrap();
    assert!(db.exists(), "the data directory and file are created");
    let issued = svc.create(create("acme"), "alice").await.unwrap();
    svc.verify(&issued.secret).unwrap();
    let id = issued.key.record.id.clone();
    let mut flushed = false;
    for _ in 0..250 {
        if svc
            .store()
            .get_key(&id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at
            .is_some()
        {
            flushed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        flushed,
        "last_used_at reached the store without an explicit flush"
    );
    svc.stop_background().await;
}

/// The gateway's fast path decides only valid keys, exactly as the full
/// path would; everything else is left to the full path untouched (the
/// credential still there, nothing audited).
#[tokio::test]
async fn a_valid_key_is_decided_at_once_like_the_full_path_and_refusals_are_left_to_it() {
    let (svc, _clock, _store) = service(KeysConfig::default(), BTreeMap::new()).await;
    let auth = Authenticator::new(svc.clone());
    let ip: IpAddr = "203.0.113.7".parse().unwrap();
    let route = Arc::new(RouteAuthConfig::default());
    let issued = svc
        .create(
            CreateKey {
                scopes: vec!["route:orders".into()],
                ..create("acme")
            },
            "alice",
        )
        .await
        .unwrap();
    let s = bearer(issued.secret.expose_secret());

    // A valid key: the same identity and the same rewritten request.
    let forged = [
        ("authorization", s.as_str()),
        ("x-consumer-id", "con_forged"),
    ];
    let orders = PreparedAuth::build("orders", &route, None).unwrap();
    let mut fast = req(Method::GET, "/orders", &forged);
    let id = decided_now(&auth, &mut fast, &orders, ip).expect("a valid key is decided at once");
    let mut full = req(Method::GET, "/orders", &forged);
    let full_id = auth
        .authenticate(&mut full, &route, "orders")
        .await
        .unwrap();
    assert_eq!(id, full_id);
    assert_eq!(fast.headers, full.headers);
    assert!(fast.headers.get("authorization").is_none());
    assert_eq!(fast.headers["x-key-id"], issued.key.record.id.as_str());
    assert_eq!(
        fast.headers["x-consumer-id"],
        full_id.consumer_id.as_deref().unwrap()
    );

    // Outside its scopes, unknown, malformed, mistyped, missing, revoked:
    // not decided here, the credential left for the full path, no denial
    // audited.
    let unknown = bearer(ApiKey::generate("live").unwrap().expose_secret());
    let mut typo = s.clone().into_bytes();
    let last = typo.len() - 10;
    typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/billing", vec![("authorization", s.as_str())]),
        ("/orders", vec![("authorization", unknown.as_str())]),
        ("/orders", vec![("authorization", "Bearer gh_live_nope")]),
        ("/orders", vec![("authorization", typo.as_str())]),
        ("/orders", vec![]),
    ];
    for (path, headers) in &cases {
        let route_name = path.trim_start_matches('/');
        let prepared = PreparedAuth::build(route_name, &route, None).unwrap();
        let mut p = req(Method::GET, path, headers);
        assert!(
            decided_now(&auth, &mut p, &prepared, ip).is_none(),
            "{path} {headers:?}"
        );
        assert_eq!(
            p.headers.get("authorization").map(|v| v.to_str().unwrap()),
            headers.first().map(|(_, v)| *v)
        );
    }
    svc.flush().await.unwrap();
    let trail = svc.audit(None, 50, None).await.unwrap();
    assert!(trail.iter().all(|e| e.action != AuditAction::ScopeDenied));

    svc.revoke(issued.key.record.id.as_str(), None, "alice")
        .await
        .unwrap();
    // The full path refuses the mistyped key by its checksum, before any
    // lookup.
    let mut p = req(Method::GET, "/orders", &[("authorization", &typo)]);
    let err = auth
        .authenticate(&mut p, &route, "orders")
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(err.problem.code(), "malformed_api_key", "{:?}", err.problem);

    let mut p = req(Method::GET, "/orders", &[("authorization", &s)]);
    assert!(decided_now(&auth, &mut p, &orders, ip).is_none());
    let err = auth
        .authenticate(&mut p, &route, "orders")
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(err.problem.code(), "revoked_api_key");
}

/// Last-used tracking without a write per request: a key in steady use is
/// noted once a second, so `last_used_at` is exact to the second, and a
/// key that starts retiring within that second is noted again at once
/// (its use during grace is audited).
#[tokio::test]
async fn last_used_is_exact_to_the_second_and_a_retiring_use_is_never_missed() {
    let (svc, clock, store) = service(KeysConfig::default(), BTreeMap::new()).await;
    let issued = svc.create(create("acme"), "alice").await.unwrap();
    let id = issued.key.record.id.clone();
    let last_used = || async { store.get_key(&id).await.unwrap().unwrap().last_used_at };

    let first = clock.now();
    svc.verify(&issued.secret).unwrap();
    svc.flush().await.unwrap();
    assert_eq!(last_used().await, Some(first));

    // Later in the same second: nothing new to write.
    clock.advance(chrono::Duration::milliseconds(400));
    svc.verify(&issued.secret).unwrap();
    svc.flush().await.unwrap();
    assert_eq!(last_used().await, Some(first));

    // The next second is noted.
    clock.advance(chrono::Duration::milliseconds(700));
    let next = clock.now();
    svc.verify(&issued.secret).unwrap();
    svc.flush().await.unwrap();
    assert_eq!(last_used().await, Some(next));

    // Rotated in that same second: the old key's next use is noted and
    // audited as a use during grace.
    svc.rotate(
        id.as_str(),
        RotateKey {
            grace: Some(Duration::from_secs(3600)),
            expires_in: None,
        },
        "alice",
    )
    .await
    .unwrap();
    svc.verify(&issued.secret).unwrap();
    svc.flush().await.unwrap();
    let trail = svc.audit(Some(id.as_str()), 10, None).await.unwrap();
    assert_eq!(trail[0].action, AuditAction::UsedInGrace, "{trail:?}");
}

/// Forwarded identity header names are configurable: a default name in
/// other letter case, a custom name, and an empty one (turned off) all do
/// what they say on the gateway's fast path.
#[tokio::test]
async fn configured_identity_header_names_are_forwarded() {
    let (svc, _clock, _store) = service(KeysConfig::default(), BTreeMap::new()).await;
    let auth = Authenticator::new(svc.clone());
    let cfg = RouteAuthConfig {
        forward: ForwardHeaders {
            consumer_id: "X-Consumer-ID".into(),
            consumer_name: String::new(),
            key_id: "x-api-client".into(),
            plan: String::new(),
        },
        ..RouteAuthConfig::default()
    };
    let route = Arc::new(cfg);
    let issued = svc.create(create("acme"), "alice").await.unwrap();
    let prepared = PreparedAuth::build("orders", &route, None).unwrap();
    let s = bearer(issued.secret.expose_secret());
    let mut p = req(Method::GET, "/orders", &[("authorization", &s)]);
    let id =
        decided_now(&auth, &mut p, &prepared, "203.0.113.7".parse().unwrap()).expect("a valid key");
    assert_eq!(
        p.headers["x-consumer-id"],
        id.consumer_id.as_deref().unwrap()
    );
    assert_eq!(p.headers["x-api-client"], issued.key.record.id.as_str());
    for absent in [
        "x-consumer-name",
        "x-key-id",
        "x-consumer-plan",
        "authorization",
    ] {
        assert!(p.headers.get(absent).is_none(), "{absent}");
    }
}

/// What `Authenticator::decide` settles without waiting, if anything.
fn decided_now(
    auth: &Authenticator,
    parts: &mut http::request::Parts,
    route: &PreparedAuth,
    ip: IpAddr,
) -> Option<Arc<Identity>> {
    match auth.decide(parts, route, Some(ip)) {
        Decision::Now(identity) => Some(identity),
        Decision::Later(_) => None,
    }
}
