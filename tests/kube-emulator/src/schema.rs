//! Admission of custom resources against their CRD's structural schema, in the API
//! server's order: prune unknown fields, apply defaults, validate (types, required,
//! enums, bounds, lengths, patterns, item counts), then the CEL rules of
//! `x-kubernetes-validations` (transition rules see `oldSelf` on updates). Failures
//! become one 422 Invalid naming every field, worded like the API server.

use serde_json::{Map, Value};

use crate::error::{ApiError, Cause};
use crate::managed;
use crate::resources::Resource;

/// Checks and completes `object` (with `old`, its previous state, on updates).
pub fn admit(res: &Resource, object: Value, old: Option<&Value>) -> Result<Value, ApiError> {
    let Some(schema) = &res.schema else {
        return Ok(object);
    };
    let mut object = object;
    // Pruning: fields the schema does not declare go.
    remove_unknown(schema, &Map::new(), &mut object);
    let object = kube_cel::apply_defaults(schema, &object);
    let mut causes = Vec::new();
    check(schema, &object, "", &mut causes);
    if causes.is_empty()
        && let Err(errors) = kube_cel::Validator::new().validate(schema, &object, old)
    {
        for e in errors.iter() {
            let field = if e.field_path.is_empty() {
                "<root>".to_owned()
            } else {
                e.field_path.clone()
            };
            let path: Vec<&str> = e.field_path.split('.').filter(|k| !k.is_empty()).collect();
            let shown = kind_name(managed::get(&object, &path));
            causes.push(Cause {
                reason: "FieldValueInvalid",
                field,
                message: format!("Invalid value: \"{shown}\": {}", e.message),
            });
        }
    }
    if causes.is_empty() {
        return Ok(object);
    }
    let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
    Err(ApiError::invalid(&res.group, &res.kind, &name, causes))
}

/// The schema type name of a value, as the server's messages give it.
fn kind_name(v: Option<&Value>) -> &'static str {
    match v {
        Some(Value::Object(_)) => "object",
        Some(Value::Array(_)) => "array",
        Some(Value::String(_)) => "string",
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => "integer",
        Some(Value::Number(_)) => "number",
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Null) | None => "null",
    }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == true
}

/// Whether an object under `schema` loses the fields it does not declare (it declares
/// properties and neither preserves unknown fields nor allows additional ones).
fn drops_unknown(schema: &Value) -> bool {
    let additional = &schema["additionalProperties"];
    schema["properties"].is_object()
        && !preserves_unknown(schema)
        && !additional.is_object()
        && additional != &Value::Bool(true)
}

/// Whether `schema` declares field `k` (at the root, `apiVersion`, `kind` and `metadata`
/// always are).
fn declares(schema: &Value, k: &str, root: bool) -> bool {
    schema["properties"].get(k).is_some()
        || (root && matches!(k, "apiVersion" | "kind" | "metadata"))
}

/// The schema of `value`'s field `k`, if it has one.
fn field_schema<'a>(schema: &'a Value, k: &str) -> Option<&'a Value> {
    let additional = &schema["additionalProperties"];
    schema["properties"]
        .get(k)
        .or_else(|| additional.is_object().then_some(additional))
}

/// The paths of the fields `schema` does not declare in `object` (`spec.bogus`,
/// `spec.items[0].x`), as the API server names them in strict field validation: for a
/// CRD's schema, the fields pruning would drop. References (`$ref`, or `allOf` with one
/// `$ref`, as in published OpenAPI definitions) are looked up in `definitions`.
pub fn unknown_fields(
    schema: &Value,
    definitions: &Map<String, Value>,
    object: &Value,
) -> Vec<String> {
    remove_unknown(schema, definitions, &mut object.clone())
}

/// Removes the fields [`unknown_fields`] names from `object`, returning their paths.
pub fn remove_unknown(
    schema: &Value,
    definitions: &Map<String, Value>,
    object: &mut Value,
) -> Vec<String> {
    let mut out = Vec::new();
    walk_unknown(schema, definitions, object, "", true, &mut out);
    out
}

/// The schema a reference points to (`schema` itself when it is not one).
fn resolve<'a>(schema: &'a Value, definitions: &'a Map<String, Value>) -> &'a Value {
    let reference =
        schema["$ref"]
            .as_str()
            .or_else(|| match schema["allOf"].as_array().map(Vec::as_slice) {
                Some([only]) => only["$ref"].as_str(),
                _ => None,
            });
    match reference
        .and_then(|r| r.rsplit('/').next())
        .and_then(|name| definitions.get(name))
    {
        Some(target) => resolve(target, definitions),
        None => schema,
    }
}

fn walk_unknown(
    schema: &Value,
    definitions: &Map<String, Value>,
    value: &mut Value,
    path: &str,
    root: bool,
    out: &mut Vec<String>,
) {
    let schema = resolve(schema, definitions);
    match value {
        Value::Object(map) => {
            let drops = drops_unknown(schema);
            map.retain(|k, v| {
                let here = join(path, k);
                if drops && !declares(schema, k, root) {
                    out.push(here);
                    return false;
                }
                if let Some(sub) = field_schema(schema, k) {
                    walk_unknown(sub, definitions, v, &here, false, out);
                }
                true
            });
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let here = format!("{path}[{i}]");
                walk_unknown(&schema["items"], definitions, item, &here, false, out);
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

fn invalid(causes: &mut Vec<Cause>, path: &str, value: &Value, why: String) {
    causes.push(Cause {
        reason: "FieldValueInvalid",
        field: path.to_owned(),
        message: format!("Invalid value: {}: {why}", shown(value)),
    });
}

/// Structural validation of `value` at `path`.
fn check(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == true;
    if let Some(want) = schema["type"].as_str() {
        let got = kind_name(Some(value));
        let fits = got == want
            || (want == "number" && got == "integer")
            || (int_or_string && matches!(got, "integer" | "string"));
        if !fits {
            let at = if path.is_empty() { "body" } else { path };
            invalid(
                causes,
                path,
                &Value::String(got.to_owned()),
                format!("{at} in body must be of type {want}: \"{got}\""),
            );
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(shown).collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: path.to_owned(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                shown(value),
                list.join(", ")
            ),
        });
    }
    match value {
        Value::Object(map) => check_object(schema, map, path, causes),
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(min) = schema["minItems"].as_u64().filter(|m| n < *m) {
                invalid(
                    causes,
                    path,
                    value,
                    format!("{path} in body should have at least {min} items"),
                );
            }
            if let Some(max) = schema["maxItems"].as_u64().filter(|m| n > *m) {
                causes.push(Cause {
                    reason: "FieldValueTooMany",
                    field: path.to_owned(),
                    message: format!("Too many: {n}: must have at most {max} items"),
                });
            }
            for (i, item) in items.iter().enumerate() {
                check(&schema["items"], item, &format!("{path}[{i}]"), causes);
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema["minLength"].as_u64().filter(|m| len < *m) {
                invalid(
                    causes,
                    path,
                    value,
                    format!("{path} in body should be at least {min} chars long"),
                );
            }
            if let Some(max) = schema["maxLength"].as_u64().filter(|m| len > *m) {
                causes.push(Cause {
                    reason: "FieldValueTooLong",
                    field: path.to_owned(),
                    message: format!("Too long: may not be more than {max} bytes"),
                });
            }
            if let Some(p) = schema["pattern"].as_str()
                && regex::Regex::new(p).is_ok_and(|re| !re.is_match(s))
            {
                invalid(
                    causes,
                    path,
                    value,
                    format!("{path} in body should match '{p}'"),
                );
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            if let Some(min) = schema["minimum"].as_f64().filter(|m| x < *m) {
                invalid(
                    causes,
                    path,
                    value,
                    format!("{path} in body should be greater than or equal to {min}"),
                );
            }
            if let Some(max) = schema["maximum"].as_f64().filter(|m| x > *m) {
                invalid(
                    causes,
                    path,
                    value,
                    format!("{path} in body should be less than or equal to {max}"),
                );
            }
        }
        _ => {}
    }
}

fn check_object(schema: &Value, map: &Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    for req in schema["required"].as_array().into_iter().flatten() {
        if let Some(k) = req.as_str()
            && !map.contains_key(k)
        {
            causes.push(Cause {
                reason: "FieldValueRequired",
                field: join(path, k),
                message: "Required value".into(),
            });
        }
    }
    let props = schema["properties"].as_object();
    for (k, v) in map {
        // metadata is the server's, checked elsewhere.
        if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match props.and_then(|p| p.get(k)) {
            Some(sub) => check(sub, v, &join(path, k), causes),
            None if schema["additionalProperties"].is_object() => {
                check(&schema["additionalProperties"], v, &join(path, k), causes)
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn widget() -> Resource {
        let mut r = crate::resources::builtins().remove(0);
        r.group = "example.dev".into();
        r.kind = "Widget".into();
        r.schema = Some(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1},
                        "mode": {"type": "string", "enum": ["fast", "safe"], "default": "safe"},
                        "name": {"type": "string", "pattern": "^[a-z]+$"},
                    },
                    "x-kubernetes-validations": [
                        {"rule": "self.size <= 10", "message": "size must be at most 10"},
                        {"rule": "!has(oldSelf.mode) || self.mode == oldSelf.mode", "message": "mode is immutable"},
                    ],
                },
            },
        }));
        r
    }

    fn fields(e: &ApiError) -> Vec<String> {
        e.details["causes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c["field"].as_str().unwrap(),
                    c["message"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn pruning_defaulting_and_structural_errors() {
        let w = widget();
        let ok = admit(
            &w,
            json!({"metadata": {"name": "w"}, "spec": {"size": 2, "junk": 1}, "extra": true}),
            None,
        )
        .unwrap();
        assert_eq!(
            ok["spec"],
            json!({"size": 2, "mode": "safe"}),
            "pruned and defaulted"
        );
        assert!(ok.get("extra").is_none() && ok["metadata"]["name"] == "w");

        let e = admit(&w, json!({"metadata": {"name": "w"}, "spec": {"size": "big", "mode": "slow", "name": "A1"}}), None).unwrap_err();
        assert_eq!(e.code, 422);
        let f = fields(&e);
        assert!(
            f.iter().any(|c| c.starts_with(
                "spec.size Invalid value: \"string\": spec.size in body must be of type integer"
            )),
            "{f:?}"
        );
        assert!(
            f.iter()
                .any(|c| c.starts_with("spec.mode Unsupported value: \"slow\"")),
            "{f:?}"
        );
        assert!(
            f.iter()
                .any(|c| c.starts_with("spec.name Invalid value: \"A1\"")),
            "{f:?}"
        );
        let e = admit(&w, json!({"spec": {}}), None).unwrap_err();
        assert_eq!(fields(&e), ["spec.size Required value"]);
        let e = admit(&w, json!({"spec": {"size": 0}}), None).unwrap_err();
        assert!(fields(&e)[0].contains("greater than or equal to 1"));
    }

    #[test]
    fn cel_rules_and_transition_rules() {
        let w = widget();
        let e = admit(&w, json!({"spec": {"size": 11}}), None).unwrap_err();
        assert!(
            e.message.contains("size must be at most 10"),
            "{}",
            e.message
        );
        let old = json!({"spec": {"size": 1, "mode": "fast"}});
        let e = admit(&w, json!({"spec": {"size": 1, "mode": "safe"}}), Some(&old)).unwrap_err();
        assert!(e.message.contains("mode is immutable"), "{}", e.message);
        assert!(admit(&w, json!({"spec": {"size": 3, "mode": "fast"}}), Some(&old)).is_ok());
    }
}
