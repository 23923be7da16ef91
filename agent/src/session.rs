//! The `Session` service: the agent's end of a transfer. It checks the `Open` (module,
//! path, rights, options), grants the data plane, and runs the same role code the client
//! runs (`blit_core::session::{source, destination}`), in whichever role it is asked to
//! play.
//!
//! Every session is bounded (see `[limits]`): it waits at most `queue_timeout` for one of
//! the agent's slots and is refused as busy after that, it ends after `idle_timeout`
//! without progress, and it holds at most `session_memory` for its peer. However it ends
//! — finished, failed, idle, its client gone, the agent shutting down — its role code is
//! cancelled, so no thread stays behind waiting for it and its slot is free at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use blit_core::session::data::DataPlane;
use blit_core::session::destination;
use blit_core::session::job::{DestinationJob, SourceJob};
use blit_core::session::lifetime::{Cancel, Lifetime};
use blit_core::session::source;
use blit_core::session::throttle::Throttle;
use blit_core::session::{Link, SessionError, frame};
use blit_core::spec::Mode;
use blit_core::wire::protocol::{MAX_STREAMS, XATTRS_SINCE};
use blit_core::wire::{self, pb};
use blit_core::{Quiet, Stats};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::config::Limits;
use crate::data_port::{DataPort, Grant};
use crate::metrics::{Metrics, Role};
use crate::modules::Modules;

/// How long a client has to say `DataReady` and connect all its data streams.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a cancelled session's role code has to stop before the session is given up
/// (every wait in it sees the cancellation within a fraction of a second; this only
/// guards against one that does not).
const STOP_GRACE: Duration = Duration::from_secs(5);

pub struct SessionService {
    pub modules: Arc<Modules>,
    /// The agent's bandwidth limit, shared by every session it sends from.
    pub throttle: Option<Arc<Throttle>>,
    pub data_port: DataPort,
    pub slots: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
    pub metrics: Arc<Metrics>,
    /// How long sessions may wait and idle, and what they may hold.
    pub limits: Limits,
}

/// A checked `Open`: what this end does.
enum Prepared {
    Source { job: SourceJob },
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
        let idle = self.limits.idle_timeout();
        let first = tokio::time::timeout(idle, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!("no Open within {} s", idle.as_secs()))
            })??
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
        let lifetime = Lifetime::new(self.limits.session_memory);
        let prepared = prepare(&self.modules, &open, self.throttle.as_ref(), &lifetime)?;
        let slot = self.slot().await?;
        let grant = if open.force_grpc {
            None
        } else {
            Some(
                self.data_port
                    .grant()
                    .map_err(|e| Status::internal(e.to_string()))?,
            )
        };
        let accept = pb::Accept {
            protocol_major: pb::PROTOCOL_MAJOR,
            protocol_minor: pb::PROTOCOL_MINOR,
            capabilities: wire::protocol::capabilities(),
            data_port: grant.as_ref().map_or(0, |_| u32::from(self.data_port.port)),
            data_token: grant.as_ref().map_or(Vec::new(), |g| g.token.to_vec()),
            streams: match open.streams {
                0 => MAX_STREAMS,
                n => n.min(MAX_STREAMS),
            },
            source: match &prepared {
                Prepared::Source { job } => Some(wire::shape_to_wire(&job.shape)),
                Prepared::Destination { .. } => None,
            },
            data_tls: false,
        };

        let activity = Arc::new(AtomicU64::new(0));
        let cancel = lifetime.cancel.clone();
        let (out_tx, out_rx) = mpsc::channel::<pb::Frame>(blit_core::session::LINK_DEPTH);
        let (resp_tx, resp_rx) = mpsc::channel(blit_core::session::LINK_DEPTH);
        tokio::spawn(forward_out(
            out_rx,
            resp_tx,
            activity.clone(),
            cancel.clone(),
        ));
        let (in_tx, in_rx) = mpsc::channel(blit_core::session::LINK_DEPTH);
        tokio::spawn(forward_in(inbound, in_tx, activity.clone(), cancel.clone()));
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
        let (shutdown, metrics) = (self.shutdown.clone(), self.metrics.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _active = metrics.session_started();
            let tx = link.tx.clone();
            let stats = Arc::new(Stats::default());
            let progress = {
                let stats = stats.clone();
                move || {
                    let s = stats.snapshot();
                    activity.load(Ordering::Relaxed)
                        + s.entries_seen
                        + s.files_planned
                        + s.files_done
                        + s.bytes_done
                }
            };
            let session = serve(prepared, link, grant, &metrics, stats);
            let outcome = supervise(session, &cancel, idle, progress, shutdown).await;
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

impl SessionService {
    /// One of the agent's slots, waited for at most `queue_timeout`.
    async fn slot(&self) -> Result<OwnedSemaphorePermit, Status> {
        let wait = self.limits.queue_timeout();
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            permit = tokio::time::timeout(wait, self.slots.clone().acquire_owned()) => match permit {
                Ok(Ok(permit)) => Ok(permit),
                Ok(Err(_)) => Err(Status::unavailable("the agent is shutting down")),
                Err(_) => Err(Status::resource_exhausted(format!(
                    "the agent is busy: all {} transfer slots stayed in use for {} s \
                     ([limits] concurrent_transfers); try again later",
                    self.limits.concurrent_transfers,
                    wait.as_secs()
                ))),
            },
            _ = shutdown.wait_for(|stop| *stop) => Err(Status::unavailable("the agent is shutting down")),
        }
    }
}

/// Runs a session to its end, or ends it: after `idle` without progress (`progress`
/// unchanged), when the agent shuts down, or when its client goes away. An ended session
/// is cancelled and given [`STOP_GRACE`] to stop.
async fn supervise(
    session: impl Future<Output = Result<blit_core::Report, SessionError>>,
    cancel: &Cancel,
    idle: Duration,
    progress: impl Fn() -> u64,
    mut shutdown: watch::Receiver<bool>,
) -> Result<blit_core::Report, SessionError> {
    tokio::pin!(session);
    let reason = tokio::select! {
        outcome = &mut session => return outcome,
        reason = stalled(idle, progress) => reason,
        _ = shutdown.wait_for(|stop| *stop) => "the agent is shutting down".to_owned(),
        () = cancel.cancelled() => cancel.reason().unwrap_or_default(),
    };
    cancel.cancel(reason.clone());
    match tokio::time::timeout(STOP_GRACE, session).await {
        Ok(outcome) => outcome,
        Err(_) => {
            tracing::warn!("a cancelled session did not stop within {STOP_GRACE:?}");
            Err(SessionError::Ended(reason))
        }
    }
}

/// Resolves (with the reason) once `progress` has not changed for `idle`.
async fn stalled(idle: Duration, progress: impl Fn() -> u64) -> String {
    let tick = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let (mut seen, mut since) = (progress(), Instant::now());
    loop {
        tokio::time::sleep(tick).await;
        let now = progress();
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() >= idle {
            return format!(
                "the session made no progress for {} s and was ended ([limits] idle_timeout)",
                idle.as_secs()
            );
        }
    }
}

/// Whether a frame is more than a progress report (which is no progress by itself: a
/// client sending only those is idle).
fn advances(f: &pb::Frame) -> bool {
    !matches!(f.kind, Some(pb::frame::Kind::Progress(_)))
}

/// Frames to the client, each delivered one counted as progress. A client that went
/// away cancels the session. Once the session is cancelled nothing more is sent but the
/// reason (if the client has room for it: one that stopped reading is not waited for),
/// and the role code's sends fail from then on instead of blocking.
async fn forward_out(
    mut rx: mpsc::Receiver<pb::Frame>,
    tx: mpsc::Sender<Result<pb::Frame, Status>>,
    activity: Arc<AtomicU64>,
    cancel: Cancel,
) {
    loop {
        let step = cancel
            .until(async {
                let f = rx.recv().await?;
                let advances = advances(&f);
                Some(tx.send(Ok(f)).await.map(|()| advances))
            })
            .await;
        match step {
            Ok(Some(Ok(advances))) => {
                activity.fetch_add(u64::from(advances), Ordering::Relaxed);
            }
            // The role code is done with the stream.
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                cancel.cancel("the client went away");
                break;
            }
            Err(e) => {
                let message = e.to_string();
                let _ = tx.try_send(Ok(frame(pb::frame::Kind::Abort(pb::Abort { message }))));
                break;
            }
        }
    }
}

/// Frames from the client, each counted as progress (but `Progress` frames); a transport
/// error (the client gone) cancels the session and becomes an Abort for the role code.
async fn forward_in(
    mut inbound: Streaming<pb::Frame>,
    tx: mpsc::Sender<pb::Frame>,
    activity: Arc<AtomicU64>,
    cancel: Cancel,
) {
    while let Ok(Some(item)) = cancel.until(inbound.next()).await {
        let f = match item {
            Ok(f) => f,
            Err(status) => {
                let message = format!("the client's stream failed: {}", status.message());
                cancel.cancel(message.clone());
                frame(pb::frame::Kind::Abort(pb::Abort { message }))
            }
        };
        activity.fetch_add(u64::from(advances(&f)), Ordering::Relaxed);
        if !matches!(cancel.until(tx.send(f)).await, Ok(Ok(()))) {
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
    stats: Arc<Stats>,
) -> Result<blit_core::Report, SessionError> {
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let ready = tokio::time::timeout_at(deadline, link.rx.recv())
        .await
        .map_err(|_| SessionError::Protocol("no DataReady from the client".into()))?
        .ok_or(SessionError::Closed)?;
    let streams = match ready.kind {
        Some(pb::frame::Kind::DataReady(r)) => r.streams,
        Some(pb::frame::Kind::Abort(a)) => return Err(SessionError::Aborted(a.message)),
        _ => return Err(SessionError::unexpected(&ready, "waiting for DataReady")),
    };
    let plane = match (streams, grant) {
        (0, _) | (_, None) => DataPlane::Grpc,
        (n, Some(mut grant)) => {
            let mut conns = Vec::new();
            for _ in 0..n.min(MAX_STREAMS) {
                match tokio::time::timeout_at(deadline, grant.connections.recv()).await {
                    Ok(Some(c)) => conns.push(c),
                    _ => {
                        return Err(SessionError::Protocol(
                            "the client's data connections did not arrive".into(),
                        ));
                    }
                }
            }
            DataPlane::Tcp(conns)
        }
    };
    let streams = match &plane {
        DataPlane::Tcp(s) => s.len() as i64,
        DataPlane::Grpc => 0,
    };
    metrics.streams(streams);
    let result = match prepared {
        Prepared::Source { job } => source::run(job, link, plane, stats).await,
        Prepared::Destination { job } => {
            destination::run(job, link, plane, stats, Arc::new(Quiet)).await
        }
    };
    metrics.streams(-streams);
    result
}

/// Refuses what the peer's protocol version cannot carry.
fn supported(spec: &blit_core::Options, peer_minor: u32) -> Result<(), Status> {
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
    lifetime: &Lifetime,
) -> Result<Prepared, Status> {
    let resolved = modules.resolve(open.location.as_ref())?;
    let options = open
        .options
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("no transfer options"))?;
    let role = pb::Role::try_from(open.server_role).unwrap_or(pb::Role::Unspecified);
    if role == pb::Role::Unspecified {
        return Err(Status::invalid_argument("no server role"));
    }
    let mut spec =
        wire::options_from_wire(options).map_err(|e| Status::invalid_argument(e.to_string()))?;
    spec.limits.workers = spec.limits.workers.min(blit_core::spec::default_workers());
    // What this end may do in the module, and as whom (the `Resolved` acts as it here).
    spec.privileges = resolved.module.privileges();
    supported(&spec, open.protocol_minor)?;
    match role {
        pb::Role::Source => {
            let root = resolved.open_source(&spec)?;
            if spec.mode == Mode::Move && !spec.dry_run {
                resolved.module.writable()?;
            }
            let throttle = Throttle::for_session(throttle, spec.limits.bandwidth);
            let job = SourceJob::new(root, &spec, throttle, lifetime.clone());
            Ok(Prepared::Source { job })
        }
        _ => {
            resolved.module.writable()?;
            let shape = wire::shape_from_wire(open.source.clone())
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let root = resolved.open_destination(&shape, &spec)?;
            Ok(Prepared::Destination {
                job: DestinationJob::new(root, &spec, lifetime.clone()),
            })
        }
    }
}
