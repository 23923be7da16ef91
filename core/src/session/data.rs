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

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustix::fd::{AsFd, BorrowedFd};
use rustls::{ClientConnection, ServerConnection, StreamOwned};
use tokio::sync::mpsc;

use crate::sys::file::{read_at, write_all_at};
use crate::tls::DataTls;
use crate::wire::pb;
use crate::wire::record::{self, Header, RecordReader};

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
    fn zero_copy(&self) -> bool {
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
    fn close_write(&mut self) {
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

/// How many data streams to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streams {
    Fixed(u32),
    /// Adapted to the link's round trip, at most `max` (what the agent granted).
    Auto {
        max: u32,
    },
}

/// Streams on a link with no real delay (loopback, a LAN): there the CPUs of both ends
/// are the limit. Each stream's receiver applies its files one after another, so a few
/// per core keep both ends busy (on two cores, loopback W1: 8 streams 1.65–1.95 s, 4
/// streams 1.84–2.60 s, 12 or 16 no better than 8).
pub const NEAR_STREAMS: u32 = 8;

/// Streams for a link whose round trip is `rtt`. One TCP stream carries at most its
/// window per round trip (Linux grows a window to a few MiB by default), so a long link
/// needs more streams in flight to fill: one more per 5 ms of round trip, up to
/// [`MAX_STREAMS`].
pub fn auto_streams(rtt: Duration) -> u32 {
    let extra = rtt.as_micros() / 5_000;
    (NEAR_STREAMS + u32::try_from(extra).unwrap_or(MAX_STREAMS)).min(MAX_STREAMS)
}

/// Opens data connections to `addr`, presenting `token` on each: a fixed number, or as
/// many as suit the round trip measured while connecting the first. All or nothing: an
/// error means the caller falls back to the gRPC stream.
pub fn connect(
    addr: SocketAddr,
    tls: Option<&DataTls>,
    token: &[u8],
    streams: Streams,
) -> io::Result<Vec<Stream>> {
    let open = || -> io::Result<Stream> {
        let mut s = Stream::connect(addr, tls)?;
        s.write_all(PREFACE)?;
        s.write_all(token)?;
        s.flush()?;
        Ok(s)
    };
    let started = std::time::Instant::now();
    let first = open()?;
    let n = match streams {
        Streams::Fixed(n) => n,
        // The TCP handshake took one round trip (the TLS one more, counted too: a
        // generous estimate only adds streams).
        Streams::Auto { max } => auto_streams(started.elapsed()).min(max),
    };
    let mut all = vec![first];
    for _ in 1..n.clamp(1, MAX_STREAMS) {
        all.push(open()?);
    }
    Ok(all)
}

/// A tokio socket as a blocking std one.
fn blocking(s: tokio::net::TcpStream) -> io::Result<TcpStream> {
    let s = s.into_std()?;
    s.set_nonblocking(false)?;
    Ok(s)
}

/// The token a preface presents, if it is one.
fn token_of(preface: &[u8; PREFACE.len() + TOKEN_LEN]) -> io::Result<[u8; TOKEN_LEN]> {
    let (magic, token) = preface.split_at(PREFACE.len());
    if magic != PREFACE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a Blit data connection",
        ));
    }
    Ok(token.try_into().expect("TOKEN_LEN bytes"))
}

/// Compares tokens in constant time.
pub fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The writing end of one data stream (source role).
pub enum Sink {
    Tcp(Outgoing<Stream>),
    Frames(Outgoing<FrameWriter>),
}

impl Sink {
    pub fn tcp(s: Stream) -> Sink {
        Sink::Tcp(Outgoing::new(s))
    }

    pub fn frames(tx: mpsc::Sender<pb::Frame>) -> Sink {
        Sink::Frames(Outgoing::new(FrameWriter { tx }))
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Tcp(w) => w,
            Sink::Frames(w) => w,
        }
    }

    /// Reads up to `want` bytes of `file` at `offset` straight into the send buffer.
    fn read_in(&mut self, file: BorrowedFd<'_>, offset: u64, want: usize) -> io::Result<usize> {
        let pread = |buf: &mut [u8]| read_at(file, buf, offset);
        match self {
            Sink::Tcp(w) => w.read_in(want, pread),
            Sink::Frames(w) => w.read_in(want, pread),
        }
    }

    /// Sends `len` bytes of `file` from `offset` as one `Data` record of file `id`. If
    /// the file turns out shorter, the record is padded and `Ok(false)` returned: the
    /// caller then sends a `Fail` for it, and the stream stays well-formed.
    pub fn send_range(&mut self, file: BorrowedFd<'_>, header: Header) -> io::Result<bool> {
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
            let want = usize::try_from(end - offset).unwrap_or(usize::MAX);
            match self.read_in(file, offset, want)? {
                0 => return self.pad(end - offset).map(|()| false),
                n => offset += n as u64,
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

/// A write buffer that file bytes are read straight into (a `BufWriter` takes bytes only
/// as a copy of another buffer): many small files' records leave in one write.
pub struct Outgoing<W: Write> {
    inner: W,
    buf: Box<[u8]>,
    filled: usize,
}

impl<W: Write> Outgoing<W> {
    fn new(inner: W) -> Outgoing<W> {
        Outgoing {
            inner,
            buf: vec![0; STREAM_BUFFER].into_boxed_slice(),
            filled: 0,
        }
    }

    fn get_ref(&self) -> &W {
        &self.inner
    }

    fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Lets `read` fill up to `want` bytes at the end of the buffer (sending what is
    /// buffered first if that leaves too little room); returns how many it filled.
    fn read_in(
        &mut self,
        want: usize,
        read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if self.buf.len() - self.filled < want.min(self.buf.len()) {
            self.send_buffered()?;
        }
        let end = self.buf.len().min(self.filled.saturating_add(want));
        let n = read(&mut self.buf[self.filled..end])?;
        self.filled += n;
        Ok(n)
    }

    fn send_buffered(&mut self) -> io::Result<()> {
        let filled = std::mem::take(&mut self.filled);
        self.inner.write_all(&self.buf[..filled])
    }
}

impl<W: Write> Write for Outgoing<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() - self.filled < data.len() {
            self.send_buffered()?;
            if data.len() >= self.buf.len() {
                return self.inner.write(data);
            }
        }
        self.buf[self.filled..self.filled + data.len()].copy_from_slice(data);
        self.filled += data.len();
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffered()?;
        self.inner.flush()
    }
}

/// Payloads at least this large go from a plain socket into the file with `splice`
/// (socket → pipe → page cache, no copy through user space).
const SPLICE_MIN: u64 = 64 << 10;
/// Size asked for the splice pipe (the kernel may give less).
const PIPE_SIZE: usize = 1 << 20;

/// The reading end of one data stream (destination role): records, whose payloads are
/// read into memory, or spliced from the socket straight into the file.
pub struct Incoming {
    records: RecordReader<BufReader<Box<dyn Read + Send>>>,
    splice: Option<Splice>,
}

impl Incoming {
    pub fn stream(s: Stream) -> Incoming {
        let splice = match &s {
            Stream::Plain(socket) => Splice::new(socket).ok(),
            _ => None,
        };
        Incoming::new(Box::new(s), splice)
    }

    pub fn frames(r: FrameReader) -> Incoming {
        Incoming::new(Box::new(r), None)
    }

    fn new(r: Box<dyn Read + Send>, splice: Option<Splice>) -> Incoming {
        Incoming {
            records: RecordReader::new(BufReader::with_capacity(STREAM_BUFFER, r)),
            splice,
        }
    }

    /// The next record's header (skipping what is left of the previous payload);
    /// `None` after the end record.
    pub fn next_header(&mut self) -> io::Result<Option<Header>> {
        self.records.next_header()
    }

    /// The current record's payload, in memory.
    pub fn payload(&mut self) -> io::Result<&[u8]> {
        self.records.payload()
    }

    /// Writes the current record's payload (`len` bytes) into `file` at `offset`. The
    /// outer error means the stream broke; the inner one that the file could not be
    /// written — the payload has been consumed either way, so the stream goes on.
    pub fn write_to(
        &mut self,
        file: BorrowedFd<'_>,
        offset: u64,
        len: u64,
    ) -> io::Result<io::Result<()>> {
        match &mut self.splice {
            Some(splice) if len >= SPLICE_MIN => self
                .records
                .take(|reader, left| splice.write(reader, left, file, offset)),
            _ => {
                let payload = self.records.payload()?;
                Ok(write_all_at(file, payload, offset))
            }
        }
    }
}

/// A plain socket and a pipe to splice it through.
struct Splice {
    socket: rustix::fd::OwnedFd,
    pipe_read: rustix::fd::OwnedFd,
    pipe_write: rustix::fd::OwnedFd,
}

impl Splice {
    fn new(socket: &TcpStream) -> io::Result<Splice> {
        let (pipe_read, pipe_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(crate::sys::io_err)?;
        // Best effort: a smaller pipe only means more calls.
        let _ = rustix::pipe::fcntl_setpipe_size(&pipe_write, PIPE_SIZE);
        Ok(Splice {
            socket: socket.try_clone()?.into(),
            pipe_read,
            pipe_write,
        })
    }

    /// Moves `left` payload bytes into `file` at `offset`: first those the reader has
    /// buffered, then the rest from the socket through the pipe. If the file cannot be
    /// written, the remaining bytes are still consumed (and dropped).
    fn write(
        &mut self,
        reader: &mut BufReader<Box<dyn Read + Send>>,
        left: u64,
        file: BorrowedFd<'_>,
        offset: u64,
    ) -> io::Result<(u64, io::Result<()>)> {
        use rustix::io::Errno;
        use rustix::pipe::{SpliceFlags, splice};
        let mut at = offset;
        let mut file_error = None;
        let buffered = reader.buffer();
        let k = buffered
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        if k > 0 {
            if let Err(e) = write_all_at(file, &buffered[..k], at) {
                file_error = Some(e);
            }
            reader.consume(k);
            at += k as u64;
        }
        let mut done = k as u64;
        while done < left {
            let want = usize::try_from(left - done)
                .unwrap_or(usize::MAX)
                .min(PIPE_SIZE);
            let n = match splice(
                &self.socket,
                None,
                &self.pipe_write,
                None,
                want,
                SpliceFlags::MOVE,
            ) {
                Ok(0) => return Err(record::RecordError::Cut.into()),
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(crate::sys::io_err(e)),
            };
            done += n as u64;
            let mut in_pipe = n;
            while in_pipe > 0 {
                if file_error.is_none() {
                    match splice(
                        &self.pipe_read,
                        None,
                        file,
                        Some(&mut at),
                        in_pipe,
                        SpliceFlags::MOVE,
                    ) {
                        Ok(0) => file_error = Some(io::ErrorKind::WriteZero.into()),
                        Ok(m) => in_pipe -= m,
                        Err(Errno::INTR) => {}
                        Err(e) => file_error = Some(crate::sys::io_err(e)),
                    }
                    continue;
                }
                // The file failed: empty the pipe so the stream stays in step.
                let mut scratch = [0u8; 16 << 10];
                let m = in_pipe.min(scratch.len());
                match rustix::io::read(&self.pipe_read, &mut scratch[..m]) {
                    Ok(0) => return Err(record::RecordError::Cut.into()),
                    Ok(r) => in_pipe -= r,
                    Err(Errno::INTR) => {}
                    Err(e) => return Err(crate::sys::io_err(e)),
                }
            }
        }
        Ok((done, file_error.map_or(Ok(()), Err)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A connected loopback pair: (writer, reader).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (reader, _) = listener.accept().unwrap();
        (writer, reader)
    }

    #[test]
    fn spliced_payloads_land_and_a_failed_file_keeps_the_stream_in_step() {
        let (mut w, r) = pair();
        let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        let sender = std::thread::spawn(move || {
            let len = big.len() as u32;
            for id in [1, 2] {
                record::write_record(&mut w, Header::data(id, 0, len, len as u64), &big).unwrap();
            }
            record::write_record(&mut w, Header::data(3, 0, 5, 5), b"small").unwrap();
            record::write_end(&mut w).unwrap();
            big
        });
        let mut incoming = Incoming::stream(Stream::Plain(r));
        assert!(incoming.splice.is_some(), "plain sockets splice");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let out = std::fs::File::create(&path).unwrap();
        let read_only = std::fs::File::open(&path).unwrap();

        let h = incoming.next_header().unwrap().unwrap();
        let landed = incoming.write_to(out.as_fd(), h.offset, u64::from(h.len));
        assert!(landed.unwrap().is_ok());
        let h = incoming.next_header().unwrap().unwrap();
        assert_eq!(h.id, 2);
        let refused = incoming.write_to(read_only.as_fd(), h.offset, u64::from(h.len));
        assert!(
            refused.unwrap().is_err(),
            "a read-only file cannot be written"
        );
        let h = incoming.next_header().unwrap().unwrap();
        assert_eq!((h.id, incoming.payload().unwrap()), (3, &b"small"[..]));
        assert!(incoming.next_header().unwrap().is_none());
        let big = sender.join().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), big);
    }

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

    #[test]
    fn more_streams_for_longer_round_trips() {
        let ms = Duration::from_millis;
        assert_eq!(auto_streams(Duration::from_micros(40)), NEAR_STREAMS);
        assert_eq!(auto_streams(ms(4)), NEAR_STREAMS);
        assert_eq!(auto_streams(ms(20)), NEAR_STREAMS + 4);
        assert_eq!(auto_streams(ms(300)), MAX_STREAMS);
    }

    #[test]
    fn a_cut_stream_is_an_error_not_a_short_file() {
        let (mut w, r) = pair();
        let header = Header::data(1, 0, 1 << 20, 1 << 20);
        w.write_all(&header.encode()).unwrap();
        w.write_all(&[7u8; 100 << 10]).unwrap();
        drop(w);
        let mut incoming = Incoming::stream(Stream::Plain(r));
        let dir = tempfile::tempdir().unwrap();
        let out = std::fs::File::create(dir.path().join("out")).unwrap();
        let h = incoming.next_header().unwrap().unwrap();
        let err = incoming
            .write_to(out.as_fd(), h.offset, u64::from(h.len))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
