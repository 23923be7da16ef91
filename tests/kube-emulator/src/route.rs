//! Parsing request paths into what they address, the way the API server lays them out:
//!
//! ```text
//! /api/v1/{plural}[/{name}[/{sub}]]                          core, cluster-scoped or all namespaces
//! /api/v1/namespaces/{ns}/{plural}[/{name}[/{sub}]]          core, namespaced
//! /apis/{group}/{version}/...                                the same below a named group
//! /openapi/v2, /openapi/v3[/api/v1 | /apis/{group}/{version}] OpenAPI documents
//! ```

use std::collections::HashMap;

use crate::error::ApiError;
use crate::resources::Resource;
use crate::store::Store;

/// What a path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Version,
    /// `/openapi/v2`.
    OpenApiV2,
    /// `/openapi/v3`.
    OpenApiIndex,
    /// `/openapi/v3/{path}`: a group/version's document (`api/v1`, `apis/{g}/{v}`).
    OpenApi(String),
    CoreVersions,
    GroupList,
    Group(String),
    ResourceList {
        group: String,
        version: String,
    },
    /// A resource, a collection of it, or an object's subresource.
    Object(Box<Target>),
}

/// A collection (`name` None) or an object of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub resource: Resource,
    /// The namespace of the path; `None` for cluster-scoped resources and for lists
    /// across all namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses `path` against the resources `store` serves.
pub fn parse(store: &Store, path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let missing = || ApiError::no_route(path);
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["openapi", "v2"] => return Ok(Route::OpenApiV2),
        ["openapi", "v3"] => return Ok(Route::OpenApiIndex),
        ["openapi", "v3", rest @ ..] => return Ok(Route::OpenApi(rest.join("/"))),
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::GroupList),
        ["apis", group] => return Ok(Route::Group((*group).to_owned())),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(missing()),
    };
    if rest.is_empty() {
        return Ok(Route::ResourceList {
            group: group.to_owned(),
            version: version.to_owned(),
        });
    }
    let find = |plural: &str| store.resource(group, version, plural);
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, ..] if find(plural).is_some_and(|r| r.namespaced) => {
            (Some((*ns).to_owned()), &rest[2..])
        }
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(missing()),
    };
    let resource = find(plural).ok_or_else(missing)?;
    if resource.namespaced && namespace.is_none() && name.is_some() {
        return Err(missing());
    }
    match subresource {
        None => {}
        Some("status") if resource.status => {}
        Some(_) => return Err(missing()),
    }
    Ok(Route::Object(Box::new(Target {
        resource,
        namespace,
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    })))
}

/// Whether boolean query parameter `key` is set (`true` or `1`, as the server accepts).
pub fn flag(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v == "1")
}

/// Query parameters, decoded.
pub fn query(raw: &str) -> HashMap<String, String> {
    form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_address_what_the_api_server_would() {
        let store = Store::new();
        let object = |p: &str| match parse(&store, p).unwrap() {
            Route::Object(t) => (t.resource.plural, t.namespace, t.name, t.subresource),
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(
            object("/api/v1/namespaces/ns/pods/p/status"),
            (
                "pods".into(),
                Some("ns".into()),
                Some("p".into()),
                Some("status".into())
            )
        );
        assert_eq!(object("/api/v1/pods"), ("pods".into(), None, None, None));
        assert_eq!(
            object("/api/v1/namespaces/default/status"),
            (
                "namespaces".into(),
                None,
                Some("default".into()),
                Some("status".into())
            )
        );
        assert_eq!(
            object("/apis/coordination.k8s.io/v1/namespaces/x/leases"),
            ("leases".into(), Some("x".into()), None, None)
        );
        assert_eq!(parse(&store, "/apis").unwrap(), Route::GroupList);
        assert!(parse(&store, "/api/v1/namespaces/x/bogus").is_err());
        assert!(
            parse(&store, "/api/v1/pods/p").is_err(),
            "a pod needs its namespace"
        );
        assert!(parse(&store, "/api/v1/namespaces/x/secrets/s/status").is_err());
    }
}
