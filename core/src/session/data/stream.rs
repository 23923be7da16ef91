//! One data connection, plain TCP or TLS from either end, as a blocking `Read + Write`:
//! the client's side connects (and shakes hands), the agent's side is admitted on the
//! runtime (handshake and preface read without holding a thread) and then handed over as
//! the blocking socket that `sendfile` and `splice` need.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConnection, ServerConnection, StreamOwned};

use super::token::token_of;
use crate::tls::DataTls;
use crate::wire::protocol::{PREFACE, TOKEN_LEN};

/// One data connection: plain TCP, or TLS from either end.
pub enum Stream {
    Plain(TcpStream),
    TlsClient(Box<StreamOwned<ClientConnection, TcpStream>>),
    TlsServer(Box<StreamOwned<ServerConnection, TcpStream>>),
}

/// How long a client's data connection may take to shake hands with the agent.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Stream {
    /// Connects to `addr`, with TLS when `tls` gives a client configuration and the name
    /// the agent's certificate must carry.
    pub fn connect(addr: SocketAddr, tls: Option<&DataTls>) -> io::Result<Stream> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        let Some((config, name)) = tls else {
            return Ok(Stream::Plain(s));
        };
        let conn = ClientConnection::new(config.clone(), name.clone()).map_err(io::Error::other)?;
        let mut tls = StreamOwned::new(conn, s);
        handshake(&mut tls.conn, &mut tls.sock)?;
        Ok(Stream::TlsClient(Box::new(tls)))
    }

    /// Admits a connection made to the agent's data port: shakes hands (when `tls` is
    /// given) and reads the preface on the runtime, so a slow or silent peer holds no
    /// thread; returns the stream, blocking from here on as the session's fast paths
    /// (`sendfile`, `splice`) need, and the token it presented. The caller bounds how
    /// long this may take.
    pub async fn admit(
        s: tokio::net::TcpStream,
        tls: Option<&Arc<rustls::ServerConfig>>,
    ) -> io::Result<(Stream, [u8; TOKEN_LEN])> {
        use tokio::io::AsyncReadExt;
        s.set_nodelay(true)?;
        // Exactly the preface is read: what follows stays in the socket (or, with TLS,
        // in the connection's plaintext buffer) for the session.
        let mut preface = [0u8; PREFACE.len() + TOKEN_LEN];
        let stream = match tls {
            None => {
                let mut s = s;
                s.read_exact(&mut preface).await?;
                Stream::Plain(blocking(s)?)
            }
            Some(config) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                let mut tls = acceptor.accept(s).await?;
                tls.read_exact(&mut preface).await?;
                let (s, conn) = tls.into_inner();
                Stream::TlsServer(Box::new(StreamOwned::new(conn, blocking(s)?)))
            }
        };
        Ok((stream, token_of(&preface)?))
    }

    /// Whether the kernel can send file pages straight into this stream.
    pub(super) fn zero_copy(&self) -> bool {
        matches!(self, Stream::Plain(_))
    }

    /// The TCP connection underneath (shut down to end a blocked read or write).
    pub fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::TlsClient(t) => &t.sock,
            Stream::TlsServer(t) => &t.sock,
        }
    }

    fn inner(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Plain(s) => s,
            Stream::TlsClient(t) => t.as_mut(),
            Stream::TlsServer(t) => t.as_mut(),
        }
    }

    /// Ends the sending direction (after a TLS close_notify).
    pub(super) fn close_write(&mut self) {
        match self {
            Stream::Plain(_) => {}
            Stream::TlsClient(t) => close_notify(&mut t.conn, &mut t.sock),
            Stream::TlsServer(t) => close_notify(&mut t.conn, &mut t.sock),
        }
        let _ = self.socket().shutdown(std::net::Shutdown::Write);
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Stream::Plain(_) => "tcp",
            Stream::TlsClient(_) | Stream::TlsServer(_) => "tls",
        };
        write!(f, "{kind} {:?}", self.socket().peer_addr().ok())
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner().read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner().flush()
    }
}

/// Sends a TLS close_notify (best effort: the stream is ending anyway).
fn close_notify<S: rustls::SideData>(conn: &mut rustls::ConnectionCommon<S>, sock: &mut TcpStream) {
    conn.send_close_notify();
    while conn.wants_write() {
        if conn.write_tls(sock).is_err() {
            break;
        }
    }
}

/// Completes a TLS handshake within [`HANDSHAKE_TIMEOUT`].
fn handshake<S: rustls::SideData>(
    conn: &mut rustls::ConnectionCommon<S>,
    sock: &mut TcpStream,
) -> io::Result<()> {
    sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    while conn.is_handshaking() {
        conn.complete_io(sock)?;
    }
    sock.set_read_timeout(None)
}

/// A tokio socket as a blocking std one.
fn blocking(s: tokio::net::TcpStream) -> io::Result<TcpStream> {
    let s = s.into_std()?;
    s.set_nonblocking(false)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::data::new_token;

    /// Connects to `port`, sends a preface with `token` and `after` behind it in one
    /// write, through TLS when `tls` is given; returns what the agent's end sends back.
    fn client(
        port: u16,
        tls: Option<DataTls>,
        token: [u8; TOKEN_LEN],
        after: &'static [u8],
    ) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut s = Stream::connect(([127, 0, 0, 1], port).into(), tls.as_ref()).unwrap();
            let mut all = PREFACE.to_vec();
            all.extend_from_slice(&token);
            all.extend_from_slice(after);
            s.write_all(&all).unwrap();
            s.flush().unwrap();
            let mut back = Vec::new();
            s.read_to_end(&mut back).unwrap();
            back
        })
    }

    /// Admits one connection on `listener`, then, on a blocking thread, reads `n` bytes
    /// from it and answers `reply`.
    async fn admit_one(
        listener: &tokio::net::TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        n: usize,
    ) -> ([u8; TOKEN_LEN], Vec<u8>) {
        let (s, _) = listener.accept().await.unwrap();
        let (mut stream, token) = Stream::admit(s, tls.as_ref()).await.unwrap();
        let read = tokio::task::spawn_blocking(move || {
            let mut rest = vec![0u8; n];
            stream.read_exact(&mut rest).unwrap();
            stream.write_all(b"reply").unwrap();
            stream.close_write();
            rest
        });
        (token, read.await.unwrap())
    }

    #[tokio::test]
    async fn admitted_streams_keep_what_followed_the_preface() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let token = new_token().unwrap();
        let plain = client(port, None, token, b"first records");
        let (got, rest) = admit_one(&listener, None, 13).await;
        assert_eq!((got, &rest[..]), (token, &b"first records"[..]));
        assert!(plain.join().unwrap() == b"reply");

        let dir = tempfile::tempdir().unwrap();
        let pki = blit_test_support::tls::Pki::new(dir.path());
        let server = crate::tls::ServerTls::load(&pki.agent_cert, &pki.agent_key, None).unwrap();
        let client_tls = crate::tls::ClientTls::load(Some(&pki.ca), None).unwrap();
        let tls = client(
            port,
            Some(client_tls.data("127.0.0.1").unwrap()),
            token,
            b"sealed",
        );
        let (got, rest) = admit_one(&listener, Some(server.data()), 6).await;
        assert_eq!((got, &rest[..]), (token, &b"sealed"[..]));
        assert!(tls.join().unwrap() == b"reply");
    }

    #[tokio::test]
    async fn anything_but_a_preface_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let garbage = std::thread::spawn(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(&[0xff; PREFACE.len() + TOKEN_LEN]).unwrap();
        });
        let (s, _) = listener.accept().await.unwrap();
        let err = Stream::admit(s, None).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        garbage.join().unwrap();
    }
}
