//! The in-memory store: every object of every served resource, one global
//! `resourceVersion` counter, and a bounded history of changes that watches replay from.
//!
//! All writes take one lock, so each gets the next resourceVersion and its event is in the
//! history before the lock is released: a watch that subscribes and then reads the
//! history under the same lock never misses or repeats an event.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::error::{ApiError, Cause};
use crate::managed::{self, Claim, FieldSet};
use crate::meta;
use crate::resources::{self, Resource};
use crate::schema;
use crate::select::{FieldSelector, LabelSelector};

mod crds;
mod deletion;

use crds::{register_crd, unregister_crd};
use deletion::{collect_garbage, delete_locked, empty_namespace};

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn name(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    /// `Resource::key()` of the object's resource.
    pub resource: String,
    pub namespace: String,
    pub kind: EventType,
    pub object: Value,
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Everything but status (when the resource has a status subresource).
    Main,
    /// Only status.
    Status,
}

/// How dependents of a deleted object are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

type Key = (String, String, String);

struct State {
    rv: u64,
    resources: Vec<Resource>,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Event>>,
    /// How many events the history keeps (older resourceVersions get 410 Gone).
    window: usize,
}

/// The store shared by both fronts.
pub struct Store {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<Event>>,
}

/// A watch's start: the history after its version, then the live feed.
pub type Subscription = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// A list result.
pub struct Listed {
    pub items: Vec<Value>,
    pub rv: u64,
    /// Where the next page starts, when a limit cut the list.
    pub next: Option<String>,
}

fn key(res: &Resource, namespace: &str, name: &str) -> Key {
    (res.key(), namespace.to_owned(), name.to_owned())
}

fn invalid(res: &Resource, name: &str, field: &str, message: &str) -> ApiError {
    ApiError::invalid(
        &res.group,
        &res.kind,
        name,
        vec![Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: message.into(),
        }],
    )
}

impl Default for Store {
    fn default() -> Store {
        Store::new()
    }
}

impl Store {
    /// A store with the built-in resources and the `default`, `kube-system` and
    /// `kube-public` namespaces.
    pub fn new() -> Store {
        let (events, _) = broadcast::channel(4096);
        let store = Store {
            state: Mutex::new(State {
                rv: 0,
                resources: resources::builtins(),
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                window: 10_000,
            }),
            events,
        };
        let ns = store.resource("", "v1", "namespaces").expect("built in");
        for name in ["default", "kube-system", "kube-public"] {
            let object =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            store
                .create(&ns, "", object, "kube-apiserver", None)
                .expect("fresh store");
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps only the last `events` changes for watches to resume from.
    pub fn set_history_window(&self, events: usize) {
        let mut s = self.lock();
        s.window = events.max(1);
        while s.history.len() > s.window {
            s.history.pop_front();
        }
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Every served resource.
    pub fn resources(&self) -> Vec<Resource> {
        self.lock().resources.clone()
    }

    /// The resource served at group/version/plural.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<Resource> {
        self.lock()
            .resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// A scratch copy of the current objects and resources, for a dry run: a write to
    /// it runs admission, defaulting and validation as on this store, but nothing it
    /// does is stored here, published to watches or counted in this resourceVersion.
    pub fn scratch(&self) -> Store {
        let s = self.lock();
        let (events, _) = broadcast::channel(16);
        Store {
            state: Mutex::new(State {
                rv: s.rv,
                resources: s.resources.clone(),
                objects: s.objects.clone(),
                history: VecDeque::new(),
                window: 1,
            }),
            events,
        }
    }

    /// A snapshot of every object, for tests to assert on.
    pub fn snapshot(&self) -> Vec<Value> {
        self.lock().objects.values().cloned().collect()
    }

    pub fn get(&self, res: &Resource, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let s = self.lock();
        s.objects
            .get(&key(res, namespace, name))
            .map(|o| res.serve(o))
            .ok_or_else(|| ApiError::not_found(&res.group, &res.plural, name))
    }

    /// Objects of `res` (in `namespace`, or all namespaces when `None`) matching the
    /// selectors, in (namespace, name) order, at most `limit` of those after `after`.
    pub fn list(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        after: Option<(&str, &str)>,
    ) -> Listed {
        let s = self.lock();
        let resource = res.key();
        let mut items = Vec::new();
        let mut next = None;
        for ((r, ns, name), object) in &s.objects {
            if *r != resource || namespace.is_some_and(|n| n != ns) {
                continue;
            }
            if after.is_some_and(|(a_ns, a_name)| (ns.as_str(), name.as_str()) <= (a_ns, a_name)) {
                continue;
            }
            if !labels.matches(object) || !fields.matches(object) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                next = items.last().map(|o: &Value| {
                    format!(
                        "{}/{}",
                        o["metadata"]["namespace"].as_str().unwrap_or(""),
                        o["metadata"]["name"].as_str().unwrap_or("")
                    )
                });
                break;
            }
            items.push(res.serve(object));
        }
        Listed {
            items,
            rv: s.rv,
            next,
        }
    }

    /// Subscribes to changes after `since`: the history after it, then the live feed.
    /// `since` older than the history window is 410 Gone (the client must re-list).
    pub fn watch(&self, since: u64) -> Result<Subscription, ApiError> {
        let s = self.lock();
        let receiver = self.events.subscribe();
        let oldest = s.history.front().map_or(s.rv + 1, |e| e.rv);
        if since + 1 < oldest && since < s.rv {
            return Err(ApiError::gone(format!(
                "too old resource version: {since} ({})",
                oldest - 1
            )));
        }
        let backlog = s.history.iter().filter(|e| e.rv > since).cloned().collect();
        Ok((backlog, receiver))
    }

    /// Creates an object; `manager` is recorded in its managed fields, as the owner of
    /// what it set or (`applied`) of the applied fields.
    pub fn create(
        &self,
        res: &Resource,
        namespace: &str,
        mut object: Value,
        manager: &str,
        applied: Option<FieldSet>,
    ) -> Result<Value, ApiError> {
        let mut s = self.lock();
        if !object.is_object() || !object["metadata"].is_object() && !object["metadata"].is_null() {
            return Err(ApiError::bad_request("the body is not an object"));
        }
        if object["metadata"].is_null() {
            object["metadata"] = json!({});
        }
        let meta = &mut object["metadata"];
        let mut name = meta["name"].as_str().unwrap_or("").to_owned();
        if name.is_empty() {
            match meta["generateName"].as_str() {
                Some(prefix) if !prefix.is_empty() => {
                    name = format!("{prefix}{}", meta::name_suffix());
                    meta["name"] = json!(name);
                }
                _ => {
                    return Err(ApiError::invalid(
                        &res.group,
                        &res.kind,
                        "",
                        vec![Cause {
                            reason: "FieldValueRequired",
                            field: "metadata.name".into(),
                            message: "Required value: name or generateName is required".into(),
                        }],
                    ));
                }
            }
        }
        if let Some(problem) = name_problem(&name) {
            return Err(invalid(res, &name, "metadata.name", &problem));
        }
        if res.namespaced {
            match meta["namespace"].as_str() {
                Some(ns) if !ns.is_empty() && ns != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => meta["namespace"] = json!(namespace),
            }
            let ns_key = ("namespaces".to_owned(), String::new(), namespace.to_owned());
            match s.objects.get(&ns_key) {
                None => return Err(ApiError::not_found("", "namespaces", namespace)),
                Some(ns) if !ns["metadata"]["deletionTimestamp"].is_null() => {
                    return Err(ApiError::forbidden(format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                        res.plural
                    )));
                }
                Some(_) => {}
            }
        } else if let Some(map) = meta.as_object_mut() {
            map.remove("namespace");
        }
        let k = key(res, namespace_of(res, namespace), &name);
        if s.objects.contains_key(&k) {
            return Err(ApiError::already_exists(&res.group, &res.plural, &name));
        }
        object["apiVersion"] = json!(res.api_version());
        object["kind"] = json!(res.kind);
        if res.status
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        defaults_on_create(res, &mut object);
        let mut object = schema::admit(res, object, None)?;
        let meta = &mut object["metadata"];
        meta["uid"] = json!(meta::uid());
        meta["creationTimestamp"] = json!(meta::now());
        meta["generation"] = json!(1);
        if let Some(map) = meta.as_object_mut() {
            map.remove("deletionTimestamp");
            map.remove("managedFields");
            map.remove("resourceVersion");
        }
        let claim = match applied {
            Some(fields) => Claim::Apply {
                fields,
                force: true,
            },
            None => Claim::Update {
                changed: managed::leaves(&object),
            },
        };
        let before = object.clone();
        managed::record(&mut object, &before, manager, "", &claim);
        if res.key() == "customresourcedefinitions.apiextensions.k8s.io" {
            register_crd(&mut s, &mut object)?;
        }
        let stored = commit(&mut s, &self.events, res, k, object, EventType::Added);
        Ok(res.serve(&stored))
    }

    /// Replaces `part` of an object with what `change` makes of the current one; the new
    /// object's `resourceVersion`, when set, must be the current one. `manager` takes
    /// the fields it changed, or (`applied`: fields and force) owns the applied ones.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        res: &Resource,
        namespace: &str,
        name: &str,
        part: Part,
        manager: &str,
        applied: Option<(FieldSet, bool)>,
        change: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let mut s = self.lock();
        let k = key(res, namespace_of(res, namespace), name);
        let old = s
            .objects
            .get(&k)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&res.group, &res.plural, name))?;
        let mut new = change(&res.serve(&old))?;
        if !new.is_object() {
            return Err(ApiError::bad_request("the body is not an object"));
        }
        if let Some(rv) = new["metadata"]["resourceVersion"].as_str()
            && !rv.is_empty()
            && rv != old["metadata"]["resourceVersion"].as_str().unwrap_or("")
        {
            return Err(ApiError::stale(&res.group, &res.plural, name));
        }
        if let Some(n) = new["metadata"]["name"].as_str()
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        let mut next = match (part, res.status) {
            (Part::Status, _) => {
                let mut o = old.clone();
                o["status"] = new["status"].take();
                o
            }
            (Part::Main, true) => {
                new["status"] = old["status"].clone();
                if new["status"].is_null()
                    && let Some(map) = new.as_object_mut()
                {
                    map.remove("status");
                }
                new
            }
            (Part::Main, false) => new,
        };
        // What only the server sets.
        next["apiVersion"] = json!(res.api_version());
        next["kind"] = json!(res.kind);
        if !next["metadata"].is_object() {
            next["metadata"] = json!({});
        }
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ] {
            match old["metadata"].get(field) {
                Some(v) => next["metadata"][field] = v.clone(),
                None => {
                    if let Some(map) = next["metadata"].as_object_mut() {
                        map.remove(field);
                    }
                }
            }
        }
        // Only the server writes managed fields (from the write's claim, below).
        next["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
        let mut next = schema::admit(res, next, Some(&old))?;
        if meta::spec_changed(&old, &next) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
            next["metadata"]["generation"] = json!(g + 1);
        }
        let mut probe = next.clone();
        probe["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if probe == old && applied.is_none() {
            // A no-op write changes nothing, not even the resourceVersion.
            return Ok(res.serve(&old));
        }
        let subresource = if part == Part::Status { "status" } else { "" };
        let claim = match applied {
            Some((fields, force)) => Claim::Apply { fields, force },
            None => Claim::Update {
                changed: managed::changed(&old, &next),
            },
        };
        managed::record(&mut next, &old, manager, subresource, &claim);
        if res.key() == "customresourcedefinitions.apiextensions.k8s.io" && part == Part::Main {
            register_crd(&mut s, &mut next)?;
        }
        let deleting = !next["metadata"]["deletionTimestamp"].is_null();
        let finalizers_left = next["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if deleting && !finalizers_left {
            let gone = remove(&mut s, &self.events, res, k, Some(next));
            return Ok(res.serve(&gone));
        }
        let stored = commit(&mut s, &self.events, res, k, next, EventType::Modified);
        Ok(res.serve(&stored))
    }

    /// Deletes an object: at once when it has no finalizers, otherwise it gets a
    /// `deletionTimestamp` and stays until they are removed. Dependents (by
    /// ownerReference) follow according to `propagation`.
    pub fn delete(
        &self,
        res: &Resource,
        namespace: &str,
        name: &str,
        propagation: Propagation,
        precondition_uid: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mut s = self.lock();
        delete_locked(
            &mut s,
            &self.events,
            res,
            namespace_of(res, namespace),
            name,
            propagation,
            precondition_uid,
        )
    }
}

fn namespace_of<'a>(res: &Resource, namespace: &'a str) -> &'a str {
    if res.namespaced { namespace } else { "" }
}

/// What is wrong with an object name (RFC 1123 subdomain), if anything.
fn name_problem(name: &str) -> Option<String> {
    let ok = name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!ok).then(|| {
        format!(
            "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        )
    })
}

/// What the server fills in on create for the kinds that need it.
fn defaults_on_create(res: &Resource, object: &mut Value) {
    match (res.group.as_str(), res.kind.as_str()) {
        ("", "Pod") => object["status"] = json!({"phase": "Pending"}),
        ("", "Namespace") => {
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Active"});
        }
        _ => {}
    }
}

/// Stores `object` under the next resourceVersion and publishes the event.
fn commit(
    s: &mut State,
    events: &broadcast::Sender<Arc<Event>>,
    res: &Resource,
    k: Key,
    mut object: Value,
    kind: EventType,
) -> Value {
    s.rv += 1;
    object["metadata"]["resourceVersion"] = json!(s.rv.to_string());
    s.objects.insert(k.clone(), object.clone());
    publish(s, events, res, &k.1, kind, object.clone());
    object
}

fn publish(
    s: &mut State,
    events: &broadcast::Sender<Arc<Event>>,
    res: &Resource,
    namespace: &str,
    kind: EventType,
    object: Value,
) {
    let event = Arc::new(Event {
        rv: s.rv,
        resource: res.key(),
        namespace: namespace.to_owned(),
        kind,
        object,
    });
    s.history.push_back(event.clone());
    while s.history.len() > s.window {
        s.history.pop_front();
    }
    let _ = events.send(event);
}

/// Removes an object for good (its last state `last`, or the stored one) and deletes
/// what it owned.
fn remove(
    s: &mut State,
    events: &broadcast::Sender<Arc<Event>>,
    res: &Resource,
    k: Key,
    last: Option<Value>,
) -> Value {
    let stored = s.objects.remove(&k);
    let mut object = last.or(stored).unwrap_or(Value::Null);
    s.rv += 1;
    object["metadata"]["resourceVersion"] = json!(s.rv.to_string());
    publish(s, events, res, &k.1, EventType::Deleted, object.clone());
    let uid = object["metadata"]["uid"].as_str().unwrap_or("").to_owned();
    collect_garbage(s, events, &uid);
    if res.key() == "namespaces" {
        empty_namespace(s, events, &k.2);
    }
    if res.key() == "customresourcedefinitions.apiextensions.k8s.io" {
        unregister_crd(s, events, &object);
    }
    object
}
