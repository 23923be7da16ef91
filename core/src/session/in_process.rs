//! A server end of sessions in this process, serving one directory as an agent serves a
//! module: the same checks and roles (`serve`), a control stream made of two channels
//! instead of a gRPC stream, and data streams that are real loopback TCP connections,
//! each admitted only with its session's one-time token. The client role reaches it
//! through [`Transport`] like any agent, so push, pull, agent to agent, moves, resume,
//! cancellation and failures run end to end inside one test, in milliseconds.
//!
//! Every session it accepts is also handed to the caller as a [`Served`]: its lifetime
//! (to cancel it, as an agent does when it ends a session), its counters, its data
//! connections (to count and to cut them) and, at the end, how the server end of it
//! ended.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::fd::{AsFd, OwnedFd};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::data::{self, Stream, Streams, same_token};
use super::initiate::{self, DataOptions};
use super::lifetime::{DEFAULT_SESSION_MEMORY, Lifetime};
use super::serve::{self, CONNECT_TIMEOUT, Place, Prepared, Refusal};
use super::throttle::Throttle;
use super::transport::Transport;
use super::{LINK_DEPTH, Link, SessionError};
use crate::report::{Quiet, Report, Stats};
use crate::spec::{Options, Privileges};
use crate::sync::lock;
use crate::sys::dir as sysdir;
use crate::wire::protocol::{MAX_STREAMS, TOKEN_LEN};
use crate::wire::{self, pb};

/// How long a data connection may take to present its preface.
const ADMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A directory served to sessions opened in this process. Whatever module a location
/// names, its path is resolved beneath this directory.
pub struct InProcess {
    root: OwnedFd,
    privileges: Privileges,
    read_only: bool,
    throttle: Option<Arc<Throttle>>,
    connect_timeout: Duration,
    accepted: mpsc::UnboundedSender<Served>,
    served: tokio::sync::Mutex<mpsc::UnboundedReceiver<Served>>,
    refused: Arc<AtomicU64>,
}

/// One session the server accepted, as its host sees it.
pub struct Served {
    /// Cancelling it ends the session from outside, as an agent ends an idle one.
    pub lifetime: Lifetime,
    /// The server end's counters.
    pub stats: Arc<Stats>,
    handed: Arc<HandedOver>,
    outcome: oneshot::Receiver<Result<Report, SessionError>>,
}

/// The data connections given to one session: how many, and their sockets while it
/// runs (a socket kept past the session would keep its connection open).
#[derive(Default)]
struct HandedOver {
    count: AtomicUsize,
    live: Mutex<Vec<TcpStream>>,
}

/// A session's claim on the data connections made to its own listener.
struct Grant {
    port: u16,
    token: [u8; TOKEN_LEN],
    connections: mpsc::Receiver<Stream>,
}

impl InProcess {
    /// Serves `dir` with nothing privileged allowed (a module's defaults), writable.
    pub fn new(dir: &Path) -> io::Result<InProcess> {
        let (accepted, served) = mpsc::unbounded_channel();
        Ok(InProcess {
            root: sysdir::open_root(dir)?,
            privileges: Privileges::NONE,
            read_only: false,
            throttle: None,
            connect_timeout: CONNECT_TIMEOUT,
            accepted,
            served: tokio::sync::Mutex::new(served),
            refused: Arc::default(),
        })
    }

    /// Refuses writes, as a read-only module does.
    pub fn read_only(self) -> InProcess {
        InProcess {
            read_only: true,
            ..self
        }
    }

    /// Lets sessions do what `privileges` allow.
    pub fn with_privileges(self, privileges: Privileges) -> InProcess {
        InProcess { privileges, ..self }
    }

    /// Limits the bytes every session sends from here, together, to `rate` per second.
    pub fn with_bandwidth(self, rate: u64) -> InProcess {
        InProcess {
            throttle: Some(Arc::new(Throttle::new(rate))),
            ..self
        }
    }

    /// How long a client has to connect its data streams (an agent allows
    /// [`CONNECT_TIMEOUT`]).
    pub fn with_connect_timeout(self, connect_timeout: Duration) -> InProcess {
        InProcess {
            connect_timeout,
            ..self
        }
    }

    /// The next session this server accepted (waits for it).
    pub async fn next_session(&self) -> Served {
        self.served
            .lock()
            .await
            .recv()
            .await
            .expect("the server holds a sender")
    }

    /// Data connections closed without reaching a session (a wrong token, no preface).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Pulls `src` from the server end `transport` reaches into `rel` in this
    /// directory, as an agent's job does: the options cross the wire and come back as
    /// this end runs them, and the destination is opened through the same [`Place`].
    pub async fn pull_from(
        &self,
        transport: &dyn Transport,
        src: pb::Location,
        rel: &Path,
        options: &Options,
        data: DataOptions,
    ) -> Result<Report, SessionError> {
        let options = serve::options(&wire::options_to_wire(options), self.privileges)
            .map_err(|r| SessionError::Protocol(r.to_string()))?;
        let target = |shape: &_| {
            let root = self.place(rel).open_destination(shape, &options);
            root.map_err(|e| SessionError::Protocol(e.to_string()))
        };
        let stats = Arc::new(Stats::default());
        initiate::pull_into(
            transport,
            src,
            &options,
            data,
            stats,
            Arc::new(Quiet),
            target,
        )
        .await
    }

    fn place<'a>(&'a self, rel: &'a Path) -> Place<'a> {
        Place {
            root: self.root.as_fd(),
            rel,
            privileges: self.privileges,
            read_only: self
                .read_only
                .then(|| "module \"in-process\" is read-only".to_owned()),
        }
    }

    /// Checks `open` and prepares this end's role, as an agent's `Session` service does.
    fn prepare(&self, open: &pb::Open, lifetime: &Lifetime) -> Result<Prepared, Refusal> {
        serve::check_version(open)?;
        let location = open
            .location
            .as_ref()
            .ok_or_else(|| Refusal::Invalid("no location given".into()))?;
        let rel = serve::location_path(location)?;
        serve::prepare(open, &self.place(&rel), self.throttle.as_ref(), lifetime)
    }

    /// A listener on the loopback for one session's data connections, and its token.
    async fn grant(&self, handed: Arc<HandedOver>) -> io::Result<Grant> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = listener.local_addr()?.port();
        let token = data::new_token()?;
        let (tx, rx) = mpsc::channel(MAX_STREAMS as usize);
        let admission = Admission {
            token,
            session: tx,
            handed,
            refused: self.refused.clone(),
        };
        tokio::spawn(admission.run(listener));
        Ok(Grant {
            port,
            token,
            connections: rx,
        })
    }
}

#[tonic::async_trait]
impl Transport for InProcess {
    async fn open(&self, open: pb::Open) -> Result<(Link, pb::Accept), SessionError> {
        let lifetime = Lifetime::new(DEFAULT_SESSION_MEMORY);
        let refused = |r: Refusal| SessionError::Rpc(r.into());
        let prepared = self.prepare(&open, &lifetime).map_err(refused)?;
        let handed = Arc::new(HandedOver::default());
        let grant = match open.force_grpc {
            true => None,
            false => Some(
                self.grant(handed.clone())
                    .await
                    .map_err(SessionError::Data)?,
            ),
        };
        let accept = prepared.accept(&open, grant.as_ref().map(|g| (g.port, &g.token[..])));
        let (client_tx, server_rx) = mpsc::channel(LINK_DEPTH);
        let (server_tx, client_rx) = mpsc::channel(LINK_DEPTH);
        let server = Link {
            tx: server_tx,
            rx: server_rx,
        };
        let stats = Arc::new(Stats::default());
        let (ended, outcome) = oneshot::channel();
        let session = serve_session(
            prepared,
            server,
            grant.map(|g| g.connections),
            self.connect_timeout,
            stats.clone(),
        );
        let ended_with = handed.clone();
        tokio::spawn(async move {
            let outcome = session.await;
            lock(&ended_with.live).clear();
            let _ = ended.send(outcome);
        });
        let _ = self.accepted.send(Served {
            lifetime,
            stats,
            handed,
            outcome,
        });
        let client = Link {
            tx: client_tx,
            rx: client_rx,
        };
        Ok((client, accept))
    }

    async fn connect_data(&self, accept: &pb::Accept, streams: Streams) -> io::Result<Vec<Stream>> {
        let port = u16::try_from(accept.data_port)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad data port"))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let token = accept.data_token.clone();
        tokio::task::spawn_blocking(move || data::connect(addr, None, &token, streams))
            .await
            .map_err(io::Error::other)?
    }
}

/// The server end of one session: wait for the data plane, run the role, and tell the
/// client why it failed if it did.
async fn serve_session(
    prepared: Prepared,
    mut link: Link,
    mut connections: Option<mpsc::Receiver<Stream>>,
    within: Duration,
    stats: Arc<Stats>,
) -> Result<Report, SessionError> {
    let tx = link.tx.clone();
    let outcome = match prepared
        .data_plane(&mut link, connections.as_mut(), within)
        .await
    {
        Ok(plane) => {
            // No more connections for this session: its listener closes.
            drop(connections);
            prepared.run(link, plane, stats).await
        }
        Err(e) => Err(e),
    };
    match outcome {
        Err(e) => Err(super::abort(&tx, e).await),
        ok => ok,
    }
}

/// One session's data listener: admits each connection that presents the session's
/// token, closes the others, and stops once the session takes no more.
struct Admission {
    token: [u8; TOKEN_LEN],
    session: mpsc::Sender<Stream>,
    /// What was handed over (a test counts and cuts them).
    handed: Arc<HandedOver>,
    refused: Arc<AtomicU64>,
}

impl Admission {
    async fn run(self, listener: TcpListener) {
        loop {
            let socket = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((socket, _)) => socket,
                    Err(_) => return,
                },
                () = self.session.closed() => return,
            };
            let admitted = tokio::time::timeout(ADMIT_TIMEOUT, Stream::admit(socket, None)).await;
            let stream = match admitted {
                Ok(Ok((stream, token))) if same_token(&token, &self.token) => stream,
                // Dropped: closed before the session ever sees it.
                _ => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let socket = stream.socket().try_clone();
            if self.session.try_send(stream).is_err() {
                self.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.handed.count.fetch_add(1, Ordering::Relaxed);
            if let Ok(socket) = socket {
                lock(&self.handed.live).push(socket);
            }
        }
    }
}

impl Served {
    /// How many data connections the session was given.
    pub fn data_streams(&self) -> usize {
        self.handed.count.load(Ordering::Relaxed)
    }

    /// Shuts down the data connections of the running session, as a failing network
    /// would; returns how many.
    pub fn cut_data_streams(&self) -> usize {
        let live = lock(&self.handed.live);
        for socket in live.iter() {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
        live.len()
    }

    /// How the server end of the session ended (waits for it; asked again, `Closed`).
    pub async fn outcome(&mut self) -> Result<Report, SessionError> {
        (&mut self.outcome)
            .await
            .unwrap_or(Err(SessionError::Closed))
    }
}
