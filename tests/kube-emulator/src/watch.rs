//! Watch streams: newline-delimited `WatchEvent`s (ADDED, MODIFIED, DELETED, BOOKMARK,
//! ERROR) from a resourceVersion, with bookmarks, `timeoutSeconds`, initial events, and
//! an ERROR 410 when the version is older than the kept history (clients re-list).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::Emulator;
use crate::error::ApiError;
use crate::resources::Resource;
use crate::select::{FieldSelector, LabelSelector};
use crate::store::Event;

/// How often a watch with `allowWatchBookmarks` gets a BOOKMARK.
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);
/// A watch without `timeoutSeconds` ends after this (the real server picks 30–60 min).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// What one watch request asks for.
pub struct WatchRequest {
    pub resource: Resource,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// `None` or `Some(0)`: start with the current state as ADDED events.
    pub since: Option<u64>,
    pub bookmarks: bool,
    pub initial_events: bool,
    pub timeout: Duration,
    /// Forced by a test: answer with ERROR 410.
    pub forced_gone: bool,
    /// Events carry one-row Tables instead of objects (`kubectl get -w` asks so).
    pub printed: Option<crate::table::Include>,
}

impl WatchRequest {
    pub fn from_query(
        resource: Resource,
        namespace: Option<String>,
        q: &HashMap<String, String>,
    ) -> Result<WatchRequest, ApiError> {
        let flag = |k: &str| crate::route::flag(q, k);
        let since = match q.get("resourceVersion").map(String::as_str) {
            None | Some("") => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {v:?}")))?,
            ),
        };
        let timeout = match q.get("timeoutSeconds") {
            Some(s) => Duration::from_secs(
                s.parse()
                    .map_err(|_| ApiError::bad_request("timeoutSeconds is not a number"))?,
            ),
            None => DEFAULT_TIMEOUT,
        };
        Ok(WatchRequest {
            resource,
            namespace,
            labels: LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))
                .map_err(ApiError::bad_request)?,
            fields: FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str))
                .map_err(ApiError::bad_request)?,
            since,
            bookmarks: flag("allowWatchBookmarks"),
            initial_events: flag("sendInitialEvents"),
            timeout,
            forced_gone: false,
            printed: None,
        })
    }

    fn wants(&self, e: &Event) -> bool {
        e.resource == self.resource.key()
            && self.namespace.as_ref().is_none_or(|ns| *ns == e.namespace)
            && self.labels.matches(&e.object)
            && self.fields.matches(&e.object)
    }
}

impl WatchRequest {
    /// The line of an event about `object`: the object, or its one-row Table.
    fn event(&self, kind: &str, object: Value) -> Vec<u8> {
        match self.printed {
            Some(include) => {
                let meta = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
                let table = crate::table::table(&self.resource, &[object], meta, include);
                line(kind, table)
            }
            None => line(kind, object),
        }
    }
}

fn line(kind: &str, object: Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(&json!({"type": kind, "object": object}))
        .expect("a JSON value serializes");
    out.push(b'\n');
    out
}

fn bookmark(res: &Resource, rv: u64, initial_end: bool) -> Vec<u8> {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": meta}),
    )
}

/// Starts the stream; its lines arrive on the returned channel, which closes when the
/// watch ends (timeout, a dropped stream, or the client going away).
pub fn start(emu: Arc<Emulator>, req: WatchRequest) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let _ = run(&emu, req, &tx).await;
    });
    rx
}

async fn run(emu: &Emulator, req: WatchRequest, tx: &mpsc::Sender<Vec<u8>>) -> Result<(), ()> {
    let send = |bytes: Vec<u8>| async move { tx.send(bytes).await.map_err(|_| ()) };
    let res = &req.resource;
    if req.forced_gone {
        let gone = ApiError::gone("too old resource version (injected)");
        return send(line("ERROR", gone.status())).await;
    }
    let store = &emu.store;
    let (mut rv, initial) = match req.since {
        Some(v) if v > 0 && !req.initial_events => (v, Vec::new()),
        _ => {
            let listed = store.list(
                res,
                req.namespace.as_deref(),
                &req.labels,
                &req.fields,
                None,
                None,
            );
            (listed.rv, listed.items)
        }
    };
    let (backlog, mut live) = match store.watch(rv) {
        Ok(x) => x,
        Err(e) => return send(line("ERROR", e.status())).await,
    };
    for object in initial {
        send(req.event("ADDED", object)).await?;
    }
    if req.initial_events && req.bookmarks {
        send(bookmark(res, rv, true)).await?;
    }
    for e in backlog.iter().filter(|e| req.wants(e)) {
        rv = e.rv;
        send(req.event(e.kind.name(), res.serve(&e.object))).await?;
    }
    let mut drops = emu.faults.watch_drops();
    let deadline = tokio::time::sleep(req.timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
    ticker.tick().await;
    loop {
        tokio::select! {
            event = live.recv() => match event {
                Ok(e) if e.rv > rv && req.wants(&e) => {
                    rv = e.rv;
                    send(req.event(e.kind.name(), res.serve(&e.object))).await?;
                }
                // Already sent from the backlog, or not this watch's: bookmarks move on.
                Ok(e) => rv = rv.max(e.rv),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let gone = ApiError::gone("the watch fell behind; re-list");
                    return send(line("ERROR", gone.status())).await;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            _ = ticker.tick(), if req.bookmarks => {
                // Only what this loop has seen: a bookmark must not skip an event
                // still queued for it.
                send(bookmark(res, rv, false)).await?;
            }
            _ = drops.changed() => return Ok(()),
            _ = &mut deadline => return Ok(()),
        }
    }
}
