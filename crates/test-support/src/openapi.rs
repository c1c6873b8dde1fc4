//! Checks an OpenAPI document against the routes a router really serves:
//! the routes are read from the code (every `.route("/path", get(..).post(..))`
//! in a crate's sources), so an endpoint added without documenting it, or
//! documented without being served, fails the test that compares them.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

/// A method (lower case) and a path template (`{name}` for parameters).
pub type Operation = (String, String);

const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

/// Every `(method, path)` routed with `.route(..)` in the `.rs` files under
/// `dir`. Wildcards (`{*rest}`) are written as OpenAPI writes them
/// (`{rest}`).
pub fn routes_in(dir: &Path) -> BTreeSet<Operation> {
    let mut out = BTreeSet::new();
    let mut files = Vec::new();
    collect(dir, &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for call in route_calls(&text) {
            let Some((path, handlers)) = split_path(call) else {
                continue;
            };
            let path = path.replace("{*", "{");
            for m in METHODS {
                if word_before_ok(handlers, m) {
                    out.insert((m.to_string(), path.clone()));
                }
            }
        }
    }
    out
}

/// Every `(method, path)` a document describes.
pub fn documented(doc: &Value) -> BTreeSet<Operation> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("a document has `paths`") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_string(), path.clone()));
            }
        }
    }
    out
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The argument text of each `.route(` call (balanced parentheses).
fn route_calls(text: &str) -> Vec<&str> {
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(".route(") {
        let start = i + ".route(".len();
        let mut depth = 1;
        let mut end = start;
        for (j, c) in rest[start..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = start + j;
                break;
            }
        }
        calls.push(&rest[start..end]);
        rest = &rest[end..];
    }
    calls
}

/// `"/path", handlers` → the path literal and the handlers' text.
fn split_path(call: &str) -> Option<(&str, &str)> {
    let call = call.trim_start();
    let body = call.strip_prefix('"')?;
    let end = body.find('"')?;
    Some((&body[..end], &body[end + 1..]))
}

/// `get(` counts when it starts a word (not `forget(`).
fn word_before_ok(handlers: &str, m: &str) -> bool {
    handlers.match_indices(&format!("{m}(")).any(|(i, _)| {
        handlers[..i]
            .chars()
            .last()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_route_calls_over_several_lines() {
        let text = r#"Router::new()
        .route("/v1/keys", post(create).get(list))
        .route(
            "/v1/session",
            get(current).post(sign_in).delete(sign_out),
        )
        .route("/console/{*path}", get(asset))"#;
        let mut got = Vec::new();
        for call in route_calls(text) {
            let (path, handlers) = split_path(call).unwrap();
            for m in METHODS {
                if word_before_ok(handlers, m) {
                    got.push(format!("{m} {}", path.replace("{*", "{")));
                }
            }
        }
        assert_eq!(
            got,
            [
                "get /v1/keys",
                "post /v1/keys",
                "get /v1/session",
                "post /v1/session",
                "delete /v1/session",
                "get /console/{path}"
            ]
        );
    }
}
