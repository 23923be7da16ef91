//! BLAKE3 content hashes, for `--checksum` comparisons, move confirmation and resume.

use std::ffi::OsStr;
use std::io;

use rustix::fd::BorrowedFd;

use crate::sys::file;

/// Read size: large enough for BLAKE3's SIMD and multi-threaded paths to pay off.
const CHUNK: usize = 1 << 20;

/// Hash of the file `name` in `dir`.
pub fn hash_file_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<[u8; 32]> {
    let fd = file::open_source(dir, name)?;
    hash_file(rustix::fd::AsFd::as_fd(&fd))
}

/// Hash of an open file's whole content.
pub fn hash_file(fd: BorrowedFd<'_>) -> io::Result<[u8; 32]> {
    hash_range(fd, 0, file::len(fd)?)
}

/// Hash of `[offset, offset+len)` of an open file. Fails if the file is shorter.
pub fn hash_range(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK.min(usize::try_from(len).unwrap_or(CHUNK)).max(1)];
    let (mut pos, end) = (offset, offset + len);
    while pos < end {
        let want = buf
            .len()
            .min(usize::try_from(end - pos).unwrap_or(usize::MAX));
        let n = match file::read_at(fd, &mut buf[..want], pos)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shorter than expected",
                ));
            }
            n => n,
        };
        if n >= 128 * 1024 {
            hasher.update_rayon(&buf[..n]);
        } else {
            hasher.update(&buf[..n]);
        }
        pos += n as u64;
    }
    Ok(*hasher.finalize().as_bytes())
}
