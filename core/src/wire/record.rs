//! The data-plane record: how file bytes are framed on a data stream, whether that stream
//! is a raw TCP connection or the bytes of `Data` frames inside the gRPC session.
//!
//! ```text
//!  0      2     3          4        8        16        24        32
//!  ┌──────┬─────┬──────────┬────────┬────────┬─────────┬─────────┬─────────────┐
//!  │ "BR" │kind │ reserved │ len u32│ id u64 │offset u64│total u64│ len bytes…  │
//!  └──────┴─────┴──────────┴────────┴────────┴─────────┴─────────┴─────────────┘
//! ```
//!
//! All integers are little-endian. `Data` carries `len` bytes of file `id` at `offset`;
//! `total` is how many bytes of that file the source sends in all (less than its size
//! when it skips holes), so the receiver knows when the file is complete whatever order
//! the chunks arrive in over several streams. (The receiver checks offsets against the
//! file's size, which it knows from the manifest.) `Fail` carries a UTF-8 message: the source
//! could not read file `id`. `End` closes the stream; a stream that ends without it was
//! cut. Every length is capped; anything else is a `RecordError` that ends the session.

use std::io::{self, BufRead, Read, Write};

/// Largest payload of one record.
pub const MAX_PAYLOAD: u32 = 16 << 20;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 32;
const MAGIC: [u8; 2] = *b"BR";

/// What a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Data = 1,
    Fail = 2,
    End = 3,
}

/// A record's fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub len: u32,
    pub id: u64,
    pub offset: u64,
    pub total: u64,
}

/// A record that breaks the framing rules.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("bad record magic {0:02x?}")]
    Magic([u8; 2]),
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("record payload of {0} bytes exceeds the limit of {MAX_PAYLOAD}")]
    TooLong(u32),
    #[error("record range at {offset} + {len} overflows")]
    Range { offset: u64, len: u32 },
    #[error("the stream ended without its end record")]
    Cut,
}

impl From<RecordError> for io::Error {
    fn from(e: RecordError) -> io::Error {
        let kind = match e {
            RecordError::Cut => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

impl Header {
    pub fn data(id: u64, offset: u64, len: u32, total: u64) -> Header {
        Header {
            kind: Kind::Data,
            len,
            id,
            offset,
            total,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&MAGIC);
        b[2] = self.kind as u8;
        b[4..8].copy_from_slice(&self.len.to_le_bytes());
        b[8..16].copy_from_slice(&self.id.to_le_bytes());
        b[16..24].copy_from_slice(&self.offset.to_le_bytes());
        b[24..32].copy_from_slice(&self.total.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, RecordError> {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if b[0..2] != MAGIC {
            return Err(RecordError::Magic([b[0], b[1]]));
        }
        let kind = match b[2] {
            1 => Kind::Data,
            2 => Kind::Fail,
            3 => Kind::End,
            k => return Err(RecordError::Kind(k)),
        };
        let len = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes"));
        if len > MAX_PAYLOAD {
            return Err(RecordError::TooLong(len));
        }
        let header = Header {
            kind,
            len,
            id: u64_at(8),
            offset: u64_at(16),
            total: u64_at(24),
        };
        if kind == Kind::Data && header.offset.checked_add(u64::from(len)).is_none() {
            return Err(RecordError::Range {
                offset: header.offset,
                len,
            });
        }
        Ok(header)
    }
}

/// Reads records from a stream: a header, then its payload (read, skipped, or taken
/// by the caller straight from the stream, see [`RecordReader::take`]). A payload left
/// unread is skipped before the next header, so the stream never loses its framing.
pub struct RecordReader<R> {
    inner: R,
    /// A payload that did not fit in what the reader had buffered.
    payload: Vec<u8>,
    /// Payload bytes of the current record still in the stream.
    left: u64,
    /// Bytes of the reader's buffer handed out as the last payload, consumed on the
    /// next call (a payload already buffered is lent, not copied).
    lent: usize,
}

fn cut(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => RecordError::Cut.into(),
        _ => e,
    }
}

impl<R: BufRead> RecordReader<R> {
    pub fn new(inner: R) -> RecordReader<R> {
        RecordReader {
            inner,
            payload: Vec::new(),
            left: 0,
            lent: 0,
        }
    }

    /// Gives back the buffer lent as the last payload.
    fn settle(&mut self) {
        self.inner.consume(std::mem::take(&mut self.lent));
    }

    /// The next record's header; `None` after the end record.
    pub fn next_header(&mut self) -> io::Result<Option<Header>> {
        self.skip()?;
        let mut head = [0u8; HEADER_LEN];
        self.inner.read_exact(&mut head).map_err(cut)?;
        let header = Header::decode(&head)?;
        if header.kind == Kind::End {
            return Ok(None);
        }
        self.left = u64::from(header.len);
        Ok(Some(header))
    }

    /// The current record's whole payload: lent from the reader's buffer when it is all
    /// there (the common case for small files), copied out otherwise.
    pub fn payload(&mut self) -> io::Result<&[u8]> {
        self.settle();
        let len = usize::try_from(self.left).expect("at most MAX_PAYLOAD");
        self.left = 0;
        if len == 0 {
            // Never wait for more bytes that are not part of this record.
            return Ok(&[]);
        }
        // Asked twice (the second time without I/O): a borrow returned on one branch
        // would hold `inner` on the other too.
        if self.inner.fill_buf().map_err(cut)?.len() >= len {
            self.lent = len;
            return Ok(&self.inner.fill_buf()?[..len]);
        }
        self.payload.resize(len, 0);
        self.inner.read_exact(&mut self.payload).map_err(cut)?;
        Ok(&self.payload)
    }

    /// Discards what is left of the current record's payload.
    pub fn skip(&mut self) -> io::Result<()> {
        self.settle();
        let want = self.left;
        let n = io::copy(&mut (&mut self.inner).take(want), &mut io::sink())?;
        self.left = 0;
        if n < want {
            return Err(RecordError::Cut.into());
        }
        Ok(())
    }

    /// Lets `f` consume up to the rest of the current payload directly from the stream;
    /// `f` returns how many bytes it consumed.
    pub fn take<T>(
        &mut self,
        f: impl FnOnce(&mut R, u64) -> io::Result<(u64, T)>,
    ) -> io::Result<T> {
        self.settle();
        let (n, out) = f(&mut self.inner, self.left)?;
        self.left -= n.min(self.left);
        Ok(out)
    }

    /// The next record and its payload; `None` after the end record.
    pub fn next_record(&mut self) -> io::Result<Option<(Header, &[u8])>> {
        match self.next_header()? {
            Some(header) => Ok(Some((header, self.payload()?))),
            None => Ok(None),
        }
    }
}

/// Writes a whole record (header and payload) to `out`.
pub fn write_record(
    out: &mut (impl Write + ?Sized),
    header: Header,
    payload: &[u8],
) -> io::Result<()> {
    debug_assert_eq!(header.len as usize, payload.len());
    out.write_all(&header.encode())?;
    out.write_all(payload)
}

/// Writes a `Fail` record: the source could not send file `id`.
pub fn write_fail(out: &mut (impl Write + ?Sized), id: u64, message: &str) -> io::Result<()> {
    let bytes = &message.as_bytes()[..message.len().min(4096)];
    let header = Header {
        kind: Kind::Fail,
        len: bytes.len() as u32,
        id,
        offset: 0,
        total: 0,
    };
    write_record(out, header, bytes)
}

/// Writes the `End` record that closes a stream.
pub fn write_end(out: &mut (impl Write + ?Sized)) -> io::Result<()> {
    let header = Header {
        kind: Kind::End,
        len: 0,
        id: 0,
        offset: 0,
        total: 0,
    };
    out.write_all(&header.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        write_record(&mut buf, Header::data(7, 10, 3, 13), b"abc").unwrap();
        write_fail(&mut buf, 8, "gone").unwrap();
        write_end(&mut buf).unwrap();
        let mut r = RecordReader::new(&buf[..]);
        let (h, p) = r.next_record().unwrap().unwrap();
        assert_eq!((h, p), (Header::data(7, 10, 3, 13), &b"abc"[..]));
        let (h, p) = r.next_record().unwrap().unwrap();
        assert_eq!((h.kind, h.id, p), (Kind::Fail, 8, &b"gone"[..]));
        assert!(r.next_record().unwrap().is_none());
    }

    #[test]
    fn malformed_records_are_errors() {
        let ok = Header::data(1, 0, 4, 4).encode();
        let mut bad = ok;
        bad[0] = b'X';
        assert!(matches!(Header::decode(&bad), Err(RecordError::Magic(_))));
        let mut bad = ok;
        bad[2] = 9;
        assert_eq!(Header::decode(&bad), Err(RecordError::Kind(9)));
        let too_long = Header::data(1, 0, MAX_PAYLOAD + 1, u64::MAX).encode();
        assert_eq!(
            Header::decode(&too_long),
            Err(RecordError::TooLong(MAX_PAYLOAD + 1))
        );
        let past = Header::data(1, u64::MAX - 1, 4, 4).encode();
        assert!(matches!(
            Header::decode(&past),
            Err(RecordError::Range { .. })
        ));
        // A stream cut in the middle of a payload, or without its end record.
        let mut buf = Vec::new();
        write_record(&mut buf, Header::data(1, 0, 4, 4), b"abcd").unwrap();
        let err = RecordReader::new(&buf[..buf.len() - 1])
            .next_record()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut r = RecordReader::new(&buf[..]);
        r.next_record().unwrap();
        assert_eq!(
            r.next_record().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The decoder never panics or over-allocates on arbitrary bytes: every input is a
        /// sequence of records, a clean end, or an error.
        #[test]
        fn decoder_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut r = RecordReader::new(&bytes[..]);
            for _ in 0..16 {
                match r.next_record() {
                    Ok(Some((h, p))) => prop_assert_eq!(h.len as usize, p.len()),
                    Ok(None) | Err(_) => break,
                }
            }
        }

        /// Headers with a valid magic and kind but random fields either decode to a header
        /// within the limits or are refused.
        #[test]
        fn headers_are_within_limits(kind in 1u8..4, len: u32, id: u64, offset: u64, total: u64) {
            let mut b = Header::data(id, offset, 0, total).encode();
            b[2] = kind;
            b[4..8].copy_from_slice(&len.to_le_bytes());
            if let Ok(h) = Header::decode(&b) {
                prop_assert!(h.len <= MAX_PAYLOAD);
                if h.kind == Kind::Data {
                    prop_assert!(h.offset.checked_add(u64::from(h.len)).is_some());
                }
            }
        }
    }
}
