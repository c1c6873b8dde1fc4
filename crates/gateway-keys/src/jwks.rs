//! Signing keys fetched from an identity provider: a JWKS URL, or the
//! `jwks_uri` of an OpenID Connect discovery document
//! (`{issuer}/.well-known/openid-configuration`).
//!
//! The key set is cached and refreshed in the background on a schedule
//! (`jwks_refresh_interval`), and at once when a token names a `kid` the
//! set does not hold (a provider that rotated its keys), at most once per
//! `jwks_min_refresh_interval` so tokens with made-up `kid`s cannot turn
//! the gateway into a load generator against the provider. When a fetch
//! fails the last good set stays in use; the failure is logged and counted
//! (`gatehouse_jwks_refresh_total{result="error"}`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use crate::config::JwtAlgorithm;

/// Largest discovery document or key set read (providers publish a few KiB).
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Keys by `kid` (`None` for a key published without one).
pub type KeyList = Vec<(Option<String>, DecodingKey)>;

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS document at this URL.
    JwksUrl(String),
    /// The OpenID Connect provider with this issuer identifier.
    Discovery(String),
}

impl KeySource {
    fn describe(&self) -> String {
        match self {
            KeySource::JwksUrl(url) => format!("JWKS {url}"),
            KeySource::Discovery(issuer) => format!("OIDC provider {issuer}"),
        }
    }
}

/// How often keys are fetched.
#[derive(Debug, Clone, Copy)]
pub struct RefreshPolicy {
    /// Time between scheduled refreshes.
    pub interval: Duration,
    /// Shortest time between two fetches caused by unknown `kid`s.
    pub min_interval: Duration,
    /// Bound on one fetch (discovery and key set each).
    pub timeout: Duration,
}

/// A fetched key set.
pub struct KeySet {
    /// The usable keys.
    pub keys: KeyList,
}

/// The keys of one route's remote provider, shared by every request.
#[derive(Clone)]
pub struct RemoteKeys {
    inner: Arc<Inner>,
}

struct Inner {
    source: KeySource,
    algorithm: JwtAlgorithm,
    policy: RefreshPolicy,
    client: reqwest::Client,
    /// The last good set; empty until the first fetch succeeds.
    current: ArcSwap<KeySet>,
    /// One fetch at a time; holds when the last one started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    scheduled: AtomicBool,
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("source", &self.inner.source)
            .field("keys", &self.inner.current.load().keys.len())
            .finish()
    }
}

/// Why no key could be found for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysError {
    /// No key set has ever been fetched.
    Unavailable,
    /// The set holds no key with the token's `kid`, even after a refresh.
    UnknownKid,
}

impl RemoteKeys {
    /// Keys for `algorithm` from `source`. Nothing is fetched until the
    /// first token arrives, so building a config does no I/O.
    pub fn new(
        source: KeySource,
        algorithm: JwtAlgorithm,
        policy: RefreshPolicy,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                source,
                algorithm,
                policy,
                client,
                current: ArcSwap::from_pointee(KeySet { keys: Vec::new() }),
                fetching: tokio::sync::Mutex::new(None),
                scheduled: AtomicBool::new(false),
            }),
        })
    }

    /// The key set to verify a token naming `kid` with: the cached set
    /// when it has the key; otherwise after a refresh (when the rate limit
    /// allows one).
    pub async fn for_kid(&self, kid: Option<&str>) -> Result<Arc<KeySet>, KeysError> {
        self.schedule();
        let set = self.inner.current.load_full();
        if has_key(&set.keys, kid) {
            return Ok(set);
        }
        self.inner.refresh_if_allowed(set.keys.is_empty()).await;
        let set = self.inner.current.load_full();
        if has_key(&set.keys, kid) {
            Ok(set)
        } else if set.keys.is_empty() {
            Err(KeysError::Unavailable)
        } else {
            Err(KeysError::UnknownKid)
        }
    }

    /// Starts the scheduled refresh, once. The task holds the keys weakly:
    /// when a reload drops this route's verifier, the task ends.
    fn schedule(&self) {
        if self.inner.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let interval = self.inner.policy.interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                let mut last = inner.fetching.lock().await;
                *last = Some(Instant::now());
                inner.fetch_and_store("schedule").await;
            }
        });
    }
}

impl Inner {
    /// Fetches unless another fetch ran within `min_interval` (always when
    /// nothing was ever fetched and `first` is set, after the same pause
    /// so a provider that is down is not hammered either). Concurrent
    /// callers wait for the one fetch in flight.
    async fn refresh_if_allowed(&self, first: bool) {
        let seen = self.current.load_full();
        let mut last = self.fetching.lock().await;
        // Someone else fetched while this caller waited: use their result.
        if !Arc::ptr_eq(&self.current.load_full(), &seen) {
            return;
        }
        if let Some(at) = *last {
            if at.elapsed() < self.policy.min_interval {
                let why = if first { "unavailable" } else { "unknown_kid" };
                metrics::counter!("gatehouse_jwks_refresh_total", "result" => "rate_limited", "reason" => why)
                    .increment(1);
                return;
            }
        }
        *last = Some(Instant::now());
        self.fetch_and_store(if first { "first_use" } else { "unknown_kid" })
            .await;
    }

    async fn fetch_and_store(&self, reason: &'static str) {
        match self.fetch().await {
            Ok(keys) => {
                metrics::counter!("gatehouse_jwks_refresh_total", "result" => "ok", "reason" => reason)
                    .increment(1);
                tracing::debug!(source = %self.source.describe(), keys = keys.len(), reason, "signing keys fetched");
                self.current.store(Arc::new(KeySet { keys }));
            }
            Err(e) => {
                metrics::counter!("gatehouse_jwks_refresh_total", "result" => "error", "reason" => reason)
                    .increment(1);
                let kept = self.current.load().keys.len();
                tracing::warn!(source = %self.source.describe(), error = %e, kept_keys = kept, reason,
                    "fetching signing keys failed; the last good key set stays in use");
            }
        }
    }

    /// One fetch: discovery (when configured), then the key set.
    async fn fetch(&self) -> Result<KeyList, String> {
        let jwks_url = match &self.source {
            KeySource::JwksUrl(url) => url.clone(),
            KeySource::Discovery(issuer) => {
                let url = discovery_url(issuer);
                let doc: Discovery = serde_json::from_slice(&self.get(&url).await?)
                    .map_err(|e| format!("{url} is not an OpenID discovery document: {e}"))?;
                // OpenID Connect Discovery 1.0 §4.3: the document's issuer
                // must be exactly the one it was fetched for.
                if doc.issuer != *issuer {
                    return Err(format!(
                        "{url} names issuer `{}`, not `{issuer}`",
                        doc.issuer
                    ));
                }
                doc.jwks_uri
            }
        };
        let set: JwkSet = serde_json::from_slice(&self.get(&jwks_url).await?)
            .map_err(|e| format!("{jwks_url} is not a JWKS document: {e}"))?;
        let keys = usable_keys(&set, self.algorithm);
        if keys.is_empty() {
            return Err(format!(
                "{jwks_url} holds no usable {:?} signing key",
                self.algorithm
            ));
        }
        Ok(keys)
    }

    /// GETs `url`, expecting 200 and a body under the cap.
    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut res = self
            .client
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url} failed: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("GET {url} answered {}", res.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| format!("GET {url} failed while reading: {e}"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("GET {url}: the document exceeds 1 MiB"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery
/// 1.0 §4: appended to the issuer, its trailing `/` removed).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// The keys of `set` that can verify `algorithm`: the right key type, not
/// marked for encryption, and not declared for another algorithm.
pub fn usable_keys(set: &JwkSet, algorithm: JwtAlgorithm) -> KeyList {
    set.keys
        .iter()
        .filter(|jwk| {
            matches!(
                (&jwk.algorithm, algorithm),
                (AlgorithmParameters::RSA(_), JwtAlgorithm::RS256)
                    | (AlgorithmParameters::EllipticCurve(_), JwtAlgorithm::ES256)
            )
        })
        .filter(|jwk| !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter(|jwk| match jwk.common.key_algorithm {
            None => true,
            Some(a) => matches!(
                (a, algorithm),
                (KeyAlgorithm::RS256, JwtAlgorithm::RS256)
                    | (KeyAlgorithm::ES256, JwtAlgorithm::ES256)
            ),
        })
        .filter_map(|jwk| {
            DecodingKey::from_jwk(jwk)
                .ok()
                .map(|k| (jwk.common.key_id.clone(), k))
        })
        .collect()
}

/// Whether `keys` can verify a token naming `kid`: a key with that `kid`,
/// or, for a token without one, a set of exactly one key.
pub fn has_key(keys: &KeyList, kid: Option<&str>) -> bool {
    pick(keys, kid).is_some()
}

/// The key for a token naming `kid` (see [`has_key`]).
pub fn pick<'a>(keys: &'a KeyList, kid: Option<&str>) -> Option<&'a DecodingKey> {
    match kid {
        Some(kid) => keys
            .iter()
            .find(|(k, _)| k.as_deref() == Some(kid))
            .or_else(|| (keys.len() == 1 && keys[0].0.is_none()).then(|| &keys[0]))
            .map(|(_, k)| k),
        None => (keys.len() == 1).then(|| &keys[0].1),
    }
}
