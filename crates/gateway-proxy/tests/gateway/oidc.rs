//! JWTs verified with keys from an identity provider over real sockets: a
//! local OpenID Connect provider (discovery document and JWKS) that rotates
//! its keys and goes down; `exp`, `nbf`, `aud` and `iss` refusals.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use test_support::origin::{Handler, Origin, Reply};

use crate::harness::{base, client, eventually, TestGateway};

/// An ES256 signing key with its `kid`.
struct SigningKey {
    kid: String,
    pair: rcgen::KeyPair,
}

impl SigningKey {
    fn new(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            pair: rcgen::KeyPair::generate().unwrap(),
        }
    }

    fn jwk(&self) -> Value {
        let raw = self.pair.public_key_raw();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig",
            "x": b64.encode(&raw[1..33]), "y": b64.encode(&raw[33..65])})
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let key = EncodingKey::from_ec_pem(self.pair.serialize_pem().as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }
}

/// A local identity provider: `/.well-known/openid-configuration` and
/// `/keys`, serving whatever keys are published now.
struct Provider {
    origin: Origin,
    keys: Arc<Mutex<Vec<Value>>>,
}

impl Provider {
    async fn start() -> Self {
        let keys: Arc<Mutex<Vec<Value>>> = Arc::default();
        let origin = Origin::start(Handler::status(404)).await;
        let issuer = origin.url();
        let published = keys.clone();
        origin.set_handler(Handler::new(move |req| {
            let issuer = issuer.clone();
            let published = published.clone();
            async move {
                let body = match req.uri().path() {
                    "/.well-known/openid-configuration" => {
                        json!({"issuer": issuer, "jwks_uri": format!("{issuer}/keys")})
                    }
                    "/keys" => json!({"keys": published.lock().unwrap().clone()}),
                    _ => return crate::harness::reply(404, "not found"),
                };
                Reply::Response(
                    http::Response::builder()
                        .header("content-type", "application/json")
                        .body(crate::harness::body(body.to_string()))
                        .unwrap(),
                )
            }
        }));
        Self { origin, keys }
    }

    fn issuer(&self) -> String {
        self.origin.url()
    }

    fn publish(&self, keys: &[&SigningKey]) {
        *self.keys.lock().unwrap() = keys.iter().map(|k| k.jwk()).collect();
    }

    fn key_fetches(&self) -> usize {
        self.origin.requests_to("/keys")
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(issuer: &str) -> Value {
    json!({"sub": "svc-7", "iss": issuer, "aud": "gatehouse", "exp": now() + 600})
}

async fn call(gw: &TestGateway, path: &str, token: &str) -> (u16, Value) {
    let res = client()
        .get(gw.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn discovered_keys_rotate_and_the_last_good_set_outlives_the_provider() {
    let provider = Provider::start().await;
    let (k1, k2, k3) = (
        SigningKey::new("k1"),
        SigningKey::new("k2"),
        SigningKey::new("k3"),
    );
    provider.publish(&[&k1]);
    let upstream = Origin::start(Handler::echo()).await;
    let issuer = provider.issuer();
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.api]
targets = ["{upstream}"]

[[routes]]
name = "api"
path_prefix = "/api"
cluster = "api"
auth = {{ methods = ["jwt"], jwt = {{ algorithm = "ES256", oidc_issuer = "{issuer}", audience = ["gatehouse"], jwks_min_refresh_interval = "0s" }} }}
"#,
        upstream = upstream.authority(),
    )))
    .await;

    let (status, body) = call(&gw, "/api/x", &k1.sign(&claims(&issuer))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-consumer-id"], "svc-7");
    assert_eq!(
        provider
            .origin
            .requests_to("/.well-known/openid-configuration"),
        1
    );
    assert_eq!(provider.key_fetches(), 1);
    // Cached: no fetch per request.
    assert_eq!(call(&gw, "/api/x", &k1.sign(&claims(&issuer))).await.0, 200);
    assert_eq!(provider.key_fetches(), 1);

    // The provider rotates to k2: the unknown kid triggers a refresh.
    provider.publish(&[&k2]);
    let (status, body) = call(&gw, "/api/x", &k2.sign(&claims(&issuer))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(provider.key_fetches(), 2);
    // k1 is gone from the provider, so from the gateway too.
    let (status, body) = call(&gw, "/api/x", &k1.sign(&claims(&issuer))).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("kid"), "{body}");

    // The provider goes down: the last good keys keep working, a new kid
    // cannot be fetched, and the failure is counted.
    provider.origin.stop().await;
    let (status, body) = call(&gw, "/api/x", &k2.sign(&claims(&issuer))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&gw, "/api/x", &k3.sign(&claims(&issuer))).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "invalid_token");
    assert_eq!(call(&gw, "/api/x", &k2.sign(&claims(&issuer))).await.0, 200);
    let metrics = gw.metrics().await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("gatehouse_jwks_refresh_total") && l.contains("result=\"error\"")
        ),
        "no failed refresh counted"
    );
}

#[tokio::test]
async fn exp_nbf_aud_and_iss_are_checked_with_the_leeway() {
    let provider = Provider::start().await;
    let key = SigningKey::new("k1");
    provider.publish(&[&key]);
    let upstream = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let issuer = provider.issuer();
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.api]
targets = ["{upstream}"]

[[routes]]
name = "api"
path_prefix = "/api"
cluster = "api"
auth = {{ methods = ["jwt"], jwt = {{ algorithm = "ES256", jwks_url = "{issuer}/keys", issuer = "{issuer}", audience = ["gatehouse"], leeway = "30s" }} }}
"#,
        upstream = upstream.authority(),
    )))
    .await;
    let with = |patch: Value| {
        let mut c = claims(&issuer);
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        key.sign(&c)
    };
    for (patch, want) in [
        (json!({"exp": now() - 10}), None),
        (json!({"nbf": now() + 10}), None),
        (json!({"exp": now() - 120}), Some("expired")),
        (json!({"nbf": now() + 120}), Some("not valid yet")),
        (json!({"aud": "someone-else"}), Some("audience")),
        (json!({"iss": "https://evil.example"}), Some("issuer")),
    ] {
        let (status, body) = call(&gw, "/api/x", &with(patch.clone())).await;
        match want {
            None => assert_eq!(status, 200, "{patch}: {body}"),
            Some(why) => {
                assert_eq!(status, 401, "{patch}: {body}");
                assert_eq!(body["code"], "invalid_token");
                assert!(
                    body["detail"].as_str().unwrap().contains(why),
                    "{patch}: {body}"
                );
            }
        }
    }
    assert_eq!(upstream.requests(), 2);
}

#[tokio::test]
async fn unknown_kids_are_rate_limited_and_the_schedule_picks_up_rotations() {
    let provider = Provider::start().await;
    let (k1, k2) = (SigningKey::new("k1"), SigningKey::new("k2"));
    provider.publish(&[&k1]);
    let upstream = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let issuer = provider.issuer();
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.api]
targets = ["{upstream}"]

[[routes]]
name = "api"
path_prefix = "/api"
cluster = "api"
auth = {{ methods = ["jwt"], jwt = {{ algorithm = "ES256", jwks_url = "{issuer}/keys", jwks_min_refresh_interval = "1h", jwks_refresh_interval = "1s" }} }}

[[routes]]
name = "never"
path_prefix = "/never"
cluster = "api"
auth = {{ methods = ["jwt"], jwt = {{ algorithm = "ES256", jwks_url = "http://127.0.0.1:{dead_port}/keys", jwks_timeout = "2s" }} }}
"#,
        upstream = upstream.authority(),
    )))
    .await;

    assert_eq!(call(&gw, "/api/x", &k1.sign(&claims(&issuer))).await.0, 200);
    let fetches = provider.key_fetches();
    // Made-up kids do not turn into fetches beyond the rate limit (the
    // schedule may add its own, one a second).
    // (Few of them: more failures from one address are blocked with 429.)
    for i in 0..5 {
        let forged = SigningKey::new(&format!("made-up-{i}"));
        assert_eq!(
            call(&gw, "/api/x", &forged.sign(&claims(&issuer))).await.0,
            401
        );
    }
    assert!(
        provider.key_fetches() <= fetches + 2,
        "{} fetches for 5 unknown kids",
        provider.key_fetches() - fetches
    );

    // A rotation is picked up by the scheduled refresh alone (the unknown
    // kid path is rate limited for an hour).
    provider.publish(&[&k1, &k2]);
    let token = k2.sign(&claims(&issuer));
    assert!(
        eventually(Duration::from_secs(10), || async {
            call(&gw, "/api/x", &token).await.0 == 200
        })
        .await,
        "the scheduled refresh never picked up k2"
    );

    // A provider that never answered: 503, not the caller's fault.
    let (status, body) = call(&gw, "/never/x", &k1.sign(&claims(&issuer))).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "signing_keys_unavailable");
}
