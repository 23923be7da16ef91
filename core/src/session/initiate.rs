//! The client end of a session, over any [`Transport`]: open the session in the role the
//! other end is to play, check what it accepted, connect the data plane (or fall back to
//! the control stream), and run this end's role (`source::run` for a push,
//! `destination::run` for a pull).

use std::path::Path;
use std::sync::Arc;

use super::data::{self, DataPlane};
use super::destination::{self, DestinationJob};
use super::lifetime::{CLIENT_SESSION_MEMORY, Lifetime};
use super::shape::{self, Shape};
use super::source::{self, SourceJob};
use super::transport::Transport;
use super::{Link, SessionError, frame};
use crate::filter::Filter;
use crate::report::{Observer, Report, Stats};
use crate::spec::Options;
use crate::sys::dir as sysdir;
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
        source: source.map(Shape::to_wire),
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
    let (root, shape, only) = open_local_source(src)?;
    let filter = based_filter(&spec.filter, &shape);
    let open = open_frame(pb::Role::Destination, dest, spec, Some(&shape), options);
    let (link, accept) = open_session(transport, open).await?;
    let plane = negotiate_data(transport, &link, &accept, options).await?;
    let removal =
        (spec.mode == crate::spec::Mode::Move && !spec.dry_run).then(|| source::Removal {
            root: whole_dir(src, &shape),
        });
    let job = SourceJob {
        root,
        only,
        filter,
        hashes: spec.compare == crate::spec::Compare::Checksum,
        xattrs: spec.preserve.xattrs,
        workers: spec.limits.workers,
        throttle: spec
            .limits
            .bandwidth
            .map(|rate| Arc::new(super::throttle::Throttle::new(rate))),
        removal,
        privileges: spec.privileges,
        lifetime: Lifetime::new(CLIENT_SESSION_MEMORY),
    };
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
    let target = |shape: &Shape| {
        let is_dir = std::fs::metadata(dst).is_ok_and(|m| m.is_dir());
        let target = shape.destination(dst, is_dir);
        let dir = if target.dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &target.dir
        };
        let root = crate::transfer::open_destination(dir, spec.dry_run)?;
        Ok((root, target.rename))
    };
    pull_into(transport, src, spec, options, stats, observer, target).await
}

/// Fetches `src` from an agent into the destination that `target` opens once the
/// source's shape is known (a local path, or a path beneath a module of this agent when
/// an agent pulls on a caller's behalf).
pub async fn pull_into(
    transport: &dyn Transport,
    src: pb::Location,
    spec: &Options,
    options: DataOptions,
    stats: Arc<Stats>,
    observer: Arc<dyn Observer + Send + Sync>,
    target: impl FnOnce(
        &Shape,
    ) -> Result<
        (Option<rustix::fd::OwnedFd>, Option<crate::transfer::Rename>),
        SessionError,
    >,
) -> Result<Report, SessionError> {
    let open = open_frame(pb::Role::Source, src, spec, None, options);
    let (link, accept) = open_session(transport, open).await?;
    let shape = Shape::from_wire(accept.source.clone())?;
    let (root, rename) = match target(&shape) {
        Ok(t) => t,
        Err(e) => return Err(super::abort(&link.tx, e).await),
    };
    let plane = negotiate_data(transport, &link, &accept, options).await?;
    let job = DestinationJob {
        options: spec.clone(),
        root,
        rename,
        filter: based_filter(&spec.filter, &shape),
        lifetime: Lifetime::new(CLIENT_SESSION_MEMORY),
    };
    destination::run(job, link, plane, stats, observer).await
}

/// The filter as rsync anchors it: below the source directory's name when the directory
/// itself is sent; nothing filters a single entry.
pub fn based_filter(filter: &Filter, shape: &Shape) -> Filter {
    match shape {
        Shape::Tree { name: Some(name) } => filter.with_base(Path::new(name)),
        Shape::Tree { name: None } => filter.clone(),
        Shape::Single { .. } => Filter::new(),
    }
}

/// A move of a directory named without a trailing slash also removes the directory
/// itself once emptied: its parent, opened, and its name.
fn whole_dir(src: &Path, shape: &Shape) -> Option<(rustix::fd::OwnedFd, std::ffi::OsString)> {
    let Shape::Tree { name: Some(name) } = shape else {
        return None;
    };
    let parent = src
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sysdir::open_root(parent).ok().map(|fd| (fd, name.clone()))
}

/// Opens a local source path: the directory to walk, its shape, and the single entry.
fn open_local_source(
    src: &Path,
) -> Result<(rustix::fd::OwnedFd, Shape, Option<std::ffi::OsString>), SessionError> {
    let err = |source| crate::error::Error::Source {
        path: src.to_owned(),
        source,
    };
    let meta = if crate::roots::names_contents(src) {
        std::fs::metadata(src)
    } else {
        std::fs::symlink_metadata(src)
    }
    .map_err(err)?;
    let (dir, shape) = shape::source(src, meta.is_dir());
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".").to_owned()
    } else {
        dir
    };
    let root = sysdir::open_root(&dir).map_err(err)?;
    let only = match &shape {
        Shape::Single { name } => Some(name.clone()),
        Shape::Tree { .. } => None,
    };
    Ok((root, shape, only))
}
