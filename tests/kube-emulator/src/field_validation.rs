//! Server-side field validation (`fieldValidation=Strict|Warn|Ignore` on create, update
//! and patch), as the API server does it: fields the kind's schema does not declare,
//! and fields given twice in a JSON body, are an error (Strict), a `Warning` header
//! (Warn, the default when the parameter is absent) or ignored (Ignore; a custom
//! resource's unknown fields are pruned either way).
//!
//! `kubectl apply` relies on this: the OpenAPI documents (`openapi`) advertise the
//! parameter, so kubectl sends `fieldValidation=Strict` instead of validating locally.
//! Built-in kinds are checked against their published definitions (from k8s-openapi),
//! and under `Warn` and `Ignore` their unknown fields are dropped, as the server's typed
//! decoding drops them.
//!
//! Server-side apply is stricter whatever the directive: the server turns the applied
//! configuration into a typed object first, and an undeclared field fails that
//! (`failed to create typed patch object (…): .spec.bogus: field not declared in
//! schema`). List items are named by index here (the server names items of keyed lists
//! by their key, `[name="c"]`).

use std::collections::HashMap;

use crate::duplicates;
use crate::error::ApiError;
use crate::openapi::builtin;
use crate::resources::Resource;
use crate::schema;

/// What to do with unknown fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    Strict,
    Warn,
    Ignore,
}

/// The write a body arrives with (the server words decoding errors differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write<'a> {
    /// POST or PUT: the body is the object.
    Object(&'a [u8]),
    /// A patch: the checked object is the patched one; the body is searched for
    /// duplicate fields when it is a merge or strategic merge patch (empty otherwise).
    Patch(&'a [u8]),
}

impl Directive {
    /// The `fieldValidation` query parameter (absent: `Warn`, the server's default).
    pub fn from_query(q: &HashMap<String, String>) -> Result<Directive, ApiError> {
        match q.get("fieldValidation").map(String::as_str) {
            None | Some("") | Some("Warn") => Ok(Directive::Warn),
            Some("Strict") => Ok(Directive::Strict),
            Some("Ignore") => Ok(Directive::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\": {other:?}"
            ))),
        }
    }

    /// Checks `object` as written and the JSON it came in: the error of a strict
    /// request, or the warnings to send. Otherwise a built-in kind's unknown fields are
    /// dropped here, as decoding into the server's types drops them (a custom resource's
    /// are pruned on admission). Duplicate fields come first, then unknown ones.
    pub fn admit(
        self,
        res: &Resource,
        object: &mut serde_json::Value,
        write: Write,
    ) -> Result<Vec<String>, ApiError> {
        let (Write::Object(raw) | Write::Patch(raw)) = write;
        let duplicates = if self == Directive::Ignore {
            Vec::new()
        } else {
            duplicates::in_json(raw)
        };
        let problems: Vec<String> = duplicates
            .iter()
            .map(|f| format!("duplicate field \"{f}\""))
            .chain(
                undeclared(res, object)
                    .iter()
                    .map(|f| format!("unknown field \"{f}\"")),
            )
            .collect();
        match self {
            Directive::Strict if !problems.is_empty() => {
                let decoding = format!("strict decoding error: {}", problems.join(", "));
                Err(ApiError::bad_request(match write {
                    Write::Object(_) => format!(
                        "{kind} in version \"{version}\" cannot be handled as a {kind}: {decoding}",
                        kind = res.kind,
                        version = res.version
                    ),
                    Write::Patch(_) => decoding,
                }))
            }
            Directive::Ignore => {
                drop_builtin_unknown(res, object);
                Ok(Vec::new())
            }
            _ => {
                drop_builtin_unknown(res, object);
                Ok(problems)
            }
        }
    }
}

/// The fields of `object` its kind's schema does not declare.
fn undeclared(res: &Resource, object: &serde_json::Value) -> Vec<String> {
    if let Some(crd_schema) = &res.schema {
        return schema::unknown_fields(crd_schema, &serde_json::Map::new(), object);
    }
    match builtin::kind(&res.group, &res.version, &res.kind) {
        Some(defs) => schema::unknown_fields(&defs.schemas[&defs.name], &defs.schemas, object),
        None => Vec::new(),
    }
}

/// Drops the fields a built-in kind's definition does not declare.
fn drop_builtin_unknown(res: &Resource, object: &mut serde_json::Value) {
    if res.schema.is_none()
        && let Some(defs) = builtin::kind(&res.group, &res.version, &res.kind)
    {
        schema::remove_unknown(&defs.schemas[&defs.name], &defs.schemas, object);
    }
}

/// Rejects a server-side apply configuration with fields its kind does not declare.
pub fn check_apply(
    res: &Resource,
    namespace: &str,
    name: &str,
    body: &[u8],
) -> Result<(), ApiError> {
    let Ok(applied) = serde_json::from_slice::<serde_json::Value>(body)
        .or_else(|_| serde_yaml_ng::from_slice(body))
    else {
        // Not a configuration at all: server-side apply reports that itself.
        return Ok(());
    };
    let unknown = undeclared(res, &applied);
    let problems: Vec<String> = unknown
        .iter()
        .map(|f| format!(".{f}: field not declared in schema"))
        .collect();
    let listed = match problems.as_slice() {
        [] => return Ok(()),
        [one] => one.clone(),
        many => format!("errors:\n  {}", many.join("\n  ")),
    };
    Err(ApiError::unclassified(format!(
        "failed to create typed patch object ({namespace}/{name}; {}, Kind={}): {listed}",
        if res.group.is_empty() {
            format!("/{}", res.version)
        } else {
            res.api_version()
        },
        res.kind
    )))
}

/// Adds the API server's `Warning` headers (code 299, the text quoted) to a response.
pub fn warn(
    mut response: axum::response::Response,
    warnings: &[String],
) -> axum::response::Response {
    for w in warnings {
        let quoted = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(v) = http::HeaderValue::from_str(&quoted) {
            response.headers_mut().append("Warning", v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn widgets() -> Resource {
        let crd = json!({
            "metadata": {"name": "widgets.example.dev"},
            "spec": {
                "group": "example.dev", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {"type": "object", "properties": {
                        "parts": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    }}},
                }}}],
            },
        });
        crate::resources::from_crd(&crd).unwrap().remove(0)
    }

    #[test]
    fn unknown_fields_are_named_by_path_and_handled_per_directive() {
        let object = json!({
            "apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "w"},
            "top": 1,
            "spec": {"parts": [{"n": 1}, {"n": 2, "x": 3}], "labels": {"any": "v"}, "free": {"y": 1}},
        });
        let res = widgets();
        let warnings = Directive::Warn
            .admit(&res, &mut object.clone(), Write::Object(b""))
            .unwrap();
        assert_eq!(
            warnings,
            ["unknown field \"spec.parts[1].x\"", "unknown field \"top\""]
        );
        let err = Directive::Strict
            .admit(&res, &mut object.clone(), Write::Patch(b""))
            .unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (
                400,
                "strict decoding error: unknown field \"spec.parts[1].x\", unknown field \"top\""
            )
        );
        assert!(
            Directive::Ignore
                .admit(&res, &mut object.clone(), Write::Object(b""))
                .unwrap()
                .is_empty()
        );
        let q = |v: &str| HashMap::from([("fieldValidation".to_owned(), v.to_owned())]);
        assert_eq!(
            Directive::from_query(&HashMap::new()).unwrap(),
            Directive::Warn
        );
        assert_eq!(
            Directive::from_query(&q("Strict")).unwrap(),
            Directive::Strict
        );
        assert!(Directive::from_query(&q("Loose")).is_err());
    }

    #[test]
    fn built_in_kinds_are_checked_through_their_definitions_references() {
        let pods = crate::resources::builtins()
            .into_iter()
            .find(|r| r.kind == "Pod")
            .unwrap();
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "b"}, "odd": 1},
            "spec": {"containers": [{"name": "c", "image": "x",
                "resources": {"limits": {"cpu": "1"}}, "ports": [{"containerPort": 80, "bogus": 2}]}]},
        });
        assert_eq!(
            Directive::Warn
                .admit(&pods, &mut pod.clone(), Write::Object(b""))
                .unwrap(),
            [
                "unknown field \"metadata.odd\"",
                "unknown field \"spec.containers[0].ports[0].bogus\""
            ]
        );
    }
}
