//! The source role's end of a data stream: records written into one large buffer that
//! file bytes are read straight into, and big payloads sent with `sendfile` (no copy
//! through user space) when the stream is a plain socket. A file that shrinks while it is
//! sent is padded, so the stream stays well-formed and the file alone fails.

use std::io::{self, Write};

use rustix::fd::{AsFd, BorrowedFd};
use tokio::sync::mpsc;

use super::{FrameWriter, STREAM_BUFFER, Stream};
use crate::sys::file::read_at;
use crate::wire::pb;
use crate::wire::record::{self, Header};

/// Payloads at least this large go out with `sendfile` (no copy through user space).
const ZERO_COPY_MIN: u64 = 64 << 10;

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
        Sink::Frames(Outgoing::new(FrameWriter::new(tx)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::data::Incoming;
    use crate::wire::record::Kind;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_file_that_shrank_is_padded_and_the_stream_goes_on() {
        const KIB: u32 = 1 << 10;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shrank");
        // No zero byte, so padding cannot pass for content.
        let content: Vec<u8> = (0..100 * KIB).map(|i| (i % 251) as u8 + 1).collect();
        std::fs::write(&path, &content).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let w = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (r, _) = listener.accept().unwrap();

        let sender = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            let file = file.as_fd();
            let mut sink = Sink::tcp(Stream::Plain(w));
            let total = u64::from(200 * KIB);
            // Each announced longer than the file now is: one large enough for
            // `sendfile`, one through the buffer; then one that is all there.
            let sent = [
                sink.send_range(file, Header::data(1, 0, 200 * KIB, total)),
                sink.send_range(file, Header::data(2, u64::from(100 * KIB - 10), 30, total)),
                sink.send_range(file, Header::data(3, 0, 10, total)),
            ]
            .map(Result::unwrap);
            sink.fail(1, "shrank while sent").unwrap();
            sink.finish().unwrap();
            sent
        });

        let mut incoming = Incoming::stream(Stream::Plain(r));
        let mut records = Vec::new();
        while let Some(h) = incoming.next_header().unwrap() {
            records.push((h.kind, h.id, incoming.payload().unwrap().to_vec()));
        }
        assert_eq!(sender.join().unwrap(), [false, false, true]);
        let padded = |bytes: &[u8], len: usize| {
            let mut all = bytes.to_vec();
            all.resize(len, 0);
            all
        };
        let tail = &content[content.len() - 10..];
        assert_eq!(
            records,
            [
                (Kind::Data, 1, padded(&content, 200 * KIB as usize)),
                (Kind::Data, 2, padded(tail, 30)),
                (Kind::Data, 3, content[..10].to_vec()),
                (Kind::Fail, 1, b"shrank while sent".to_vec()),
            ]
        );
    }
}
