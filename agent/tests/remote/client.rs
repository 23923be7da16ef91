//! The agent client (`blit_core::agent::AgentClient`) against a real `blitd`: transfers,
//! jobs and admin calls through the typed API the CLI and the operator build on, and the
//! errors it reports, each checked for whether it is worth retrying.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blit_core::agent::{
    Address, AgentClient, ClientError, Credentials, DataOptions, JobRequest, JobStage, Run,
};
use blit_core::wire::pb;
use blit_core::{AgentPath, Options, Quiet, Stats};
use blit_test_support::agent::Agent;
use blit_test_support::{Fixture, assert_same_tree};
use tokio_stream::StreamExt;

use crate::*;

fn location(path: &str) -> pb::Location {
    pb::Location {
        module: "default".into(),
        path: path.as_bytes().to_vec(),
    }
}

async fn client(agent: &Agent, token: Option<&str>) -> Result<AgentClient, ClientError> {
    let credentials = Credentials {
        token: token.map(str::to_owned),
        ..Credentials::default()
    };
    AgentClient::connect(&Address::new("127.0.0.1", agent.port), &credentials).await
}

fn run(options: &Options) -> Run<'_> {
    Run {
        options,
        data: DataOptions::default(),
        stats: Arc::new(Stats::default()),
    }
}

/// A small tree: three files in two directories.
fn tree(root: &Path) {
    fs::create_dir_all(root.join("d/e")).unwrap();
    fs::write(root.join("a.txt"), b"alpha").unwrap();
    fs::write(root.join("d/b.txt"), vec![7u8; 100_000]).unwrap();
    fs::write(root.join("d/e/c.txt"), b"gamma").unwrap();
}

#[test]
fn push_pull_and_admin_calls_through_the_client() {
    let fx = Fixture::new();
    tree(&fx.src);
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = Agent::start(&[&"--root", &module]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pulled = fx.path("pulled");
    rt.block_on(async {
        let c = client(&agent, None).await.unwrap();
        let options = Options::default();
        let pushed = c
            .push(&fx.src_contents(), location("copy"), run(&options))
            .await
            .unwrap();
        assert_eq!(pushed.files_copied, 3, "{pushed:?}");
        let back = c
            .pull(location("copy/"), &pulled, run(&options), Arc::new(Quiet))
            .await
            .unwrap();
        assert_eq!(back.files_copied, 3, "{back:?}");

        let modules = c.list_modules().await.unwrap();
        assert_eq!(modules.len(), 1);
        assert_eq!(modules[0].name, "default");
        let listing = c.list_dir(location("copy")).await.unwrap();
        let mut names: Vec<_> = listing.entries.iter().map(|e| e.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["a.txt", "d"]);
        let found: Vec<PathBuf> = c
            .find(location("copy"), "*.txt", 0)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(found.len(), 3, "{found:?}");
        let rows: Vec<_> = c
            .disk_usage(location("copy"), 0)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        let total = rows.last().expect("a total row");
        assert_eq!(total.files, 3, "{rows:?}");
        assert!(c.fs_stats(location("copy")).await.unwrap().total_bytes > 0);
        let candidates = c.complete(location("copy/d/")).await.unwrap();
        assert!(
            candidates.iter().any(|c| c.ends_with(b"e/")),
            "{candidates:?}"
        );
        assert_eq!(c.remove(location("copy/d"), true, true).await.unwrap(), 4);
        assert!(
            module.join("copy/d/e/c.txt").exists(),
            "a dry run removes nothing"
        );
        assert_eq!(c.remove(location("copy/d"), true, false).await.unwrap(), 4);
        assert!(!module.join("copy/d").exists());
    });
    assert_same_tree(&fx.src, &pulled, FULL);
}

#[test]
fn jobs_through_the_client_are_idempotent_watched_and_listed() {
    let fx = Fixture::new();
    let a_root = fx.path("a");
    let b_root = fx.path("b");
    tree(&a_root.join("tree"));
    fs::create_dir(&b_root).unwrap();
    let a = Agent::start(&[&"--root", &a_root]);
    let b = Agent::start(&[
        &"--root",
        &b_root,
        &"--job-source",
        &format!("127.0.0.1:{}", a.port),
    ]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client(&b, None).await.unwrap();
        let request = JobRequest {
            idempotency_key: JobRequest::new_key().unwrap(),
            source: AgentPath {
                host: "127.0.0.1".into(),
                port: a.port,
                module: "default".into(),
                path: "tree/".into(),
            },
            source_token: None,
            destination: location("copy"),
            options: Options::default(),
            data: DataOptions::default(),
        };
        let first = c.start_job(&request).await.unwrap();
        let again = c.start_job(&request).await.unwrap();
        assert_eq!(first.id, again.id, "the same key is the same job");
        let snapshots: Vec<_> = c
            .watch_job(&first.id)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        let done: Vec<u64> = snapshots.iter().map(|j| j.bytes_done).collect();
        assert!(done.windows(2).all(|w| w[0] <= w[1]), "{done:?}");
        let last = snapshots.last().unwrap();
        assert_eq!(last.stage, JobStage::Succeeded, "{}", last.message);
        assert!(last.stage.is_over());
        assert_eq!(last.report.as_ref().unwrap().files_copied, 3);
        let listed = c.list_jobs().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].idempotency_key, request.idempotency_key);
        let after = c.cancel_job(&first.id).await.unwrap();
        assert_eq!(
            after.stage,
            JobStage::Succeeded,
            "a finished job stays as it ended"
        );

        let unknown = c.cancel_job("no-such-job").await.unwrap_err();
        assert_eq!(unknown.code(), Some(tonic::Code::NotFound), "{unknown}");
        assert!(!unknown.is_retryable());
        let mut refused = request.clone();
        refused.idempotency_key = JobRequest::new_key().unwrap();
        refused.source.port = b.port;
        let refused = c.start_job(&refused).await.unwrap_err();
        assert_eq!(refused.code(), Some(tonic::Code::PermissionDenied));
        assert!(
            !refused.is_retryable(),
            "a source not admitted stays refused"
        );
    });
    assert_same_tree(&a_root.join("tree"), &b_root.join("copy"), FULL);
}

#[test]
fn the_client_says_which_failures_are_worth_retrying() {
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = Agent::start(&[&"--root", &module, &"--token", &"s3cret"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // A wrong token: the agent answers, and will answer the same way again.
        let wrong = client(&agent, Some("guess")).await.unwrap();
        let e = wrong.list_modules().await.unwrap_err();
        assert_eq!(e.code(), Some(tonic::Code::Unauthenticated), "{e}");
        assert!(!e.is_retryable() && !e.before_answer());
        let right = client(&agent, Some("s3cret")).await.unwrap();
        let missing = right.list_dir(location("nothing/here")).await.unwrap_err();
        assert_eq!(missing.code(), Some(tonic::Code::NotFound), "{missing}");
        assert!(!missing.is_retryable());
        // A token that cannot travel in a header is refused before any connection.
        assert!(matches!(
            client(&agent, Some("bad\ntoken")).await,
            Err(ClientError::Invalid(_))
        ));
        // Nobody listening: worth another try later.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let down = AgentClient::connect(&Address::new("127.0.0.1", port), &Credentials::default())
            .await
            .err()
            .expect("nothing listens there");
        assert!(down.is_retryable() && down.before_answer(), "{down}");
    });
}
