//! `--resume`: finish a partial file left by an interrupted run.
//!
//! The partial file's existing blocks are compared with the source's by BLAKE3; blocks
//! that match are kept, blocks that don't are rewritten, and the rest is copied. A
//! partial file that was corrupted (or written by an older source) therefore still ends
//! up identical to the source.

use std::io;

use rustix::fd::BorrowedFd;

use crate::checksum::hash_range;
use crate::copy::Copier;
use crate::sys::file;

/// Block size for verification.
pub const BLOCK: u64 = 4 << 20;

/// Completes `part` from `src` (`len` bytes). Returns the number of bytes kept.
pub fn complete(
    copier: &Copier,
    src: BorrowedFd<'_>,
    part: BorrowedFd<'_>,
    len: u64,
) -> io::Result<u64> {
    let have = file::len(part)?.min(len);
    let verified_end = have - have % BLOCK;
    let mut kept = 0;
    let mut offset = 0;
    while offset < verified_end {
        if hash_range(src, offset, BLOCK)? == hash_range(part, offset, BLOCK)? {
            kept += BLOCK;
        } else {
            copier.copy_range(src, part, offset, BLOCK)?;
        }
        offset += BLOCK;
    }
    if verified_end < len {
        copier.copy_range(src, part, verified_end, len - verified_end)?;
    }
    file::set_len(part, len)?;
    Ok(kept)
}
