//! The client end of a session: connect to an agent, open a session in either role,
//! negotiate the data plane, and run the local role.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

use super::data::{self, DataPlane};
use super::destination::{self, DestinationJob};
use super::lifetime::{CLIENT_SESSION_MEMORY, Lifetime};
use super::shape::{self, Shape};
use super::source::{self, SourceJob};
use super::{Link, SessionError, frame};
use crate::filter::Filter;
use crate::report::{Observer, Report, Stats};
use crate::spec::Options;
use crate::sys::dir as sysdir;
use crate::tls::{ClientTls, DataTls};
use crate::wire::protocol::{PROTOCOL_HEADER, XATTRS_SINCE};
use crate::wire::{self, pb};

/// An agent to talk to.
#[derive(Debug, Clone)]
pub struct Remote {
    pub host: String,
    pub port: u16,
    /// Bearer token, when the agent requires one.
    pub token: Option<String>,
    /// TLS on both planes, when the agent serves it.
    pub tls: Option<ClientTls>,
}

/// How the client wants the data plane.
#[derive(Debug, Clone, Copy, Default)]
pub struct DataOptions {
    /// Data streams; `None`: adapted to the link (`data::auto_streams`).
    pub streams: Option<u32>,
    pub force_grpc: bool,
}

/// Adds the protocol version and the token to every call.
#[derive(Clone)]
pub struct Credentials {
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
    version: MetadataValue<tonic::metadata::Ascii>,
}

impl Credentials {
    pub fn new(token: Option<&str>) -> Result<Credentials, SessionError> {
        Credentials::with_version(token, pb::PROTOCOL_MAJOR, pb::PROTOCOL_MINOR)
    }

    /// Credentials announcing another protocol version (tests of the negotiation).
    pub fn with_version(
        token: Option<&str>,
        major: u32,
        minor: u32,
    ) -> Result<Credentials, SessionError> {
        let token = token
            .map(|t| format!("Bearer {t}").parse())
            .transpose()
            .map_err(|_| SessionError::Connect("the token is not valid ASCII".into()))?;
        let version = format!("{major}.{minor}")
            .parse()
            .map_err(|_| SessionError::Connect("bad version".into()))?;
        Ok(Credentials { token, version })
    }
}

impl Interceptor for Credentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let md = req.metadata_mut();
        md.insert(PROTOCOL_HEADER, self.version.clone());
        if let Some(t) = &self.token {
            md.insert("authorization", t.clone());
        }
        Ok(req)
    }
}

/// A connected control channel and what is needed to reach the same agent's data plane.
#[derive(Clone)]
pub struct Connection {
    pub channel: Channel,
    pub credentials: Credentials,
    /// The agent's address as resolved for the control channel.
    pub addr: SocketAddr,
    /// The data streams' TLS settings and the agent's expected name.
    data_tls: Option<DataTls>,
}

impl Remote {
    /// Connects the control channel.
    pub async fn connect(&self) -> Result<Connection, SessionError> {
        let target = format!("{}:{}", self.host, self.port);
        let addr = target
            .to_socket_addrs()
            .map_err(|e| SessionError::Connect(format!("{target}: {e}")))?
            .next()
            .ok_or_else(|| SessionError::Connect(format!("{target}: no address")))?;
        let connect_err = |e: &dyn std::error::Error| {
            SessionError::Connect(format!("{target}: {}", error_chain(e)))
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| SessionError::Connect(e.to_string()))?
            .connect_timeout(std::time::Duration::from_secs(10))
            .tcp_nodelay(true);
        let mut data_tls = None;
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.grpc(&self.host))
                .map_err(|e| connect_err(&e))?;
            data_tls = Some(tls.data(&self.host).map_err(|e| connect_err(&e))?);
        }
        let channel = endpoint.connect().await.map_err(|e| connect_err(&e))?;
        let credentials = Credentials::new(self.token.as_deref())?;
        greet(&channel, &credentials).await.map_err(|s| {
            SessionError::Connect(format!(
                "{target}: {}",
                super::status_message(&s, super::Stage::Greeting)
            ))
        })?;
        Ok(Connection {
            channel,
            credentials,
            addr,
            data_tls,
        })
    }
}

/// Asks for the agent's hello before any real call, so that a connection the agent drops
/// without a word (what a TLS agent does to a plain client) is told apart from one it
/// drops later (it stopped or crashed): only the first deserves a hint about TLS. An
/// answer that is an error (a token refused, say) is the agent speaking: the real call
/// will say what is wrong.
async fn greet(channel: &Channel, credentials: &Credentials) -> Result<(), tonic::Status> {
    let mut admin =
        pb::admin_client::AdminClient::with_interceptor(channel.clone(), credentials.clone());
    let hello = pb::HelloRequest {
        protocol_major: pb::PROTOCOL_MAJOR,
        protocol_minor: pb::PROTOCOL_MINOR,
    };
    match admin.hello(hello).await {
        Err(status) if std::error::Error::source(&status).is_some() => Err(status),
        _ => Ok(()),
    }
}

/// An error with its causes (each said once) and a hint when it looks like a TLS
/// mismatch, for messages about connecting (before the agent answered anything).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let s = causes(e);
    let hint = super::tls_hint(&s, super::Stage::Greeting);
    s + hint
}

/// An error with its causes, each said once.
pub(super) fn causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// Opens a session: sends `open`, waits for the agent's `Accept`.
async fn open_session(
    conn: &Connection,
    open: pb::Open,
) -> Result<(Link, pb::Accept), SessionError> {
    let mut client = pb::session_client::SessionClient::with_interceptor(
        conn.channel.clone(),
        conn.credentials.clone(),
    )
    .max_decoding_message_size(64 << 20)
    .max_encoding_message_size(64 << 20);
    let wants_xattrs = open.options.as_ref().is_some_and(|o| o.xattrs);
    let (tx, out_rx) = mpsc::channel(super::LINK_DEPTH);
    tx.send(frame(pb::frame::Kind::Open(open)))
        .await
        .map_err(|_| SessionError::Closed)?;
    let mut inbound = client
        .transfer(ReceiverStream::new(out_rx))
        .await
        .map_err(SessionError::Rpc)?
        .into_inner();
    let first = match inbound.next().await {
        Some(Ok(f)) => f,
        Some(Err(status)) => return Err(SessionError::Rpc(status)),
        None => return Err(SessionError::Closed),
    };
    let accept = match first.kind {
        Some(pb::frame::Kind::Accept(a)) => a,
        Some(pb::frame::Kind::Abort(a)) => return Err(SessionError::Aborted(a.message)),
        _ => return Err(SessionError::unexpected(&first, "opening the session")),
    };
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
    let (in_tx, rx) = mpsc::channel(super::LINK_DEPTH);
    tokio::spawn(async move {
        while let Some(item) = inbound.next().await {
            let f = match item {
                Ok(f) => f,
                Err(status) => frame(pb::frame::Kind::Abort(pb::Abort {
                    message: status.message().to_owned(),
                })),
            };
            if in_tx.send(f).await.is_err() {
                break;
            }
        }
    });
    Ok((Link { tx, rx }, accept))
}

/// Connects the granted data streams (or falls back to the gRPC stream) and tells the
/// agent which it got.
async fn negotiate_data(
    conn: &Connection,
    link: &Link,
    accept: &pb::Accept,
    options: DataOptions,
) -> Result<DataPlane, SessionError> {
    let plane = if accept.data_port == 0 || options.force_grpc {
        DataPlane::Grpc
    } else {
        let addr = SocketAddr::new(conn.addr.ip(), accept.data_port as u16);
        let token = accept.data_token.clone();
        let streams = match options.streams {
            Some(n) => data::Streams::Fixed(n.min(accept.streams)),
            None => data::Streams::Auto {
                max: accept.streams,
            },
        };
        let tls = conn.data_tls.clone();
        let connect = move || data::connect(addr, tls.as_ref(), &token, streams);
        match tokio::task::spawn_blocking(connect).await {
            Ok(Ok(s)) => DataPlane::Tcp(s),
            _ => DataPlane::Grpc,
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
    conn: &Connection,
    src: &Path,
    dest: pb::Location,
    spec: &Options,
    options: DataOptions,
    stats: Arc<Stats>,
) -> Result<Report, SessionError> {
    let (root, shape, only) = open_local_source(src)?;
    let filter = based_filter(&spec.filter, &shape);
    let open = open_frame(pb::Role::Destination, dest, spec, Some(&shape), options);
    let (link, accept) = open_session(conn, open).await?;
    let plane = negotiate_data(conn, &link, &accept, options).await?;
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
    conn: &Connection,
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
    pull_into(conn, src, spec, options, stats, observer, target).await
}

/// Fetches `src` from an agent into the destination that `target` opens once the
/// source's shape is known (a local path, or a path beneath a module of this agent when
/// an agent pulls on a caller's behalf).
pub async fn pull_into(
    conn: &Connection,
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
    let (link, accept) = open_session(conn, open).await?;
    let shape = Shape::from_wire(accept.source.clone())?;
    let (root, rename) = match target(&shape) {
        Ok(t) => t,
        Err(e) => return Err(super::abort(&link.tx, e).await),
    };
    let plane = negotiate_data(conn, &link, &accept, options).await?;
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
