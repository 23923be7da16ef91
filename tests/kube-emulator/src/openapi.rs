//! OpenAPI v3 documents, as the API server publishes them: `/openapi/v3` (the index of
//! group/versions, each with a `hash` of its document so clients can cache it) and
//! `/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`.
//!
//! Each group/version document carries what clients read from it:
//! - `paths` with one entry per resource path, whose operations name their kind
//!   (`x-kubernetes-group-version-kind`) and query parameters. `kubectl apply` looks for
//!   the PATCH operation of a kind and its `fieldValidation` parameter: when it is there,
//!   kubectl leaves validation to the server (it sends `fieldValidation=Strict`) instead
//!   of validating against the OpenAPI v2 document, which the emulator does not serve.
//! - `components.schemas`: a custom resource's schema is its CRD's `openAPIV3Schema`
//!   with `apiVersion`, `kind` and `metadata` added (as the API server wraps it), which is
//!   what `kubectl explain` prints. Built-in kinds get an open object schema with those
//!   three fields (their full definitions are not published yet).
//!
//! The documents are built from the registry on each request, so they follow CRDs as
//! they are applied and deleted; the index's hashes change with them.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use serde_json::{Map, Value, json};

use crate::discovery;
use crate::resources::Resource;

/// Where the shared object metadata schema lives in every document.
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The query parameters a write operation accepts (PATCH also takes `force`).
const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "pretty"];

/// The document path of a group/version: `api/v1` or `apis/{group}/{version}`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// group/version document path → the resources served there.
fn by_group_version(resources: &[Resource]) -> BTreeMap<String, Vec<&Resource>> {
    let mut out: BTreeMap<String, Vec<&Resource>> = BTreeMap::new();
    for r in resources {
        out.entry(gv_path(&r.group, &r.version))
            .or_default()
            .push(r);
    }
    out
}

/// A stable hash of a document, upper-case hex like the API server's.
fn hash(doc: &Value) -> String {
    // `DefaultHasher::new()` has fixed keys: the same document hashes the same way in
    // every run, which is all the cache key needs.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    doc.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// `/openapi/v3`: every group/version with the URL of its current document.
pub fn index(resources: &[Resource]) -> Value {
    let paths: Map<String, Value> = by_group_version(resources)
        .into_iter()
        .map(|(path, served)| {
            let url = format!("/openapi/v3/{path}?hash={}", hash(&document(&served)));
            (path, json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

/// `/openapi/v3/{path}` (`api/v1`, `apis/{group}/{version}`), with the hash it is
/// listed under; `None` for a group/version that is not served.
pub fn group_version(resources: &[Resource], path: &str) -> Option<(Value, String)> {
    let groups = by_group_version(resources);
    let doc = document(groups.get(path.trim_matches('/'))?);
    let hash = hash(&doc);
    Some((doc, hash))
}

/// The document of one group/version's resources.
fn document(served: &[&Resource]) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(OBJECT_META.into(), object_meta());
    for r in served {
        let name = schema_name(r);
        schemas.insert(name.clone(), kind_schema(r));
        paths.extend(resource_paths(r, &name));
    }
    json!({
        "openapi": "3.0.0",
        "info": {
            "title": "Kubernetes",
            "version": format!("v{}.{}.0", discovery::MAJOR, discovery::MINOR),
        },
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The definition name of a kind: `io.k8s.api.core.v1.Pod` for built-in kinds, the
/// reversed group for custom resources (`dev.example.v1.Widget`), as the server names
/// them.
pub fn schema_name(r: &Resource) -> String {
    if r.schema.is_some() {
        let reversed: Vec<&str> = r.group.split('.').rev().collect();
        return format!("{}.{}.{}", reversed.join("."), r.version, r.kind);
    }
    match r.group.as_str() {
        "" => format!("io.k8s.api.core.{}.{}", r.version, r.kind),
        "apiextensions.k8s.io" => format!(
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{}.{}",
            r.version, r.kind
        ),
        g => format!(
            "io.k8s.api.{}.{}.{}",
            g.trim_end_matches(".k8s.io"),
            r.version,
            r.kind
        ),
    }
}

fn gvk(r: &Resource) -> Value {
    json!([{"group": r.group, "kind": r.kind, "version": r.version}])
}

/// A kind's schema: the CRD's `openAPIV3Schema` (or an open object for a built-in
/// kind) with `apiVersion`, `kind` and `metadata` declared and the kind named.
fn kind_schema(r: &Resource) -> Value {
    let mut schema = r.schema.clone().unwrap_or_else(|| {
        json!({
            "type": "object",
            "description": format!("{} (fields other than apiVersion, kind and metadata are not described by the emulator).", r.kind),
            "x-kubernetes-preserve-unknown-fields": true,
        })
    });
    let props = &mut schema["properties"];
    props["apiVersion"] = json!({
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
    });
    props["kind"] = json!({
        "type": "string",
        "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
    });
    props["metadata"] = json!({
        "allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}],
        "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
    });
    schema["x-kubernetes-group-version-kind"] = gvk(r);
    schema
}

/// `ObjectMeta`, with the fields clients set and read.
fn object_meta() -> Value {
    let string = |d: &str| json!({"type": "string", "description": d});
    let map = |d: &str| json!({"type": "object", "additionalProperties": {"type": "string", "default": ""}, "description": d});
    json!({
        "type": "object",
        "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
        "properties": {
            "name": string("Name must be unique within a namespace."),
            "generateName": string("GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided."),
            "namespace": string("Namespace defines the space within which each name must be unique."),
            "uid": string("UID is the unique in time and space value for this object."),
            "resourceVersion": string("An opaque value that represents the internal version of this object."),
            "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."},
            "creationTimestamp": {"type": "string", "format": "date-time", "description": "CreationTimestamp is a timestamp representing the server time when this object was created."},
            "deletionTimestamp": {"type": "string", "format": "date-time", "description": "DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted."},
            "deletionGracePeriodSeconds": {"type": "integer", "format": "int64", "description": "Number of seconds allowed for this object to gracefully terminate before it will be removed from the system."},
            "labels": map("Map of string keys and values that can be used to organize and categorize (scope and select) objects."),
            "annotations": map("Annotations is an unstructured key value map stored with a resource that may be set by external tools to store and retrieve arbitrary metadata."),
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "set", "description": "Must be empty before the object is deleted from the registry."},
            "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "description": "List of objects depended by this object."},
            "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "description": "ManagedFields maps workflow-id and version to the set of fields that are managed by that workflow."},
        },
    })
}

fn query_params(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|n| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
        .collect()
}

/// One operation on a kind (`action` is the server's `x-kubernetes-action`).
fn operation(r: &Resource, name: &str, action: &str, params: &[&str]) -> Value {
    let body =
        json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}});
    let mut op = json!({
        "operationId": format!("{action}{}", r.kind),
        "parameters": query_params(params),
        "responses": {"200": {"description": "OK", "content": body}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "kind": r.kind, "version": r.version},
    });
    if matches!(action, "post" | "put" | "patch") {
        op["requestBody"] = json!({"content": body, "required": true});
    }
    op
}

/// The collection and object paths of a resource (and its `/status`).
fn resource_paths(r: &Resource, name: &str) -> Map<String, Value> {
    let prefix = format!("/{}", gv_path(&r.group, &r.version));
    let collection = if r.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{prefix}/{}", r.plural)
    };
    let object = format!("{collection}/{{name}}");
    let mut patch_params = WRITE_PARAMS.to_vec();
    patch_params.push("force");
    let mut out = Map::new();
    out.insert(
        collection,
        json!({
            "get": operation(r, name, "list", &["labelSelector", "fieldSelector", "limit", "continue", "watch"]),
            "post": operation(r, name, "post", WRITE_PARAMS),
            "delete": operation(r, name, "deletecollection", &["dryRun"]),
        }),
    );
    let object_ops = json!({
        "get": operation(r, name, "get", &["pretty"]),
        "put": operation(r, name, "put", WRITE_PARAMS),
        "patch": operation(r, name, "patch", &patch_params),
        "delete": operation(r, name, "delete", &["dryRun"]),
    });
    if r.status {
        out.insert(format!("{object}/status"), object_ops.clone());
    }
    out.insert(object, object_ops);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources;

    fn widget_crd(size_type: &str) -> Value {
        json!({
            "metadata": {"name": "widgets.example.dev"},
            "spec": {
                "group": "example.dev", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {"type": "object", "properties": {"size": {"type": size_type}}}},
                }}}],
            },
        })
    }

    #[test]
    fn crd_schemas_are_wrapped_and_named_by_kind() {
        let mut served = resources::builtins();
        served.extend(resources::from_crd(&widget_crd("integer")).unwrap());
        let (doc, _) = group_version(&served, "apis/example.dev/v1").unwrap();
        let schema = &doc["components"]["schemas"]["dev.example.v1.Widget"];
        assert_eq!(
            schema["properties"]["spec"]["properties"]["size"]["type"],
            "integer"
        );
        assert_eq!(schema["properties"]["kind"]["type"], "string");
        assert_eq!(
            schema["x-kubernetes-group-version-kind"],
            json!([{"group": "example.dev", "kind": "Widget", "version": "v1"}])
        );
        let patch =
            &doc["paths"]["/apis/example.dev/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Widget");
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        );
        assert!(group_version(&served, "apis/example.dev/v2").is_none());
        let (core, _) = group_version(&served, "api/v1").unwrap();
        assert!(core["components"]["schemas"]["io.k8s.api.core.v1.ConfigMap"].is_object());
    }

    #[test]
    fn the_index_hash_follows_the_schemas() {
        let mut served = resources::builtins();
        served.extend(resources::from_crd(&widget_crd("integer")).unwrap());
        let url = |served: &[Resource]| {
            index(served)["paths"]["apis/example.dev/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let before = url(&served);
        assert!(
            before.starts_with("/openapi/v3/apis/example.dev/v1?hash="),
            "{before}"
        );
        assert_eq!(before, url(&served), "stable");
        let (_, listed) = group_version(&served, "apis/example.dev/v1").unwrap();
        assert!(before.ends_with(&listed));
        served.retain(|r| r.group != "example.dev");
        served.extend(resources::from_crd(&widget_crd("string")).unwrap());
        assert_ne!(before, url(&served), "a changed CRD changes the hash");
        assert!(index(&served)["paths"]["api/v1"].is_object());
    }
}
