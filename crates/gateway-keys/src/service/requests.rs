//! The admin operations' request and response bodies.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::key::ApiKey;
use crate::model::{KeyStatus, KeyView};

/// Create-key request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Consumer id (`con_...`) or name. A name that does not exist yet
    /// creates the consumer (with `plan`).
    pub owner: String,
    /// Label; defaults to `default`.
    #[serde(default)]
    pub name: Option<String>,
    /// Scopes granted.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Lifetime, e.g. `90d`.
    #[serde(default, with = "humantime_serde")]
    #[schema(value_type = Option<String>, example = "30d")]
    pub expires_in: Option<Duration>,
    /// Plan override for this key (or the new consumer's plan).
    #[serde(default)]
    pub plan: Option<String>,
    /// Consumer group, when the consumer is created here.
    #[serde(default)]
    pub group: Option<String>,
    /// Environment segment; defaults to `keys.environment`.
    #[serde(default)]
    pub environment: Option<String>,
    /// Free-form metadata (a JSON object).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Update request (`PATCH /v1/keys/{id}`): only the fields given change.
/// `plan` and `expires_at` take `null` to clear them; `metadata` replaces
/// the whole object.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    /// New label.
    #[serde(default)]
    pub name: Option<String>,
    /// New scopes (replacing the old ones).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// New plan override; `null` falls back to the consumer's plan.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub plan: Option<Option<String>>,
    /// New expiry (RFC 3339); `null` for none.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Option<chrono::DateTime<chrono::Utc>>>,
    /// New metadata (replacing the old object).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A field that may be absent (unchanged), `null` (cleared) or a value.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Rotate request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old key keeps working; defaults to `keys.default_grace`.
    #[serde(default, with = "humantime_serde")]
    #[schema(value_type = Option<String>, example = "24h")]
    pub grace: Option<Duration>,
    /// Lifetime of the successor; defaults to the old key's lifetime, or the
    /// rotation policy.
    #[serde(default, with = "humantime_serde")]
    #[schema(value_type = Option<String>, example = "30d")]
    pub expires_in: Option<Duration>,
}

/// Create-consumer request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConsumer {
    /// Unique name.
    pub name: String,
    /// Plan.
    #[serde(default)]
    pub plan: Option<String>,
    /// Group sharing quotas.
    #[serde(default)]
    pub group: Option<String>,
}

/// A new key and its secret, shown exactly once.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// The key's metadata.
    pub key: KeyView,
    /// The secret.
    pub secret: ApiKey,
    /// For rotations: the old key, now retiring.
    pub previous: Option<KeyView>,
}

/// What [`IssuedKey`] sends: the one answer that holds a secret. Its
/// schema is `IssuedKey`'s, so the document describes what is sent.
#[derive(Serialize, utoipa::ToSchema)]
struct IssuedKeyAnswer<'a> {
    /// The key's metadata.
    #[schema(value_type = KeyView)]
    key: &'a KeyView,
    /// The secret, shown only in this answer: the gateway keeps only its
    /// hash.
    secret: &'a str,
    /// For rotations: the old key, now retiring.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<KeyView>)]
    previous: &'a Option<KeyView>,
    /// A reminder to store the secret now.
    notice: &'static str,
}

impl Serialize for IssuedKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        IssuedKeyAnswer {
            key: &self.key,
            secret: self.secret.expose_secret(),
            previous: &self.previous,
            notice: "store this secret now: it is shown only once",
        }
        .serialize(s)
    }
}

impl utoipa::PartialSchema for IssuedKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <IssuedKeyAnswer<'_> as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for IssuedKey {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <IssuedKeyAnswer<'_> as utoipa::ToSchema>::schemas(schemas);
    }
}

/// Filter for [`KeyService::list`](super::KeyService::list).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyFilter {
    /// Consumer id or name.
    #[serde(default)]
    pub consumer: Option<String>,
    /// Only keys in this state.
    #[serde(default)]
    #[param(inline)]
    pub status: Option<KeyStatus>,
}
