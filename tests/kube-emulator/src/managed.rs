//! Field ownership (`metadata.managedFields`): which manager set which fields, kept as
//! the server keeps it — one entry per manager, operation (`Update` or `Apply`) and
//! subresource, with its fields as a `FieldsV1` set (`{"f:spec": {"f:replicas": {}}}`).
//!
//! An update gives its manager the fields it changed and takes them from the others; an
//! apply makes its manager own exactly the fields of the applied configuration.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::meta;

/// A field path, one key per level (keys may contain dots: label names do).
pub type Path = Vec<String>;
/// A set of fields.
pub type FieldSet = BTreeSet<Path>;

/// Fields that only the server sets; nobody owns them.
fn server_owned(path: &[String]) -> bool {
    match path {
        [top] => matches!(top.as_str(), "apiVersion" | "kind" | "metadata"),
        [m, field, ..] if m == "metadata" => !matches!(
            field.as_str(),
            "labels" | "annotations" | "finalizers" | "ownerReferences"
        ),
        _ => false,
    }
}

/// The leaf fields an object sets (objects are walked; lists and scalars are leaves).
pub fn leaves(object: &Value) -> FieldSet {
    fn walk(v: &Value, at: &mut Path, out: &mut FieldSet) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    at.push(k.clone());
                    walk(v, at, out);
                    at.pop();
                }
            }
            _ => {
                if !server_owned(at) {
                    out.insert(at.clone());
                }
            }
        }
    }
    let mut out = FieldSet::new();
    walk(object, &mut Vec::new(), &mut out);
    out
}

/// The value at `path`.
pub fn get<'a, K: AsRef<str>>(object: &'a Value, path: &[K]) -> Option<&'a Value> {
    path.iter().try_fold(object, |v, k| v.get(k.as_ref()))
}

/// Removes the field at `path` (and parents it leaves empty).
pub fn remove(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if let Some(parent) = parents
        .iter()
        .try_fold(&mut *object, |v, k| v.get_mut(k))
        .and_then(Value::as_object_mut)
    {
        parent.remove(last);
        if parent.is_empty() && !parents.is_empty() {
            remove(object, parents);
        }
    }
}

/// Fields whose values differ between `old` and `new` (set, changed or removed).
pub fn changed(old: &Value, new: &Value) -> FieldSet {
    let (a, b) = (leaves(old), leaves(new));
    a.union(&b)
        .filter(|p| get(old, p) != get(new, p))
        .cloned()
        .collect()
}

/// A set as `FieldsV1`.
pub fn to_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut at = &mut root;
        for k in path {
            at = at
                .entry(format!("f:{k}"))
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("built as objects");
        }
    }
    Value::Object(root)
}

/// A `FieldsV1` as a set (`k:`/`v:` list-item keys are kept as plain keys).
pub fn from_v1(v1: &Value) -> FieldSet {
    fn walk(v: &Value, at: &mut Path, out: &mut FieldSet) {
        let map = v.as_object().filter(|m| !m.is_empty());
        match map {
            Some(map) => {
                for (k, v) in map {
                    if k == "." {
                        continue;
                    }
                    at.push(k.strip_prefix("f:").unwrap_or(k).to_owned());
                    walk(v, at, out);
                    at.pop();
                }
            }
            None if !at.is_empty() => {
                out.insert(at.clone());
            }
            None => {}
        }
    }
    let mut out = FieldSet::new();
    walk(v1, &mut Vec::new(), &mut out);
    out
}

/// One managedFields entry, parsed.
#[derive(Debug, Clone)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub subresource: String,
    pub fields: FieldSet,
}

/// The entries of an object.
pub fn entries(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or("").to_owned(),
                    operation: e["operation"].as_str().unwrap_or("").to_owned(),
                    subresource: e["subresource"].as_str().unwrap_or("").to_owned(),
                    fields: from_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `entries` back (dropping empty ones).
fn store(object: &mut Value, entries: &[Entry]) {
    let api_version = object["apiVersion"].clone();
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": api_version,
                "time": meta::now(),
                "fieldsType": "FieldsV1",
                "fieldsV1": to_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    object["metadata"]["managedFields"] = json!(list);
}

/// How a write claims fields.
pub enum Claim {
    /// An update (create, replace, patch): the manager takes the fields it changed.
    Update { changed: FieldSet },
    /// An apply: the manager owns exactly `fields`; with `force`, others lose them.
    Apply { fields: FieldSet, force: bool },
}

/// Records `manager`'s write in `object`'s managed fields (`previous` holds the entries
/// before the write).
pub fn record(
    object: &mut Value,
    previous: &Value,
    manager: &str,
    subresource: &str,
    claim: &Claim,
) {
    let mut list = entries(previous);
    let nothing = FieldSet::new();
    let (operation, taken, own): (&str, &FieldSet, FieldSet) = match claim {
        Claim::Update { changed } => {
            let mut own = list
                .iter()
                .find(|e| {
                    e.manager == manager && e.operation == "Update" && e.subresource == subresource
                })
                .map(|e| e.fields.clone())
                .unwrap_or_default();
            own.extend(changed.iter().cloned());
            ("Update", changed, own)
        }
        Claim::Apply { fields, force } => (
            "Apply",
            if *force { fields } else { &nothing },
            fields.clone(),
        ),
    };
    for e in list.iter_mut() {
        if !(e.manager == manager && e.operation == operation && e.subresource == subresource) {
            e.fields.retain(|p| !taken.contains(p));
        }
    }
    list.retain(|e| {
        !(e.manager == manager && e.operation == operation && e.subresource == subresource)
    });
    list.push(Entry {
        manager: manager.to_owned(),
        operation: operation.to_owned(),
        subresource: subresource.to_owned(),
        fields: own,
    });
    store(object, &list);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Path {
        p.split('|').map(str::to_owned).collect()
    }

    #[test]
    fn field_sets_round_trip_and_track_changes() {
        let o = json!({"apiVersion": "v1", "metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "b"}},
                       "spec": {"a": 1, "b": {"c": [1]}}});
        let set = leaves(&o);
        assert!(set.contains(&path("metadata|labels|app.kubernetes.io/name")));
        assert!(set.contains(&path("spec|b|c")) && !set.contains(&path("metadata|name")));
        assert_eq!(from_v1(&to_v1(&set)), set);
        let mut n = o.clone();
        n["spec"]["a"] = json!(2);
        assert_eq!(changed(&o, &n), FieldSet::from([path("spec|a")]));
        remove(&mut n, &path("spec|b|c"));
        assert_eq!(n["spec"], json!({"a": 2}));
    }

    #[test]
    fn updates_take_fields_and_applies_own_theirs() {
        let mut o = json!({"apiVersion": "v1", "metadata": {}, "spec": {"a": 1, "b": 2}});
        let before = o.clone();
        let applied = FieldSet::from([path("spec|a"), path("spec|b")]);
        record(
            &mut o,
            &before,
            "ssa",
            "",
            &Claim::Apply {
                fields: applied,
                force: false,
            },
        );
        let before = o.clone();
        let claim = Claim::Update {
            changed: FieldSet::from([path("spec|b")]),
        };
        record(&mut o, &before, "kubectl-edit", "", &claim);
        let list = entries(&o);
        let ssa = list.iter().find(|e| e.manager == "ssa").unwrap();
        let edit = list.iter().find(|e| e.manager == "kubectl-edit").unwrap();
        assert_eq!(ssa.fields, FieldSet::from([path("spec|a")]));
        assert_eq!(edit.fields, FieldSet::from([path("spec|b")]));
    }
}
