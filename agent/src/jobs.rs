//! The `Jobs` service: transfers this agent runs on a caller's behalf. `StartTransfer`
//! makes this agent the destination and has it pull from a source agent, so the bytes go
//! agent to agent while the caller only watches. A retried start with the same
//! idempotency key returns the same job; `WatchJob` streams progress until the job ends;
//! `CancelJob` stops it at a safe point (nothing half-written is published).
//!
//! The agent pulls only from sources its [`SourcePolicy`] admits (`[jobs] sources`),
//! checked before anything is looked up or dialled, and refused with one text whatever
//! the address; a source it cannot reach fails the job with one text too, the cause going
//! to the agent's log only. Finished jobs are kept for a while and up to a count
//! (`[jobs] keep_finished*`); with them goes their idempotency key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blit_core::agent::{Address, AgentClient, ClientError, Credentials, DataOptions, Run};
use blit_core::roots::Shape;
use blit_core::session::SessionError;
use blit_core::session::serve;
use blit_core::spec::Options;
use blit_core::tls::ClientTls;
use blit_core::wire::{self, pb};
use blit_core::{Quiet, Report, Stats};
use tokio::sync::{Semaphore, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::config;
use crate::metrics::{Metrics, Role};
use crate::modules::Modules;
use crate::peers::{AllowList, SourcePolicy};

/// How often `WatchJob` reports.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// Jobs queued or running at once. Each waits for a transfer slot holding little, but
/// without a cap a caller could queue them without end; a few hundred is more than any
/// controller runs against one agent.
pub const MAX_UNFINISHED: usize = 256;

/// The answer to a start naming a source the policy does not admit: the same for every
/// address, so it tells the caller nothing about that address.
pub const SOURCE_REFUSED: &str =
    "this agent does not pull from that source (it is not among its [jobs] sources)";

/// The message of a job whose source could not be reached: the same whether the port
/// refused, timed out or spoke something else (the cause is in the agent's log).
pub const SOURCE_UNREACHABLE: &str = "could not connect to the source agent";

pub struct JobsService {
    pub modules: Arc<Modules>,
    pub slots: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
    pub shutdown: watch::Receiver<bool>,
    /// TLS for connecting to source agents (the agent's `[tls]`).
    tls: Option<ClientTls>,
    settings: Settings,
    jobs: Arc<Mutex<Registry>>,
}

/// Whom jobs may pull from, and how long finished jobs are kept.
#[derive(Clone)]
pub struct Settings {
    pub sources: Arc<dyn SourcePolicy>,
    pub retention: Retention,
}

/// How many finished jobs are kept, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub keep: usize,
    pub max_age: Duration,
}

impl Settings {
    /// The `[jobs]` section (already validated by `Config::validate`).
    pub fn from_config(c: &config::Jobs) -> anyhow::Result<Settings> {
        let sources =
            AllowList::parse(&c.sources).map_err(|e| anyhow::anyhow!("[jobs] sources: {e}"))?;
        Ok(Settings {
            sources: Arc::new(sources),
            retention: Retention {
                keep: c.keep_finished,
                max_age: Duration::from_secs(c.keep_finished_secs),
            },
        })
    }
}

impl Default for Settings {
    /// No sources: every job refused.
    fn default() -> Settings {
        Settings::from_config(&config::Jobs::default()).expect("the defaults are valid")
    }
}

#[derive(Default)]
struct Registry {
    by_id: HashMap<String, Arc<JobState>>,
    by_key: HashMap<String, String>,
    /// Ids in start order, for listing.
    order: Vec<String>,
}

impl Registry {
    fn insert(&mut self, job: Arc<JobState>) {
        self.by_key.insert(job.key.clone(), job.id.clone());
        self.order.push(job.id.clone());
        self.by_id.insert(job.id.clone(), job);
    }

    fn unfinished(&self) -> usize {
        self.by_id.values().filter(|j| !j.is_over()).count()
    }

    /// Drops finished jobs past their age, then the oldest finished ones past the count.
    /// Jobs still queued or running are never dropped.
    fn prune(&mut self, retention: Retention, now: Instant) {
        let mut finished: Vec<(Instant, String)> = self
            .by_id
            .values()
            .filter_map(|j| lock(&j.status).finished.map(|t| (t, j.id.clone())))
            .collect();
        finished.sort();
        let excess = finished.len().saturating_sub(retention.keep);
        let gone: std::collections::HashSet<String> = finished
            .into_iter()
            .enumerate()
            .filter(|(i, (t, _))| *i < excess || now.duration_since(*t) > retention.max_age)
            .map(|(_, (_, id))| id)
            .collect();
        if gone.is_empty() {
            return;
        }
        for id in &gone {
            if let Some(job) = self.by_id.remove(id) {
                self.by_key.remove(&job.key);
            }
        }
        self.order.retain(|id| !gone.contains(id));
    }
}

/// One job's live state.
struct JobState {
    id: String,
    key: String,
    started: Instant,
    stats: Arc<Stats>,
    cancel: watch::Sender<bool>,
    status: Mutex<JobStatus>,
}

/// Where a job is, besides its counters.
struct JobStatus {
    stage: pb::JobStage,
    message: String,
    report: Option<Report>,
    finished: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl JobState {
    fn set(&self, stage: pb::JobStage, message: impl Into<String>) {
        let mut s = lock(&self.status);
        s.stage = stage;
        s.message = message.into();
    }

    /// Records how the job ended.
    fn end(&self, outcome: Result<Report, SessionError>, metrics: &Metrics) {
        let mut s = lock(&self.status);
        s.finished = Some(Instant::now());
        let (stage, message) = match &outcome {
            Ok(report) if report.is_partial() => (
                pb::JobStage::Failed,
                format!("{} entries failed", report.failures.len()),
            ),
            Ok(_) => (pb::JobStage::Succeeded, String::new()),
            Err(SessionError::Cancelled) => (pb::JobStage::Cancelled, "cancelled".into()),
            Err(SessionError::Connect(_)) => (pb::JobStage::Failed, SOURCE_UNREACHABLE.into()),
            Err(e) => (pb::JobStage::Failed, e.to_string()),
        };
        match outcome {
            Ok(report) => {
                metrics.session_finished(Role::Destination, &report);
                s.report = Some(report);
            }
            Err(SessionError::Cancelled) => {}
            Err(_) => metrics.session_failed(),
        }
        (s.stage, s.message) = (stage, message);
    }

    fn is_over(&self) -> bool {
        matches!(
            lock(&self.status).stage,
            pb::JobStage::Succeeded | pb::JobStage::Failed | pb::JobStage::Cancelled
        )
    }

    /// The job as the API shows it.
    fn snapshot(&self) -> pb::Job {
        let s = lock(&self.status);
        let now = self.stats.snapshot();
        let elapsed = s
            .finished
            .unwrap_or_else(Instant::now)
            .duration_since(self.started)
            .as_secs_f64();
        let rate = if elapsed > 0.0 {
            now.bytes_done as f64 / elapsed
        } else {
            0.0
        };
        let left = now.bytes_planned.saturating_sub(now.bytes_done);
        let eta = (s.stage == pb::JobStage::Transferring && rate > 0.0).then(|| left as f64 / rate);
        let report = s.report.as_ref().map(wire::report_to_wire);
        pb::Job {
            id: self.id.clone(),
            idempotency_key: self.key.clone(),
            stage: s.stage as i32,
            files_done: now.files_done,
            files_total: now.files_planned,
            bytes_done: now.bytes_done,
            bytes_total: now.bytes_planned,
            bytes_per_second: rate,
            eta_seconds: eta,
            failures: report
                .as_ref()
                .map(|r| r.failures.clone())
                .unwrap_or_default(),
            message: s.message.clone(),
            report,
        }
    }
}

impl JobsService {
    /// A service that refuses every job until given settings (`with_settings`).
    pub fn new(
        modules: Arc<Modules>,
        slots: Arc<Semaphore>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
        tls: Option<ClientTls>,
    ) -> JobsService {
        JobsService {
            modules,
            slots,
            metrics,
            shutdown,
            tls,
            settings: Settings::default(),
            jobs: Arc::default(),
        }
    }

    /// The sources jobs may pull from and the retention of finished jobs.
    pub fn with_settings(self, settings: Settings) -> JobsService {
        JobsService { settings, ..self }
    }

    fn get(&self, id: &str) -> Result<Arc<JobState>, Status> {
        lock(&self.jobs)
            .by_id
            .get(id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no job {id:?}")))
    }
}

fn new_id() -> Result<String, Status> {
    let token =
        blit_core::session::data::new_token().map_err(|e| Status::internal(e.to_string()))?;
    Ok(token[..8].iter().map(|b| format!("{b:02x}")).collect())
}

#[tonic::async_trait]
impl pb::jobs_server::Jobs for JobsService {
    async fn start_transfer(
        &self,
        req: Request<pb::StartTransferRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let req = req.into_inner();
        if req.idempotency_key.is_empty() {
            return Err(Status::invalid_argument("an idempotency key is required"));
        }
        let known = lock(&self.jobs).by_key.get(&req.idempotency_key).cloned();
        if let Some(id) = known {
            return Ok(Response::new(self.get(&id)?.snapshot()));
        }
        let source = req
            .source
            .clone()
            .ok_or_else(|| Status::invalid_argument("no source"))?;
        let address = Address::parse(&source.address).map_err(|_| {
            Status::invalid_argument(format!(
                "source address {:?} is not host[:port]",
                source.address
            ))
        })?;
        let token = (!source.token.is_empty()).then(|| source.token.clone());
        blit_core::agent::CallHeaders::new(token.as_deref())
            .map_err(|_| Status::invalid_argument("the source token is not valid ASCII"))?;
        // Before anything else touches the address: no lookup, no connection.
        if !self.settings.sources.allows(&address.host, address.port) {
            tracing::warn!(source = %source.address, "job refused: source not admitted");
            return Err(Status::permission_denied(SOURCE_REFUSED));
        }
        let options = req
            .options
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("no transfer options"))?;
        let spec = {
            let resolved = self.modules.resolve(req.destination.as_ref())?;
            resolved.module.writable()?;
            serve::options(options, resolved.module.privileges())?
        };
        let (cancel, cancelled) = watch::channel(false);
        let job = Arc::new(JobState {
            id: new_id()?,
            key: req.idempotency_key.clone(),
            started: Instant::now(),
            stats: Arc::new(Stats::default()),
            cancel,
            status: Mutex::new(JobStatus {
                stage: pb::JobStage::Queued,
                message: String::new(),
                report: None,
                finished: None,
            }),
        });
        {
            let mut jobs = lock(&self.jobs);
            // A concurrent start with the same key may have won the race.
            if let Some(id) = jobs.by_key.get(&req.idempotency_key) {
                let existing = jobs.by_id[id].clone();
                return Ok(Response::new(existing.snapshot()));
            }
            jobs.prune(self.settings.retention, Instant::now());
            if jobs.unfinished() >= MAX_UNFINISHED {
                return Err(Status::resource_exhausted(format!(
                    "{MAX_UNFINISHED} jobs are queued or running already; try again later"
                )));
            }
            jobs.insert(job.clone());
        }
        let task = Task {
            source_agent: address,
            credentials: Credentials {
                token,
                tls: self.tls.clone(),
                ..Credentials::default()
            },
            data: DataOptions {
                streams: (req.streams != 0).then_some(req.streams),
                force_grpc: req.force_grpc,
            },
            spec,
            source: source.location.clone().unwrap_or_default(),
            destination: req.destination.clone(),
            modules: self.modules.clone(),
            slots: self.slots.clone(),
            metrics: self.metrics.clone(),
            shutdown: self.shutdown.clone(),
            cancelled,
            registry: self.jobs.clone(),
            retention: self.settings.retention,
        };
        tokio::spawn(task.run(job.clone()));
        Ok(Response::new(job.snapshot()))
    }

    type WatchJobStream = ReceiverStream<Result<pb::Job, Status>>;

    async fn watch_job(
        &self,
        req: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let job = self.get(&req.into_inner().id)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let over = job.is_over();
                if tx.send(Ok(job.snapshot())).await.is_err() || over {
                    break;
                }
                tokio::time::sleep(WATCH_INTERVAL).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn cancel_job(
        &self,
        req: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let job = self.get(&req.into_inner().id)?;
        let _ = job.cancel.send(true);
        // Give the job a moment to reach its safe point, so the answer says where it is.
        for _ in 0..40 {
            if job.is_over() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Response::new(job.snapshot()))
    }

    async fn list_jobs(
        &self,
        _: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let mut jobs = lock(&self.jobs);
        jobs.prune(self.settings.retention, Instant::now());
        let list = jobs
            .order
            .iter()
            .filter_map(|id| jobs.by_id.get(id))
            .map(|j| j.snapshot())
            .collect();
        Ok(Response::new(pb::ListJobsResponse { jobs: list }))
    }
}

/// A started job's work, run on its own task.
struct Task {
    source_agent: Address,
    credentials: Credentials,
    data: DataOptions,
    spec: Options,
    source: pb::Location,
    destination: Option<pb::Location>,
    modules: Arc<Modules>,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    cancelled: watch::Receiver<bool>,
    registry: Arc<Mutex<Registry>>,
    retention: Retention,
}

impl Task {
    /// Waits for a transfer slot, pulls from the source, records how it ended, and
    /// prunes the finished jobs.
    async fn run(mut self, job: Arc<JobState>) {
        let Ok(_slot) = self.slots.clone().acquire_owned().await else {
            return;
        };
        let _active = self.metrics.session_started();
        job.set(pb::JobStage::Connecting, "connecting to the source agent");
        let run = async {
            let agent = reach(&self.source_agent, &self.credentials, &job.id).await?;
            job.set(pb::JobStage::Transferring, "");
            let (modules, destination, spec) = (&self.modules, &self.destination, &self.spec);
            // The destination is opened as the module's identity (while `r` lives).
            let target = |shape: &Shape| {
                let r = modules
                    .resolve(destination.as_ref())
                    .map_err(|s| SessionError::Protocol(s.message().to_owned()))?;
                let root = r.place().open_destination(shape, spec);
                root.map_err(|e| SessionError::Protocol(e.to_string()))
            };
            let run = Run {
                options: &self.spec,
                data: self.data,
                stats: job.stats.clone(),
            };
            agent
                .pull_into(self.source.clone(), run, Arc::new(Quiet), target)
                .await
                .map_err(|e| match e {
                    ClientError::Session(e) => e,
                    other => SessionError::Protocol(other.to_string()),
                })
        };
        let outcome = tokio::select! {
            r = run => r,
            _ = self.cancelled.wait_for(|c| *c) => Err(SessionError::Cancelled),
            _ = self.shutdown.wait_for(|s| *s) => Err(SessionError::Aborted("the agent is shutting down".into())),
        };
        job.end(outcome, &self.metrics);
        lock(&self.registry).prune(self.retention, Instant::now());
    }
}

/// Connects to a job's source and checks that it answers as an agent. Anything short of
/// that — a refused or silent port, a TLS or HTTP/2 failure, another service — is the
/// same error, so a job's outcome tells nothing about a port except whether an agent
/// listens there; the cause goes to this agent's log.
async fn reach(
    address: &Address,
    credentials: &Credentials,
    job: &str,
) -> Result<AgentClient, SessionError> {
    let unreachable = |why: &dyn std::fmt::Display| {
        tracing::warn!(job, "job source unreachable: {why}");
        SessionError::Connect(SOURCE_UNREACHABLE.into())
    };
    let agent = AgentClient::connect(address, credentials)
        .await
        .map_err(|e| unreachable(&e))?;
    match agent.hello().await {
        Ok(_) => Ok(agent),
        // An agent that wants another token is an agent: the caller should know.
        Err(e) if e.code() == Some(tonic::Code::Unauthenticated) => {
            Err(SessionError::Protocol(e.to_string()))
        }
        Err(e) => Err(unreachable(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, finished: Option<Instant>) -> Arc<JobState> {
        let stage = match finished {
            Some(_) => pb::JobStage::Succeeded,
            None => pb::JobStage::Transferring,
        };
        Arc::new(JobState {
            id: id.into(),
            key: format!("key-{id}"),
            started: Instant::now(),
            stats: Arc::default(),
            cancel: watch::channel(false).0,
            status: Mutex::new(JobStatus {
                stage,
                message: String::new(),
                report: None,
                finished,
            }),
        })
    }

    #[test]
    fn finished_jobs_go_by_count_and_age_and_running_ones_stay() {
        let now = Instant::now();
        let ago = |secs| now.checked_sub(Duration::from_secs(secs)).unwrap();
        let mut r = Registry::default();
        for (id, finished) in [
            ("a", Some(ago(50))),
            ("running", None),
            ("b", Some(ago(40))),
            ("c", Some(ago(30))),
            ("d", Some(ago(5))),
        ] {
            r.insert(job(id, finished));
        }
        let keep = |keep, secs| Retention {
            keep,
            max_age: Duration::from_secs(secs),
        };
        r.prune(keep(2, 3600), now);
        assert_eq!(
            r.order,
            ["running", "c", "d"],
            "the oldest finished go first"
        );
        assert!(!r.by_key.contains_key("key-a") && r.by_key.contains_key("key-c"));
        assert_eq!(r.unfinished(), 1);
        r.prune(keep(10, 10), now);
        assert_eq!(r.order, ["running", "d"], "older than the age limit");
        r.prune(keep(1, 0), ago(0) + Duration::from_secs(60));
        assert_eq!(r.order, ["running"], "a running job is never pruned");
        assert_eq!(r.by_id.len(), 1);
    }
}
