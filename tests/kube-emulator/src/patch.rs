//! The PATCH content types: JSON Patch (RFC 6902, `test` included), JSON merge patch
//! (RFC 7386), and strategic merge patch for built-in kinds (lists of known kinds merged
//! by their keys). Server-side apply is in `apply`.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The patch formats a PATCH request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(content_type: &str) -> Result<PatchKind, ApiError> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchKind::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Applies a JSON Patch or merge patch to `doc`.
pub fn json_or_merge(kind: PatchKind, doc: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let mut doc = doc.clone();
    match kind {
        PatchKind::Json => {
            let mut patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON Patch: {e}")))?;
            // The API server's JSON Patch library lets `test` of a missing path against
            // null pass (clients rely on it, e.g. kube-rs's finalizer helper).
            patch.0.retain(|op| match op {
                json_patch::PatchOperation::Test(t) => {
                    !(t.value.is_null() && doc.pointer(t.path.as_str()).is_none())
                }
                _ => true,
            });
            json_patch::patch(&mut doc, &patch).map_err(|e| {
                // A failed `test` or a missing path: the server answers 422.
                ApiError::invalid_patch(e.to_string())
            })?;
        }
        PatchKind::Merge => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid merge patch: {e}")))?;
            json_patch::merge(&mut doc, &patch);
        }
        PatchKind::Strategic => {
            let patch: Value = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("invalid strategic merge patch: {e}"))
            })?;
            strategic(&mut doc, &patch, "");
        }
        PatchKind::Apply => unreachable!("server-side apply is handled by `apply`"),
    }
    Ok(doc)
}

/// The merge key of the lists a strategic merge patch merges item by item, by the
/// list's field name (the core types' `patchMergeKey`s).
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "volumeMounts"
        | "imagePullSecrets" => "name",
        "ports" => "containerPort",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "tolerations" => "key",
        _ => return None,
    })
}

/// Merges `patch` into `doc` the strategic way: maps recursively, `null` deletes, lists
/// with a merge key item by item (an item with `"$patch": "delete"` is removed), other
/// lists replaced.
fn strategic(doc: &mut Value, patch: &Value, field: &str) {
    match (doc, patch) {
        (Value::Object(d), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    d.remove(k);
                    continue;
                }
                match d.get_mut(k) {
                    Some(existing) => strategic(existing, v, k),
                    None => {
                        let mut fresh = Value::Object(Map::new());
                        if !v.is_object() {
                            fresh = v.clone();
                        } else {
                            strategic(&mut fresh, v, k);
                        }
                        d.insert(k.clone(), fresh);
                    }
                }
            }
        }
        (Value::Array(d), Value::Array(p)) if merge_key(field).is_some() => {
            let key = merge_key(field).expect("checked");
            for item in p {
                let id = &item[key];
                let at = d.iter().position(|x| &x[key] == id);
                let delete = item["$patch"] == "delete";
                match (at, delete) {
                    (Some(i), true) => {
                        d.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => strategic(&mut d[i], item, ""),
                    (None, false) => d.push(item.clone()),
                }
            }
        }
        (doc, patch) => *doc = patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_with_test_and_merge_patch() {
        let doc = json!({"spec": {"a": 1, "b": [1, 2]}});
        let ok = br#"[{"op":"test","path":"/spec/a","value":1},{"op":"replace","path":"/spec/a","value":2}]"#;
        assert_eq!(
            json_or_merge(PatchKind::Json, &doc, ok).unwrap()["spec"]["a"],
            2
        );
        let absent = br#"[{"op":"test","path":"/metadata/finalizers","value":null},
                          {"op":"add","path":"/metadata","value":{"finalizers":["f"]}}]"#;
        assert_eq!(
            json_or_merge(PatchKind::Json, &doc, absent).unwrap()["metadata"]["finalizers"][0],
            "f"
        );
        let failed = br#"[{"op":"test","path":"/spec/a","value":9}]"#;
        assert_eq!(
            json_or_merge(PatchKind::Json, &doc, failed)
                .unwrap_err()
                .code,
            422
        );
        let merged =
            json_or_merge(PatchKind::Merge, &doc, br#"{"spec":{"a":null,"b":[3]}}"#).unwrap();
        assert_eq!(merged, json!({"spec": {"b": [3]}}));
    }

    #[test]
    fn strategic_merge_merges_lists_by_key() {
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]},
                         "status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        let patch = br#"{"spec":{"containers":[{"name":"b","image":"z"},{"name":"a","$patch":"delete"}]},
                        "status":{"conditions":[{"type":"Ready","status":"True"},{"type":"Scheduled","status":"True"}]}}"#;
        let out = json_or_merge(PatchKind::Strategic, &pod, patch).unwrap();
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "b", "image": "z"}])
        );
        assert_eq!(out["status"]["conditions"][0]["status"], "True");
        assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 2);
    }
}
