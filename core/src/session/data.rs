//! The data plane of a session: where the records of `wire::record` travel.
//!
//! Normally that is several raw TCP connections that the client opens to the agent's data
//! port, each starting with a preface (`BLITDAT1` and the session's one-time token). When
//! no connection can be made (or `--force-grpc`), the same records travel as the bytes of
//! `Data` frames in the session's gRPC stream: one logical stream, slower, visibly
//! reported. The bytes always flow from the source role to the destination role,
//! whichever end opened the connections. With TLS, each connection is a TLS session
//! (handshake first, then the preface inside it) and bytes go out through rustls instead
//! of `sendfile`.

use std::io::{self, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustix::fd::{AsFd, BorrowedFd};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection, StreamOwned};
use tokio::sync::mpsc;

use crate::wire::pb;
use crate::wire::record::{self, Header};

/// Length of a session's data-plane token.
pub const TOKEN_LEN: usize = 32;
/// What a data connection sends first, before the token.
pub const PREFACE: &[u8; 8] = b"BLITDAT1";
/// Most streams one session may use.
pub const MAX_STREAMS: u32 = 16;
/// Payloads at least this large go out with `sendfile` (no copy through user space).
const ZERO_COPY_MIN: u64 = 64 << 10;
/// Buffer of each stream: many small files' records leave in one write.
const STREAM_BUFFER: usize = 1 << 20;

/// How the bytes of one session travel.
#[derive(Debug)]
pub enum DataPlane {
    /// Connected data streams (source writes, destination reads).
    Tcp(Vec<Stream>),
    /// Inside the control stream.
    Grpc,
}

impl DataPlane {
    /// "tcp" or "grpc", and the stream count, for the report.
    pub fn describe(&self) -> (String, u32) {
        match self {
            DataPlane::Tcp(s) => {
                let tls = s.iter().any(|s| !s.zero_copy());
                (if tls { "tls" } else { "tcp" }.into(), s.len() as u32)
            }
            DataPlane::Grpc => ("grpc".into(), 1),
        }
    }
}

/// A fresh random token.
pub fn new_token() -> io::Result<[u8; TOKEN_LEN]> {
    let mut token = [0u8; TOKEN_LEN];
    let mut filled = 0;
    while filled < TOKEN_LEN {
        filled +=
            rustix::rand::getrandom(&mut token[filled..], rustix::rand::GetRandomFlags::empty())
                .map_err(crate::sys::io_err)?;
    }
    Ok(token)
}

/// One data connection: plain TCP, or TLS from either end.
pub enum Stream {
    Plain(TcpStream),
    TlsClient(Box<StreamOwned<ClientConnection, TcpStream>>),
    TlsServer(Box<StreamOwned<ServerConnection, TcpStream>>),
}

/// How long a data connection may take to connect, shake hands and present its token.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Stream {
    /// Connects to `addr`, with TLS when `tls` gives a client configuration and the name
    /// the agent's certificate must carry.
    pub fn connect(
        addr: SocketAddr,
        tls: Option<&(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    ) -> io::Result<Stream> {
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

    /// Accepts a connection made to the agent's data port, shaking hands when `tls` is
    /// given.
    pub fn accept(s: TcpStream, tls: Option<&Arc<rustls::ServerConfig>>) -> io::Result<Stream> {
        s.set_nodelay(true)?;
        let Some(config) = tls else {
            return Ok(Stream::Plain(s));
        };
        let conn = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
        let mut tls = StreamOwned::new(conn, s);
        handshake(&mut tls.conn, &mut tls.sock)?;
        Ok(Stream::TlsServer(Box::new(tls)))
    }

    /// Whether the kernel can send file pages straight into this stream.
    fn zero_copy(&self) -> bool {
        matches!(self, Stream::Plain(_))
    }

    fn socket(&self) -> &TcpStream {
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
    fn close_write(&mut self) {
        match self {
            Stream::Plain(_) => {}
            Stream::TlsClient(t) => {
                t.conn.send_close_notify();
                let _ = t.flush();
            }
            Stream::TlsServer(t) => {
                t.conn.send_close_notify();
                let _ = t.flush();
            }
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

/// Opens `n` data connections to `addr`, presenting `token` on each. All or nothing: an
/// error means the caller falls back to the gRPC stream.
pub fn connect(
    addr: SocketAddr,
    tls: Option<&(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    token: &[u8],
    n: u32,
) -> io::Result<Vec<Stream>> {
    (0..n.clamp(1, MAX_STREAMS))
        .map(|_| {
            let mut s = Stream::connect(addr, tls)?;
            s.write_all(PREFACE)?;
            s.write_all(token)?;
            s.flush()?;
            Ok(s)
        })
        .collect()
}

/// Reads a data connection's preface; returns the token it presents.
pub fn read_preface(s: &mut Stream) -> io::Result<[u8; TOKEN_LEN]> {
    s.socket().set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut buf = [0u8; PREFACE.len() + TOKEN_LEN];
    s.read_exact(&mut buf)?;
    s.socket().set_read_timeout(None)?;
    if &buf[..PREFACE.len()] != PREFACE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a Blit data connection",
        ));
    }
    let mut token = [0u8; TOKEN_LEN];
    token.copy_from_slice(&buf[PREFACE.len()..]);
    Ok(token)
}

/// Compares tokens in constant time.
pub fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The writing end of one data stream (source role).
pub enum Sink {
    Tcp(BufWriter<Stream>),
    Frames(BufWriter<FrameWriter>),
}

impl Sink {
    pub fn tcp(s: Stream) -> Sink {
        Sink::Tcp(BufWriter::with_capacity(STREAM_BUFFER, s))
    }

    pub fn frames(tx: mpsc::Sender<pb::Frame>) -> Sink {
        Sink::Frames(BufWriter::with_capacity(STREAM_BUFFER, FrameWriter { tx }))
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Tcp(w) => w,
            Sink::Frames(w) => w,
        }
    }

    /// Sends `len` bytes of `file` from `offset` as one `Data` record of file `id`. If
    /// the file turns out shorter, the record is padded and `Ok(false)` returned: the
    /// caller then sends a `Fail` for it, and the stream stays well-formed.
    pub fn send_range(
        &mut self,
        file: BorrowedFd<'_>,
        header: Header,
        buf: &mut [u8],
    ) -> io::Result<bool> {
        let (mut offset, len) = (header.offset, u64::from(header.len));
        self.writer().write_all(&header.encode())?;
        let end = offset + len;
        if let (Sink::Tcp(w), true) = (&mut *self, len >= ZERO_COPY_MIN)
            && w.get_ref().zero_copy()
        {
            w.flush()?;
            let socket = w.get_ref().socket().as_fd();
            while offset < end {
                let want = usize::try_from(end - offset).unwrap_or(usize::MAX);
                let mut at = offset;
                match rustix::fs::sendfile(socket, file, Some(&mut at), want) {
                    Ok(0) => return self.pad(end - offset).map(|()| false),
                    Ok(n) => offset += n as u64,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(crate::sys::io_err(e)),
                }
            }
            return Ok(true);
        }
        while offset < end {
            let want = buf
                .len()
                .min(usize::try_from(end - offset).unwrap_or(usize::MAX));
            match rustix::io::pread(file, &mut buf[..want], offset) {
                Ok(0) => return self.pad(end - offset).map(|()| false),
                Ok(n) => {
                    self.writer().write_all(&buf[..n])?;
                    offset += n as u64;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(crate::sys::io_err(e)),
            }
        }
        Ok(true)
    }

    fn pad(&mut self, mut n: u64) -> io::Result<()> {
        let zeros = [0u8; 8192];
        while n > 0 {
            let k = zeros.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            self.writer().write_all(&zeros[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    /// Sends what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.writer().flush()
    }

    pub fn fail(&mut self, id: u64, message: &str) -> io::Result<()> {
        record::write_fail(self.writer(), id, message)
    }

    /// Ends the stream cleanly: the end record, flushed.
    pub fn finish(mut self) -> io::Result<()> {
        record::write_end(self.writer())?;
        self.writer().flush()?;
        if let Sink::Tcp(w) = &mut self {
            w.get_mut().close_write();
        }
        Ok(())
    }
}

/// Bytes written become `Data` frames of the session stream.
pub struct FrameWriter {
    tx: mpsc::Sender<pb::Frame>,
}

impl Write for FrameWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let frame = super::frame(pb::frame::Kind::Data(buf.to_vec()));
        self.tx
            .blocking_send(frame)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "session closed"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads the bytes of `Data` frames, handed over by the session's dispatcher.
pub struct FrameReader {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl FrameReader {
    pub fn new(rx: mpsc::Receiver<Vec<u8>>) -> FrameReader {
        FrameReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for FrameReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
