//! kube-rs against both fronts: typed CRUD, a `Controller` with the `finalizer` helper and
//! server-side-applied status, the watcher recovering from a forced 410 and from dropped
//! streams, and Lease-based leader election handing over.

use std::sync::Arc;
use std::time::Duration;

use blit_kube_emulator::Emulator;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

fn in_process(emu: &Arc<Emulator>) -> Client {
    Client::new(emu.service(), "default")
}

async fn over_http(
    emu: &Arc<Emulator>,
    dir: &std::path::Path,
) -> (Client, blit_kube_emulator::Server) {
    let path = dir.join("kubeconfig");
    let server = emu.serve(&path).await.unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    (Client::try_from(config).unwrap(), server)
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "blit"}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "blitd"}]},
    }))
    .unwrap()
}

async fn pod_crud(client: Client) {
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let created = pods
        .create(&PostParams::default(), &pod("p1"))
        .await
        .unwrap();
    assert_eq!(
        created.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );
    let again = pods
        .create(&PostParams::default(), &pod("p1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&again, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{again:?}"
    );
    pods.create(&PostParams::default(), &pod("p2"))
        .await
        .unwrap();

    let selected = pods
        .list(
            &ListParams::default()
                .labels("app=blit")
                .fields("spec.nodeName=node-a"),
        )
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 2);
    let page = pods.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let rest = pods
        .list(
            &ListParams::default()
                .limit(1)
                .continue_token(page.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(rest.items[0].name_any(), "p2");

    // A replace based on a stale resourceVersion is a 409 Conflict.
    let mut stale = created.clone();
    pods.patch(
        "p1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
    )
    .await
    .unwrap();
    stale.labels_mut().insert("y".into(), "2".into());
    let conflict = pods
        .replace("p1", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(&conflict, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{conflict:?}"
    );

    // Status goes through its subresource only.
    let patched = pods
        .patch_status(
            "p1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"phase": "Running"}, "spec": {"nodeName": "elsewhere"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(patched.status.unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(patched.spec.unwrap().node_name.as_deref(), Some("node-a"));

    pods.delete("p1", &DeleteParams::default()).await.unwrap();
    let missing = pods.get("p1").await.unwrap_err();
    assert!(
        matches!(&missing, kube::Error::Api(s) if s.code == 404),
        "{missing:?}"
    );
}

#[tokio::test]
async fn pods_crud_in_process() {
    pod_crud(in_process(&Emulator::new())).await;
}

#[tokio::test]
async fn pods_crud_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::new();
    let (client, _server) = over_http(&emu, dir.path()).await;
    pod_crud(client).await;
}

/// A custom resource for the controller test.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "example.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
struct WidgetSpec {
    size: u32,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
struct WidgetStatus {
    phase: String,
    observed_generation: i64,
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct Failed(#[from] kube::Error);

const FINALIZER: &str = "example.dev/cleanup";

async fn reconcile(
    w: Arc<Widget>,
    api: Arc<Api<Widget>>,
) -> Result<Action, kube::runtime::finalizer::Error<Failed>> {
    finalizer(&api, FINALIZER, w, |event| async {
        match event {
            Finalizer::Apply(w) => {
                let status = json!({
                    "apiVersion": "example.dev/v1", "kind": "Widget",
                    "status": {"phase": format!("Ready:{}", w.spec.size),
                               "observed_generation": w.metadata.generation.unwrap_or(0)},
                });
                api.patch_status(
                    &w.name_any(),
                    &PatchParams::apply("widget-controller").force(),
                    &Patch::Apply(status),
                )
                .await?;
                Ok(Action::await_change())
            }
            Finalizer::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
}

#[tokio::test]
async fn a_controller_with_a_finalizer_reaches_its_end_state() {
    let emu = Emulator::new();
    let client = in_process(&emu);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .unwrap();
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let api = Arc::new(widgets.clone());
    let controller = tokio::spawn(
        Controller::new(widgets.clone(), watcher::Config::default())
            .run(
                reconcile,
                |_, _, _| Action::requeue(Duration::from_millis(100)),
                api,
            )
            .for_each(|_| async {}),
    );
    let w = Widget::new("w1", WidgetSpec { size: 3 });
    widgets.create(&PostParams::default(), &w).await.unwrap();
    let ready = |want: &'static str| {
        let widgets = widgets.clone();
        async move {
            for _ in 0..100 {
                if let Ok(w) = widgets.get("w1").await
                    && w.status.as_ref().is_some_and(|s| s.phase == want)
                {
                    return w;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("w1 never reached {want}");
        }
    };
    let w = ready("Ready:3").await;
    assert!(w.finalizers().contains(&FINALIZER.to_owned()));
    assert_eq!(w.status.unwrap().observed_generation, 1);
    widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 5}})),
        )
        .await
        .unwrap();
    let w = ready("Ready:5").await;
    assert_eq!(w.status.as_ref().unwrap().observed_generation, 2);
    let managers: Vec<_> = w
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"widget-controller".to_owned()),
        "{managers:?}"
    );

    // Deleting waits for the controller to remove its finalizer, then the object goes.
    widgets
        .delete("w1", &DeleteParams::default())
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if widgets.get_opt("w1").await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the controller's finalizer was never removed");
    controller.abort();
}

/// Waits until the watcher has seen `name`.
async fn expect(
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    name: &str,
) -> Result<(), tokio::time::error::Elapsed> {
    let fut = async { while seen.recv().await.as_deref() != Some(name) {} };
    tokio::time::timeout(Duration::from_secs(10), fut).await
}

#[tokio::test]
async fn the_watcher_recovers_from_410_and_dropped_streams() {
    let emu = Emulator::new();
    let client = in_process(&emu);
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let watch = tokio::spawn(
        // Errors (the 410) are items of the stream; the watcher re-lists after them.
        watcher(cms.clone(), watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .for_each(move |cm| {
                if let Ok(cm) = cm {
                    let _ = tx.send(cm.name_any());
                }
                async {}
            }),
    );
    let make = |name: &'static str| {
        let cms = cms.clone();
        async move {
            let cm: ConfigMap =
                serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
            cms.create(&PostParams::default(), &cm).await.unwrap();
        }
    };
    make("a").await;
    expect(&mut seen, "a").await.expect("a seen");

    // The next watch gets 410 Gone: the watcher must re-list and go on.
    emu.faults
        .fail(Some(http::Method::GET), "/configmaps", 410, 1);
    emu.faults.drop_watches();
    make("b").await;
    if expect(&mut seen, "b").await.is_err() {
        panic!(
            "b not seen after the 410; requests: {:#?}",
            emu.faults.requests()
        );
    }
    let lists_after_gone = emu
        .faults
        .requests()
        .iter()
        .skip_while(|r| r.status != 200 || !r.query.contains("watch"))
        .filter(|r| r.path.ends_with("/configmaps") && !r.query.contains("watch"))
        .count();
    assert!(lists_after_gone >= 1, "the watcher re-listed");

    // A dropped stream: the watcher reconnects from where it was.
    emu.faults.drop_watches();
    make("c").await;
    expect(&mut seen, "c")
        .await
        .expect("c seen after a dropped stream");
    watch.abort();
}

/// One round of a minimal Lease-based election: take the lease if it is free or
/// expired, renew it if held. Conflicts (another candidate won the race) lose.
async fn campaign(leases: &Api<Lease>, me: &str, duration: Duration) -> bool {
    let now = k8s_openapi::jiff::Timestamp::now();
    let Some(lease) = leases.get_opt("leader").await.unwrap() else {
        let fresh: Lease = serde_json::from_value(json!({
            "metadata": {"name": "leader"},
            "spec": {"holderIdentity": me, "leaseDurationSeconds": 1, "renewTime": MicroTime(now)},
        }))
        .unwrap();
        return leases.create(&PostParams::default(), &fresh).await.is_ok();
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let held_by_other = spec.holder_identity.as_deref().is_some_and(|h| h != me);
    let expired = spec
        .renew_time
        .as_ref()
        .is_none_or(|t| now.duration_since(t.0).as_secs_f64() > duration.as_secs_f64());
    if held_by_other && !expired {
        return false;
    }
    let mut next = lease.clone();
    let s = next.spec.get_or_insert_with(Default::default);
    s.holder_identity = Some(me.to_owned());
    s.renew_time = Some(MicroTime(now));
    // `replace` carries the resourceVersion read above: a concurrent winner makes it 409.
    leases
        .replace("leader", &PostParams::default(), &next)
        .await
        .is_ok()
}

#[tokio::test]
async fn leader_election_hands_over_when_the_leader_stops_renewing() {
    let emu = Emulator::new();
    let leases: Api<Lease> = Api::namespaced(in_process(&emu), "default");
    let duration = Duration::from_millis(600);
    assert!(campaign(&leases, "a", duration).await);
    assert!(!campaign(&leases, "b", duration).await, "a holds the lease");
    // a renews for a while; b keeps losing.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(campaign(&leases, "a", duration).await);
        assert!(!campaign(&leases, "b", duration).await);
    }
    // a stops renewing: once the lease expires, b takes it.
    tokio::time::sleep(duration + Duration::from_millis(200)).await;
    assert!(campaign(&leases, "b", duration).await);
    let lease = leases.get("leader").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("b"));
    assert!(!campaign(&leases, "a", duration).await, "a lost the lease");
    let _ = Lease::kind(&());
}
