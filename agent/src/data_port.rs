//! The agent's data port: the one listener that every session's data connections reach
//! (as opposed to `blit_core::session::data::DataPlane`, how one session's bytes travel
//! once connected), and the grants that say which session a token belongs to. It binds
//! the same address as the control plane (never a wider one), and hands each connection
//! that presents a live session token to that session; anything else is closed.
//!
//! Connections are admitted on the runtime, not on threads: each has one deadline for
//! its TLS handshake and preface together, and waiting connections are capped per peer
//! and in all ([`Admission`]), so a flood of slow or silent connections costs a bounded
//! number of sockets and small tasks and never delays the sessions' own connections.
//! Only an authenticated connection reaches its session, as the blocking stream the
//! session's fast paths need. Refusals are logged at a rate limit ([`Tally`]).

use blit_core::sync::lock;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use blit_core::session::data::{self, Stream};
use blit_core::wire::protocol::{MAX_STREAMS, TOKEN_LEN};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::accept::Acceptor;
use crate::admission::{Admission, Caps, Ticket};
use crate::limits;
use crate::tally::Tally;

type Registry = Arc<Mutex<HashMap<[u8; TOKEN_LEN], mpsc::Sender<Stream>>>>;
type TlsConfig = Option<Arc<rustls::ServerConfig>>;

/// The data port: its listener's port and the sessions waiting for connections.
#[derive(Clone)]
pub struct DataPort {
    pub port: u16,
    sessions: Registry,
}

/// A session's claim on incoming data connections; dropping it withdraws the token.
pub struct Grant {
    pub token: [u8; TOKEN_LEN],
    pub connections: mpsc::Receiver<Stream>,
    sessions: Registry,
}

impl Drop for Grant {
    fn drop(&mut self) {
        lock(&self.sessions).remove(&self.token);
    }
}

/// What every admission task shares.
#[derive(Clone)]
struct Admitting {
    tls: TlsConfig,
    sessions: Registry,
    refused: Arc<Tally>,
}

impl DataPort {
    /// Binds `ip` on a port of the range (or any free port) and starts accepting, with
    /// TLS when `tls` is given.
    pub async fn start(
        ip: IpAddr,
        ports: Option<(u16, u16)>,
        tls: TlsConfig,
    ) -> anyhow::Result<DataPort> {
        let listener = match ports {
            None => TcpListener::bind(SocketAddr::new(ip, 0)).await?,
            Some((lo, hi)) => {
                let mut bound = None;
                for port in lo..=hi {
                    if let Ok(l) = TcpListener::bind(SocketAddr::new(ip, port)).await {
                        bound = Some(l);
                        break;
                    }
                }
                bound.ok_or_else(|| anyhow::anyhow!("no free data port in {lo}-{hi} on {ip}"))?
            }
        };
        let port = listener.local_addr()?.port();
        let sessions: Registry = Arc::default();
        let refused = Tally::new("data connection closed");
        let waiting = limits::share_of_descriptors(limits::DATA_PENDING_TOTAL, 8);
        let admission = Admission::new(
            Caps {
                per_peer: limits::DATA_PENDING_PER_PEER.min(waiting),
                waiting,
                total: waiting,
                deadline: limits::DATA_ADMISSION_DEADLINE,
            },
            refused.clone(),
        );
        let admitting = Admitting {
            tls,
            sessions: sessions.clone(),
            refused,
        };
        tokio::spawn(async move {
            let mut acceptor = Acceptor::new(listener, "data");
            loop {
                let (stream, peer) = acceptor.next().await;
                // Refused (every seat busy) means the stream is dropped: closed.
                if let Some(ticket) = admission.admit(peer) {
                    tokio::spawn(admitting.clone().admit(stream, peer, ticket));
                }
            }
        });
        Ok(DataPort { port, sessions })
    }

    /// A new token for one session.
    pub fn grant(&self) -> std::io::Result<Grant> {
        let token = data::new_token()?;
        let (tx, connections) = mpsc::channel(MAX_STREAMS as usize);
        lock(&self.sessions).insert(token, tx);
        Ok(Grant {
            token,
            connections,
            sessions: self.sessions.clone(),
        })
    }
}

impl Admitting {
    /// Shakes hands (TLS), reads the connection's preface and gives it to its session,
    /// unless its seat is taken away first (its deadline passed, or room was needed).
    async fn admit(self, stream: tokio::net::TcpStream, peer: SocketAddr, ticket: Ticket) {
        let admitted = tokio::select! {
            admitted = Stream::admit(stream, self.tls.as_ref()) => admitted,
            // Counted by the admission; dropping the stream closes it.
            () = ticket.closed() => return,
        };
        drop(ticket);
        let (stream, token) = match admitted {
            Ok(admitted) => admitted,
            Err(e) => return self.refused.note(peer, e),
        };
        let session = lock(&self.sessions).get(&token).cloned();
        match session {
            Some(tx) => {
                if tx.try_send(stream).is_err() {
                    self.refused
                        .note(peer, "its session takes no more connections");
                }
            }
            None => self.refused.note(peer, "unknown token"),
        }
    }
}
