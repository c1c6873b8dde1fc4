//! Checks a JSON value against a schema of an OpenAPI 3.1 document, so a
//! test can hold a real answer against what the document promises.
//!
//! It knows the JSON Schema keywords the documents' generator writes
//! (`$ref` into the document, `type`, `enum`, `const`, `properties`,
//! `required`, `additionalProperties`, `propertyNames`, `items`,
//! `prefixItems`, `allOf`, `oneOf`, `anyOf`, `minimum`, `maximum`,
//! `minLength`, `maxLength`, `pattern`) and ignores annotations
//! (`description`, `format`, `example`, ...). Any other keyword that
//! constrains values is reported, so an unchecked schema never passes
//! silently.

use serde_json::Value;

/// Keywords that only annotate: they constrain nothing here.
const ANNOTATIONS: [&str; 10] = [
    "description",
    "title",
    "format",
    "example",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "discriminator",
];

/// The schema `doc` declares for the JSON answer of `method path` with
/// `status` (`path` as the document writes it, e.g. `/v1/keys/{id}`).
pub fn answer_schema<'d>(doc: &'d Value, method: &str, path: &str, status: u16) -> &'d Value {
    let response = &doc["paths"][path][method]["responses"][status.to_string()];
    let response = match response["$ref"].as_str() {
        Some(r) => resolve(doc, r).unwrap_or(&Value::Null),
        None => response,
    };
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path}: no JSON answer for {status} in the document"
    );
    schema
}

/// Checks `value` against `schema`, resolving `$ref`s in `doc`. The error
/// lists every mismatch with where it is (`$.keys[0].status`).
pub fn check(doc: &Value, schema: &Value, value: &Value) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    Checker { doc }.check(schema, value, "$", &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The value at a local reference (`#/components/schemas/Name`).
fn resolve<'d>(doc: &'d Value, reference: &str) -> Option<&'d Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(value: &Value, ty: &str) -> bool {
    let actual = type_name(value);
    // Every integer is a number; a float with no fraction is an integer.
    actual == ty
        || (ty == "number" && actual == "integer")
        || (ty == "integer" && value.as_f64().is_some_and(|f| f.fract() == 0.0))
}

struct Checker<'d> {
    doc: &'d Value,
}

impl Checker<'_> {
    fn check(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let Some(schema) = schema.as_object() else {
            // `true` allows anything, `false` nothing.
            if schema == &Value::Bool(false) {
                errors.push(format!("{at}: nothing is allowed here"));
            }
            return;
        };
        for (keyword, arg) in schema {
            match keyword.as_str() {
                "$ref" => match arg.as_str().and_then(|r| resolve(self.doc, r)) {
                    Some(target) => self.check(target, value, at, errors),
                    None => errors.push(format!("{at}: unresolved $ref {arg}")),
                },
                "type" => {
                    let allowed: Vec<&str> = match arg {
                        Value::String(t) => vec![t.as_str()],
                        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                        _ => vec![],
                    };
                    if !allowed.iter().any(|t| has_type(value, t)) {
                        errors.push(format!(
                            "{at}: expected {}, got {} {value}",
                            allowed.join(" or "),
                            type_name(value)
                        ));
                    }
                }
                "enum" => {
                    if !arg.as_array().is_some_and(|a| a.contains(value)) {
                        errors.push(format!("{at}: {value} is not one of {arg}"));
                    }
                }
                "const" => {
                    if arg != value {
                        errors.push(format!("{at}: {value} is not {arg}"));
                    }
                }
                "required" => {
                    if let Some(object) = value.as_object() {
                        for name in arg.as_array().into_iter().flatten() {
                            let name = name.as_str().unwrap_or_default();
                            if !object.contains_key(name) {
                                errors.push(format!("{at}: required `{name}` is missing"));
                            }
                        }
                    }
                }
                "properties" => {
                    if let (Some(object), Some(properties)) = (value.as_object(), arg.as_object()) {
                        for (name, sub) in properties {
                            if let Some(v) = object.get(name) {
                                self.check(sub, v, &format!("{at}.{name}"), errors);
                            }
                        }
                    }
                }
                "additionalProperties" => {
                    if let Some(object) = value.as_object() {
                        let declared = schema.get("properties").and_then(Value::as_object);
                        for (name, v) in object {
                            if !declared.is_some_and(|d| d.contains_key(name)) {
                                self.check(arg, v, &format!("{at}.{name}"), errors);
                            }
                        }
                    }
                }
                "propertyNames" => {
                    for name in value.as_object().into_iter().flat_map(|o| o.keys()) {
                        let key = Value::String(name.clone());
                        self.check(arg, &key, &format!("{at} key {name:?}"), errors);
                    }
                }
                "items" => {
                    let skip = schema
                        .get("prefixItems")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    for (i, v) in value
                        .as_array()
                        .into_iter()
                        .flatten()
                        .enumerate()
                        .skip(skip)
                    {
                        self.check(arg, v, &format!("{at}[{i}]"), errors);
                    }
                }
                "prefixItems" => {
                    let (Some(items), Some(schemas)) = (value.as_array(), arg.as_array()) else {
                        continue;
                    };
                    for (i, (v, sub)) in items.iter().zip(schemas).enumerate() {
                        self.check(sub, v, &format!("{at}[{i}]"), errors);
                    }
                }
                "allOf" => {
                    for sub in arg.as_array().into_iter().flatten() {
                        self.check(sub, value, at, errors);
                    }
                }
                "oneOf" | "anyOf" => {
                    let branches: Vec<Vec<String>> = arg
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|sub| {
                            let mut e = Vec::new();
                            self.check(sub, value, at, &mut e);
                            e
                        })
                        .collect();
                    let passing = branches.iter().filter(|e| e.is_empty()).count();
                    let ok = if keyword == "oneOf" {
                        passing == 1
                    } else {
                        passing >= 1
                    };
                    if !ok {
                        errors.push(format!(
                            "{at}: {passing} branches of {keyword} match: {branches:?}"
                        ));
                    }
                }
                "minimum" | "maximum" => {
                    let (Some(v), Some(bound)) = (value.as_f64(), arg.as_f64()) else {
                        continue;
                    };
                    if (keyword == "minimum" && v < bound) || (keyword == "maximum" && v > bound) {
                        errors.push(format!("{at}: {v} is out of bounds ({keyword} {bound})"));
                    }
                }
                "minLength" | "maxLength" => {
                    let (Some(v), Some(bound)) = (value.as_str(), arg.as_u64()) else {
                        continue;
                    };
                    let len = v.chars().count() as u64;
                    if (keyword == "minLength" && len < bound)
                        || (keyword == "maxLength" && len > bound)
                    {
                        errors.push(format!(
                            "{at}: {value} has {len} characters ({keyword} {bound})"
                        ));
                    }
                }
                "pattern" => {
                    let Some(v) = value.as_str() else { continue };
                    match arg.as_str().map(regex::Regex::new) {
                        Some(Ok(re)) if re.is_match(v) => {}
                        Some(Ok(_)) => errors.push(format!("{at}: {value} does not match {arg}")),
                        _ => errors.push(format!("{at}: pattern {arg} is not a regex")),
                    }
                }
                k if ANNOTATIONS.contains(&k) => {}
                other => errors.push(format!("{at}: schema keyword `{other}` is not checked")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc() -> Value {
        json!({"components": {"schemas": {
            "Key": {
                "type": "object",
                "required": ["id", "status"],
                "properties": {
                    "id": {"type": "string", "pattern": "^k[0-9]$"},
                    "status": {"type": "string", "enum": ["active", "revoked"]},
                    "expires_at": {"type": ["string", "null"]},
                    "owner": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Owner"}]},
                },
            },
            "Owner": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}},
                "additionalProperties": false,
            },
            "Keys": {
                "type": "object",
                "required": ["keys"],
                "properties": {"keys": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}}},
            },
        }}})
    }

    fn check_keys(value: Value) -> Result<(), Vec<String>> {
        let doc = doc();
        check(&doc, &json!({"$ref": "#/components/schemas/Keys"}), &value)
    }

    #[test]
    fn a_matching_value_passes() {
        check_keys(json!({"keys": [
            {"id": "k1", "status": "active", "expires_at": null, "owner": {"name": "acme"}},
            {"id": "k2", "status": "revoked"},
        ]}))
        .unwrap();
    }

    #[test]
    fn each_kind_of_mismatch_is_named_with_its_place() {
        let cases = [
            (
                json!({"keys": [{"id": "k1"}]}),
                "$.keys[0]: required `status` is missing",
            ),
            (
                json!({"keys": [{"key_id": "k1", "status": "active"}]}),
                "required `id` is missing",
            ),
            (
                json!({"keys": [{"id": 7, "status": "active"}]}),
                "$.keys[0].id: expected string",
            ),
            (
                json!({"keys": [{"id": "k", "status": "gone"}]}),
                "is not one of",
            ),
            (
                json!({"keys": [{"id": "k", "status": "active", "owner": {"name": "a", "x": 1}}]}),
                "nothing is allowed",
            ),
            (
                json!({"keys": [{"id": "k", "status": "active", "owner": 3}]}),
                "0 branches of oneOf",
            ),
            (json!({"keys": {}}), "$.keys: expected array"),
            (
                json!({"keys": [{"id": "key_1", "status": "active"}]}),
                "does not match",
            ),
        ];
        for (value, expected) in cases {
            let errors = check_keys(value.clone()).expect_err(&value.to_string());
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{value}: {errors:?}"
            );
        }
    }

    #[test]
    fn an_unknown_constraint_is_reported_not_ignored() {
        let errors = check(&doc(), &json!({"multipleOf": 2}), &json!(3)).unwrap_err();
        assert!(
            errors[0].contains("`multipleOf` is not checked"),
            "{errors:?}"
        );
    }
}
