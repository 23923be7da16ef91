//! CustomResourceDefinitions: a stored CRD serves its resources (and is marked accepted
//! and established); a deleted one stops serving them and takes their objects along.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::{Event, Key, State, remove};
use crate::error::{ApiError, Cause};
use crate::meta;
use crate::resources;

/// Serves the resources a CRD defines and marks it accepted and established.
pub(super) fn register_crd(s: &mut State, crd: &mut Value) -> Result<(), ApiError> {
    let name = crd["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let defined = resources::from_crd(crd).map_err(|message| {
        let (field, message) = message.split_once(": ").unwrap_or(("spec", &message));
        ApiError::invalid(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            &name,
            vec![Cause {
                reason: "FieldValueInvalid",
                field: field.into(),
                message: message.into(),
            }],
        )
    })?;
    let Some(first) = defined.first() else {
        return Ok(());
    };
    let key = first.key();
    s.resources.retain(|r| r.key() != key);
    s.resources.extend(defined);
    let now = meta::now();
    let condition = |type_: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": "True", "lastTransitionTime": now,
               "reason": reason, "message": message})
    };
    crd["status"] = json!({
        "acceptedNames": crd["spec"]["names"],
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": crd["spec"]["versions"].as_array().map(|v| v.iter()
            .filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>()),
    });
    Ok(())
}

/// Stops serving a deleted CRD's resources and drops their objects.
pub(super) fn unregister_crd(s: &mut State, events: &broadcast::Sender<Arc<Event>>, crd: &Value) {
    let Ok(defined) = resources::from_crd(crd) else {
        return;
    };
    let Some(first) = defined.first() else { return };
    let key = first.key();
    let objects: Vec<Key> = s
        .objects
        .keys()
        .filter(|(r, _, _)| *r == key)
        .cloned()
        .collect();
    for k in objects {
        remove(s, events, first, k, None);
    }
    s.resources.retain(|r| r.key() != key);
}
