//! JWT bearer authentication: HS256 from config, ES256 from a PEM file and
//! from a JWKS file; exp, nbf, iss, aud checked; claims forwarded as headers.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use gateway_keys::auth::{Authenticator, IdentityKind};
use gateway_keys::config::{
    AuthMethodKind, JwtAlgorithm, JwtConfig, KeysConfig, PlanConfig, RouteAuthConfig,
};
use http::{Method, Request, StatusCode};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

mod common;
use common::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn jwt_route(jwt: JwtConfig) -> RouteAuthConfig {
    RouteAuthConfig {
        methods: vec![AuthMethodKind::ApiKey, AuthMethodKind::Jwt],
        jwt: Some(jwt),
        ..RouteAuthConfig::default()
    }
}

fn hs_config() -> JwtConfig {
    JwtConfig {
        algorithm: JwtAlgorithm::HS256,
        secret: Some(SECRET.into()),
        secret_env: None,
        public_key_file: None,
        jwks_file: None,
        jwks_url: None,
        oidc_issuer: None,
        jwks_refresh_interval: gateway_keys::config::DEFAULT_JWKS_REFRESH_INTERVAL,
        jwks_min_refresh_interval: gateway_keys::config::DEFAULT_JWKS_MIN_REFRESH_INTERVAL,
        jwks_timeout: gateway_keys::config::DEFAULT_JWKS_TIMEOUT,
        issuer: Some("https://idp.example".into()),
        audience: vec!["gatehouse".into()],
        leeway: Duration::from_secs(5),
        consumer_claim: "sub".into(),
        plan: Some("jwt-plan".into()),
        claims_to_headers: BTreeMap::from([("email".to_string(), "x-user-email".to_string())]),
    }
}

fn hs(claims: serde_json::Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn auth_with(
    auth: &Authenticator,
    route: &RouteAuthConfig,
    token: &str,
    extra: &[(&str, &str)],
) -> Result<
    (
        std::sync::Arc<gateway_keys::auth::Identity>,
        http::request::Parts,
    ),
    gateway_keys::auth::AuthError,
> {
    let mut b = Request::builder()
        .method(Method::GET)
        .uri("/me")
        .header("authorization", format!("Bearer {token}"));
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    let (mut parts, _) = b.body(()).unwrap().into_parts();
    let id = auth.authenticate(&mut parts, route, "me").await?;
    Ok((id, parts))
}

#[tokio::test]
async fn hs256_tokens_are_checked_and_claims_forwarded() {
    let mut plans = BTreeMap::new();
    plans.insert(
        "jwt-plan".to_string(),
        PlanConfig {
            rate_per_second: Some(100.0),
            ..PlanConfig::default()
        },
    );
    let (svc, _clock, _store) = service(KeysConfig::default(), plans).await;
    let auth = Authenticator::new(svc.clone());
    let route = jwt_route(hs_config());
    auth.prepare_route("me", &route).unwrap();
    let good = json!({"sub": "user-42", "iss": "https://idp.example", "aud": "gatehouse", "exp": now_secs() + 600, "email": "a@example.com"});

    let (id, parts) = auth_with(
        &auth,
        &route,
        &hs(good.clone()),
        &[("x-user-email", "forged@example.com")],
    )
    .await
    .unwrap();
    assert_eq!(id.kind, IdentityKind::Jwt);
    assert_eq!(id.consumer_id.as_deref(), Some("user-42"));
    assert_eq!(parts.headers["x-user-email"], "a@example.com");
    assert_eq!(parts.headers["x-consumer-id"], "user-42");
    assert!(parts.headers.get("authorization").is_none());
    let info = svc.check_limits(&id).await.unwrap();
    assert!(info.is_limited(), "the route's JWT plan applies");

    let mut bad_cases = vec![
        (json!({"exp": now_secs() - 600}), "expired"),
        (json!({"nbf": now_secs() + 600}), "not valid yet"),
        (json!({"iss": "https://evil.example"}), "issuer"),
        (json!({"aud": "someone-else"}), "audience"),
    ];
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    for (patch, want) in bad_cases.drain(..) {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        let err = auth_with(&auth, &route, &hs(c), &[]).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(err.problem.code(), "invalid_token");
        assert!(
            err.problem.detail.contains(want),
            "{} vs {want}",
            err.problem.detail
        );
        assert!(err.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token"));
    }
    let err = auth_with(&auth, &route, &hs(no_exp), &[])
        .await
        .unwrap_err();
    assert!(err.problem.detail.contains("exp"), "{}", err.problem.detail);
    // Wrong signature.
    let forged = encode(
        &Header::default(),
        &good,
        &EncodingKey::from_secret(b"another-secret-another-secret-123"),
    )
    .unwrap();
    let err = auth_with(&auth, &route, &forged, &[]).await.unwrap_err();
    assert!(err.problem.detail.contains("signature"));
    // Required scopes come from the `scope` claim.
    let scoped = RouteAuthConfig {
        required_scopes: vec!["profile:read".into()],
        ..route.clone()
    };
    let err = auth_with(&auth, &scoped, &hs(good.clone()), &[])
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::FORBIDDEN);
    let mut with_scope = good.clone();
    with_scope["scope"] = json!("openid profile:read");
    auth_with(&auth, &scoped, &hs(with_scope), &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn es256_from_pem_and_jwks_files() {
    let (svc, _clock, _store) = service(KeysConfig::default(), BTreeMap::new()).await;
    let auth = Authenticator::new(svc.clone());
    let kp = rcgen::KeyPair::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("pub.pem");
    std::fs::write(&pem, kp.public_key_pem()).unwrap();
    let raw = kp.public_key_raw();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": b64.encode(&raw[1..33]), "y": b64.encode(&raw[33..65])}]});
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks.to_string()).unwrap();
    let signing = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap();
    let claims = json!({"sub": "svc-a", "exp": now_secs() + 600});

    let base = JwtConfig {
        algorithm: JwtAlgorithm::ES256,
        secret: None,
        issuer: None,
        audience: vec![],
        plan: None,
        claims_to_headers: BTreeMap::new(),
        ..hs_config()
    };
    let pem_route = jwt_route(JwtConfig {
        public_key_file: Some(pem),
        ..base.clone()
    });
    auth.prepare_route("me", &pem_route).unwrap();
    let token = encode(
        &Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &signing,
    )
    .unwrap();
    let (id, _) = auth_with(&auth, &pem_route, &token, &[]).await.unwrap();
    assert_eq!(id.consumer_id.as_deref(), Some("svc-a"));
    // An HS256 token is refused on an ES256 route (no algorithm confusion).
    let err = auth_with(&auth, &pem_route, &hs(claims.clone()), &[])
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);

    let jwks_route = jwt_route(JwtConfig {
        jwks_file: Some(jwks_path),
        ..base.clone()
    });
    let mut h = Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("k1".into());
    let token = encode(&h, &claims, &signing).unwrap();
    auth_with(&auth, &jwks_route, &token, &[]).await.unwrap();
    h.kid = Some("k2".into());
    let token = encode(&h, &claims, &signing).unwrap();
    let err = auth_with(&auth, &jwks_route, &token, &[])
        .await
        .unwrap_err();
    assert!(err.problem.detail.contains("kid"), "{}", err.problem.detail);

    // Unreadable key material is a config error with its path.
    let missing = jwt_route(JwtConfig {
        public_key_file: Some(dir.path().join("nope.pem")),
        ..base
    });
    let issues = auth.prepare_route("x", &missing).unwrap_err();
    assert_eq!(issues[0].path, "jwt.public_key_file");
}
