//! Server-side apply (`application/apply-patch+yaml`): the applied configuration is
//! merged into the object; its manager owns exactly the applied fields; a field another
//! manager owns with a different value is a conflict unless `force`; fields the manager
//! applied before and dropped now are removed (unless someone else owns them).
//!
//! Lists are atomic (replaced whole), as for lists without `x-kubernetes-list-type: map`.

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::managed::{self, FieldSet};
use crate::resources::Resource;
use crate::store::{Part, Store};

/// Merges `patch` into `doc`: maps key by key, anything else replaced.
fn merge(doc: &mut Value, patch: &Value) {
    match (doc, patch) {
        (Value::Object(d), Value::Object(p)) => {
            for (k, v) in p {
                match d.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (doc, patch) => *doc = patch.clone(),
    }
}

fn dotted(path: &[String]) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}

/// The 409 of an apply whose fields other managers own with other values.
fn conflict(res: &Resource, name: &str, conflicts: &[(String, String)]) -> ApiError {
    let n = conflicts.len();
    let lines: Vec<String> = conflicts
        .iter()
        .map(|(manager, field)| {
            format!(
                "conflict with \"{manager}\" using {}: {field}",
                res.api_version()
            )
        })
        .collect();
    let mut e = ApiError::conflict(&res.group, &res.plural, name, "");
    e.message = format!(
        "Apply failed with {n} conflict{}: {}",
        if n == 1 { "" } else { "s" },
        lines.join("\n")
    );
    e.details["causes"] = json!(
        conflicts
            .iter()
            .map(|(manager, field)| json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{manager}\" using {}", res.api_version()),
                "field": field,
            }))
            .collect::<Vec<_>>()
    );
    e
}

/// Applies `body` (a JSON or YAML object) as `manager`. Returns the HTTP code (201 when
/// it created the object) and the object.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    store: &Store,
    res: &Resource,
    namespace: &str,
    name: &str,
    part: Part,
    manager: &str,
    force: bool,
    body: &[u8],
) -> Result<(u16, Value), ApiError> {
    let mut applied: Value = serde_json::from_slice(body)
        .or_else(|_| serde_yaml_ng::from_slice(body))
        .map_err(|e| ApiError::bad_request(format!("invalid apply configuration: {e}")))?;
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "the apply configuration is not an object",
        ));
    }
    match applied["metadata"]["name"].as_str() {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => {}
    }
    let mut fields = managed::leaves(&applied);
    if part == Part::Status {
        fields.retain(|p| p.first().is_some_and(|k| k == "status"));
    }
    if store.get(res, namespace, name).is_err() && part == Part::Main {
        applied["metadata"]["name"] = json!(name);
        match store.create(
            res,
            namespace,
            applied.clone(),
            manager,
            Some(fields.clone()),
        ) {
            Ok(created) => return Ok((201, created)),
            Err(e) if e.code == 409 => {} // created meanwhile: apply to it
            Err(e) => return Err(e),
        }
    }
    let subresource = if part == Part::Status { "status" } else { "" };
    let updated = store.update(
        res,
        namespace,
        name,
        part,
        manager,
        Some((fields.clone(), force)),
        |current| {
            let entries = managed::entries(current);
            let mut conflicts = Vec::new();
            for path in &fields {
                if managed::get(current, path) == managed::get(&applied, path) {
                    continue;
                }
                for e in entries.iter().filter(|e| {
                    e.manager != manager && e.subresource == subresource && e.fields.contains(path)
                }) {
                    conflicts.push((e.manager.clone(), dotted(path)));
                }
            }
            if !conflicts.is_empty() && !force {
                return Err(conflict(res, name, &conflicts));
            }
            let mut next = current.clone();
            let before: FieldSet = entries
                .iter()
                .find(|e| {
                    e.manager == manager && e.operation == "Apply" && e.subresource == subresource
                })
                .map(|e| e.fields.clone())
                .unwrap_or_default();
            for dropped in before.difference(&fields) {
                let shared = entries
                    .iter()
                    .any(|e| e.manager != manager && e.fields.contains(dropped));
                if !shared {
                    managed::remove(&mut next, dropped);
                }
            }
            let mut applied = applied.clone();
            if let Some(meta) = applied["metadata"].as_object_mut() {
                meta.remove("resourceVersion");
                meta.remove("managedFields");
            }
            merge(&mut next, &applied);
            Ok(next)
        },
    )?;
    Ok((200, updated))
}
