//! The Jobs API: idempotent starts, monotonic progress, clean cancellation.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use blit_test_support::Fixture;
use blit_test_support::agent::Agent;

use crate::*;
use blit_core::wire::pb;

pub(crate) type Client = pb::jobs_client::JobsClient<blit_core::agent::Authorized>;

/// The raw Jobs service of `agent`, to send requests the client would not.
pub(crate) async fn client(agent: &Agent) -> Client {
    pb::jobs_client::JobsClient::new(connect(agent).await.authorized())
}

fn request(key: &str, source: &Agent, src_path: &str, dst_path: &str) -> pb::StartTransferRequest {
    start_request(
        key,
        &format!("127.0.0.1:{}", source.port),
        "",
        src_path,
        dst_path,
    )
}

/// A job pulling `src_path` from the agent at `address` into `dst_path`, passing `token`.
pub(crate) fn start_request(
    key: &str,
    address: &str,
    token: &str,
    src_path: &str,
    dst_path: &str,
) -> pb::StartTransferRequest {
    let spec = blit_core::TransferSpec::new(
        blit_core::Endpoint::Local("a".into()),
        blit_core::Endpoint::Local("b".into()),
    );
    pb::StartTransferRequest {
        idempotency_key: key.into(),
        source: Some(pb::RemoteSource {
            address: address.into(),
            location: Some(pb::Location {
                module: "default".into(),
                path: src_path.as_bytes().to_vec(),
            }),
            token: token.into(),
        }),
        destination: Some(pb::Location {
            module: "default".into(),
            path: dst_path.as_bytes().to_vec(),
        }),
        options: Some(blit_core::wire::options_to_wire(&spec.options)),
        streams: 1,
        force_grpc: false,
    }
}

/// A source agent serving one large file of real data, and an empty destination agent.
fn two_agents(fx: &Fixture, size_mib: usize) -> (Agent, Agent, PathBuf) {
    let src = fx.path("a");
    let dst = fx.path("b");
    fs::create_dir_all(src.join("tree")).unwrap();
    fs::create_dir_all(&dst).unwrap();
    let mut w = std::io::BufWriter::new(fs::File::create(src.join("tree/big")).unwrap());
    let chunk = vec![0xa5u8; 1 << 20];
    for _ in 0..size_mib {
        w.write_all(&chunk).unwrap();
    }
    drop(w);
    fs::write(src.join("tree/small"), b"s").unwrap();
    let a = Agent::start(&[&"--root", &src]);
    let b = Agent::start(&[
        &"--root",
        &dst,
        &"--job-source",
        &format!("127.0.0.1:{}", a.port),
    ]);
    (a, b, dst)
}

#[test]
fn the_same_key_gives_one_job_and_progress_is_monotonic() {
    let fx = Fixture::new();
    let (a, b, dst) = two_agents(&fx, 256);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = client(&b).await;
        let first = c
            .start_transfer(request("key-1", &a, "tree/", "copy"))
            .await
            .unwrap()
            .into_inner();
        let again = c
            .start_transfer(request("key-1", &a, "tree/", "copy"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.id, again.id, "a retried start returns the same job");
        let mut stream = c
            .watch_job(pb::WatchJobRequest {
                id: first.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut seen = Vec::new();
        while let Some(j) = stream.message().await.unwrap() {
            seen.push(j);
        }
        let bytes: Vec<u64> = seen.iter().map(|j| j.bytes_done).collect();
        assert!(
            bytes.windows(2).all(|w| w[0] <= w[1]),
            "monotonic: {bytes:?}"
        );
        let last = seen.last().unwrap();
        assert_eq!(
            last.stage,
            pb::JobStage::Succeeded as i32,
            "{}",
            last.message
        );
        assert_eq!(last.bytes_done, (256 << 20) + 1);
        let listed = c
            .list_jobs(pb::ListJobsRequest {})
            .await
            .unwrap()
            .into_inner()
            .jobs;
        assert_eq!(listed.len(), 1, "one job for two starts");
    });
    assert_eq!(fs::metadata(dst.join("copy/big")).unwrap().len(), 256 << 20);
}

#[test]
fn cancel_stops_a_job_cleanly() {
    let fx = Fixture::new();
    let (a, b, dst) = two_agents(&fx, 2048);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = client(&b).await;
        let job = c
            .start_transfer(request("k", &a, "tree/", "copy"))
            .await
            .unwrap()
            .into_inner();
        // Wait until bytes are flowing, then cancel.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let jobs = c
                .list_jobs(pb::ListJobsRequest {})
                .await
                .unwrap()
                .into_inner()
                .jobs;
            if jobs[0].bytes_done > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the job never started moving bytes"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let cancelled = c
            .cancel_job(pb::CancelJobRequest { id: job.id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            cancelled.stage,
            pb::JobStage::Cancelled as i32,
            "{}",
            cancelled.message
        );
    });
    assert!(
        !dst.join("copy/big").exists(),
        "nothing incomplete under its final name"
    );
    // Both agents keep serving.
    let out = fx.path("after");
    ok(&blit(
        &fx,
        &[&"copy", &a.url("default", "tree/small"), &out],
    ));
    ok(&blit(&fx, &[&"ls", &b.url("default", "")]));
}
