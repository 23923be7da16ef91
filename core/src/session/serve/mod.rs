//! The server end of a session, whoever hosts it (an agent's `Session` service, or a
//! server in this process): check the client's `Open` against the place it names and
//! turn it into this end's role ([`prepare`]), answer with an `Accept`
//! ([`Prepared::accept`]), wait for the client's `DataReady` and its data connections
//! ([`Prepared::data_plane`]), then run the role ([`Prepared::run`]).
//!
//! The host does what is its own: finds the module a location names and acts as the
//! module's identity while the roots are opened, says what a session may do there
//! ([`Place`]), admits data connections (handing them over as a channel of [`Stream`]s),
//! and supervises the running session (slots, idle, shutdown).

mod refusal;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustix::fd::BorrowedFd;
use tokio::sync::mpsc;

use super::data::{DataPlane, Stream};
use super::job::{DestinationJob, SourceJob};
use super::lifetime::Lifetime;
use super::throttle::Throttle;
use super::{Link, SessionError, destination, source};
use crate::report::{Quiet, Report, Stats};
use crate::roots::{self, Base, DestinationRoot, Shape};
use crate::spec::{Mode, Options, Privileges};
use crate::wire::protocol::{MAX_STREAMS, XATTRS_SINCE};
use crate::wire::{self, pb};

pub use refusal::{Refusal, location_path};

/// How long a client has to say `DataReady` and connect all its data streams.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where a session works and what it may do there, as its host resolved the location an
/// `Open` names: a path beneath a served directory (an agent's module).
pub struct Place<'a> {
    /// The served directory.
    pub root: BorrowedFd<'a>,
    /// The path inside it, as sent (a trailing `/` kept).
    pub rel: &'a Path,
    /// What a transfer may do there, and as whom.
    pub privileges: Privileges,
    /// Why nothing may be written there (a read-only module), if so.
    pub read_only: Option<String>,
}

impl Place<'_> {
    /// Refuses writes to a read-only place.
    pub fn writable(&self) -> Result<(), Refusal> {
        match &self.read_only {
            Some(why) => Err(Refusal::Denied(why.clone())),
            None => Ok(()),
        }
    }

    /// The destination root here for a source of `shape` (created unless in a dry run):
    /// a session's destination role, or a pull on a caller's behalf (an agent's job).
    pub fn open_destination(
        &self,
        shape: &Shape,
        options: &Options,
    ) -> Result<DestinationRoot, Refusal> {
        roots::open_destination(Base::Beneath(self.root), self.rel, shape, options)
            .map_err(Refusal::root)
    }
}

/// Refuses an `Open` in a protocol version this end does not speak.
pub fn check_version(open: &pb::Open) -> Result<(), Refusal> {
    if open.protocol_major == pb::PROTOCOL_MAJOR {
        return Ok(());
    }
    Err(Refusal::Unsupported(format!(
        "protocol version {}.{} is not supported: this agent speaks {}.x",
        open.protocol_major,
        open.protocol_minor,
        pb::PROTOCOL_MAJOR
    )))
}

/// Transfer options from the network as this end runs them: checked, with at most as
/// many workers as this machine's default, and only the `privileges` its host grants.
pub fn options(wire: &pb::TransferOptions, privileges: Privileges) -> Result<Options, Refusal> {
    let mut options = wire::options_from_wire(wire).map_err(|e| Refusal::Invalid(e.to_string()))?;
    options.limits.workers = options.limits.workers.min(crate::spec::default_workers());
    options.privileges = privileges;
    Ok(options)
}

/// Refuses what the peer's protocol version cannot carry.
fn supported(options: &Options, peer_minor: u32) -> Result<(), Refusal> {
    if options.preserve.xattrs && peer_minor < XATTRS_SINCE {
        return Err(Refusal::Unsupported(format!(
            "extended attributes (-X) need protocol {}.{XATTRS_SINCE}; the client speaks {}.{peer_minor}",
            pb::PROTOCOL_MAJOR,
            pb::PROTOCOL_MAJOR
        )));
    }
    Ok(())
}

/// A checked `Open`: the role this end plays, ready to run.
pub enum Prepared {
    Source(SourceJob),
    Destination(DestinationJob),
}

/// Checks `open` (its options, role and the peer's version) against `place` and opens
/// the root this end's role works on. A source sends at most as fast as the host's
/// `throttle` (shared by its sessions) or the client's own limit; `lifetime` ends it.
pub fn prepare(
    open: &pb::Open,
    place: &Place<'_>,
    throttle: Option<&Arc<Throttle>>,
    lifetime: &Lifetime,
) -> Result<Prepared, Refusal> {
    let wire = open
        .options
        .as_ref()
        .ok_or_else(|| Refusal::Invalid("no transfer options".into()))?;
    let role = pb::Role::try_from(open.server_role).unwrap_or(pb::Role::Unspecified);
    if role == pb::Role::Unspecified {
        return Err(Refusal::Invalid("no server role".into()));
    }
    let options = options(wire, place.privileges)?;
    supported(&options, open.protocol_minor)?;
    if role == pb::Role::Source {
        let root = roots::open_source(Base::Beneath(place.root), place.rel, &options)
            .map_err(Refusal::root)?;
        if options.mode == Mode::Move && !options.dry_run {
            place.writable()?;
        }
        let throttle = Throttle::for_session(throttle, options.limits.bandwidth);
        let job = SourceJob::new(root, &options, throttle, lifetime.clone());
        return Ok(Prepared::Source(job));
    }
    place.writable()?;
    let shape =
        wire::shape_from_wire(open.source.clone()).map_err(|e| Refusal::Invalid(e.to_string()))?;
    let root = place.open_destination(&shape, &options)?;
    Ok(Prepared::Destination(DestinationJob::new(
        root,
        &options,
        lifetime.clone(),
    )))
}

impl Prepared {
    /// The answer to `open`: this end's version, the data port and token it granted
    /// (`None`: the bytes travel in the control stream) and, from a source, what its
    /// path names.
    pub fn accept(&self, open: &pb::Open, data: Option<(u16, &[u8])>) -> pb::Accept {
        pb::Accept {
            protocol_major: pb::PROTOCOL_MAJOR,
            protocol_minor: pb::PROTOCOL_MINOR,
            capabilities: wire::protocol::capabilities(),
            data_port: data.map_or(0, |(port, _)| u32::from(port)),
            data_token: data.map_or(Vec::new(), |(_, token)| token.to_vec()),
            streams: match open.streams {
                0 => MAX_STREAMS,
                n => n.min(MAX_STREAMS),
            },
            source: match self {
                Prepared::Source(job) => Some(wire::shape_to_wire(&job.shape)),
                Prepared::Destination(_) => None,
            },
            data_tls: false,
        }
    }

    /// What ends this session early.
    pub fn lifetime(&self) -> &Lifetime {
        match self {
            Prepared::Source(job) => &job.lifetime,
            Prepared::Destination(job) => &job.lifetime,
        }
    }

    /// Waits (at most `within`) for the client's `DataReady` and for as many of the
    /// granted `connections` as it announced; no grant, or none announced, means the
    /// bytes travel in the control stream.
    pub async fn data_plane(
        &self,
        link: &mut Link,
        connections: Option<&mut mpsc::Receiver<Stream>>,
        within: Duration,
    ) -> Result<DataPlane, SessionError> {
        let wait = async {
            let deadline = tokio::time::Instant::now() + within;
            let ready = tokio::time::timeout_at(deadline, link.rx.recv())
                .await
                .map_err(|_| SessionError::Protocol("no DataReady from the client".into()))?
                .ok_or(SessionError::Closed)?;
            let streams = match ready.kind {
                Some(pb::frame::Kind::DataReady(r)) => r.streams,
                Some(pb::frame::Kind::Abort(a)) => return Err(SessionError::Aborted(a.message)),
                _ => return Err(SessionError::unexpected(&ready, "waiting for DataReady")),
            };
            let connections = match (streams, connections) {
                (0, _) | (_, None) => return Ok(DataPlane::Grpc),
                (_, Some(connections)) => connections,
            };
            let mut streams_in = Vec::new();
            for _ in 0..streams.min(MAX_STREAMS) {
                match tokio::time::timeout_at(deadline, connections.recv()).await {
                    Ok(Some(stream)) => streams_in.push(stream),
                    _ => {
                        return Err(SessionError::Protocol(
                            "the client's data connections did not arrive".into(),
                        ));
                    }
                }
            }
            Ok(DataPlane::Tcp(streams_in))
        };
        self.lifetime().cancel.until(wait).await?
    }

    /// Runs this end's role to the end.
    pub async fn run(
        self,
        link: Link,
        plane: DataPlane,
        stats: Arc<Stats>,
    ) -> Result<Report, SessionError> {
        match self {
            Prepared::Source(job) => source::run(job, link, plane, stats).await,
            Prepared::Destination(job) => {
                destination::run(job, link, plane, stats, Arc::new(Quiet)).await
            }
        }
    }
}
