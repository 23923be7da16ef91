//! The `Session` service: the agent's end of a transfer, hosting the server end of a
//! session (`blit_core::session::serve`). The agent finds the module an `Open` names and
//! acts as its identity while the session's root is opened (`modules`), grants the data
//! plane (its `DataPort` admits the connections and hands them to the session), and runs
//! the same role code the client runs, in whichever role it is asked to play.
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
use blit_core::session::lifetime::{Cancel, Lifetime};
use blit_core::session::serve::{self, CONNECT_TIMEOUT, Prepared};
use blit_core::session::throttle::Throttle;
use blit_core::session::{LINK_DEPTH, Link, SessionError, frame, link};
use blit_core::wire::pb;
use blit_core::{Report, Stats};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::config::Limits;
use crate::data_port::{DataPort, Grant};
use crate::metrics::{Metrics, Role};
use crate::modules::Modules;

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
        serve::check_version(&open)?;
        let lifetime = Lifetime::new(self.limits.session_memory);
        let prepared = {
            // What this end may do in the module, and as whom: the `Resolved` acts as
            // the module's identity while the root is opened.
            let resolved = self.modules.resolve(open.location.as_ref())?;
            serve::prepare(&open, &resolved.place(), self.throttle.as_ref(), &lifetime)?
        };
        let slot = self.slot().await?;
        let grant = match open.force_grpc {
            true => None,
            false => Some(
                self.data_port
                    .grant()
                    .map_err(|e| Status::internal(e.to_string()))?,
            ),
        };
        let data = grant.as_ref().map(|g| (self.data_port.port, &g.token[..]));
        let accept = prepared.accept(&open, data);

        let activity = Arc::new(AtomicU64::new(0));
        let cancel = lifetime.cancel.clone();
        let (link, responses) = forward(inbound, &activity, &cancel);
        link.tx
            .send(frame(pb::frame::Kind::Accept(accept)))
            .await
            .map_err(|_| Status::cancelled("the client went away"))?;
        let session = Accepted {
            prepared,
            link,
            grant,
            activity,
            cancel,
            idle,
        };
        tokio::spawn(session.run(slot, self.shutdown.clone(), self.metrics.clone()));
        Ok(Response::new(ReceiverStream::new(responses)))
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

/// A session the agent accepted, run on its own task until it ends.
struct Accepted {
    prepared: Prepared,
    link: Link,
    grant: Option<Grant>,
    /// Frames through the session's stream (but progress reports), either way.
    activity: Arc<AtomicU64>,
    cancel: Cancel,
    idle: Duration,
}

impl Accepted {
    /// Runs the session under supervision, holding `slot` until it ends, and records
    /// how it ended.
    async fn run(
        self,
        slot: OwnedSemaphorePermit,
        shutdown: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
    ) {
        let _slot = slot;
        let _active = metrics.session_started();
        let role = match self.prepared {
            Prepared::Source(_) => Role::Source,
            Prepared::Destination(_) => Role::Destination,
        };
        let tx = self.link.tx.clone();
        let stats = Arc::new(Stats::default());
        let activity = self.activity;
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
        let session = serve(self.prepared, self.link, self.grant, &metrics, stats);
        match supervise(session, &self.cancel, self.idle, progress, shutdown).await {
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
    }
}

/// Waits for the client's `DataReady` and its connections, then runs this end's role.
async fn serve(
    prepared: Prepared,
    mut link: Link,
    mut grant: Option<Grant>,
    metrics: &Metrics,
    stats: Arc<Stats>,
) -> Result<Report, SessionError> {
    let connections = grant.as_mut().map(|g| &mut g.connections);
    let plane = prepared
        .data_plane(&mut link, connections, CONNECT_TIMEOUT)
        .await?;
    // The token is withdrawn: no more connections for this session.
    drop(grant);
    let streams = match &plane {
        DataPlane::Tcp(s) => s.len() as i64,
        DataPlane::Grpc => 0,
    };
    metrics.streams(streams);
    let result = prepared.run(link, plane, stats).await;
    metrics.streams(-streams);
    result
}

/// The session's link over the client's stream: frames from the client come through
/// `session::link::forward_in`, frames to it through [`forward_out`] (the stream of the
/// response); each one but a progress report counts as activity.
fn forward(
    inbound: Streaming<pb::Frame>,
    activity: &Arc<AtomicU64>,
    cancel: &Cancel,
) -> (Link, mpsc::Receiver<Result<pb::Frame, Status>>) {
    let (out_tx, out_rx) = mpsc::channel::<pb::Frame>(LINK_DEPTH);
    let (resp_tx, resp_rx) = mpsc::channel(LINK_DEPTH);
    tokio::spawn(forward_out(
        out_rx,
        resp_tx,
        activity.clone(),
        cancel.clone(),
    ));
    let (in_tx, in_rx) = mpsc::channel(LINK_DEPTH);
    let seen = {
        let activity = activity.clone();
        move |f: &pb::Frame| {
            activity.fetch_add(u64::from(advances(f)), Ordering::Relaxed);
        }
    };
    tokio::spawn(link::forward_in(
        inbound,
        in_tx,
        seen,
        Some(cancel.clone()),
        "client",
    ));
    let link = Link {
        tx: out_tx,
        rx: in_rx,
    };
    (link, resp_rx)
}

/// Runs a session to its end, or ends it: after `idle` without progress (`progress`
/// unchanged), when the agent shuts down, or when its client goes away. An ended session
/// is cancelled and given [`STOP_GRACE`] to stop.
async fn supervise(
    session: impl Future<Output = Result<Report, SessionError>>,
    cancel: &Cancel,
    idle: Duration,
    progress: impl Fn() -> u64,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Report, SessionError> {
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
