//! Jobs: transfers an agent runs on a caller's behalf, pulling from another agent into
//! one of its modules, so the bytes go agent to agent while the caller watches. A start
//! carries an idempotency key: retried with the same key, it is the same job, which is
//! what lets [`AgentClient::start_job`] retry a start lost in transit by itself.

use std::time::Duration;

use tokio_stream::{Stream, StreamExt};

use super::connect::AgentClient;
use super::error::ClientError;
use crate::agent_path::AgentPath;
use crate::report::Report;
use crate::session::initiate::DataOptions;
use crate::spec::Options;
use crate::wire::{self, pb};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStage {
    /// Waiting for one of the agent's transfer slots.
    Queued,
    Connecting,
    Transferring,
    Finishing,
    Succeeded,
    /// Ended with an error, or with entries that failed (see the report).
    Failed,
    Cancelled,
    /// A stage this client does not know (a newer agent).
    Unknown,
}

impl JobStage {
    fn from_wire(stage: i32) -> JobStage {
        match pb::JobStage::try_from(stage) {
            Ok(pb::JobStage::Queued) => JobStage::Queued,
            Ok(pb::JobStage::Connecting) => JobStage::Connecting,
            Ok(pb::JobStage::Transferring) => JobStage::Transferring,
            Ok(pb::JobStage::Finishing) => JobStage::Finishing,
            Ok(pb::JobStage::Succeeded) => JobStage::Succeeded,
            Ok(pb::JobStage::Failed) => JobStage::Failed,
            Ok(pb::JobStage::Cancelled) => JobStage::Cancelled,
            Ok(pb::JobStage::Unspecified) | Err(_) => JobStage::Unknown,
        }
    }

    /// Whether the job has ended (nothing will change any more).
    pub fn is_over(self) -> bool {
        matches!(
            self,
            JobStage::Succeeded | JobStage::Failed | JobStage::Cancelled
        )
    }

    /// The stage in lower case, as people read it.
    pub fn name(self) -> &'static str {
        match self {
            JobStage::Queued => "queued",
            JobStage::Connecting => "connecting",
            JobStage::Transferring => "transferring",
            JobStage::Finishing => "finishing",
            JobStage::Succeeded => "succeeded",
            JobStage::Failed => "failed",
            JobStage::Cancelled => "cancelled",
            JobStage::Unknown => "unknown",
        }
    }
}

/// One snapshot of a job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub idempotency_key: String,
    pub stage: JobStage,
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub bytes_per_second: f64,
    /// Seconds left, while the agent can tell.
    pub eta_seconds: Option<f64>,
    /// Why the job failed, or what it is doing.
    pub message: String,
    /// The transfer's report, once it has one.
    pub report: Option<Report>,
}

impl From<pb::Job> for Job {
    fn from(j: pb::Job) -> Job {
        Job {
            stage: JobStage::from_wire(j.stage),
            id: j.id,
            idempotency_key: j.idempotency_key,
            files_done: j.files_done,
            files_total: j.files_total,
            bytes_done: j.bytes_done,
            bytes_total: j.bytes_total,
            bytes_per_second: j.bytes_per_second,
            eta_seconds: j.eta_seconds,
            message: j.message,
            report: j.report.map(wire::report_from_wire),
        }
    }
}

/// A job to start on the destination agent: pull `source` into `destination`.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// Names the job: a start repeated with the same key returns the same job.
    pub idempotency_key: String,
    /// The path on the source agent.
    pub source: AgentPath,
    /// The token the destination agent presents to the source agent.
    pub source_token: Option<String>,
    /// The module and path on the agent the job runs on.
    pub destination: pb::Location,
    pub options: Options,
    pub data: DataOptions,
}

impl JobRequest {
    /// A fresh random idempotency key (for a caller with no name of its own for the job).
    pub fn new_key() -> std::io::Result<String> {
        crate::session::data::random_hex(16)
    }

    fn to_wire(&self) -> pb::StartTransferRequest {
        pb::StartTransferRequest {
            idempotency_key: self.idempotency_key.clone(),
            source: Some(pb::RemoteSource {
                address: self.source.address().to_string(),
                location: Some(self.source.location()),
                token: self.source_token.clone().unwrap_or_default(),
            }),
            destination: Some(self.destination.clone()),
            options: Some(wire::options_to_wire(&self.options)),
            streams: self.data.streams.unwrap_or(0),
            force_grpc: self.data.force_grpc,
        }
    }
}

/// Starts a job tries at most this often when the agent is unreachable or busy: a start
/// lost in transit is repeated with the same key, which the agent turns into one job.
const START_ATTEMPTS: u32 = 3;
/// The wait before the second attempt; it doubles for each further one.
const START_BACKOFF: Duration = Duration::from_millis(250);

impl AgentClient {
    /// Starts a job (or finds the one started with the same key), retrying what may
    /// pass (see [`ClientError::is_retryable`]).
    pub async fn start_job(&self, request: &JobRequest) -> Result<Job, ClientError> {
        let wire = request.to_wire();
        let mut backoff = START_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.jobs().start_transfer(wire.clone()).await {
                Ok(job) => return Ok(job.into_inner().into()),
                Err(status) => {
                    let error = ClientError::from(status);
                    if attempt >= START_ATTEMPTS || !error.is_retryable() {
                        return Err(error);
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    /// Snapshots of the job until it ends (a few per second while it runs; the last is
    /// the job as it ended).
    pub async fn watch_job(
        &self,
        id: &str,
    ) -> Result<impl Stream<Item = Result<Job, ClientError>> + Unpin + Send, ClientError> {
        let request = pb::WatchJobRequest { id: id.to_owned() };
        let stream = self.jobs().watch_job(request).await?.into_inner();
        Ok(stream.map(|j| Ok(Job::from(j?))))
    }

    /// Asks the job to stop at a safe point; returns where it is.
    pub async fn cancel_job(&self, id: &str) -> Result<Job, ClientError> {
        let request = pb::CancelJobRequest { id: id.to_owned() };
        Ok(self.jobs().cancel_job(request).await?.into_inner().into())
    }

    /// The jobs the agent knows, oldest first (finished ones for a while).
    pub async fn list_jobs(&self) -> Result<Vec<Job>, ClientError> {
        let reply = self.jobs().list_jobs(pb::ListJobsRequest {}).await?;
        Ok(reply.into_inner().jobs.into_iter().map(Job::from).collect())
    }
}
