//! The kubeconfig that points real clients (`kubectl`, the operator binary, kube-rs's
//! `Config::infer`) at the loopback server. JSON is valid YAML, so it is written as JSON.

use std::net::SocketAddr;

use serde_json::{Value, json};

/// The context, cluster and user name in the generated file.
pub const CONTEXT: &str = "blit-emulator";

/// A kubeconfig for the server at `addr`, with `namespace` as the default namespace.
pub fn render(addr: SocketAddr, namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": format!("http://{addr}")}}],
        "users": [{"name": CONTEXT, "user": {"token": "emulator"}}],
        "contexts": [{"name": CONTEXT, "context": {
            "cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}],
        "current-context": CONTEXT,
        "preferences": {},
    })
}
