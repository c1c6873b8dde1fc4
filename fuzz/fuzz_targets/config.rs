//! The config loader: any text gives a config or a clear error, never a
//! panic.
//!
//! Properties: an error is `Invalid` with at least one issue, each with a
//! message, located inside the text (line and column within it), rendered
//! as `file:line:column: ...`; a loaded config loads again the same way,
//! and its redacted JSON never shows the admin token.
#![no_main]

use gateway_config::{load_str, ConfigError};
use libfuzzer_sys::fuzz_target;

const ORIGIN: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    match load_str(source, ORIGIN) {
        Ok(loaded) => {
            assert!(
                load_str(source, ORIGIN).is_ok(),
                "loading is not deterministic"
            );
            let json = loaded.redacted_json();
            if loaded.config.admin.token.is_some() {
                assert_eq!(
                    json["admin"]["token"], "[redacted]",
                    "the admin token reached the redacted JSON"
                );
            }
        }
        Err(ConfigError::Io { .. }) => panic!("load_str did IO"),
        Err(e @ ConfigError::Invalid { .. }) => {
            let issues = e.issues();
            assert!(!issues.is_empty(), "an error without an issue");
            let lines = source.split('\n').count();
            for issue in issues {
                assert!(
                    !issue.message.trim().is_empty(),
                    "an issue without a message: {issue:?}"
                );
                assert!(
                    issue.line <= lines,
                    "line {} beyond the text ({lines} lines)",
                    issue.line
                );
            }
            let rendered = e.to_string();
            assert!(rendered.starts_with(ORIGIN), "{rendered}");
        }
    }
});
