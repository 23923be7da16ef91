//! The agent's data-plane listener. It binds the same address as the control plane
//! (never a wider one), and hands each connection that presents a live session token to
//! that session; anything else is closed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use blit_core::session::data::{self, Stream, TOKEN_LEN};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

type Registry = Arc<Mutex<HashMap<[u8; TOKEN_LEN], mpsc::Sender<Stream>>>>;
type TlsConfig = Option<Arc<rustls::ServerConfig>>;

/// The listener and the sessions waiting for connections.
#[derive(Clone)]
pub struct DataPlane {
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DataPlane {
    /// Binds `ip` on a port of the range (or any free port) and starts accepting, with
    /// TLS when `tls` is given.
    pub async fn start(
        ip: IpAddr,
        ports: Option<(u16, u16)>,
        tls: TlsConfig,
    ) -> anyhow::Result<DataPlane> {
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
        let registry = sessions.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let (registry, tls) = (registry.clone(), tls.clone());
                tokio::task::spawn_blocking(move || admit(stream, peer, tls.as_ref(), &registry));
            }
        });
        Ok(DataPlane { port, sessions })
    }

    /// A new token for one session.
    pub fn grant(&self) -> std::io::Result<Grant> {
        let token = data::new_token()?;
        let (tx, connections) = mpsc::channel(data::MAX_STREAMS as usize);
        lock(&self.sessions).insert(token, tx);
        Ok(Grant {
            token,
            connections,
            sessions: self.sessions.clone(),
        })
    }
}

/// Shakes hands (TLS), reads a connection's preface and gives it to its session.
fn admit(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<&Arc<rustls::ServerConfig>>,
    registry: &Registry,
) {
    let Ok(stream) = stream.into_std() else {
        return;
    };
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let mut stream = match Stream::accept(stream, tls) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%peer, "data connection refused: {e}");
            return;
        }
    };
    let token = match data::read_preface(&mut stream) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(%peer, "data connection refused: {e}");
            return;
        }
    };
    let session = lock(registry).get(&token).cloned();
    match session {
        Some(tx) => {
            let _ = tx.try_send(stream);
        }
        None => tracing::warn!(%peer, "data connection with an unknown token refused"),
    }
}
