//! The API key format and checksum, key and consumer ids, and key hashes.
//!
//! Properties: nothing panics; a key that parses is exactly its text again
//! and never shows its secret part when printed; an invalid key's error
//! names a byte inside the key; a key whose checksum is recomputed here
//! (an independent CRC32 + base62 encoding) parses, and any single
//! substitution in it is refused; a hash parsed from hex prints back to the
//! same hex.
#![no_main]

use gateway_keys::key::{
    KeyFormatError, KeyHash, CHECKSUM_LEN, KEY_PREFIX, MAX_ENV_LEN, RANDOM_LEN,
};
use gateway_keys::{ApiKey, ConsumerId, KeyId};
use libfuzzer_sys::fuzz_target;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// CRC-32 (IEEE), bit by bit: the reference the product's table-driven
/// `crc32fast` is checked against.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn checksum(signed: &str) -> String {
    let mut crc = crc32(signed.as_bytes());
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
    String::from_utf8(out.to_vec()).unwrap()
}

fn check_parsed(text: &str, key: &ApiKey) {
    assert_eq!(key.expose_secret(), text);
    let env = key.environment();
    assert!(!env.is_empty() && env.len() <= MAX_ENV_LEN);
    assert_eq!(
        text,
        format!(
            "{KEY_PREFIX}{env}_{}",
            &text[KEY_PREFIX.len() + env.len() + 1..]
        )
    );
    let random = &text[text.len() - RANDOM_LEN - CHECKSUM_LEN..];
    for shown in [format!("{key}"), format!("{key:?}")] {
        assert!(!shown.contains(random), "{shown} shows the secret");
    }
    assert_eq!(key.hash(), KeyHash::of(text));
    assert_eq!(KeyHash::from_hex(&key.hash().to_hex()), Some(key.hash()));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    match text.parse::<ApiKey>() {
        Ok(key) => check_parsed(text, &key),
        Err(KeyFormatError::BadCharacter { position }) => {
            assert!(
                position < text.len(),
                "position {position} outside {text:?}"
            )
        }
        Err(_) => {}
    }

    // Give the fuzzer's text a correct checksum: it must then parse
    // exactly when its shape is right, and every one-character change to
    // the secret part must be refused.
    if let Some(signed) = text.get(..text.len().saturating_sub(CHECKSUM_LEN)) {
        let fixed = format!("{signed}{}", checksum(signed));
        let well_formed = signed.strip_prefix(KEY_PREFIX).and_then(|rest| {
            let (env, random) = rest.split_once('_')?;
            let env_ok = !env.is_empty()
                && env.len() <= MAX_ENV_LEN
                && env
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            let random_ok =
                random.len() == RANDOM_LEN && random.bytes().all(|b| b.is_ascii_alphanumeric());
            Some(env_ok && random_ok)
        }) == Some(true);
        match fixed.parse::<ApiKey>() {
            Ok(key) => {
                assert!(well_formed, "{fixed:?} parsed but is not well formed");
                check_parsed(&fixed, &key);
                let start = fixed.len() - RANDOM_LEN - CHECKSUM_LEN;
                for i in start..fixed.len() {
                    let mut bytes = fixed.clone().into_bytes();
                    bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
                    let typo = String::from_utf8(bytes).unwrap();
                    assert!(typo.parse::<ApiKey>().is_err(), "typo {typo:?} accepted");
                }
            }
            Err(e) => assert!(!well_formed, "{fixed:?} is well formed but refused: {e}"),
        }
    }

    if let Some(hash) = KeyHash::from_hex(text) {
        assert_eq!(hash.to_hex(), text.to_ascii_lowercase(), "hex {text:?}");
    }
    if let Ok(id) = text.parse::<KeyId>() {
        assert_eq!(id.to_string(), text);
    }
    if let Ok(id) = text.parse::<ConsumerId>() {
        assert_eq!(id.to_string(), text);
    }
});
