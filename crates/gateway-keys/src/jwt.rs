//! JWT bearer tokens as a second authentication method.
//!
//! A [`JwtVerifier`] is built once per route from its [`JwtConfig`]: the key
//! material (an HS256 secret, a PEM public key, or a JWKS file) is read at
//! build time, so verification on the hot path does no I/O. Keys from a
//! JWKS URL or an OpenID Connect provider are fetched and cached by
//! [`crate::jwks::RemoteKeys`]; a request waits only for the first fetch
//! or a refresh for an unknown `kid`. Only the one configured algorithm is
//! accepted. `exp` is required; `nbf`, `iss` and `aud` are checked when
//! present or configured, with the configured leeway for clock skew.

use std::collections::BTreeMap;

use gateway_core::ConfigIssue;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::{JwtAlgorithm, JwtConfig};
use crate::jwks::{self, KeyList, KeySource, KeysError, RefreshPolicy, RemoteKeys};

/// Verified claims.
pub type Claims = Map<String, Value>;

/// Why a token was refused. The message is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JwtError {
    /// Stable identifier.
    pub reason: &'static str,
    /// Human explanation.
    pub message: String,
}

impl JwtError {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Where a verifier's keys are.
enum Keys {
    /// Read when the config was built.
    Fixed(KeyList),
    /// Fetched from the provider and cached.
    Remote(RemoteKeys),
}

/// Verifies tokens for one route.
pub struct JwtVerifier {
    keys: Keys,
    validation: Validation,
    consumer_claim: String,
    claims_to_headers: BTreeMap<String, String>,
    plan: Option<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field(
                "keys",
                &match &self.keys {
                    Keys::Fixed(k) => format!("{} fixed", k.len()),
                    Keys::Remote(r) => format!("{r:?}"),
                },
            )
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Builds a verifier, reading key files and secret variables now.
    pub fn from_config(cfg: &JwtConfig) -> Result<Self, Vec<ConfigIssue>> {
        cfg.validate()?;
        let alg = cfg.algorithm.to_jwt();
        let issue = |path: &str, msg: String| vec![ConfigIssue::new(path, msg)];
        let keys = match cfg.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = match (&cfg.secret, &cfg.secret_env) {
                    (Some(s), _) => s.clone(),
                    (None, Some(var)) => std::env::var(var).map_err(|_| {
                        issue(
                            "secret_env",
                            format!("environment variable `{var}` is not set"),
                        )
                    })?,
                    (None, None) => unreachable_config()?,
                };
                if secret.len() < 32 {
                    return Err(issue(
                        "secret",
                        "an HS256 secret must be at least 32 bytes".into(),
                    ));
                }
                Keys::Fixed(vec![(None, DecodingKey::from_secret(secret.as_bytes()))])
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => {
                if let Some(path) = &cfg.public_key_file {
                    let pem = std::fs::read(path).map_err(|e| {
                        issue(
                            "public_key_file",
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?;
                    let key = if cfg.algorithm == JwtAlgorithm::RS256 {
                        DecodingKey::from_rsa_pem(&pem)
                    } else {
                        DecodingKey::from_ec_pem(&pem)
                    }
                    .map_err(|e| {
                        issue(
                            "public_key_file",
                            format!(
                                "{} is not a PEM public key for {:?}: {e}",
                                path.display(),
                                cfg.algorithm
                            ),
                        )
                    })?;
                    Keys::Fixed(vec![(None, key)])
                } else if let Some(path) = &cfg.jwks_file {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        issue("jwks_file", format!("cannot read {}: {e}", path.display()))
                    })?;
                    let set: JwkSet = serde_json::from_str(&text).map_err(|e| {
                        issue(
                            "jwks_file",
                            format!("{} is not a JWKS document: {e}", path.display()),
                        )
                    })?;
                    let keys = jwks::usable_keys(&set, cfg.algorithm);
                    if keys.is_empty() {
                        return Err(issue(
                            "jwks_file",
                            format!("{} holds no usable {:?} key", path.display(), cfg.algorithm),
                        ));
                    }
                    Keys::Fixed(keys)
                } else if let Some(source) = remote_source(cfg) {
                    let policy = RefreshPolicy {
                        interval: cfg.jwks_refresh_interval,
                        min_interval: cfg.jwks_min_refresh_interval,
                        timeout: cfg.jwks_timeout,
                    };
                    let key = if cfg.jwks_url.is_some() {
                        "jwks_url"
                    } else {
                        "oidc_issuer"
                    };
                    Keys::Remote(
                        RemoteKeys::new(source, cfg.algorithm, policy)
                            .map_err(|e| issue(key, e))?,
                    )
                } else {
                    unreachable_config()?
                }
            }
        };
        let mut validation = Validation::new(alg);
        validation.leeway = cfg.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = cfg.issuer.as_ref().or(cfg.oidc_issuer.as_ref()) {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        if cfg.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&cfg.audience);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            keys,
            validation,
            consumer_claim: cfg.consumer_claim.clone(),
            claims_to_headers: cfg.claims_to_headers.clone(),
            plan: cfg.plan.clone(),
        })
    }

    /// Verifies `token` and returns its claims. With remote keys this may
    /// wait for the provider: the first fetch, or a refresh for a `kid`
    /// the cached set does not hold.
    pub async fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| JwtError::new("malformed", "the token is not a well-formed JWT"))?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(JwtError::new(
                "algorithm",
                format!("tokens signed with {:?} are not accepted here", header.alg),
            ));
        }
        let kid = header.kid.as_deref();
        match &self.keys {
            Keys::Fixed(keys) => self.decode(token, pick(keys, kid)?),
            Keys::Remote(remote) => {
                let set = remote.for_kid(kid).await.map_err(|e| match e {
                    KeysError::Unavailable => JwtError::new(
                        KEYS_UNAVAILABLE,
                        "the identity provider's signing keys could not be fetched",
                    ),
                    KeysError::UnknownKid => unknown_kid(),
                })?;
                self.decode(token, pick(&set.keys, kid)?)
            }
        }
    }

    fn decode(&self, token: &str, key: &DecodingKey) -> Result<Claims, JwtError> {
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => JwtError::new("expired", "the token has expired"),
                K::ImmatureSignature => {
                    JwtError::new("not_yet_valid", "the token is not valid yet (nbf)")
                }
                K::InvalidIssuer => JwtError::new("issuer", "the token's issuer is not accepted"),
                K::InvalidAudience => {
                    JwtError::new("audience", "the token's audience is not accepted")
                }
                K::InvalidSignature => {
                    JwtError::new("signature", "the token's signature is invalid")
                }
                K::InvalidAlgorithm => {
                    JwtError::new("algorithm", "the token's algorithm is not accepted")
                }
                K::MissingRequiredClaim(c) => {
                    JwtError::new("missing_claim", format!("the token has no `{c}` claim"))
                }
                _ => JwtError::new("malformed", "the token is not a well-formed JWT"),
            }
        })?;
        Ok(data.claims)
    }

    /// The consumer named by the claims.
    pub fn consumer(&self, claims: &Claims) -> Option<String> {
        claim_text(claims.get(&self.consumer_claim)?)
    }

    /// Scopes from the `scope` (space-separated) or `scp` (array) claim.
    pub fn scopes(&self, claims: &Claims) -> Vec<String> {
        match (claims.get("scope"), claims.get("scp")) {
            (Some(Value::String(s)), _) => s.split_whitespace().map(str::to_string).collect(),
            (_, Some(Value::Array(a))) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            (_, Some(Value::String(s))) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        }
    }

    /// Configured claim → header pairs with the claim's value, for claims present.
    pub fn forwarded(&self, claims: &Claims) -> Vec<(String, String)> {
        self.claims_to_headers
            .iter()
            .filter_map(|(claim, header)| Some((header.clone(), claim_text(claims.get(claim)?)?)))
            .collect()
    }

    /// Headers this verifier may set (stripped from incoming requests).
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.claims_to_headers.values().map(String::as_str)
    }

    /// The plan for JWT consumers on this route.
    pub fn plan(&self) -> Option<&str> {
        self.plan.as_deref()
    }
}

/// [`JwtError::reason`] when a remote provider's keys were never fetched.
pub const KEYS_UNAVAILABLE: &str = "keys_unavailable";

fn unknown_kid() -> JwtError {
    JwtError::new("unknown_kid", "the token's signing key (kid) is not known")
}

/// The key for a token naming `kid`, or why there is none.
fn pick<'a>(keys: &'a KeyList, kid: Option<&str>) -> Result<&'a DecodingKey, JwtError> {
    jwks::pick(keys, kid).ok_or_else(|| match kid {
        Some(_) => unknown_kid(),
        None => JwtError::new(
            "missing_kid",
            "the token has no kid and several keys are configured",
        ),
    })
}

/// Where remote keys come from, when the config names a provider.
fn remote_source(cfg: &JwtConfig) -> Option<KeySource> {
    match (&cfg.jwks_url, &cfg.oidc_issuer) {
        (Some(url), _) => Some(KeySource::JwksUrl(url.clone())),
        (None, Some(issuer)) => Some(KeySource::Discovery(issuer.clone())),
        (None, None) => None,
    }
}

fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn unreachable_config<T>() -> Result<T, Vec<ConfigIssue>> {
    // `validate()` already rejected this combination; keep a clear error
    // rather than a panic should the two ever drift apart.
    Err(vec![ConfigIssue::new(
        "algorithm",
        "no key material configured",
    )])
}
