//! The API key secret format, its parsed type, and the identifiers that are
//! safe to show.
//!
//! A key looks like `gh_live_<30 base62 chars><6 base62 chars>`: a fixed
//! `gh_` prefix a secret scanner can match, an environment segment, 30
//! random base62 characters (~178 bits of entropy, well over the 128-bit
//! floor), and a CRC32 checksum of everything before it, encoded as six
//! base62 characters. The checksum lets the gateway (and a scanner) reject a
//! mistyped or invented key offline, before any lookup: CRC32 catches every
//! single-character substitution, so a one-character typo never reaches the
//! keyring.
//!
//! [`ApiKey`] is the only type that holds a secret. Its `Debug` and
//! `Display` never print the random part, so a secret cannot leak through
//! a stray `{:?}` in a log line. What the gateway stores and compares is the
//! [`KeyHash`] (SHA-256 of the full key text).

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every key starts with this, so scanners can find leaked keys.
pub const KEY_PREFIX: &str = "gh_";
/// Number of random base62 characters in a key.
pub const RANDOM_LEN: usize = 30;
/// Number of base62 characters encoding the CRC32 checksum.
pub const CHECKSUM_LEN: usize = 6;
/// Longest accepted environment segment.
pub const MAX_ENV_LEN: usize = 16;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a presented string is not a well-formed key. Stable codes via
/// [`KeyFormatError::as_str`] feed logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// The string does not start with `gh_`.
    #[error("an API key starts with `gh_`")]
    MissingPrefix,
    /// The environment segment is missing, empty, too long or not `[a-z0-9]`.
    #[error("the environment segment after `gh_` must be 1-{MAX_ENV_LEN} characters of a-z or 0-9, followed by `_`")]
    BadEnvironment,
    /// The secret part has the wrong length.
    #[error("the secret part must be {expected} characters, found {found}")]
    BadLength {
        /// Expected number of characters.
        expected: usize,
        /// Number found.
        found: usize,
    },
    /// A character outside base62 at the given byte offset of the key.
    #[error("character at position {position} is not base62 (0-9, A-Z, a-z)")]
    BadCharacter {
        /// Byte offset into the key.
        position: usize,
    },
    /// The checksum does not match: a typo or a fake key.
    #[error("checksum mismatch: the key is mistyped or not a Gatehouse key")]
    BadChecksum,
}

impl KeyFormatError {
    /// Stable identifier for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::MissingPrefix => "missing_prefix",
            Self::BadEnvironment => "bad_environment",
            Self::BadLength { .. } => "bad_length",
            Self::BadCharacter { .. } => "bad_character",
            Self::BadChecksum => "bad_checksum",
        }
    }
}

/// A parsed, well-formed API key secret.
///
/// Construction validates prefix, environment, charset, length and checksum;
/// a value of this type is therefore worth hashing and looking up.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    text: String,
    env_len: usize,
}

impl ApiKey {
    /// Generates a fresh random key for `environment` (must be `[a-z0-9]{1,16}`).
    pub fn generate(environment: &str) -> Result<Self, KeyFormatError> {
        validate_env(environment)?;
        let mut rng = rand::rngs::OsRng;
        let mut text = String::with_capacity(
            KEY_PREFIX.len() + environment.len() + 1 + RANDOM_LEN + CHECKSUM_LEN,
        );
        text.push_str(KEY_PREFIX);
        text.push_str(environment);
        text.push('_');
        for _ in 0..RANDOM_LEN {
            text.push(BASE62[rng.gen_range(0..62)] as char);
        }
        let crc = crc32fast::hash(text.as_bytes());
        text.extend(encode_checksum(crc).iter().map(|&b| char::from(b)));
        Ok(Self {
            env_len: environment.len(),
            text,
        })
    }

    /// The environment segment, e.g. `live` or `test`. Not secret.
    pub fn environment(&self) -> &str {
        &self.text[KEY_PREFIX.len()..KEY_PREFIX.len() + self.env_len]
    }

    /// The full secret text. Call only to show it once to its owner or to
    /// send it in a request; never log it.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// The SHA-256 hash stored and compared instead of the secret.
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.text)
    }

    /// Checks `s` as [`str::parse`] does and returns its hash, without
    /// copying the secret: all the request path needs of a presented key.
    pub(crate) fn hash_checked(s: &str) -> Result<KeyHash, KeyFormatError> {
        check(s)?;
        Ok(KeyHash::of(s))
    }
}

/// Validates key text (prefix, environment, charset, length, checksum);
/// returns the length of the environment segment.
fn check(s: &str) -> Result<usize, KeyFormatError> {
    let rest = s
        .strip_prefix(KEY_PREFIX)
        .ok_or(KeyFormatError::MissingPrefix)?;
    let env_len = rest
        .bytes()
        .take(MAX_ENV_LEN + 1)
        .position(|b| b == b'_')
        .ok_or(KeyFormatError::BadEnvironment)?;
    validate_env(&rest[..env_len])?;
    let body_start = KEY_PREFIX.len() + env_len + 1;
    let body = &s[body_start..];
    let expected = RANDOM_LEN + CHECKSUM_LEN;
    if let Some(i) = body.bytes().position(|b| !b.is_ascii_alphanumeric()) {
        return Err(KeyFormatError::BadCharacter {
            position: body_start + i,
        });
    }
    if body.len() != expected {
        return Err(KeyFormatError::BadLength {
            expected,
            found: body.len(),
        });
    }
    let (signed, checksum) = s.split_at(s.len() - CHECKSUM_LEN);
    let crc = crc32fast::hash(signed.as_bytes());
    if !bool::from(encode_checksum(crc)[..].ct_eq(checksum.as_bytes())) {
        return Err(KeyFormatError::BadChecksum);
    }
    Ok(env_len)
}

impl FromStr for ApiKey {
    type Err = KeyFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let env_len = check(s)?;
        Ok(Self {
            text: s.to_string(),
            env_len,
        })
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}{}_<redacted>)", KEY_PREFIX, self.environment())
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}_<redacted>", KEY_PREFIX, self.environment())
    }
}

fn validate_env(env: &str) -> Result<(), KeyFormatError> {
    if env.is_empty()
        || env.len() > MAX_ENV_LEN
        || !env
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(KeyFormatError::BadEnvironment);
    }
    Ok(())
}

/// The checksum's base62 digits (ASCII), on the stack: parsing runs on
/// every request.
fn encode_checksum(mut crc: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
    // 62^6 > 2^32, so the loop always consumes the whole value.
    out
}

/// Whether `environment` is acceptable as a key environment segment.
pub fn is_valid_environment(environment: &str) -> bool {
    validate_env(environment).is_ok()
}

/// SHA-256 of a key's full text: what the store and keyring hold.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// Hashes key text.
    pub fn of(text: &str) -> Self {
        Self(Sha256::digest(text.as_bytes()).into())
    }

    /// Lowercase hex, as stored.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Parses 64 hex characters (either case). Nothing else is accepted:
    /// `u8::from_str_radix` alone would also take a sign (`+f`), and a hash
    /// that does not print back as it was given cannot be matched.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }

    /// A short prefix used to index the keyring; the full hash is then
    /// compared in constant time.
    pub fn index(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        // Word by word: as constant-time as byte by byte (no branch on the
        // data), at an eighth of the work on every verification.
        let words = |h: &KeyHash| {
            let mut w = [0u64; 4];
            for (slot, chunk) in w.iter_mut().zip(h.0.chunks_exact(8)) {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                *slot = u64::from_ne_bytes(b);
            }
            w
        };
        bool::from(words(self).ct_eq(&words(other)))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is not the secret, but there is no reason to print all of it.
        write!(f, "KeyHash({}…)", &self.to_hex()[..8])
    }
}

macro_rules! short_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        // Shared text: a request's identity clones the key id.
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random id.
            pub fn generate() -> Self {
                let mut rng = rand::rngs::OsRng;
                let mut s = String::from($prefix);
                for _ in 0..ID_RANDOM_LEN {
                    s.push(BASE62[rng.gen_range(0..62)] as char);
                }
                Self(s.into())
            }

            /// The id text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                let rest = s.strip_prefix($prefix).ok_or(IdError { kind: stringify!($name), expected_prefix: $prefix })?;
                if rest.len() != ID_RANDOM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(IdError { kind: stringify!($name), expected_prefix: $prefix });
                }
                Ok(Self(s.into()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// On the wire: the prefix and its random characters.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(format!("^{}[A-Za-z0-9]{{{}}}$", $prefix, ID_RANDOM_LEN)))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// Random characters in a key or consumer id.
pub const ID_RANDOM_LEN: usize = 12;

/// A malformed key or consumer id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind}: expected `{expected_prefix}` followed by {ID_RANDOM_LEN} base62 characters")]
pub struct IdError {
    /// Which id type.
    pub kind: &'static str,
    /// Expected prefix.
    pub expected_prefix: &'static str,
}

short_id!(
    /// The short, non-secret id of a key (`key_` + 12 base62), used in logs,
    /// the admin API and the audit log. It is not derivable from the secret
    /// and the secret is not derivable from it.
    KeyId,
    "key_"
);

short_id!(
    /// The id of a consumer (`con_` + 12 base62).
    ConsumerId,
    "con_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back() {
        for env in ["live", "test", "staging2"] {
            let k = ApiKey::generate(env).unwrap();
            let parsed: ApiKey = k.expose_secret().parse().unwrap();
            assert_eq!(parsed, k);
            assert_eq!(parsed.environment(), env);
            assert_eq!(parsed.hash(), k.hash());
            assert!(k.expose_secret().starts_with(&format!("gh_{env}_")));
            assert_eq!(
                k.expose_secret().len(),
                3 + env.len() + 1 + RANDOM_LEN + CHECKSUM_LEN
            );
        }
    }

    #[test]
    fn every_single_character_typo_is_rejected_by_the_checksum() {
        let k = ApiKey::generate("live").unwrap();
        let text = k.expose_secret().to_string();
        let start = "gh_live_".len();
        for pos in start..text.len() {
            let mut bytes = text.clone().into_bytes();
            let orig = bytes[pos];
            // Try a handful of substitutions per position.
            for &c in b"0aZq9" {
                if c == orig {
                    continue;
                }
                bytes[pos] = c;
                let typo = String::from_utf8(bytes.clone()).unwrap();
                assert_eq!(
                    typo.parse::<ApiKey>(),
                    Err(KeyFormatError::BadChecksum),
                    "typo at {pos} accepted"
                );
            }
        }
        // A typo in the environment changes what the checksum covers too.
        let typo = text.replacen("gh_live_", "gh_livf_", 1);
        assert_eq!(typo.parse::<ApiKey>(), Err(KeyFormatError::BadChecksum));
    }

    #[test]
    fn malformed_keys_say_what_is_wrong() {
        let cases: &[(&str, KeyFormatError)] = &[
            ("", KeyFormatError::MissingPrefix),
            ("sk_live_abc", KeyFormatError::MissingPrefix),
            ("gh_", KeyFormatError::BadEnvironment),
            ("gh__abc", KeyFormatError::BadEnvironment),
            ("gh_LIVE_abc", KeyFormatError::BadEnvironment),
            (
                "gh_live_abc",
                KeyFormatError::BadLength {
                    expected: 36,
                    found: 3,
                },
            ),
            (
                "gh_live_ab-c",
                KeyFormatError::BadCharacter { position: 10 },
            ),
            (
                "gh_live_ab\u{e9}c",
                KeyFormatError::BadCharacter { position: 10 },
            ),
            (
                "gh_live_000000000000000000000000000000000000",
                KeyFormatError::BadChecksum,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                input.parse::<ApiKey>().as_ref(),
                Err(want),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let k = ApiKey::generate("live").unwrap();
        let random = &k.expose_secret()["gh_live_".len()..];
        for shown in [format!("{k:?}"), format!("{k}")] {
            assert!(!shown.contains(random), "{shown}");
            assert!(!shown.contains(&random[..8]), "{shown}");
        }
    }

    #[test]
    fn hashes_compare_equal_only_when_every_byte_matches() {
        let h = KeyHash::of("x");
        assert!(h.ct_eq(&h));
        for i in 0..32 {
            let mut other = h;
            other.0[i] ^= 0x01;
            assert!(!h.ct_eq(&other), "byte {i}");
        }
    }

    #[test]
    fn hash_hex_round_trips() {
        let h = KeyHash::of("x");
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(KeyHash::from_hex("zz"), None);
        assert_eq!(
            KeyHash::from_hex(&h.to_hex().to_uppercase()),
            Some(h),
            "either case"
        );
    }

    #[test]
    fn hash_hex_refuses_signs() {
        // Found by the api_key fuzz target: `u8::from_str_radix` takes
        // `+f` as 15, so a 64-character string with a sign parsed into a
        // hash that prints back differently.
        let hex = KeyHash::of("x").to_hex();
        let signed = format!("+{}", &hex[1..]);
        assert_eq!(KeyHash::from_hex(&signed), None);
        let signed = format!("{}+{}", &hex[..6], &hex[7..]);
        assert_eq!(KeyHash::from_hex(&signed), None);
    }

    #[test]
    fn ids_validate() {
        let id = KeyId::generate();
        assert_eq!(id.as_str().parse::<KeyId>().unwrap(), id);
        assert!("key_short".parse::<KeyId>().is_err());
        assert!(ConsumerId::generate().as_str().parse::<KeyId>().is_err());
    }
}
