//! The destination role's end of a data stream: records read through one large buffer,
//! small payloads taken into memory and big ones, on a plain socket, spliced from the
//! socket through a pipe into the file's page cache. A file that cannot be written still
//! has its payload consumed, so the stream stays in step and only that file fails.

use std::io::{self, BufRead, BufReader, Read};
use std::net::TcpStream;

use rustix::fd::BorrowedFd;

use super::{FrameReader, STREAM_BUFFER, Stream};
use crate::sys::file::write_all_at;
use crate::wire::record::{self, Header, RecordReader};

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

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;
    use std::io::Write;
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
