//! The OpenAPI definitions of built-in kinds, generated from k8s-openapi's schemas (its
//! `schemars` impls mirror the API server's own definitions) with the generator's
//! OpenAPI 3 settings, so references point into `#/components/schemas/` and a `$ref`
//! with a description becomes `allOf: [$ref]`, as the server publishes them.
//!
//! Built once: a kind's definitions (its own and every one it refers to) do not change
//! while the emulator runs.

use std::sync::OnceLock;

use k8s_openapi::api::{apps, batch, coordination, core, discovery, events, networking, policy};
use k8s_openapi::api::{rbac, storage};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value};

/// A kind's definition name and the definitions its schema needs (its own among them).
pub struct Definitions {
    pub name: String,
    pub schemas: Map<String, Value>,
}

fn definitions_of<T: JsonSchema>() -> Definitions {
    let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
    generator.subschema_for::<T>();
    Definitions {
        name: T::schema_name().into_owned(),
        schemas: generator.take_definitions(true),
    }
}

/// (group, version, kind) → its definitions. The kinds the emulator serves or may serve;
/// a kind missing here is published as an open object.
type Entry = (
    &'static str,
    &'static str,
    &'static str,
    fn() -> Definitions,
);

const KINDS: &[Entry] = &[
    ("", "v1", "Namespace", definitions_of::<core::v1::Namespace>),
    ("", "v1", "Node", definitions_of::<core::v1::Node>),
    ("", "v1", "Pod", definitions_of::<core::v1::Pod>),
    ("", "v1", "Service", definitions_of::<core::v1::Service>),
    ("", "v1", "Secret", definitions_of::<core::v1::Secret>),
    ("", "v1", "ConfigMap", definitions_of::<core::v1::ConfigMap>),
    ("", "v1", "Event", definitions_of::<core::v1::Event>),
    (
        "",
        "v1",
        "ServiceAccount",
        definitions_of::<core::v1::ServiceAccount>,
    ),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        definitions_of::<core::v1::PersistentVolumeClaim>,
    ),
    (
        "",
        "v1",
        "PersistentVolume",
        definitions_of::<core::v1::PersistentVolume>,
    ),
    ("", "v1", "Endpoints", definitions_of::<core::v1::Endpoints>),
    (
        "events.k8s.io",
        "v1",
        "Event",
        definitions_of::<events::v1::Event>,
    ),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        definitions_of::<coordination::v1::Lease>,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        definitions_of::<apiextensions::v1::CustomResourceDefinition>,
    ),
    (
        "apps",
        "v1",
        "Deployment",
        definitions_of::<apps::v1::Deployment>,
    ),
    (
        "apps",
        "v1",
        "ReplicaSet",
        definitions_of::<apps::v1::ReplicaSet>,
    ),
    (
        "apps",
        "v1",
        "DaemonSet",
        definitions_of::<apps::v1::DaemonSet>,
    ),
    (
        "apps",
        "v1",
        "StatefulSet",
        definitions_of::<apps::v1::StatefulSet>,
    ),
    ("batch", "v1", "Job", definitions_of::<batch::v1::Job>),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        definitions_of::<rbac::v1::Role>,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        definitions_of::<rbac::v1::RoleBinding>,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        definitions_of::<rbac::v1::ClusterRole>,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        definitions_of::<rbac::v1::ClusterRoleBinding>,
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        definitions_of::<policy::v1::PodDisruptionBudget>,
    ),
    (
        "storage.k8s.io",
        "v1",
        "StorageClass",
        definitions_of::<storage::v1::StorageClass>,
    ),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        definitions_of::<discovery::v1::EndpointSlice>,
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        definitions_of::<networking::v1::NetworkPolicy>,
    ),
];

type Key = (&'static str, &'static str, &'static str);

fn all() -> &'static [(Key, Definitions)] {
    static ALL: OnceLock<Vec<(Key, Definitions)>> = OnceLock::new();
    ALL.get_or_init(|| {
        KINDS
            .iter()
            .map(|&(group, version, kind, build)| ((group, version, kind), build()))
            .collect()
    })
}

/// The definitions of a built-in kind, if k8s-openapi describes it.
pub fn kind(group: &str, version: &str, kind: &str) -> Option<&'static Definitions> {
    all()
        .iter()
        .find(|((g, v, k), _)| *g == group && *v == version && *k == kind)
        .map(|(_, d)| d)
}

/// `ObjectMeta` and the definitions it refers to (custom resources' `metadata`).
pub fn object_meta() -> &'static Definitions {
    static META: OnceLock<Definitions> = OnceLock::new();
    META.get_or_init(definitions_of::<ObjectMeta>)
}
