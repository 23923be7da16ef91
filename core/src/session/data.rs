//! The data plane of a session: where the records of `wire::record` travel.
//!
//! Normally that is several raw TCP connections that the client opens to the agent's data
//! port, each starting with a preface (`BLITDAT1` and the session's one-time token). When
//! no connection can be made (or `--force-grpc`), the same records travel as the bytes of
//! `Data` frames in the session's gRPC stream: one logical stream, slower, visibly
//! reported. The bytes always flow from the source role to the destination role,
//! whichever end opened the connections.

use std::io::{self, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rustix::fd::{AsFd, BorrowedFd};
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
    Tcp(Vec<TcpStream>),
    /// Inside the control stream.
    Grpc,
}

impl DataPlane {
    /// "tcp" or "grpc", and the stream count, for the report.
    pub fn describe(&self) -> (String, u32) {
        match self {
            DataPlane::Tcp(s) => ("tcp".into(), s.len() as u32),
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

/// Opens `n` data connections to `addr`, presenting `token` on each. All or nothing: an
/// error means the caller falls back to the gRPC stream.
pub fn connect(addr: SocketAddr, token: &[u8], n: u32) -> io::Result<Vec<TcpStream>> {
    (0..n.clamp(1, MAX_STREAMS))
        .map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_nodelay(true)?;
            s.write_all(PREFACE)?;
            s.write_all(token)?;
            Ok(s)
        })
        .collect()
}

/// Reads a data connection's preface; returns the token it presents.
pub fn read_preface(s: &mut TcpStream) -> io::Result<[u8; TOKEN_LEN]> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = [0u8; PREFACE.len() + TOKEN_LEN];
    s.read_exact(&mut buf)?;
    s.set_read_timeout(None)?;
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
    Tcp(BufWriter<TcpStream>),
    Frames(BufWriter<FrameWriter>),
}

impl Sink {
    pub fn tcp(s: TcpStream) -> Sink {
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
        if let (Sink::Tcp(w), true) = (&mut *self, len >= ZERO_COPY_MIN) {
            w.flush()?;
            let socket = w.get_ref().as_fd();
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
        if let Sink::Tcp(w) = &self {
            let _ = w.get_ref().shutdown(std::net::Shutdown::Write);
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
