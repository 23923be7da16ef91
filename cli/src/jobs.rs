//! `blit jobs list|watch|cancel`, and following a delegated (agent-to-agent) transfer.

use std::sync::atomic::Ordering;

use anyhow::bail;
use blit_core::agent::{AgentClient, Job, JobStage};
use blit_core::{Report, Stats};
use tokio_stream::StreamExt;

use crate::args::{JobsCommand, RemoteArgs};
use crate::hints;
use crate::output::human_bytes;
use crate::remote::{agent_arg, connect, runtime};

async fn client(agent: &str, remote: &RemoteArgs) -> anyhow::Result<AgentClient> {
    connect(&agent_arg(agent)?, remote).await
}

/// Mirrors a job's counters into `stats` (for the progress bars) until it ends; Ctrl-C
/// cancels it. Returns the job's report.
pub async fn follow(agent: &AgentClient, job: Job, stats: &Stats) -> anyhow::Result<Report> {
    let id = job.id.clone();
    let mut snapshots = agent.watch_job(&id).await.map_err(hints::error)?;
    let mut last = job;
    loop {
        tokio::select! {
            next = snapshots.next() => match next.transpose().map_err(hints::error)? {
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
                let j = agent.cancel_job(&id).await.map_err(hints::error)?;
                bail!("cancelled job {id} ({})", j.stage.name());
            }
        }
    }
    match (last.stage, last.report) {
        (JobStage::Succeeded | JobStage::Failed, Some(report)) => Ok(report),
        (JobStage::Cancelled, _) => bail!("job {id} was cancelled"),
        _ => bail!("job {id} failed: {}", last.message),
    }
}

fn print_job(j: &Job) {
    let eta = j
        .eta_seconds
        .map(|s| format!(", eta {s:.0} s"))
        .unwrap_or_default();
    println!(
        "{}  {:<12} {}/{} files  {}/{}  {}/s{eta}{}",
        j.id,
        j.stage.name(),
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
                let jobs = client(&agent, &remote).await?.list_jobs().await;
                jobs.map_err(hints::error)?.iter().for_each(print_job);
            }
            JobsCommand::Watch { agent, id, remote } => {
                let agent = client(&agent, &remote).await?;
                let mut snapshots = agent.watch_job(&id).await.map_err(hints::error)?;
                while let Some(j) = snapshots.next().await {
                    print_job(&j.map_err(hints::error)?);
                }
            }
            JobsCommand::Cancel { agent, id, remote } => {
                let j = client(&agent, &remote).await?.cancel_job(&id).await;
                print_job(&j.map_err(hints::error)?);
            }
        }
        Ok(())
    })
}
