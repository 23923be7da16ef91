//! The HTTP API: one handler turns a request into a store operation and the store's
//! answer (or error `Status`) into a response. The same router is the in-process tower
//! front and the loopback server's service.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::field_validation::{self, Directive, Write};
use crate::patch::{self, PatchKind};
use crate::route::{self, Route, Target};
use crate::select::{FieldSelector, LabelSelector};
use crate::store::{Part, Propagation};
use crate::watch::{self, WatchRequest};
use crate::{Emulator, apply, discovery, dry_run, openapi, table};

/// Largest request body accepted (the real server's limit is 3 MiB per object).
const MAX_BODY: usize = 16 << 20;

/// The router of both fronts.
pub fn router(emu: Arc<Emulator>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(emu)
}

fn json_response(code: u16, value: &Value) -> Response {
    let body = serde_json::to_vec(value).expect("a JSON value serializes");
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("a valid response")
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.status())
}

async fn handle(State(emu): State<Arc<Emulator>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().unwrap_or("").to_owned();
    let latency = emu.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let forced = emu.faults.forced(&parts.method, &path);
    let response = match forced {
        Some(410) if route::flag(&route::query(&raw_query), "watch") => {
            match route::parse(&emu.store, &path) {
                Ok(Route::Object(t)) => gone_watch(&emu, *t),
                Ok(_) => error_response(&ApiError::injected(410)),
                Err(e) => error_response(&e),
            }
        }
        Some(code) => error_response(&ApiError::injected(code)),
        None => match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(bytes) => serve(
                &emu,
                &parts.method,
                &path,
                &raw_query,
                &parts.headers,
                bytes,
            )
            .unwrap_or_else(|e| error_response(&e)),
            Err(e) => error_response(&ApiError::bad_request(format!("reading the body: {e}"))),
        },
    };
    emu.faults.record(crate::faults::Logged {
        method: parts.method,
        path,
        query: raw_query,
        status: response.status().as_u16(),
    });
    response
}

fn gone_watch(emu: &Arc<Emulator>, t: Target) -> Response {
    let mut req = WatchRequest::from_query(t.resource, t.namespace, &HashMap::new())
        .expect("an empty query is valid");
    req.forced_gone = true;
    stream(watch::start(emu.clone(), req))
}

fn stream(rx: tokio::sync::mpsc::Receiver<Vec<u8>>) -> Response {
    let body = tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |b| {
        Ok::<_, std::convert::Infallible>(Bytes::from(b))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header("Transfer-Encoding", "chunked")
        .body(Body::from_stream(body))
        .expect("a valid response")
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

fn serve(
    emu: &Arc<Emulator>,
    method: &Method,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let store = &emu.store;
    let not_allowed = || ApiError::method_not_allowed(format!("{method} is not allowed on {path}"));
    let ok = |v: Value| Ok(json_response(200, &v));
    let route = route::parse(store, path)?;
    let t = match route {
        Route::Version if method == Method::GET => return ok(discovery::version()),
        Route::CoreVersions if method == Method::GET => return ok(discovery::core_versions()),
        Route::OpenApiV2 if method == Method::GET => {
            let accept = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !accept.contains("protobuf") {
                return ok(openapi::v2::json());
            }
            return Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, openapi::v2::PROTOBUF)
                .body(Body::from(openapi::v2::protobuf()))
                .expect("a valid response"));
        }
        Route::OpenApiIndex if method == Method::GET => {
            return ok(openapi::index(&store.resources()));
        }
        Route::OpenApi(gv) if method == Method::GET => {
            let (doc, hash) = openapi::group_version(&store.resources(), &gv)
                .ok_or_else(|| ApiError::no_route(path))?;
            return Ok(openapi_document(
                &doc,
                &hash,
                path,
                &route::query(raw_query),
                headers,
            ));
        }
        Route::GroupList if method == Method::GET => {
            return ok(discovery::group_list(&store.resources()));
        }
        Route::Group(g) if method == Method::GET => {
            return discovery::group(&store.resources(), &g)
                .map(|v| json_response(200, &v))
                .ok_or_else(|| ApiError::no_route(path));
        }
        Route::ResourceList { group, version } if method == Method::GET => {
            return discovery::resource_list(&store.resources(), &group, &version)
                .map(|v| json_response(200, &v))
                .ok_or_else(|| ApiError::no_route(path));
        }
        Route::Object(t) => *t,
        _ => return Err(not_allowed()),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Protobuf and CBOR bodies are not understood: 415, which clients answer by
    // falling back to JSON (as they do with servers that lack those encodings).
    if !body.is_empty() && (content_type.contains("protobuf") || content_type.contains("cbor")) {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    let q = route::query(raw_query);
    let dry = dry_run::requested(method, &q, &body)?;
    let scratch;
    let store = if dry {
        scratch = emu.store.scratch();
        &scratch
    } else {
        store
    };
    // What a dry run answers: the stored resourceVersion of the object it changed.
    let stored_rv = |name: &str| {
        emu.store
            .get(&t.resource, t.namespace.as_deref().unwrap_or(""), name)
            .ok()
            .and_then(|o| o["metadata"]["resourceVersion"].as_str().map(str::to_owned))
    };
    let answer = |object: Value, name: Option<&str>| {
        if dry {
            dry_run::answer(object, name.and_then(stored_rv))
        } else {
            object
        }
    };
    let manager = q.get("fieldManager").map_or("unknown", String::as_str);
    let validation = Directive::from_query(&q)?;
    let res = &t.resource;
    let ns = t.namespace.clone().unwrap_or_default();
    let part = if t.subresource.is_some() {
        Part::Status
    } else {
        Part::Main
    };
    match (method, &t.name) {
        (&Method::GET, None) => {
            if route::flag(&q, "watch") {
                let mut req = WatchRequest::from_query(res.clone(), t.namespace.clone(), &q)?;
                req.printed = table::wanted(headers)
                    .then(|| table::Include::from_query(&q))
                    .transpose()?;
                return Ok(stream(watch::start(emu.clone(), req)));
            }
            let printed = table::wanted(headers)
                .then(|| table::Include::from_query(&q))
                .transpose()?;
            list(emu, &t, &q, printed)
        }
        (&Method::GET, Some(name)) => {
            let object = store.get(res, &ns, name)?;
            if table::wanted(headers) {
                let include = table::Include::from_query(&q)?;
                let meta = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
                return ok(table::table(res, &[object], meta, include));
            }
            ok(object)
        }
        (&Method::POST, None) => {
            if res.namespaced && t.namespace.is_none() {
                return Err(not_allowed());
            }
            let mut object = parse_json(&body)?;
            let warnings = validation.admit(res, &mut object, Write::Object(&body))?;
            let created = answer(store.create(res, &ns, object, manager, None)?, None);
            Ok(field_validation::warn(
                json_response(201, &created),
                &warnings,
            ))
        }
        (&Method::PUT, Some(name)) => {
            let mut new = parse_json(&body)?;
            let warnings = validation.admit(res, &mut new, Write::Object(&body))?;
            let updated = store.update(res, &ns, name, part, manager, None, |_| Ok(new))?;
            let updated = answer(updated, Some(name));
            Ok(field_validation::warn(
                json_response(200, &updated),
                &warnings,
            ))
        }
        (&Method::PATCH, Some(name)) => {
            let kind = PatchKind::from_content_type(content_type)?;
            if kind == PatchKind::Apply {
                let force = q.get("force").is_some_and(|f| f == "true");
                if !q.contains_key("fieldManager") {
                    return Err(ApiError::bad_request(
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                    ));
                }
                field_validation::check_apply(res, &ns, name, &body)?;
                let (code, object) =
                    apply::apply(store, res, &ns, name, part, manager, force, &body)?;
                let object = answer(object, (code == 200).then_some(name.as_str()));
                return Ok(json_response(code, &object));
            }
            if kind == PatchKind::Strategic && res.schema.is_some() {
                return Err(ApiError::unsupported_media_type(
                    "application/strategic-merge-patch+json (not supported for custom resources)",
                ));
            }
            let mut warnings = Vec::new();
            let patched_object = store.update(res, &ns, name, part, manager, None, |current| {
                let mut patched = patch::json_or_merge(kind, current, &body)?;
                // A merge patch has the object's shape, so its duplicates have paths.
                let raw: &[u8] = match kind {
                    PatchKind::Merge | PatchKind::Strategic => &body,
                    _ => b"",
                };
                warnings = validation.admit(res, &mut patched, Write::Patch(raw))?;
                // A patch never carries a stale resourceVersion unless it sets one.
                if current["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]
                    && let Some(m) = patched["metadata"].as_object_mut()
                {
                    m.remove("resourceVersion");
                }
                Ok(patched)
            })?;
            let patched_object = answer(patched_object, Some(name));
            Ok(field_validation::warn(
                json_response(200, &patched_object),
                &warnings,
            ))
        }
        (&Method::DELETE, Some(name)) => {
            let (propagation, uid) = delete_options(&q, &body)?;
            let deleted = store.delete(res, &ns, name, propagation, uid.as_deref())?;
            ok(answer(deleted, Some(name)))
        }
        (&Method::DELETE, None) => {
            let (propagation, _) = delete_options(&q, &body)?;
            let labels = labels(&q)?;
            let fields = fields(&q)?;
            let listed = store.list(res, t.namespace.as_deref(), &labels, &fields, None, None);
            // A dry run deletes from the scratch copy only.
            for object in &listed.items {
                let name = object["metadata"]["name"].as_str().unwrap_or("");
                let ns = object["metadata"]["namespace"].as_str().unwrap_or("");
                // Gone meanwhile is fine: the collection is being emptied.
                let _ = store.delete(res, ns, name, propagation, None);
            }
            ok(list_object(
                res,
                listed.items,
                emu.store.resource_version(),
                None,
            ))
        }
        _ => Err(not_allowed()),
    }
}

/// A group/version's OpenAPI document, with the server's caching rules: the index
/// names it by hash, so under its current hash it never changes (`immutable`), under
/// an old one it has moved (301 to the current URL); `If-None-Match` with its ETag
/// gets a 304.
fn openapi_document(
    doc: &Value,
    hash: &str,
    path: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Response {
    let etag = format!("\"{hash}\"");
    let builder = Response::builder().header(header::ETAG, &etag);
    let response = match q.get("hash") {
        Some(asked) if asked != hash => builder
            .status(StatusCode::MOVED_PERMANENTLY)
            .header(header::LOCATION, format!("{path}?hash={hash}"))
            .body(Body::empty()),
        asked => {
            let cache = if asked.is_some() {
                "public, immutable"
            } else {
                "no-cache, private"
            };
            let builder = builder.header(header::CACHE_CONTROL, cache);
            if headers
                .get(header::IF_NONE_MATCH)
                .is_some_and(|v| v.as_bytes() == etag.as_bytes())
            {
                builder.status(StatusCode::NOT_MODIFIED).body(Body::empty())
            } else {
                builder
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        serde_json::to_vec(doc).expect("a JSON value serializes"),
                    ))
            }
        }
    };
    response.expect("a valid response")
}

fn labels(q: &HashMap<String, String>) -> Result<LabelSelector, ApiError> {
    LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)
}

fn fields(q: &HashMap<String, String>) -> Result<FieldSelector, ApiError> {
    FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)
}

fn delete_options(
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<(Propagation, Option<String>), ApiError> {
    let options = if body.is_empty() {
        json!({})
    } else {
        parse_json(body)?
    };
    let policy = options["propagationPolicy"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| q.get("propagationPolicy").cloned());
    let propagation = match policy.as_deref() {
        None | Some("Background") => Propagation::Background,
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown propagationPolicy {other:?}"
            )));
        }
    };
    let uid = options["preconditions"]["uid"].as_str().map(str::to_owned);
    Ok((propagation, uid))
}

fn list_object(
    res: &crate::resources::Resource,
    items: Vec<Value>,
    rv: u64,
    next: Option<String>,
) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(next) = next {
        meta["continue"] = json!(next);
    }
    json!({
        "kind": format!("{}List", res.kind),
        "apiVersion": res.api_version(),
        "metadata": meta,
        "items": items,
    })
}

/// A list, or its Table when the client asked for one (`printed`).
fn list(
    emu: &Emulator,
    t: &Target,
    q: &HashMap<String, String>,
    printed: Option<table::Include>,
) -> Result<Response, ApiError> {
    let limit = match q.get("limit") {
        Some(l) if l != "0" => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request("limit is not a number"))?,
        ),
        _ => None,
    };
    let after = q.get("continue").filter(|c| !c.is_empty()).map(|c| {
        let (ns, name) = c.split_once('/').unwrap_or(("", c));
        (ns.to_owned(), name.to_owned())
    });
    // An exact resourceVersion in the past cannot be served from memory.
    if q.get("resourceVersionMatch").map(String::as_str) == Some("Exact") {
        let rv = q.get("resourceVersion").and_then(|v| v.parse::<u64>().ok());
        if rv != Some(emu.store.resource_version()) {
            return Err(ApiError::gone(
                "too old resource version: the emulator serves only the latest state",
            ));
        }
    }
    let listed = emu.store.list(
        &t.resource,
        t.namespace.as_deref(),
        &labels(q)?,
        &fields(q)?,
        limit,
        after.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
    );
    let list = list_object(&t.resource, listed.items, listed.rv, listed.next);
    let answer = match printed {
        Some(include) => {
            let items = list["items"].as_array().map_or(&[][..], Vec::as_slice);
            table::table(&t.resource, items, list["metadata"].clone(), include)
        }
        None => list,
    };
    Ok(json_response(200, &answer))
}
