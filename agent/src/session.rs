//! The `Session` service: the agent's end of a transfer. It checks the `Open` (module,
//! path, rights, options), grants the data plane, and runs the same role code the client
//! runs (`blit_core::session::{source, destination}`), in whichever role it is asked to
//! play.

use std::sync::Arc;
use std::time::Duration;

use blit_core::session::client::XATTRS_SINCE;
use blit_core::session::data::{DataPlane as Plane, MAX_STREAMS};
use blit_core::session::destination::{self, DestinationJob};
use blit_core::session::shape::{self, Shape};
use blit_core::session::source::{self, SourceJob};
use blit_core::session::throttle::Throttle;
use blit_core::session::{Link, SessionError, client, frame};
use blit_core::spec::{Endpoint, Mode};
use blit_core::sys::beneath;
use blit_core::wire::{self, pb};
use blit_core::{Quiet, Stats};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::dataplane::{DataPlane, Grant};
use crate::metrics::{Metrics, Role};
use crate::modules::{Modules, io_status};

/// How long a client has to connect its data streams.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

pub struct SessionService {
    pub modules: Arc<Modules>,
    /// The agent's bandwidth limit, shared by every session it sends from.
    pub throttle: Option<Arc<Throttle>>,
    pub data: DataPlane,
    pub slots: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
    pub metrics: Arc<Metrics>,
}

/// A checked `Open`: what this end does.
enum Prepared {
    Source { job: SourceJob, shape: Shape },
    Destination { job: DestinationJob },
}

#[tonic::async_trait]
impl pb::session_server::Session for SessionService {
    type TransferStream = ReceiverStream<Result<pb::Frame, Status>>;

    async fn transfer(
        &self,
        request: Request<Streaming<pb::Frame>>,
    ) -> Result<Response<Self::TransferStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the session ended before its Open"))?;
        let Some(pb::frame::Kind::Open(open)) = first.kind else {
            return Err(Status::invalid_argument("a session starts with Open"));
        };
        if open.protocol_major != pb::PROTOCOL_MAJOR {
            return Err(Status::failed_precondition(format!(
                "protocol version {}.{} is not supported: this agent speaks {}.x",
                open.protocol_major,
                open.protocol_minor,
                pb::PROTOCOL_MAJOR
            )));
        }
        let prepared = prepare(&self.modules, &open, self.throttle.as_ref())?;
        let grant = if open.force_grpc {
            None
        } else {
            Some(
                self.data
                    .grant()
                    .map_err(|e| Status::internal(e.to_string()))?,
            )
        };
        let accept = pb::Accept {
            protocol_major: pb::PROTOCOL_MAJOR,
            protocol_minor: pb::PROTOCOL_MINOR,
            capabilities: client::CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            data_port: grant.as_ref().map_or(0, |_| u32::from(self.data.port)),
            data_token: grant.as_ref().map_or(Vec::new(), |g| g.token.to_vec()),
            streams: match open.streams {
                0 => MAX_STREAMS,
                n => n.min(MAX_STREAMS),
            },
            source: match &prepared {
                Prepared::Source { shape, .. } => Some(shape.to_wire()),
                Prepared::Destination { .. } => None,
            },
            data_tls: false,
        };

        let (out_tx, out_rx) = mpsc::channel::<pb::Frame>(blit_core::session::LINK_DEPTH);
        let (resp_tx, resp_rx) = mpsc::channel(blit_core::session::LINK_DEPTH);
        tokio::spawn(forward_out(out_rx, resp_tx));
        let (in_tx, in_rx) = mpsc::channel(blit_core::session::LINK_DEPTH);
        tokio::spawn(forward_in(inbound, in_tx));
        out_tx
            .send(frame(pb::frame::Kind::Accept(accept)))
            .await
            .map_err(|_| Status::cancelled("the client went away"))?;
        let link = Link {
            tx: out_tx,
            rx: in_rx,
        };
        let role = match &prepared {
            Prepared::Source { .. } => Role::Source,
            Prepared::Destination { .. } => Role::Destination,
        };
        let (slots, mut shutdown, metrics) = (
            self.slots.clone(),
            self.shutdown.clone(),
            self.metrics.clone(),
        );
        tokio::spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let _active = metrics.session_started();
            let tx = link.tx.clone();
            let outcome = tokio::select! {
                r = serve(prepared, link, grant, &metrics) => r,
                _ = shutdown.wait_for(|stop| *stop) => Err(SessionError::Aborted("the agent is shutting down".into())),
            };
            match outcome {
                Ok(report) => {
                    metrics.session_finished(role, &report);
                    tracing::info!(
                        files = report.files_copied,
                        bytes = report.bytes_copied,
                        failures = report.failures.len(),
                        "session done"
                    );
                }
                Err(e) => {
                    metrics.session_failed();
                    tracing::warn!("session failed: {e}");
                    let _ = blit_core::session::abort(&tx, e).await;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(resp_rx)))
    }
}

/// Frames to the client.
async fn forward_out(
    mut rx: mpsc::Receiver<pb::Frame>,
    tx: mpsc::Sender<Result<pb::Frame, Status>>,
) {
    while let Some(f) = rx.recv().await {
        if tx.send(Ok(f)).await.is_err() {
            break;
        }
    }
}

/// Frames from the client; a transport error becomes an Abort for the role code.
async fn forward_in(mut inbound: Streaming<pb::Frame>, tx: mpsc::Sender<pb::Frame>) {
    while let Some(item) = inbound.next().await {
        let f = match item {
            Ok(f) => f,
            Err(status) => frame(pb::frame::Kind::Abort(pb::Abort {
                message: format!("the client's stream failed: {}", status.message()),
            })),
        };
        if tx.send(f).await.is_err() {
            break;
        }
    }
}

/// Waits for the client's `DataReady` and its connections, then runs this end's role.
async fn serve(
    prepared: Prepared,
    mut link: Link,
    grant: Option<Grant>,
    metrics: &Metrics,
) -> Result<blit_core::Report, SessionError> {
    let ready = tokio::time::timeout(CONNECT_TIMEOUT, link.rx.recv())
        .await
        .map_err(|_| SessionError::Protocol("no DataReady from the client".into()))?
        .ok_or(SessionError::Closed)?;
    let streams = match ready.kind {
        Some(pb::frame::Kind::DataReady(r)) => r.streams,
        Some(pb::frame::Kind::Abort(a)) => return Err(SessionError::Aborted(a.message)),
        _ => return Err(SessionError::unexpected(&ready, "waiting for DataReady")),
    };
    let plane = match (streams, grant) {
        (0, _) | (_, None) => Plane::Grpc,
        (n, Some(mut grant)) => {
            let mut conns = Vec::new();
            for _ in 0..n.min(MAX_STREAMS) {
                match tokio::time::timeout(CONNECT_TIMEOUT, grant.connections.recv()).await {
                    Ok(Some(c)) => conns.push(c),
                    _ => {
                        return Err(SessionError::Protocol(
                            "the client's data connections did not arrive".into(),
                        ));
                    }
                }
            }
            Plane::Tcp(conns)
        }
    };
    let stats = Arc::new(Stats::default());
    let streams = match &plane {
        Plane::Tcp(s) => s.len() as i64,
        Plane::Grpc => 0,
    };
    metrics.streams(streams);
    let result = match prepared {
        Prepared::Source { job, .. } => source::run(job, link, plane, stats).await,
        Prepared::Destination { job } => {
            destination::run(job, link, plane, stats, Arc::new(Quiet)).await
        }
    };
    metrics.streams(-streams);
    result
}

/// The limit a session sends under: the agent's shared bucket, or the client's own
/// limit when that is lower.
fn session_throttle(agent: Option<&Arc<Throttle>>, asked: Option<u64>) -> Option<Arc<Throttle>> {
    match (agent, asked) {
        (Some(a), Some(rate)) if (rate as f64) < a.rate() => Some(Arc::new(Throttle::new(rate))),
        (Some(a), _) => Some(a.clone()),
        (None, Some(rate)) => Some(Arc::new(Throttle::new(rate))),
        (None, None) => None,
    }
}

/// Refuses what the peer's protocol version cannot carry.
fn supported(spec: &blit_core::TransferSpec, peer_minor: u32) -> Result<(), Status> {
    if spec.preserve.xattrs && peer_minor < XATTRS_SINCE {
        return Err(Status::failed_precondition(format!(
            "extended attributes (-X) need protocol {}.{XATTRS_SINCE}; the client speaks {}.{peer_minor}",
            pb::PROTOCOL_MAJOR,
            pb::PROTOCOL_MAJOR
        )));
    }
    Ok(())
}

/// Checks an `Open` against the modules and turns it into this end's job.
fn prepare(
    modules: &Modules,
    open: &pb::Open,
    throttle: Option<&Arc<Throttle>>,
) -> Result<Prepared, Status> {
    let resolved = modules.resolve(open.location.as_ref())?;
    let options = open
        .options
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("no transfer options"))?;
    let here = Endpoint::Local(resolved.module.config.path.join(&resolved.rel));
    let role = pb::Role::try_from(open.server_role).unwrap_or(pb::Role::Unspecified);
    let (source, destination) = match role {
        pb::Role::Source => (here.clone(), Endpoint::Local("remote".into())),
        pb::Role::Destination => (Endpoint::Local("remote".into()), here),
        pb::Role::Unspecified => return Err(Status::invalid_argument("no server role")),
    };
    let mut spec = wire::spec_from_wire(options, source, destination)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    spec.limits.workers = spec.limits.workers.min(blit_core::spec::default_workers());
    // What this end may do in the module, and as whom (the `Resolved` acts as it here).
    spec.privileges = resolved.module.privileges();
    supported(&spec, open.protocol_minor)?;
    let rel = &resolved.rel;
    match role {
        pb::Role::Source => {
            let contents = blit_core::roots::names_contents(rel);
            let is_dir = if contents {
                resolved
                    .open_dir()
                    .map_err(|e| io_status("source", rel, &e))?;
                true
            } else {
                match resolved.stat().map_err(|e| io_status("source", rel, &e))? {
                    Some(entry) => entry.is_dir(),
                    None => true,
                }
            };
            let (dir, shape) = shape::source(rel, is_dir);
            let root = beneath::open_dir(resolved.module.root(), &dir)
                .map_err(|e| io_status("source", &dir, &e))?;
            let only = match &shape {
                Shape::Single { name } => Some(name.clone()),
                Shape::Tree { .. } => None,
            };
            let removal = if spec.mode == Mode::Move && !spec.dry_run {
                resolved.module.writable()?;
                let root = match (&shape, dir.parent(), dir.file_name()) {
                    (Shape::Tree { name: Some(_) }, Some(parent), Some(name)) => {
                        beneath::open_dir(resolved.module.root(), parent)
                            .ok()
                            .map(|fd| (fd, name.to_owned()))
                    }
                    _ => None,
                };
                Some(source::Removal { root })
            } else {
                None
            };
            let job = SourceJob {
                root,
                only,
                filter: client::based_filter(&spec.filter, &shape),
                hashes: spec.compare == blit_core::Compare::Checksum,
                xattrs: spec.preserve.xattrs,
                workers: spec.limits.workers,
                throttle: session_throttle(throttle, spec.limits.bandwidth),
                removal,
                privileges: spec.privileges,
            };
            Ok(Prepared::Source { job, shape })
        }
        _ => {
            resolved.module.writable()?;
            let shape = Shape::from_wire(open.source.clone())
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let (root, rename) = resolved.open_destination(&shape, spec.dry_run)?;
            let filter = client::based_filter(&spec.filter, &shape);
            Ok(Prepared::Destination {
                job: DestinationJob {
                    spec,
                    root,
                    rename,
                    filter,
                },
            })
        }
    }
}
