//! The client end of a session, over any [`Transport`]: open the session in the role the
//! other end is to play, check what it accepted, connect the data plane (or fall back to
//! the control stream), and run this end's role (`source::run` for a push,
//! `destination::run` for a pull).

use std::path::Path;
use std::sync::Arc;

use super::data::{self, DataPlane};
use super::destination;
use super::job::{DestinationJob, SourceJob};
use super::lifetime::{CLIENT_SESSION_MEMORY, Lifetime};
use super::source;
use super::throttle::Throttle;
use super::transport::Transport;
use super::{Link, SessionError, frame};
use crate::report::{Observer, Report, Stats};
use crate::roots::{self, Base, DestinationRoot, Shape};
use crate::spec::Options;
use crate::wire::protocol::XATTRS_SINCE;
use crate::wire::{self, pb};

/// How the client wants the data plane.
#[derive(Debug, Clone, Copy, Default)]
pub struct DataOptions {
    /// Data streams; `None`: adapted to the link (`data::auto_streams`).
    pub streams: Option<u32>,
    pub force_grpc: bool,
}

/// Opens a session and checks that the other end's protocol can carry what `open` asks.
async fn open_session(
    transport: &dyn Transport,
    open: pb::Open,
) -> Result<(Link, pb::Accept), SessionError> {
    let wants_xattrs = open.options.as_ref().is_some_and(|o| o.xattrs);
    let (link, accept) = transport.open(open).await?;
    if wants_xattrs
        && accept.protocol_major == pb::PROTOCOL_MAJOR
        && accept.protocol_minor < XATTRS_SINCE
    {
        return Err(SessionError::Protocol(format!(
            "the agent speaks protocol {}.{}, which does not carry extended attributes (-X)",
            accept.protocol_major, accept.protocol_minor
        )));
    }
    if accept.protocol_major != pb::PROTOCOL_MAJOR {
        return Err(SessionError::Protocol(format!(
            "the agent speaks protocol {}.{}, this client {}.{}",
            accept.protocol_major,
            accept.protocol_minor,
            pb::PROTOCOL_MAJOR,
            pb::PROTOCOL_MINOR
        )));
    }
    Ok((link, accept))
}

/// Connects the granted data streams (or falls back to the gRPC stream) and tells the
/// other end which it got.
async fn negotiate_data(
    transport: &dyn Transport,
    link: &Link,
    accept: &pb::Accept,
    options: DataOptions,
) -> Result<DataPlane, SessionError> {
    let plane = if accept.data_port == 0 || options.force_grpc {
        DataPlane::Grpc
    } else {
        let streams = match options.streams {
            Some(n) => data::Streams::Fixed(n.min(accept.streams)),
            None => data::Streams::Auto {
                max: accept.streams,
            },
        };
        match transport.connect_data(accept, streams).await {
            Ok(s) => DataPlane::Tcp(s),
            Err(_) => DataPlane::Grpc,
        }
    };
    let streams = match &plane {
        DataPlane::Tcp(s) => s.len() as u32,
        DataPlane::Grpc => 0,
    };
    link.tx
        .send(frame(pb::frame::Kind::DataReady(pb::DataReady { streams })))
        .await
        .map_err(|_| SessionError::Closed)?;
    Ok(plane)
}

fn open_frame(
    role: pb::Role,
    location: pb::Location,
    spec: &Options,
    source: Option<&Shape>,
    options: DataOptions,
) -> pb::Open {
    pb::Open {
        protocol_major: pb::PROTOCOL_MAJOR,
        protocol_minor: pb::PROTOCOL_MINOR,
        capabilities: wire::protocol::capabilities(),
        server_role: role as i32,
        location: Some(location),
        options: Some(wire::options_to_wire(spec)),
        source: source.map(wire::shape_to_wire),
        streams: options.streams.unwrap_or(0),
        force_grpc: options.force_grpc,
    }
}

/// Sends the local path `src` to `dest` on the agent. Live progress in `stats`.
pub async fn push(
    transport: &dyn Transport,
    src: &Path,
    dest: pb::Location,
    spec: &Options,
    options: DataOptions,
    stats: Arc<Stats>,
) -> Result<Report, SessionError> {
    let root = roots::open_source(Base::Local, src, spec)?;
    let throttle = Throttle::for_session(None, spec.limits.bandwidth);
    let job = SourceJob::new(root, spec, throttle, Lifetime::new(CLIENT_SESSION_MEMORY));
    let open = open_frame(pb::Role::Destination, dest, spec, Some(&job.shape), options);
    let (link, accept) = open_session(transport, open).await?;
    let plane = negotiate_data(transport, &link, &accept, options).await?;
    source::run(job, link, plane, stats).await
}

/// Fetches `src` from the agent into the local path `dst`.
pub async fn pull(
    transport: &dyn Transport,
    src: pb::Location,
    dst: &Path,
    spec: &Options,
    options: DataOptions,
    stats: Arc<Stats>,
    observer: Arc<dyn Observer + Send + Sync>,
) -> Result<Report, SessionError> {
    let target = |shape: &Shape| Ok(roots::open_destination(Base::Local, dst, shape, spec)?);
    pull_into(transport, src, spec, options, stats, observer, target).await
}

/// Fetches `src` from an agent into the destination root that `target` opens once the
/// source's shape is known (a local path, or a path beneath a module of this agent when
/// an agent pulls on a caller's behalf).
pub async fn pull_into(
    transport: &dyn Transport,
    src: pb::Location,
    spec: &Options,
    options: DataOptions,
    stats: Arc<Stats>,
    observer: Arc<dyn Observer + Send + Sync>,
    target: impl FnOnce(&Shape) -> Result<DestinationRoot, SessionError>,
) -> Result<Report, SessionError> {
    let open = open_frame(pb::Role::Source, src, spec, None, options);
    let (link, accept) = open_session(transport, open).await?;
    let shape = wire::shape_from_wire(accept.source.clone())?;
    let root = match target(&shape) {
        Ok(root) => root,
        Err(e) => return Err(super::abort(&link.tx, e).await),
    };
    let plane = negotiate_data(transport, &link, &accept, options).await?;
    let job = DestinationJob::new(root, spec, Lifetime::new(CLIENT_SESSION_MEMORY));
    destination::run(job, link, plane, stats, observer).await
}
