//! Server-side dry run (`dryRun=All`): a write runs against a scratch copy of the store
//! (`Store::scratch`), so admission, defaulting and validation happen as for a real
//! write, and the answer is what would be stored, while the real store, its watches and
//! its resourceVersion stay untouched.

use std::collections::HashMap;

use http::Method;
use serde_json::Value;

use crate::error::{ApiError, Cause};

/// Whether the request is a dry run, asked in the query or (deletes: `kubectl delete`
/// sends it so) in the `DeleteOptions` body; a value other than `All` is rejected as the
/// API server rejects it (an invalid `…Options` object).
pub fn requested(
    method: &Method,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<bool, ApiError> {
    let in_body = (*method == Method::DELETE && !body.is_empty())
        .then(|| serde_json::from_slice::<Value>(body).ok())
        .flatten()
        .and_then(|options| {
            options["dryRun"]
                .as_array()?
                .first()?
                .as_str()
                .map(str::to_owned)
        });
    let Some(value) = q
        .get("dryRun")
        .filter(|v| !v.is_empty())
        .cloned()
        .or(in_body)
    else {
        return Ok(false);
    };
    if value == "All" {
        return Ok(true);
    }
    let options = match *method {
        Method::POST => "CreateOptions",
        Method::PUT => "UpdateOptions",
        Method::PATCH => "PatchOptions",
        Method::DELETE => "DeleteOptions",
        // Reads ignore the parameter, as on the API server.
        _ => return Ok(false),
    };
    Err(ApiError::invalid(
        "meta.k8s.io",
        options,
        "",
        vec![Cause {
            reason: "FieldValueNotSupported",
            field: "dryRun".into(),
            message: format!("Unsupported value: []string{{{value:?}}}: supported values: \"All\""),
        }],
    ))
}

/// The answer of a dry-run write: nothing was stored, so a new object has no
/// resourceVersion yet and a changed one still has its stored one (`stored_rv`).
pub fn answer(mut object: Value, stored_rv: Option<String>) -> Value {
    let Some(meta) = object["metadata"].as_object_mut() else {
        return object;
    };
    match stored_rv {
        Some(rv) => {
            meta.insert("resourceVersion".into(), Value::String(rv));
        }
        None => {
            meta.remove("resourceVersion");
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(v: &str) -> HashMap<String, String> {
        HashMap::from([("dryRun".to_owned(), v.to_owned())])
    }

    #[test]
    fn only_all_is_a_dry_run_and_other_values_are_invalid() {
        assert!(requested(&Method::POST, &q("All"), b"").unwrap());
        assert!(!requested(&Method::POST, &HashMap::new(), b"").unwrap());
        let e = requested(&Method::PATCH, &q("Some"), b"").unwrap_err();
        assert_eq!(e.code, 422);
        let body = br#"{"kind":"DeleteOptions","dryRun":["All"]}"#;
        assert!(requested(&Method::DELETE, &HashMap::new(), body).unwrap());
        assert!(
            e.status()["message"]
                .as_str()
                .unwrap()
                .starts_with("PatchOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value")
        );
    }

    #[test]
    fn answers_keep_the_stored_resource_version_or_none() {
        let o = json!({"metadata": {"name": "a", "resourceVersion": "9"}});
        assert_eq!(
            answer(o.clone(), Some("4".into()))["metadata"]["resourceVersion"],
            "4"
        );
        assert!(answer(o, None)["metadata"].get("resourceVersion").is_none());
    }
}
