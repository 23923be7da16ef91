//! `blit jobs list|watch|cancel`, and following a delegated (agent-to-agent) transfer.

use std::sync::atomic::Ordering;

use anyhow::bail;
use blit_core::session::client::Credentials;
use blit_core::wire::{self, pb};
use blit_core::{AgentPath, Report, Stats};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::args::{JobsCommand, RemoteArgs};
use crate::output::human_bytes;
use crate::remote::{agent_arg, connect, runtime, status};

pub type JobsClient = pb::jobs_client::JobsClient<InterceptedService<Channel, Credentials>>;

pub async fn client(a: &AgentPath, remote: &RemoteArgs) -> anyhow::Result<JobsClient> {
    let conn = connect(a, remote).await?;
    Ok(pb::jobs_client::JobsClient::with_interceptor(
        conn.channel,
        conn.credentials,
    ))
}

fn stage(job: &pb::Job) -> pb::JobStage {
    pb::JobStage::try_from(job.stage).unwrap_or(pb::JobStage::Unspecified)
}

fn stage_name(job: &pb::Job) -> &'static str {
    match stage(job) {
        pb::JobStage::Queued => "queued",
        pb::JobStage::Connecting => "connecting",
        pb::JobStage::Transferring => "transferring",
        pb::JobStage::Finishing => "finishing",
        pb::JobStage::Succeeded => "succeeded",
        pb::JobStage::Failed => "failed",
        pb::JobStage::Cancelled => "cancelled",
        pb::JobStage::Unspecified => "unknown",
    }
}

/// Mirrors a job's counters into `stats` (for the progress bars) until it ends; Ctrl-C
/// cancels it. Returns the job's report.
pub async fn follow(c: &mut JobsClient, job: pb::Job, stats: &Stats) -> anyhow::Result<Report> {
    let id = job.id.clone();
    let mut stream = c
        .watch_job(pb::WatchJobRequest { id: id.clone() })
        .await
        .map_err(status)?
        .into_inner();
    let mut last = job;
    loop {
        tokio::select! {
            next = stream.message() => match next.map_err(status)? {
                Some(j) => {
                    stats.files_planned.store(j.files_total, Ordering::Relaxed);
                    stats.bytes_planned.store(j.bytes_total, Ordering::Relaxed);
                    stats.files_done.store(j.files_done, Ordering::Relaxed);
                    stats.bytes_done.store(j.bytes_done, Ordering::Relaxed);
                    last = j;
                }
                None => break,
            },
            _ = tokio::signal::ctrl_c() => {
                let j = c.cancel_job(pb::CancelJobRequest { id: id.clone() }).await.map_err(status)?.into_inner();
                bail!("cancelled job {id} ({})", stage_name(&j));
            }
        }
    }
    match (stage(&last), last.report) {
        (pb::JobStage::Succeeded | pb::JobStage::Failed, Some(report)) => {
            Ok(wire::report_from_wire(report))
        }
        (pb::JobStage::Cancelled, _) => bail!("job {id} was cancelled"),
        _ => bail!("job {id} failed: {}", last.message),
    }
}

fn print_job(j: &pb::Job) {
    let eta = j
        .eta_seconds
        .map(|s| format!(", eta {s:.0} s"))
        .unwrap_or_default();
    println!(
        "{}  {:<12} {}/{} files  {}/{}  {}/s{eta}{}",
        j.id,
        stage_name(j),
        j.files_done,
        j.files_total,
        human_bytes(j.bytes_done),
        human_bytes(j.bytes_total),
        human_bytes(j.bytes_per_second as u64),
        if j.message.is_empty() {
            String::new()
        } else {
            format!("  {}", j.message)
        }
    );
}

pub fn run(what: JobsCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        match what {
            JobsCommand::List { agent, remote } => {
                let mut c = client(&agent_arg(&agent)?, &remote).await?;
                let jobs = c
                    .list_jobs(pb::ListJobsRequest {})
                    .await
                    .map_err(status)?
                    .into_inner()
                    .jobs;
                jobs.iter().for_each(print_job);
            }
            JobsCommand::Watch { agent, id, remote } => {
                let mut c = client(&agent_arg(&agent)?, &remote).await?;
                let mut stream = c
                    .watch_job(pb::WatchJobRequest { id })
                    .await
                    .map_err(status)?
                    .into_inner();
                while let Some(j) = stream.message().await.map_err(status)? {
                    print_job(&j);
                }
            }
            JobsCommand::Cancel { agent, id, remote } => {
                let mut c = client(&agent_arg(&agent)?, &remote).await?;
                let j = c
                    .cancel_job(pb::CancelJobRequest { id })
                    .await
                    .map_err(status)?
                    .into_inner();
                print_job(&j);
            }
        }
        Ok(())
    })
}
