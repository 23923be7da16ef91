//! Deletion: finalizers and deletionTimestamp, ownerReference garbage collection
//! (background, foreground, orphan) and emptying a deleted namespace — what the API
//! server and its garbage collector do, done at once under the store's lock.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::{Event, EventType, Key, Propagation, State, commit, key, remove};
use crate::error::ApiError;
use crate::meta;
use crate::resources::Resource;

pub(super) fn delete_locked(
    s: &mut State,
    events: &broadcast::Sender<Arc<Event>>,
    res: &Resource,
    namespace: &str,
    name: &str,
    propagation: Propagation,
    precondition_uid: Option<&str>,
) -> Result<Value, ApiError> {
    let k = key(res, namespace, name);
    let Some(mut object) = s.objects.get(&k).cloned() else {
        return Err(ApiError::not_found(&res.group, &res.plural, name));
    };
    if let Some(uid) = precondition_uid
        && object["metadata"]["uid"].as_str() != Some(uid)
    {
        return Err(ApiError::conflict(
            &res.group,
            &res.plural,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                object["metadata"]["uid"].as_str().unwrap_or("")
            ),
        ));
    }
    if propagation == Propagation::Orphan {
        orphan_dependents(s, events, object["metadata"]["uid"].as_str().unwrap_or(""));
    }
    let mut finalizers: Vec<Value> = object["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if propagation == Propagation::Foreground
        && has_dependents(s, object["metadata"]["uid"].as_str().unwrap_or(""))
        && !finalizers.contains(&json!("foregroundDeletion"))
    {
        finalizers.push(json!("foregroundDeletion"));
    }
    if finalizers.is_empty() {
        return Ok(res.serve(&remove(s, events, res, k, None)));
    }
    if object["metadata"]["deletionTimestamp"].is_null() {
        object["metadata"]["deletionTimestamp"] = json!(meta::now());
        object["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        object["metadata"]["finalizers"] = json!(finalizers);
        let stored = commit(s, events, res, k, object, EventType::Modified);
        if finalizers.contains(&json!("foregroundDeletion")) {
            delete_dependents(
                s,
                events,
                stored["metadata"]["uid"].as_str().unwrap_or(""),
                Propagation::Foreground,
            );
            finish_foreground(s, events);
        }
        return Ok(res.serve(&stored));
    }
    Ok(res.serve(&object))
}

fn owned_by(object: &Value, uid: &str) -> bool {
    !uid.is_empty()
        && object["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
}

fn has_dependents(s: &State, uid: &str) -> bool {
    s.objects.values().any(|o| owned_by(o, uid))
}

/// The keys of the objects that name `uid` as an owner.
fn dependents_of(s: &State, uid: &str) -> Vec<Key> {
    s.objects
        .iter()
        .filter(|(_, o)| owned_by(o, uid))
        .map(|(k, _)| k.clone())
        .collect()
}

fn resource_by_key(s: &State, key: &str) -> Option<Resource> {
    s.resources
        .iter()
        .find(|r| r.key() == key && r.storage)
        .or_else(|| s.resources.iter().find(|r| r.key() == key))
        .cloned()
}

/// Deletes every object that names `uid` as an owner (the garbage collector's work,
/// done at once).
fn delete_dependents(
    s: &mut State,
    events: &broadcast::Sender<Arc<Event>>,
    uid: &str,
    propagation: Propagation,
) {
    let dependents = dependents_of(s, uid);
    for (r, ns, name) in dependents {
        if let Some(res) = resource_by_key(s, &r) {
            let _ = delete_locked(s, events, &res, &ns, &name, propagation, None);
        }
    }
}

pub(super) fn collect_garbage(s: &mut State, events: &broadcast::Sender<Arc<Event>>, uid: &str) {
    delete_dependents(s, events, uid, Propagation::Background);
    finish_foreground(s, events);
}

/// Owners waiting in foreground deletion lose their `foregroundDeletion` finalizer
/// once no dependents are left.
fn finish_foreground(s: &mut State, events: &broadcast::Sender<Arc<Event>>) {
    loop {
        let ready: Option<Key> = s
            .objects
            .iter()
            .find(|(_, o)| {
                o["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| f.contains(&json!("foregroundDeletion")))
                    && !o["metadata"]["deletionTimestamp"].is_null()
                    && !has_dependents(s, o["metadata"]["uid"].as_str().unwrap_or(""))
            })
            .map(|(k, _)| k.clone());
        let Some(k) = ready else { return };
        let Some(res) = resource_by_key(s, &k.0) else {
            return;
        };
        let mut object = s.objects[&k].clone();
        if let Some(f) = object["metadata"]["finalizers"].as_array_mut() {
            f.retain(|x| x != "foregroundDeletion");
            if f.is_empty() {
                remove(s, events, &res, k, Some(object));
                continue;
            }
        }
        commit(s, events, &res, k, object, EventType::Modified);
    }
}

fn orphan_dependents(s: &mut State, events: &broadcast::Sender<Arc<Event>>, uid: &str) {
    let dependents = dependents_of(s, uid);
    for k in dependents {
        let Some(res) = resource_by_key(s, &k.0) else {
            continue;
        };
        let mut object = s.objects[&k].clone();
        if let Some(refs) = object["metadata"]["ownerReferences"].as_array_mut() {
            refs.retain(|r| r["uid"] != uid);
        }
        commit(s, events, &res, k, object, EventType::Modified);
    }
}

pub(super) fn empty_namespace(
    s: &mut State,
    events: &broadcast::Sender<Arc<Event>>,
    namespace: &str,
) {
    let inside: Vec<Key> = s
        .objects
        .keys()
        .filter(|(_, ns, _)| ns == namespace)
        .cloned()
        .collect();
    for (r, ns, name) in inside {
        if let Some(res) = resource_by_key(s, &r) {
            let k = key(&res, &ns, &name);
            if s.objects.contains_key(&k) {
                remove(s, events, &res, k, None);
            }
        }
    }
}
