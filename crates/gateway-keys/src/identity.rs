//! Who is calling, once authenticated: [`Identity`], and the identity
//! headers forwarded upstream for it.
//!
//! Shared by the authentication stage ([`crate::auth`]), the keyring (which
//! builds a key's identity once, when the key is loaded) and the service
//! (which applies the identity's plan). It depends on the records only, so
//! none of those modules need each other for it.

use std::sync::Arc;

use http::HeaderValue;
use serde::Serialize;

use crate::key::KeyId;
use crate::model::{Consumer, KeyRecord, KeyStatus};

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// By API key.
    ApiKey,
    /// By JWT.
    Jwt,
    /// By the client certificate the listener verified (mutual TLS).
    ClientCert,
    /// Not at all (route allows anonymous access).
    Anonymous,
}

impl IdentityKind {
    /// Stable identifier.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Jwt => "jwt",
            Self::ClientCert => "client_cert",
            Self::Anonymous => "anonymous",
        }
    }
}

/// Who is calling, as established by the authentication stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    /// How.
    pub kind: IdentityKind,
    /// Consumer id (`con_...`), or the JWT consumer claim.
    pub consumer_id: Option<Arc<str>>,
    /// Consumer name.
    pub consumer_name: Option<Arc<str>>,
    /// Key id (API keys only).
    pub key_id: Option<KeyId>,
    /// Key state (`active` or `retiring`).
    pub key_status: Option<KeyStatus>,
    /// Plan whose limits apply.
    pub plan: Option<Arc<str>>,
    /// Consumer group.
    pub group: Option<Arc<str>>,
}

impl Identity {
    /// A key's identity while it works (its state then is `retiring` once
    /// it has a successor, else `active`): built with the keyring entry and
    /// shared, so a request takes one reference count for all of it.
    pub(crate) fn for_key(record: &KeyRecord, consumer: &Consumer) -> Self {
        Identity {
            kind: IdentityKind::ApiKey,
            consumer_id: Some(consumer.id.as_str().into()),
            consumer_name: Some(consumer.name.as_str().into()),
            key_id: Some(record.id.clone()),
            key_status: Some(if record.successor.is_some() {
                KeyStatus::Retiring
            } else {
                KeyStatus::Active
            }),
            plan: record
                .plan
                .as_deref()
                .or(consumer.plan.as_deref())
                .map(Arc::from),
            group: consumer.group.as_deref().map(Arc::from),
        }
    }

    /// A consumer named by its client certificate: no key, the
    /// consumer's own plan.
    pub(crate) fn for_certificate(consumer: &Consumer) -> Self {
        Identity {
            kind: IdentityKind::ClientCert,
            consumer_id: Some(consumer.id.as_str().into()),
            consumer_name: Some(consumer.name.as_str().into()),
            key_id: None,
            key_status: None,
            plan: consumer.plan.as_deref().map(Arc::from),
            group: consumer.group.as_deref().map(Arc::from),
        }
    }

    pub(crate) fn anonymous() -> Self {
        Identity {
            kind: IdentityKind::Anonymous,
            consumer_id: None,
            consumer_name: None,
            key_id: None,
            key_status: None,
            plan: None,
            group: None,
        }
    }
}

/// Values of the identity headers forwarded upstream, in
/// [`ForwardHeaders`](crate::config::ForwardHeaders) order: consumer id,
/// consumer name, key id, plan. `None` when there is no value or it is not
/// a valid header value (then the header is not set). For API keys the
/// keyring builds these once per key, so a request only clones them
/// (`HeaderValue` is reference-counted).
#[derive(Debug, Clone, Default)]
pub(crate) struct IdentityHeaders(pub(crate) [Option<HeaderValue>; 4]);

impl IdentityHeaders {
    pub(crate) fn new(
        consumer_id: Option<&str>,
        consumer_name: Option<&str>,
        key_id: Option<&str>,
        plan: Option<&str>,
    ) -> Self {
        Self(
            [consumer_id, consumer_name, key_id, plan]
                .map(|v| v.and_then(|v| HeaderValue::from_str(v).ok())),
        )
    }

    /// The headers a key's identity forwards (see `key_path`).
    pub(crate) fn for_key(record: &KeyRecord, consumer: &Consumer) -> Self {
        Self::new(
            Some(consumer.id.as_str()),
            Some(&consumer.name),
            Some(record.id.as_str()),
            record.plan.as_deref().or(consumer.plan.as_deref()),
        )
    }
}
