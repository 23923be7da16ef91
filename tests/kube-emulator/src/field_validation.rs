//! Server-side field validation (`fieldValidation=Strict|Warn|Ignore` on create, update
//! and patch), as the API server does it for custom resources: fields the CRD's schema
//! does not declare are an error (Strict), a `Warning` header (Warn, the default when
//! the parameter is absent) or silently pruned (Ignore).
//!
//! `kubectl apply` relies on this: the OpenAPI documents (`openapi`) advertise the
//! parameter, so kubectl sends `fieldValidation=Strict` instead of validating locally.
//! Built-in kinds are stored without a schema here, so their unknown fields pass.

use std::collections::HashMap;

use crate::error::ApiError;
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
pub enum Write {
    /// POST or PUT: the body is the object.
    Object,
    /// A JSON or merge patch: the checked object is the patched one.
    Patch,
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

    /// Checks `object` (as written, before pruning): the warnings to send, or the error
    /// of a strict request.
    pub fn check(
        self,
        res: &Resource,
        object: &serde_json::Value,
        write: Write,
    ) -> Result<Vec<String>, ApiError> {
        if self == Directive::Ignore {
            return Ok(Vec::new());
        }
        let unknown: Vec<String> = schema::unknown_fields(res, object)
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        if unknown.is_empty() || self == Directive::Warn {
            return Ok(unknown);
        }
        let decoding = format!("strict decoding error: {}", unknown.join(", "));
        Err(ApiError::bad_request(match write {
            Write::Object => format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: {decoding}",
                kind = res.kind,
                version = res.version
            ),
            Write::Patch => decoding,
        }))
    }
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
        let warnings = Directive::Warn.check(&res, &object, Write::Object).unwrap();
        assert_eq!(
            warnings,
            ["unknown field \"spec.parts[1].x\"", "unknown field \"top\""]
        );
        let err = Directive::Strict
            .check(&res, &object, Write::Patch)
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
                .check(&res, &object, Write::Object)
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
}
