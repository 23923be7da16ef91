//! OpenAPI v3 documents, as the API server publishes them: `/openapi/v3` (the index of
//! group/versions, each with a `hash` of its document so clients can cache it) and
//! `/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`.
//!
//! Each group/version document carries what clients read from it:
//! - `paths` with one entry per resource path, whose operations name their kind
//!   (`x-kubernetes-group-version-kind`) and query parameters. `kubectl apply` looks for
//!   the PATCH operation of a kind and its `fieldValidation` parameter: when it is there,
//!   kubectl leaves validation to the server (it sends `fieldValidation=Strict`) instead
//!   of validating against the OpenAPI v2 document (served without definitions, `v2`).
//! - `components.schemas`: a custom resource's schema is its CRD's `openAPIV3Schema`
//!   with `apiVersion`, `kind` and `metadata` added (as the API server wraps it), which is
//!   what `kubectl explain` prints. Built-in kinds have their definitions from
//!   k8s-openapi (`builtin`); a kind it does not describe gets an open object schema.
//!
//! The documents are built from the registry on each request, so they follow CRDs as
//! they are applied and deleted; the index's hashes change with them.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use serde_json::{Map, Value, json};

use crate::discovery;
use crate::resources::Resource;

pub mod builtin;
pub mod v2;

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
    for r in served {
        let (name, schema) = kind_schema(r, &mut schemas);
        schemas.insert(name.clone(), schema);
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

/// A custom resource's definition name: the reversed group (`dev.example.v1.Widget`),
/// as the server names it.
fn custom_schema_name(r: &Resource) -> String {
    let reversed: Vec<&str> = r.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), r.version, r.kind)
}

/// A kind's definition name and schema, naming its group/version/kind; the definitions
/// it refers to go into `schemas`.
fn kind_schema(r: &Resource, schemas: &mut Map<String, Value>) -> (String, Value) {
    let gvk = json!([{"group": r.group, "kind": r.kind, "version": r.version}]);
    if let Some(crd_schema) = &r.schema {
        let meta = builtin::object_meta();
        schemas.extend(meta.schemas.clone());
        let mut schema = wrap_custom(crd_schema.clone(), &meta.name);
        schema["x-kubernetes-group-version-kind"] = gvk;
        return (custom_schema_name(r), schema);
    }
    if let Some(defs) = builtin::kind(&r.group, &r.version, &r.kind) {
        schemas.extend(defs.schemas.clone());
        let mut schema = defs.schemas[&defs.name].clone();
        schema["x-kubernetes-group-version-kind"] = gvk;
        return (defs.name.clone(), schema);
    }
    let meta = builtin::object_meta();
    schemas.extend(meta.schemas.clone());
    let open = json!({
        "type": "object",
        "description": format!("{} (its fields are not described by the emulator).", r.kind),
        "x-kubernetes-preserve-unknown-fields": true,
    });
    let mut schema = wrap_custom(open, &meta.name);
    schema["x-kubernetes-group-version-kind"] = gvk;
    let group = if r.group.is_empty() { "core" } else { &r.group };
    (
        format!("io.k8s.api.{group}.{}.{}", r.version, r.kind),
        schema,
    )
}

/// A CRD's `openAPIV3Schema` with `apiVersion`, `kind` and `metadata` declared, as the
/// API server publishes it.
fn wrap_custom(mut schema: Value, object_meta: &str) -> Value {
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
        "allOf": [{"$ref": format!("#/components/schemas/{object_meta}")}],
        "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
    });
    schema
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
        let config_map = &core["components"]["schemas"]["io.k8s.api.core.v1.ConfigMap"];
        assert_eq!(
            config_map["properties"]["data"]["additionalProperties"]["type"], "string",
            "from k8s-openapi"
        );
        assert_eq!(
            config_map["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(
            config_map["x-kubernetes-group-version-kind"][0]["kind"],
            "ConfigMap"
        );
        let pod_spec = &core["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"];
        assert!(pod_spec["properties"]["containers"].is_object());
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
