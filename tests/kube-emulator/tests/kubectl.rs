//! The real `kubectl` against the emulator's loopback front: CRDs, custom resources,
//! get/patch/apply/delete/wait/watch behave as against a real API server.
//!
//! `kubectl` must be installed (`.ci/run` installs it). `kubectl apply` runs as users
//! type it: the emulator serves OpenAPI v3, so kubectl (1.27 and later) finds the
//! `fieldValidation` parameter there and leaves validation to the server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use blit_kube_emulator::store::Part;
use blit_kube_emulator::{Emulator, Server};

/// A running emulator and a scratch directory with its kubeconfig.
struct Cluster {
    emu: std::sync::Arc<Emulator>,
    dir: tempfile::TempDir,
    _server: Server,
    kubeconfig: PathBuf,
    _runtime: tokio::runtime::Runtime,
}

impl Cluster {
    fn start() -> Cluster {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let emulator = Emulator::new();
        let server = runtime.block_on(emulator.serve(&kubeconfig)).unwrap();
        Cluster {
            emu: emulator,
            dir,
            _server: server,
            kubeconfig,
            _runtime: runtime,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .expect("kubectl is installed (see .ci/run)")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes an object's status as a controller would (through the status subresource,
    /// as the field manager "harness"), and one field of its spec with it if given.
    fn set_status(
        &self,
        (group, version, plural): (&str, &str, &str),
        name: &str,
        status: serde_json::Value,
        spec: Option<(&str, serde_json::Value)>,
    ) {
        let resource = self.emu.store.resource(group, version, plural).unwrap();
        let write = |current: &serde_json::Value| {
            let mut next = current.clone();
            next["status"] = status.clone();
            if let Some((field, value)) = &spec {
                next["spec"][*field] = value.clone();
            }
            Ok(next)
        };
        self.emu
            .store
            .update(
                &resource,
                "default",
                name,
                Part::Status,
                "harness",
                None,
                write,
            )
            .unwrap();
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("kubectl prints JSON")
    }
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

const WIDGET: &str = "apiVersion: example.dev/v1
kind: Widget
metadata:
  name: w1
  labels: {app: demo}
spec:
  size: 3
";

fn with_crd() -> Cluster {
    let c = Cluster::start();
    let out = c.ok(&["apply", "-f", &fixture("widget-crd.yaml")]);
    assert!(out.contains("created"), "{out}");
    c
}

#[test]
fn crds_register_and_custom_resources_round_trip() {
    let c = with_crd();
    let crd = c.json(&["get", "crd", "widgets.example.dev"]);
    let established = crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["type"] == "Established" && x["status"] == "True");
    assert!(established, "{crd}");
    let resources = c.ok(&["api-resources", "--api-group=example.dev"]);
    assert!(
        resources.contains("widgets") && resources.contains("wd"),
        "{resources}"
    );

    let w = c.file("w.yaml", WIDGET);
    c.ok(&["apply", "-f", w.to_str().unwrap()]);
    let yaml = c.ok(&["get", "wd", "w1", "-o", "yaml"]);
    assert!(
        yaml.contains("size: 3") && yaml.contains("generation: 1"),
        "{yaml}"
    );
    let obj = c.json(&["get", "widgets", "w1"]);
    assert_eq!(obj["metadata"]["namespace"], "default");
    assert!(
        obj["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );

    // Label selectors reach the server.
    assert!(
        c.ok(&["get", "wd", "-l", "app=demo", "-o", "name"])
            .contains("w1")
    );
    assert!(
        !c.ok(&["get", "wd", "-l", "app=other", "-o", "name"])
            .contains("w1")
    );

    // JSON Patch (with a failing test op) and merge patch; generation follows spec.
    let failed = c.run(&[
        "patch", "wd", "w1", "--type=json",
        "-p", r#"[{"op":"test","path":"/spec/size","value":99},{"op":"replace","path":"/spec/size","value":4}]"#,
    ]);
    assert!(!failed.status.success());
    c.ok(&[
        "patch",
        "wd",
        "w1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/size","value":5}]"#,
    ]);
    c.ok(&[
        "patch",
        "wd",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":6}}"#,
    ]);
    let obj = c.json(&["get", "wd", "w1"]);
    assert_eq!(
        (
            obj["spec"]["size"].as_i64(),
            obj["metadata"]["generation"].as_i64()
        ),
        (Some(6), Some(3))
    );
    c.ok(&["label", "wd", "w1", "tier=x"]);
    assert_eq!(
        c.json(&["get", "wd", "w1"])["metadata"]["generation"],
        3,
        "labels are not spec"
    );

    // Deleting the CRD removes the resource and its objects.
    c.ok(&["delete", "crd", "widgets.example.dev"]);
    let gone = c.run(&["get", "wd", "w1"]);
    assert!(!gone.status.success());
}

/// The CRD fixture with one more `spec` field, `colour`.
fn crd_with_colour() -> String {
    std::fs::read_to_string(fixture("widget-crd.yaml"))
        .unwrap()
        .replace(
            "              mode:\n",
            "              colour:\n                type: string\n                description: The widget's colour.\n              mode:\n",
        )
}

#[test]
fn explain_reads_the_crd_schema_and_follows_its_changes() {
    let c = with_crd();
    let spec = c.ok(&["explain", "widgets.spec"]);
    assert!(
        spec.contains("KIND:       Widget")
            && spec.contains("size\t<integer> -required-")
            && spec.contains("enum: fast, safe"),
        "{spec}"
    );
    let top = c.ok(&["explain", "wd"]);
    assert!(
        top.contains("metadata\t<ObjectMeta>") && top.contains("spec\t<Object>"),
        "{top}"
    );
    assert!(!spec.contains("colour"));
    // Built-in kinds are described by their full definitions.
    let ports = c.ok(&["explain", "pods.spec.containers.ports"]);
    assert!(
        ports.contains("FIELD: ports <[]ContainerPort>")
            && ports.contains("containerPort\t<integer> -required-"),
        "{ports}"
    );
    let data = c.ok(&["explain", "configmap.data"]);
    assert!(data.contains("FIELD: data <map[string]string>"), "{data}");

    // A changed CRD changes its document's hash in the index, so kubectl's cache (kept
    // in $HOME across these runs) does not serve the old schema.
    let url = |c: &Cluster| {
        let index: serde_json::Value =
            serde_json::from_str(&c.ok(&["get", "--raw", "/openapi/v3"])).unwrap();
        index["paths"]["apis/example.dev/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = url(&c);
    let changed = c.file("crd.yaml", &crd_with_colour());
    c.ok(&["apply", "-f", changed.to_str().unwrap()]);
    assert_ne!(url(&c), before);
    let spec = c.ok(&["explain", "widgets.spec.colour"]);
    assert!(spec.contains("The widget's colour."), "{spec}");

    // Deleting the CRD takes its group out of the index.
    c.ok(&["delete", "crd", "widgets.example.dev"]);
    let index = c.ok(&["get", "--raw", "/openapi/v3"]);
    assert!(
        !index.contains("example.dev") && index.contains("\"api/v1\""),
        "{index}"
    );
}

/// Files kubectl validates through OpenAPI v2 (found empty, so it leaves validation to
/// the server): a `kind: List` as `kubectl get -o yaml` prints it, and a CRD with one
/// of its resources, which needs a second apply as on a real cluster.
#[test]
fn lists_and_a_crd_with_its_resources_in_one_file() {
    let c = Cluster::start();
    let cm = c.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: b\n",
    );
    c.ok(&["apply", "-f", cm.to_str().unwrap()]);
    let listed = c.ok(&["get", "cm", "c", "-o", "yaml"]);
    let list = c.ok(&["get", "cm", "-o", "yaml"]);
    assert!(list.contains("kind: List"), "{list}");
    let list = c.file("list.yaml", &list.replace("a: b", "a: changed"));
    assert!(
        c.ok(&["apply", "-f", list.to_str().unwrap()])
            .contains("configmap/c configured")
    );
    assert_eq!(
        c.json(&["get", "cm", "c"])["data"]["a"],
        "changed",
        "{listed}"
    );

    let both = format!(
        "{}---\n{WIDGET}",
        std::fs::read_to_string(fixture("widget-crd.yaml")).unwrap()
    );
    let both = c.file("both.yaml", &both);
    let first = c.run(&["apply", "-f", both.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(
        !first.status.success()
            && err.contains("no matches for kind \"Widget\" in version \"example.dev/v1\""),
        "{err}"
    );
    let second = c.ok(&["apply", "-f", both.to_str().unwrap()]);
    assert!(second.contains("widget.example.dev/w1 created"), "{second}");
}

#[test]
fn unknown_fields_are_rejected_by_strict_validation() {
    let c = with_crd();
    let bogus = |name: &str| {
        c.file(
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: example.dev/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n  size: 1\n  bogus: x\n"
            ),
        )
    };
    // kubectl's default (--validate=strict) asks the server for fieldValidation=Strict.
    let created = c.run(&["apply", "-f", bogus("w").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&created.stderr);
    assert!(
        !created.status.success()
            && err.contains(
                "Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown field \"spec.bogus\""
            ),
        "{err}"
    );
    assert!(
        !c.run(&["get", "wd", "w"]).status.success(),
        "nothing stored"
    );

    // On an existing object the client-side apply is a patch, checked the same way.
    let w = c.file("w.yaml", WIDGET);
    c.ok(&["apply", "-f", w.to_str().unwrap()]);
    let patched = c.run(&["apply", "-f", bogus("w1").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&patched.stderr);
    assert!(
        !patched.status.success()
            && err.contains("strict decoding error: unknown field \"spec.bogus\""),
        "{err}"
    );
    assert_eq!(c.json(&["get", "wd", "w1"])["spec"]["size"], 3);

    // Server-side apply turns the configuration into a typed object first, which fails.
    let applied = c.run(&[
        "apply",
        "--server-side",
        "-f",
        bogus("w3").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&applied.stderr);
    assert!(
        !applied.status.success()
            && err.contains("Error from server: failed to create typed patch object (default/w3; example.dev/v1, Kind=Widget): .spec.bogus: field not declared in schema"),
        "{err}"
    );

    // Warn: stored without the field, and kubectl prints the server's warning.
    let warned = c.run(&[
        "apply",
        "--validate=warn",
        "-f",
        bogus("w2").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&warned.stderr);
    assert!(
        warned.status.success() && err.contains("Warning: unknown field \"spec.bogus\""),
        "{err}"
    );
    assert_eq!(
        c.json(&["get", "wd", "w2"])["spec"],
        serde_json::json!({"size": 1, "mode": "safe"})
    );
}

#[test]
fn the_crd_schema_prunes_defaults_and_rejects() {
    let c = with_crd();
    let w = c.file(
        "w.yaml",
        "apiVersion: example.dev/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  size: 1\n  unknown: x\n",
    );
    // `--validate=false` sends `fieldValidation=Ignore`: the unknown field is pruned.
    c.ok(&["apply", "--validate=false", "-f", w.to_str().unwrap()]);
    let obj = c.json(&["get", "wd", "w"]);
    assert_eq!(
        obj["spec"],
        serde_json::json!({"size": 1, "mode": "safe"}),
        "pruned, defaulted"
    );

    let bad = |name: &str, spec: &str| {
        let f = c.file(
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: example.dev/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n{spec}"
            ),
        );
        let out = c.run(&["apply", "-f", f.to_str().unwrap()]);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = bad("typed", "  size: many\n");
    assert!(
        err.contains("spec.size in body must be of type integer"),
        "{err}"
    );
    let err = bad("missing", "  mode: fast\n");
    assert!(err.contains("spec.size: Required value"), "{err}");
    let err = bad("enum", "  size: 1\n  mode: slow\n");
    assert!(err.contains("Unsupported value: \"slow\""), "{err}");
    let err = bad("cel", "  size: 101\n");
    assert!(err.contains("size must be at most 100"), "{err}");
    // A transition rule: mode may not change once set.
    let out = c.run(&[
        "patch",
        "wd",
        "w",
        "--type=merge",
        "-p",
        r#"{"spec":{"mode":"fast"}}"#,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("mode is immutable"),
        "{err}"
    );
    c.ok(&[
        "patch",
        "wd",
        "w",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":5}}"#,
    ]);
}

#[test]
fn server_side_apply_owns_fields_and_reports_conflicts() {
    let c = with_crd();
    let w = c.file(
        "w2.yaml",
        "apiVersion: example.dev/v1\nkind: Widget\nmetadata:\n  name: w2\nspec:\n  size: 1\n",
    );
    let path = w.to_str().unwrap();
    assert!(
        c.ok(&["apply", "--server-side", "-f", path])
            .contains("serverside-applied")
    );
    c.ok(&[
        "patch",
        "wd",
        "w2",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":2}}"#,
        "--field-manager=other",
    ]);
    std::fs::write(
        &w,
        "apiVersion: example.dev/v1\nkind: Widget\nmetadata:\n  name: w2\nspec:\n  size: 7\n",
    )
    .unwrap();
    let conflict = c.run(&["apply", "--server-side", "-f", path]);
    let err = String::from_utf8_lossy(&conflict.stderr);
    assert!(
        !conflict.status.success()
            && err.contains("conflict with \"other\"")
            && err.contains(".spec.size"),
        "{err}"
    );
    assert_eq!(
        c.json(&["get", "wd", "w2"])["spec"]["size"],
        2,
        "nothing applied"
    );
    c.ok(&["apply", "--server-side", "--force-conflicts", "-f", path]);
    // Read from the store: kubectl before 1.21 has no --show-managed-fields.
    let widgets = c
        .emu
        .store
        .resource("example.dev", "v1", "widgets")
        .unwrap();
    let obj = c.emu.store.get(&widgets, "default", "w2").unwrap();
    assert_eq!(obj["spec"]["size"], 7);
    let managers: Vec<&str> = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["fieldsV1"]["f:spec"]["f:size"].is_object())
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(
        managers,
        ["kubectl"],
        "forcing took the field from \"other\""
    );
}

/// Runs `kubectl get -w` in the background, returning what it printed when stopped.
/// What `kubectl GET_ARGS` (a watch) prints while widget w1's size is patched to 42.
fn watch_a_patch(c: &Cluster, get_args: &[&str]) -> String {
    let watcher = c.command(get_args).stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    c.ok(&[
        "patch",
        "wd",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":42}}"#,
    ]);
    watch_output(watcher, Duration::from_millis(700))
}

fn watch_output(mut child: Child, settle: Duration) -> String {
    std::thread::sleep(settle);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn delete_waits_for_finalizers_and_wait_and_watch_see_changes() {
    let c = with_crd();
    let w = c.file("w.yaml", WIDGET);
    c.ok(&["apply", "-f", w.to_str().unwrap()]);
    let seen = watch_a_patch(
        &c,
        &[
            "get",
            "wd",
            "-w",
            "-o",
            "custom-columns=NAME:.metadata.name,SIZE:.spec.size",
            "--no-headers",
        ],
    );
    assert!(
        seen.contains("w1") && seen.contains("42"),
        "get -w printed: {seen:?}"
    );

    // A finalizer holds the object: delete marks it and waits until it is removed.
    c.ok(&[
        "patch",
        "wd",
        "w1",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.dev/keep"]}}"#,
    ]);
    let mut delete = c
        .command(&["delete", "wd", "w1", "--timeout=30s"])
        .spawn()
        .unwrap();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        delete.try_wait().unwrap().is_none(),
        "delete returned before the finalizer went"
    );
    let marked = c.json(&["get", "wd", "w1"]);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    c.ok(&[
        "patch",
        "wd",
        "w1",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(delete.wait().unwrap().success());
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        !c.run(&["get", "wd", "w1"]).status.success(),
        "gone once unfinalized"
    );

    // wait --for=condition sees a status written through the status subresource.
    c.ok(&["apply", "-f", w.to_str().unwrap()]);
    let mut wait = c
        .command(&["wait", "--for=condition=Ready", "wd/w1", "--timeout=20s"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // The status is written by the harness through the status subresource (standing in
    // for a controller; `kubectl patch --subresource` needs kubectl 1.24).
    c.set_status(
        ("example.dev", "v1", "widgets"),
        "w1",
        serde_json::json!({"conditions": [{"type": "Ready", "status": "True"}]}),
        Some(("size", serde_json::json!(1))),
    );
    assert!(wait.wait().unwrap().success());
    assert_eq!(
        c.json(&["get", "wd", "w1"])["spec"]["size"],
        3,
        "a status write leaves spec alone"
    );
}

/// Built-in kinds go through `kubectl apply` (JSON): imperative `kubectl create
/// configmap|secret|namespace …` sends protobuf, which the emulator answers with 415.
const BUILTINS: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: blit
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: blit
data:
  k: v
---
apiVersion: v1
kind: Secret
metadata:
  name: s
  namespace: blit
stringData:
  t: x
";

#[test]
fn built_in_kinds_and_namespaces() {
    let c = Cluster::start();
    let f = c.file("builtins.yaml", BUILTINS);
    c.ok(&["apply", "-f", f.to_str().unwrap()]);
    assert_eq!(
        c.json(&["get", "cm", "cfg", "-n", "blit"])["data"]["k"],
        "v"
    );
    let elsewhere = c.file(
        "elsewhere.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: nope\n",
    );
    let missing_ns = c.run(&["apply", "-f", elsewhere.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&missing_ns.stderr).contains("not found"));
    // Strict validation checks built-in kinds against their published definitions.
    let bogus = c.file(
        "bogus.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: blit\nspec:\n  containers:\n  - name: c\n    image: x\n    ports:\n    - containerPort: 80\n      bogus: 2\n",
    );
    let rejected = c.run(&["apply", "-f", bogus.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&rejected.stderr);
    assert!(
        !rejected.status.success()
            && err.contains("Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].ports[0].bogus\""),
        "{err}"
    );
    // Warn: the server's warning, and the field dropped as typed decoding drops it.
    let warned = c.run(&["apply", "--validate=warn", "-f", bogus.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&warned.stderr);
    assert!(
        warned.status.success()
            && err.contains("Warning: unknown field \"spec.containers[0].ports[0].bogus\""),
        "{err}"
    );
    let pod = c.json(&["get", "pod", "p", "-n", "blit"]);
    assert_eq!(
        pod["spec"]["containers"][0]["ports"],
        serde_json::json!([{"containerPort": 80}])
    );

    // kubectl's parsing drops duplicate fields, but a raw body keeps them for the server.
    let dup = c.file(
        "dup.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d","name":"d"},"data":{"a":"1","a":"2"}}"#,
    );
    let raw = |query: &str| {
        c.run(&[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/blit/configmaps{query}"),
            "-f",
            dup.to_str().unwrap(),
        ])
    };
    let strict = raw("?fieldValidation=Strict");
    let err = String::from_utf8_lossy(&strict.stderr);
    assert!(
        !strict.status.success()
            && err.contains("strict decoding error: duplicate field \"metadata.name\", duplicate field \"data.a\""),
        "{err}"
    );
    let warned = raw("");
    let err = String::from_utf8_lossy(&warned.stderr);
    assert!(
        warned.status.success() && err.contains("Warning: duplicate field \"data.a\""),
        "{err}"
    );
    assert_eq!(c.json(&["get", "cm", "d", "-n", "blit"])["data"]["a"], "2");
    let protobuf = c.run(&["create", "configmap", "y", "-n", "blit"]);
    let err = String::from_utf8_lossy(&protobuf.stderr);
    assert!(err.contains("unknown format"), "{err}");
    c.ok(&["delete", "namespace", "blit"]);
    assert!(!c.run(&["get", "cm", "cfg", "-n", "blit"]).status.success());
}

#[test]
fn server_dry_runs_and_diff_change_nothing() {
    let c = with_crd();
    let w = c.file("w.yaml", WIDGET);
    let path = w.to_str().unwrap();
    // A dry-run create stores nothing.
    let out = c.ok(&["apply", "--dry-run=server", "-f", path]);
    assert!(out.contains("created (server dry run)"), "{out}");
    let missing = c.run(&["get", "wd", "w1"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFound"));

    c.ok(&["apply", "-f", path]);
    let before = c.json(&["get", "wd", "w1"]);
    let rv = c.emu.store.resource_version();
    let bigger = c.file("w-bigger.yaml", &WIDGET.replace("size: 3", "size: 7"));
    let bigger = bigger.to_str().unwrap();
    let out = c.ok(&["apply", "--dry-run=server", "-f", bigger]);
    assert!(out.contains("configured (server dry run)"), "{out}");
    let out = c.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-f",
        bigger,
    ]);
    assert!(out.contains("serverside-applied (server dry run)"), "{out}");
    // Validation still runs: the CRD's rule rejects a size over 100.
    let too_big = c.file("w-huge.yaml", &WIDGET.replace("size: 3", "size: 700"));
    let refused = c.run(&["apply", "--dry-run=server", "-f", too_big.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("size must be at most 100"));

    // kubectl diff exits 1 with a diff when the server would change the object.
    let diff = c.run(&["diff", "-f", bigger]);
    assert_eq!(diff.status.code(), Some(1), "{diff:?}");
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(
        text.contains("-  size: 3") && text.contains("+  size: 7"),
        "{text}"
    );
    assert_eq!(c.run(&["diff", "-f", path]).status.code(), Some(0));

    let out = c.ok(&["delete", "--dry-run=server", "wd", "w1"]);
    assert!(out.contains("deleted (server dry run)"), "{out}");
    assert_eq!(c.json(&["get", "wd", "w1"]), before);
    assert_eq!(c.emu.store.resource_version(), rv);
}

#[test]
fn get_prints_crd_printer_columns_and_wide_ones() {
    let c = with_crd();
    let w = c.file("w.yaml", WIDGET);
    c.ok(&["apply", "-f", w.to_str().unwrap()]);
    c.set_status(
        ("example.dev", "v1", "widgets"),
        "w1",
        serde_json::json!({"phase": "Ready"}),
        None,
    );
    let out = c.ok(&["get", "widgets"]);
    println!("{out}");
    let lines: Vec<&str> = out.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "PHASE", "AGE"], "{out}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..3], ["w1", "3", "Ready"], "{out}");
    assert!(row[3].ends_with('s'), "{out}");

    let wide = c.ok(&["get", "wd", "-o", "wide"]);
    println!("{wide}");
    let lines: Vec<&str> = wide.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "PHASE", "MODE", "AGE"], "{wide}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[3], "safe", "{wide}");

    let crds = c.ok(&["get", "crd"]);
    let header: Vec<&str> = crds.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "CREATED", "AT"], "{crds}");
    assert!(crds.contains("widgets.example.dev   20"), "{crds}");

    let one = c.ok(&["get", "wd", "w1", "--no-headers"]);
    assert!(one.starts_with("w1 "), "{one}");

    // A watch prints its events with the same columns.
    let seen = watch_a_patch(&c, &["get", "wd", "-w"]);
    println!("{seen}");
    let lines: Vec<Vec<&str>> = seen
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "SIZE", "PHASE", "AGE"], "{seen}");
    assert_eq!(&lines[1][..3], ["w1", "3", "Ready"], "{seen}");
    assert_eq!(&lines.last().unwrap()[..3], ["w1", "42", "Ready"], "{seen}");
}

#[test]
fn get_pods_wide_shows_ip_and_node() {
    let c = Cluster::start();
    let pod = c.file(
        "p.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p1\nspec:\n  nodeName: node-a\n  containers:\n  - name: c\n    image: x\n",
    );
    c.ok(&["apply", "-f", pod.to_str().unwrap()]);
    c.set_status(
        ("", "v1", "pods"),
        "p1",
        serde_json::json!({
            "phase": "Running", "podIP": "198.18.0.7",
            "containerStatuses": [{"name": "c", "ready": true, "restartCount": 2,
                "image": "x", "imageID": "", "state": {"running": {}}}],
        }),
        None,
    );
    let out = c.ok(&["get", "pods"]);
    println!("{out}");
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{out}"
    );
    let wide = c.ok(&["get", "pods", "-o", "wide"]);
    println!("{wide}");
    let lines: Vec<&str> = wide.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ],
        "{wide}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..4], ["p1", "1/1", "Running", "2"], "{wide}");
    assert_eq!(
        &row[5..],
        ["198.18.0.7", "node-a", "<none>", "<none>"],
        "{wide}"
    );

    let cm = c.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c1\ndata:\n  a: b\n  c: d\n",
    );
    c.ok(&["apply", "-f", cm.to_str().unwrap()]);
    let out = c.ok(&["get", "configmap", "c1"]);
    println!("{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "DATA", "AGE"]
    );
    assert_eq!(
        &lines[1].split_whitespace().collect::<Vec<_>>()[..2],
        ["c1", "2"]
    );
}
