//! JSON request bodies read with the failing field named.
//!
//! `serde_json` says what is wrong and where in the text ("invalid type:
//! integer `5`, expected a string at line 1 column 31"), not which field;
//! a client that sent a long body needs the field (`scopes[1]`). Admin
//! APIs read their bodies through [`from_slice`].

use serde::de::DeserializeOwned;
use std::fmt;

/// A body that is not valid JSON or not the expected shape.
#[derive(Debug)]
pub struct JsonError {
    /// Path of the offending field (`grace`, `scopes[1]`), empty at the root.
    pub path: String,
    /// What serde_json said, with its line and column.
    pub message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for JsonError {}

/// Parses `bytes` as a `T`, naming the field that fails.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| JsonError {
        path: known_path(&e.path().to_string()),
        message: e.into_inner().to_string(),
    })?;
    // Trailing text after the value is an error too, as in `serde_json::from_slice`.
    de.end().map_err(|e| JsonError {
        path: String::new(),
        message: e.to_string(),
    })?;
    Ok(value)
}

/// `path` less what serde could not name: `.` is the root, and `?` a key
/// not read yet (the text broke off inside an object).
fn known_path(path: &str) -> String {
    let mut p = path;
    while let Some(rest) = p.strip_suffix('?') {
        p = rest.strip_suffix('.').unwrap_or(rest);
    }
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Create {
        owner: String,
        #[serde(default)]
        scopes: Vec<String>,
        #[serde(default)]
        limits: Option<Limits>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Limits {
        per_second: u32,
    }

    fn err(body: &str) -> String {
        from_slice::<Create>(body.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_failing_field_is_named() {
        assert_eq!(
            err(r#"{"owner": "a", "scopes": ["x", 5]}"#),
            "`scopes[1]`: invalid type: integer `5`, expected a string at line 1 column 32"
        );
        assert_eq!(
            err(r#"{"owner": "a", "limits": {"per_second": "ten"}}"#),
            "`limits.per_second`: invalid type: string \"ten\", expected u32 at line 1 column 45"
        );
        assert!(err(r#"{"owner": "a", "ownr": 1}"#).starts_with("`ownr`: unknown field `ownr`"));
    }

    #[test]
    fn errors_at_the_root_have_no_path() {
        assert_eq!(
            err(r#"{"scopes": []}"#),
            "missing field `owner` at line 1 column 14"
        );
        assert_eq!(
            err(r#"{"owner": "a"} x"#),
            "trailing characters at line 1 column 16"
        );
        assert_eq!(err("{"), "EOF while parsing an object at line 1 column 1");
        assert_eq!(
            err(r#"{"owner": "a", "limits": {"#),
            "`limits`: EOF while parsing an object at line 1 column 26"
        );
    }

    #[test]
    fn a_good_body_parses() {
        let c: Create = from_slice(br#"{"owner": "a", "scopes": ["x"]}"#).unwrap();
        assert_eq!(c.owner, "a");
    }
}
