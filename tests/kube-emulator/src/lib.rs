//! `blit-kube-emulator`: an in-memory stand-in for the Kubernetes API server, for tests.
//!
//! One [`Emulator`] holds the store (objects, resourceVersions, watch history, the
//! resources served — built-in kinds plus those of applied CRDs) and the test controls
//! (fault injection, request log). It has two fronts over the same router:
//! - [`Emulator::service`]: a `tower::Service` for `kube::Client::new(service, "default")`
//!   in-process (works under `tokio::time::pause()`);
//! - [`Emulator::serve`]: an HTTP server on `127.0.0.1:0` with a kubeconfig file, for
//!   real binaries and `kubectl`.
//!
//! ```text
//!  request ─▶ http (route::parse → Route) ─▶ store (create/update/delete/list/watch)
//!                  │ PATCH: patch (json, merge, strategic) · apply (server-side apply)
//!                  ├ discovery (version, groups, resource lists)   watch ─▶ event lines
//!                  └ openapi (/openapi/v3 index and documents)
//! ```
//!
//! OpenAPI v3 is served (`openapi`): custom resources with their CRD's schema, built-in
//! kinds with k8s-openapi's definitions; it advertises `fieldValidation`, so `kubectl
//! apply` leaves validation to the server (`field_validation`). Custom resources are admitted against
//! their CRD's schema (`schema`: pruning, defaults, structural checks, CEL rules).
//!
//! Server-side dry runs (`dry_run`) write to a scratch copy of the store; `kubectl get`
//! is answered with a server-side `Table` (`table`).
//!
//! What it does not emulate: authentication and authorization, admission webhooks,
//! aggregated APIs, protobuf encoding, and OpenAPI v2's
//! definitions (`/openapi/v2` is served empty, see `openapi::v2`).

pub mod apply;
pub mod discovery;
pub mod dry_run;
pub mod duplicates;
pub mod error;
pub mod faults;
pub mod field_validation;
pub mod http;
pub mod kubeconfig;
pub mod managed;
pub mod meta;
pub mod openapi;
pub mod patch;
pub mod resources;
pub mod route;
pub mod schema;
pub mod select;
pub mod store;
pub mod table;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::ApiError;
pub use faults::Faults;
pub use store::Store;

/// The emulated API server's state.
#[derive(Default)]
pub struct Emulator {
    pub store: Store,
    pub faults: Faults,
}

/// A running loopback server.
pub struct Server {
    pub addr: SocketAddr,
    /// Where the kubeconfig was written.
    pub kubeconfig: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Emulator {
    pub fn new() -> Arc<Emulator> {
        Arc::new(Emulator::default())
    }

    /// The in-process front: a tower service answering like the API server.
    pub fn service(self: &Arc<Self>) -> axum::Router {
        http::router(self.clone())
    }

    /// Serves the API on `127.0.0.1:0` and writes a kubeconfig for it to `kubeconfig`.
    pub async fn serve(self: &Arc<Self>, kubeconfig: &Path) -> std::io::Result<Server> {
        self.serve_on(SocketAddr::from(([127, 0, 0, 1], 0)), kubeconfig)
            .await
    }

    /// Like [`Emulator::serve`], on a given address.
    pub async fn serve_on(
        self: &Arc<Self>,
        addr: SocketAddr,
        kubeconfig: &Path,
    ) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let config = kubeconfig::render(addr, "default");
        std::fs::write(
            kubeconfig,
            serde_json::to_vec_pretty(&config).expect("a JSON value serializes"),
        )?;
        let router = self.service();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Server {
            addr,
            kubeconfig: kubeconfig.to_owned(),
            task,
        })
    }
}
