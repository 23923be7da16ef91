//! The behaviour table: for each thing the emulator emulates, a request and the answer
//! the real API server documents for it, asserted against the emulator's tower front.
//! References are to the Kubernetes API documentation ("API Concepts",
//! https://kubernetes.io/docs/reference/using-api/api-concepts/, and the pages named in
//! each case).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use blit_kube_emulator::Emulator;
use http::{Method, Request};
use serde_json::{Value, json};
use tower::ServiceExt;

/// One request against a fresh or shared emulator.
async fn call(
    emu: &Arc<Emulator>,
    method: Method,
    uri: &str,
    content_type: &str,
    body: Value,
) -> (u16, Value) {
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    let resp = emu.service().oneshot(req).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    // Watch bodies are lines of events: return them as an array.
    let value = if uri.contains("watch=") {
        Value::Array(
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        )
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (code, value)
}

const JSON: &str = "application/json";

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "blit"}}, "data": {"k": "v"}})
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn objects_identity_versions_and_errors() {
    let emu = Emulator::new();
    // Object metadata: the server sets uid, creationTimestamp, resourceVersion (opaque,
    // changes on every write), generation starts at 1 for kinds with a spec
    // (https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions).
    let (code, a) = call(&emu, Method::POST, CMS, JSON, cm("a")).await;
    assert_eq!(code, 201, "create answers 201 Created");
    assert!(a["metadata"]["uid"].is_string() && a["metadata"]["creationTimestamp"].is_string());
    let rv_a: u64 = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (_, b) = call(&emu, Method::POST, CMS, JSON, cm("b")).await;
    let rv_b: u64 = b["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv_b > rv_a, "one global, increasing resourceVersion");

    // 409 AlreadyExists, as a Status object (API Concepts, "Status" responses;
    // https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/).
    let (code, s) = call(&emu, Method::POST, CMS, JSON, cm("a")).await;
    assert_eq!(
        (code, s["kind"].as_str(), s["reason"].as_str()),
        (409, Some("Status"), Some("AlreadyExists"))
    );
    assert_eq!(s["message"], "configmaps \"a\" already exists");
    assert_eq!(s["details"]["name"], "a");

    // 404 NotFound.
    let (code, s) = call(&emu, Method::GET, &format!("{CMS}/zz"), JSON, Value::Null).await;
    assert_eq!((code, s["reason"].as_str()), (404, Some("NotFound")));
    assert_eq!(s["message"], "configmaps \"zz\" not found");

    // Optimistic concurrency: an update with a stale resourceVersion is 409 Conflict
    // (API Concepts, "Resource versions"; "Efficient detection of changes").
    let mut stale = a.clone();
    stale["data"]["k"] = json!("w");
    let (code, _) = call(&emu, Method::PUT, &format!("{CMS}/a"), JSON, stale.clone()).await;
    assert_eq!(code, 200);
    let (code, s) = call(&emu, Method::PUT, &format!("{CMS}/a"), JSON, stale).await;
    assert_eq!((code, s["reason"].as_str()), (409, Some("Conflict")));
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified")
    );

    // 422 Invalid names the field (a name that is not a DNS subdomain).
    let (code, s) = call(&emu, Method::POST, CMS, JSON, cm("Not_Valid")).await;
    assert_eq!((code, s["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");

    // generateName: the server appends a random suffix
    // (https://kubernetes.io/docs/reference/using-api/api-concepts/#generated-values).
    let (code, g) = call(
        &emu,
        Method::POST,
        CMS,
        JSON,
        json!({"metadata": {"generateName": "gen-"}}),
    )
    .await;
    assert_eq!(code, 201);
    let name = g["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    // A namespace that does not exist: 404 for the namespace.
    let (code, s) = call(
        &emu,
        Method::POST,
        "/api/v1/namespaces/nope/configmaps",
        JSON,
        cm("x"),
    )
    .await;
    assert_eq!(
        (code, s["details"]["kind"].as_str()),
        (404, Some("namespaces"))
    );
}

#[tokio::test]
async fn lists_selectors_and_pagination() {
    let emu = Emulator::new();
    for n in ["a", "b", "c"] {
        call(&emu, Method::POST, CMS, JSON, cm(n)).await;
    }
    let mut other = cm("d");
    other["metadata"]["labels"]["app"] = json!("other");
    call(&emu, Method::POST, CMS, JSON, other).await;

    // Label selectors, set-based (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors).
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, l) = call(
        &emu,
        Method::GET,
        &format!("{CMS}?labelSelector=app%20in%20(blit)"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(names(&l), ["a", "b", "c"]);
    let (_, l) = call(
        &emu,
        Method::GET,
        &format!("{CMS}?labelSelector=app!%3Dblit"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(names(&l), ["d"]);
    // Field selectors (https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/).
    let (_, l) = call(
        &emu,
        Method::GET,
        &format!("{CMS}?fieldSelector=metadata.name%3Db"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(names(&l), ["b"]);
    let (code, s) = call(
        &emu,
        Method::GET,
        &format!("{CMS}?fieldSelector=data.k%3Dv"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(
        (code, s["reason"].as_str()),
        (400, Some("BadRequest")),
        "unsupported field label"
    );

    // Chunked lists: limit + continue (API Concepts, "Retrieving large results sets in chunks").
    let (_, page) = call(
        &emu,
        Method::GET,
        &format!("{CMS}?limit=2"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(names(&page), ["a", "b"]);
    let token = page["metadata"]["continue"].as_str().unwrap().to_owned();
    let (_, rest) = call(
        &emu,
        Method::GET,
        &format!("{CMS}?limit=2&continue={}", urlencode(&token)),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(names(&rest), ["c", "d"]);
    assert!(
        rest["metadata"]["continue"].is_null(),
        "the last page has no continue"
    );
    assert_eq!(page["kind"], "ConfigMapList");
    assert!(page["metadata"]["resourceVersion"].is_string());
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn watches_resume_bookmark_time_out_and_expire() {
    let emu = Emulator::new();
    let (_, a) = call(&emu, Method::POST, CMS, JSON, cm("a")).await;
    let rv = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    call(&emu, Method::PUT, &format!("{CMS}/a"), JSON, a.clone()).await;
    call(&emu, Method::DELETE, &format!("{CMS}/a"), JSON, Value::Null).await;

    // Watch from a resourceVersion: every change after it, in order, then the stream
    // ends at timeoutSeconds (API Concepts, "Efficient detection of changes").
    let (code, events) = call(
        &emu,
        Method::GET,
        &format!("{CMS}?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);
    let types: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["DELETED"],
        "the no-op PUT changed nothing; the delete did"
    );

    // Without a resourceVersion: the current state as ADDED first.
    call(&emu, Method::POST, CMS, JSON, cm("b")).await;
    let (_, events) = call(
        &emu,
        Method::GET,
        &format!("{CMS}?watch=1&timeoutSeconds=1"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "b");

    // Bookmarks carry only a resourceVersion (API Concepts, "Watch bookmarks").
    let (_, events) = call(
        &emu,
        Method::GET,
        &format!("{CMS}?watch=1&allowWatchBookmarks=true&timeoutSeconds=2&resourceVersion={rv}"),
        JSON,
        Value::Null,
    )
    .await;
    let bookmark = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "BOOKMARK")
        .expect("a bookmark");
    assert!(bookmark["object"]["metadata"]["resourceVersion"].is_string());
    assert_eq!(bookmark["object"]["kind"], "ConfigMap");

    // Streaming lists: sendInitialEvents ends the initial state with a bookmark annotated
    // k8s.io/initial-events-end (API Concepts, "Streaming lists").
    let (_, events) = call(&emu, Method::GET, &format!("{CMS}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"), JSON, Value::Null).await;
    let marks: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "BOOKMARK")
        .collect();
    assert_eq!(
        marks[0]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    // 410 Gone when the version is older than the history kept: an ERROR event with a
    // Status of code 410 (API Concepts, "410 Gone responses").
    emu.store.set_history_window(1);
    for n in ["c", "d", "e"] {
        call(&emu, Method::POST, CMS, JSON, cm(n)).await;
    }
    let (_, events) = call(
        &emu,
        Method::GET,
        &format!("{CMS}?watch=1&resourceVersion={rv}&timeoutSeconds=1"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");
}

#[tokio::test]
async fn patches_status_and_generation() {
    let emu = Emulator::new();
    let pods = "/api/v1/namespaces/default/pods";
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
    let (_, p) = call(&emu, Method::POST, pods, JSON, pod).await;
    assert_eq!(p["metadata"]["generation"], 1);
    assert_eq!(p["status"]["phase"], "Pending");

    // Strategic merge merges containers by name
    // (https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/).
    let (code, p) = call(
        &emu,
        Method::PATCH,
        &format!("{pods}/p"),
        "application/strategic-merge-patch+json",
        json!({"spec": {"containers": [{"name": "b", "image": "z"}]}}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(p["spec"]["containers"].as_array().unwrap().len(), 2);
    assert_eq!(p["spec"]["containers"][1]["image"], "z");
    assert_eq!(
        p["metadata"]["generation"], 2,
        "a spec change bumps generation"
    );

    // JSON merge patch replaces lists (RFC 7386).
    let (_, p) = call(
        &emu,
        Method::PATCH,
        &format!("{pods}/p"),
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"x": "1"}}}),
    )
    .await;
    assert_eq!(p["metadata"]["generation"], 2, "metadata changes do not");

    // JSON Patch with a failing test: 422, nothing changed (RFC 6902 section 4.6).
    let (code, _) = call(&emu, Method::PATCH, &format!("{pods}/p"), "application/json-patch+json",
        json!([{"op": "test", "path": "/metadata/labels/x", "value": "2"}, {"op": "remove", "path": "/metadata/labels"}])).await;
    assert_eq!(code, 422);

    // The status subresource: writes to it change only status; main writes keep status
    // (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#status-subresource).
    let (_, p) = call(
        &emu,
        Method::PATCH,
        &format!("{pods}/p/status"),
        "application/merge-patch+json",
        json!({"status": {"phase": "Running"}, "metadata": {"labels": {"y": "1"}}}),
    )
    .await;
    assert_eq!(p["status"]["phase"], "Running");
    assert!(p["metadata"]["labels"].get("y").is_none());
    let (_, p) = call(
        &emu,
        Method::PATCH,
        &format!("{pods}/p"),
        "application/merge-patch+json",
        json!({"status": {"phase": "Failed"}}),
    )
    .await;
    assert_eq!(p["status"]["phase"], "Running");

    // Server-side apply needs a field manager (API Concepts; Server-Side Apply, "Field management").
    let (code, _) = call(
        &emu,
        Method::PATCH,
        &format!("{pods}/p"),
        "application/apply-patch+yaml",
        json!({"metadata": {"name": "p"}}),
    )
    .await;
    assert_eq!(code, 400);
    // An unknown patch type: 415.
    let (code, s) = call(
        &emu,
        Method::PATCH,
        &format!("{pods}/p"),
        "text/plain",
        json!({}),
    )
    .await;
    assert_eq!(
        (code, s["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
}

#[tokio::test]
async fn finalizers_and_garbage_collection() {
    let emu = Emulator::new();
    // Finalizers: delete sets deletionTimestamp and keeps the object until the list is
    // empty (https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/).
    let mut owner = cm("owner");
    owner["metadata"]["finalizers"] = json!(["blit.dev/keep"]);
    let (_, o) = call(&emu, Method::POST, CMS, JSON, owner).await;
    let uid = o["metadata"]["uid"].as_str().unwrap().to_owned();
    let mut child = cm("child");
    child["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]);
    call(&emu, Method::POST, CMS, JSON, child).await;
    let (code, o) = call(
        &emu,
        Method::DELETE,
        &format!("{CMS}/owner"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);
    assert!(o["metadata"]["deletionTimestamp"].is_string());
    let (code, _) = call(
        &emu,
        Method::GET,
        &format!("{CMS}/owner"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(code, 200, "kept while finalizers remain");
    call(
        &emu,
        Method::PATCH,
        &format!("{CMS}/owner"),
        "application/merge-patch+json",
        json!({"metadata": {"finalizers": null}}),
    )
    .await;
    let (code, _) = call(
        &emu,
        Method::GET,
        &format!("{CMS}/owner"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(code, 404, "gone when the last finalizer is removed");
    // Garbage collection: dependents of a deleted owner are deleted (background)
    // (https://kubernetes.io/docs/concepts/architecture/garbage-collection/).
    let (code, _) = call(
        &emu,
        Method::GET,
        &format!("{CMS}/child"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(code, 404);

    // Foreground: the owner waits (with the foregroundDeletion finalizer) until its
    // dependents are gone; orphan: dependents lose the owner reference and stay.
    let (_, o) = call(&emu, Method::POST, CMS, JSON, cm("o2")).await;
    let uid = o["metadata"]["uid"].as_str().unwrap().to_owned();
    let mut kept = cm("kept");
    kept["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "o2", "uid": uid}]);
    call(&emu, Method::POST, CMS, JSON, kept).await;
    call(
        &emu,
        Method::DELETE,
        &format!("{CMS}/o2"),
        JSON,
        json!({"propagationPolicy": "Orphan"}),
    )
    .await;
    let (code, k) = call(&emu, Method::GET, &format!("{CMS}/kept"), JSON, Value::Null).await;
    assert_eq!(code, 200);
    assert_eq!(k["metadata"]["ownerReferences"], json!([]));

    // Foreground: the owner stays, with the foregroundDeletion finalizer, until its
    // dependents are gone (here a dependent held by its own finalizer).
    let (_, o) = call(&emu, Method::POST, CMS, JSON, cm("o3")).await;
    let uid = o["metadata"]["uid"].as_str().unwrap().to_owned();
    let mut held = cm("held");
    held["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "o3", "uid": uid}]);
    held["metadata"]["finalizers"] = json!(["blit.dev/keep"]);
    call(&emu, Method::POST, CMS, JSON, held).await;
    let (_, o) = call(
        &emu,
        Method::DELETE,
        &format!("{CMS}/o3"),
        JSON,
        json!({"propagationPolicy": "Foreground"}),
    )
    .await;
    assert_eq!(o["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    let (code, _) = call(&emu, Method::GET, &format!("{CMS}/o3"), JSON, Value::Null).await;
    assert_eq!(code, 200, "the owner waits for its dependent");
    call(
        &emu,
        Method::PATCH,
        &format!("{CMS}/held"),
        "application/merge-patch+json",
        json!({"metadata": {"finalizers": null}}),
    )
    .await;
    for name in ["held", "o3"] {
        let (code, _) = call(
            &emu,
            Method::GET,
            &format!("{CMS}/{name}"),
            JSON,
            Value::Null,
        )
        .await;
        assert_eq!(code, 404, "{name} is gone");
    }
}

#[tokio::test]
async fn discovery_and_crds() {
    let emu = Emulator::new();
    // Discovery (https://kubernetes.io/docs/concepts/overview/kubernetes-api/#discovery-api).
    let (_, v) = call(&emu, Method::GET, "/version", JSON, Value::Null).await;
    assert_eq!(v["major"], "1");
    let (_, core) = call(&emu, Method::GET, "/api/v1", JSON, Value::Null).await;
    let pods = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods")
        .unwrap();
    assert_eq!(
        (pods["namespaced"].as_bool(), pods["shortNames"][0].as_str()),
        (Some(true), Some("po"))
    );
    assert!(
        core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "pods/status")
    );
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.dev"},
        "spec": {"group": "example.dev", "scope": "Cluster",
                 "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
    });
    // A CRD registers its resource and becomes Established
    // (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#create-a-customresourcedefinition).
    let (code, c) = call(
        &emu,
        Method::POST,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        JSON,
        crd,
    )
    .await;
    assert_eq!(code, 201);
    assert!(
        c["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["type"] == "Established" && x["status"] == "True")
    );
    let (code, list) = call(&emu, Method::GET, "/apis/example.dev/v1", JSON, Value::Null).await;
    assert_eq!(
        (code, list["resources"][0]["name"].as_str()),
        (200, Some("things"))
    );
    let (code, _) = call(
        &emu,
        Method::POST,
        "/apis/example.dev/v1/things",
        JSON,
        json!({"metadata": {"name": "t"}, "x": 1}),
    )
    .await;
    assert_eq!(code, 201);
    call(
        &emu,
        Method::DELETE,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/things.example.dev",
        JSON,
        Value::Null,
    )
    .await;
    let (code, _) = call(&emu, Method::GET, "/apis/example.dev/v1", JSON, Value::Null).await;
    assert_eq!(code, 404, "deleting the CRD removes the resource");
}

#[tokio::test]
async fn fault_injection_and_the_request_log() {
    let emu = Emulator::new();
    emu.faults.fail(Some(Method::POST), "/configmaps", 503, 1);
    let (code, s) = call(&emu, Method::POST, CMS, JSON, cm("a")).await;
    assert_eq!(
        (code, s["reason"].as_str()),
        (503, Some("ServiceUnavailable"))
    );
    let (code, _) = call(&emu, Method::POST, CMS, JSON, cm("a")).await;
    assert_eq!(code, 201, "only once");
    emu.faults.fail(None, "/configmaps/a", 429, 1);
    let (code, s) = call(&emu, Method::GET, &format!("{CMS}/a"), JSON, Value::Null).await;
    assert_eq!(
        (code, s["details"]["retryAfterSeconds"].as_i64()),
        (429, Some(1))
    );
    emu.faults.set_latency(Duration::from_millis(300));
    let started = std::time::Instant::now();
    call(&emu, Method::GET, &format!("{CMS}/a"), JSON, Value::Null).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let log = emu.faults.requests();
    assert_eq!(log.len(), 4);
    assert_eq!(
        (log[0].status, log[1].status, log[2].status),
        (503, 201, 429)
    );
}

#[tokio::test(start_paused = true)]
async fn the_tower_front_works_with_paused_time() {
    let emu = Emulator::new();
    emu.faults.set_latency(Duration::from_secs(30));
    let started = tokio::time::Instant::now();
    let (code, _) = call(&emu, Method::POST, CMS, JSON, cm("a")).await;
    assert_eq!(code, 201);
    assert!(
        started.elapsed() >= Duration::from_secs(30),
        "virtual time advanced"
    );
}

/// OpenAPI v3 (https://kubernetes.io/docs/concepts/overview/kubernetes-api/#openapi-v3):
/// the index names each group/version's document by hash; a document asked for by its
/// current hash is immutable, by an old one it redirects, and its ETag revalidates.
#[tokio::test]
async fn openapi_documents_follow_their_hash() {
    let emu = Emulator::new();
    let (code, index) = call(&emu, Method::GET, "/openapi/v3", JSON, Value::Null).await;
    assert_eq!(code, 200);
    let url = index["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_owned();
    let get = |uri: String, etag: Option<&str>| {
        let emu = emu.clone();
        let etag = etag.map(str::to_owned);
        async move {
            let mut req = Request::builder().uri(uri);
            if let Some(etag) = etag {
                req = req.header("if-none-match", etag);
            }
            emu.service()
                .oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap()
        }
    };
    let current = get(url.clone(), None).await;
    assert_eq!(current.status(), 200);
    assert_eq!(current.headers()["cache-control"], "public, immutable");
    let etag = current.headers()["etag"].to_str().unwrap().to_owned();
    assert!(url.ends_with(etag.trim_matches('"')), "{url} {etag}");
    let (code, doc) = call(&emu, Method::GET, &url, JSON, Value::Null).await;
    assert_eq!(code, 200);
    assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"].is_object());

    let stale = get("/openapi/v3/api/v1?hash=0123".into(), None).await;
    assert_eq!(stale.status(), 301);
    assert_eq!(stale.headers()["location"], url.as_str());
    let unchanged = get("/openapi/v3/api/v1".into(), Some(&etag)).await;
    assert_eq!(unchanged.status(), 304);
    let (code, _) = call(
        &emu,
        Method::GET,
        "/openapi/v3/apis/nope/v1",
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(code, 404);
}

/// Dry run (API Concepts, "Dry-run"): every write with `dryRun=All` is validated and
/// answered as if done, but nothing is stored and no event is sent; any other value is
/// an invalid options object.
#[tokio::test]
async fn dry_runs_store_nothing() {
    let emu = Emulator::new();
    let dry = format!("{CMS}?dryRun=All");
    let (code, created) = call(&emu, Method::POST, &dry, JSON, cm("c1")).await;
    assert_eq!(code, 201, "{created}");
    assert!(created["metadata"]["uid"].is_string());
    assert!(created["metadata"].get("resourceVersion").is_none());
    let (code, _) = call(&emu, Method::GET, &format!("{CMS}/c1"), JSON, Value::Null).await;
    assert_eq!(code, 404);

    let (_, stored) = call(&emu, Method::POST, CMS, JSON, cm("c1")).await;
    let rv = emu.store.resource_version();
    let mut changed = stored.clone();
    changed["data"]["k"] = json!("w");
    let one = format!("{CMS}/c1?dryRun=All");
    let (code, replaced) = call(&emu, Method::PUT, &one, JSON, changed).await;
    assert_eq!(code, 200, "{replaced}");
    assert_eq!(replaced["data"]["k"], "w");
    assert_eq!(
        replaced["metadata"]["resourceVersion"],
        stored["metadata"]["resourceVersion"]
    );
    let patch = json!([{"op": "replace", "path": "/data/k", "value": "x"}]);
    let (code, patched) = call(
        &emu,
        Method::PATCH,
        &one,
        "application/json-patch+json",
        patch,
    )
    .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["data"]["k"], "x");
    // Validation still runs.
    let mut bad = stored.clone();
    bad["metadata"]["resourceVersion"] = json!("1");
    let (code, _) = call(&emu, Method::PUT, &one, JSON, bad).await;
    assert_eq!(code, 409);
    let (code, _) = call(&emu, Method::DELETE, &one, JSON, Value::Null).await;
    assert_eq!(code, 200);
    let (code, _) = call(&emu, Method::DELETE, &dry, JSON, Value::Null).await;
    assert_eq!(code, 200);
    let in_body = json!({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]});
    let (code, _) = call(&emu, Method::DELETE, &format!("{CMS}/c1"), JSON, in_body).await;
    assert_eq!(code, 200);

    let (code, now) = call(&emu, Method::GET, &format!("{CMS}/c1"), JSON, Value::Null).await;
    assert_eq!(code, 200);
    assert_eq!(now, stored);
    assert_eq!(emu.store.resource_version(), rv);
    // No event either: a watch from the stored version sees nothing.
    let (_, events) = call(
        &emu,
        Method::GET,
        &format!("{CMS}?watch=1&resourceVersion={rv}&timeoutSeconds=0"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(events, json!([]));

    let (code, status) = call(
        &emu,
        Method::POST,
        &format!("{CMS}?dryRun=Some"),
        JSON,
        cm("c2"),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        status["message"],
        "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: []string{\"Some\"}: supported values: \"All\""
    );
}
