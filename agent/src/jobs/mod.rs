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

mod registry;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blit_core::Quiet;
use blit_core::agent::{Address, AgentClient, ClientError, Credentials, DataOptions, Run};
use blit_core::roots::Shape;
use blit_core::session::SessionError;
use blit_core::session::serve;
use blit_core::spec::Options;
use blit_core::sync::lock;
use blit_core::tls::ClientTls;
use blit_core::wire::pb;
use tokio::sync::{Semaphore, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::config;
use crate::metrics::Metrics;
use crate::modules::Modules;
use crate::peers::{AllowList, SourcePolicy};
use registry::{Admitted, JobState, Registry};

pub use registry::Retention;

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
            .get(id)
            .ok_or_else(|| Status::not_found(format!("no job {id:?}")))
    }
}

fn new_id() -> Result<String, Status> {
    blit_core::session::data::random_hex(8).map_err(|e| Status::internal(e.to_string()))
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
        let known = lock(&self.jobs).by_key(&req.idempotency_key);
        if let Some(job) = known {
            return Ok(Response::new(job.snapshot()));
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
        let job = Arc::new(JobState::queued(
            new_id()?,
            req.idempotency_key.clone(),
            cancel,
        ));
        match lock(&self.jobs).admit(&job, self.settings.retention, MAX_UNFINISHED) {
            Admitted::New => {}
            Admitted::Existing(existing) => return Ok(Response::new(existing.snapshot())),
            Admitted::Full => {
                return Err(Status::resource_exhausted(format!(
                    "{MAX_UNFINISHED} jobs are queued or running already; try again later"
                )));
            }
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
        let list = jobs.list().map(|j| j.snapshot()).collect();
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
