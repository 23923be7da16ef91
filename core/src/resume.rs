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

/// BLAKE3 of each whole block of the partial file `part`, up to `len` bytes (what a
/// remote source compares its blocks with).
pub fn block_hashes(part: BorrowedFd<'_>, len: u64) -> io::Result<Vec<[u8; 32]>> {
    let have = written_len(part, len)?;
    (0..have / BLOCK)
        .map(|i| hash_range(part, i * BLOCK, BLOCK))
        .collect()
}

/// How much of the partial file `part` (of a `len`-byte source) an earlier run may have
/// written: up to its first hole. A run that warmed the page cache ahead of its writes
/// (`prefault`) gave the file its final length first, and what it never wrote is a hole;
/// hashing those zeroes on both ends would be wasted. Holes written by a sparse copy are
/// merely copied again.
fn written_len(part: BorrowedFd<'_>, len: u64) -> io::Result<u64> {
    let have = file::len(part)?.min(len);
    Ok(
        match rustix::fs::seek(part, rustix::fs::SeekFrom::Hole(0)) {
            Ok(hole) => have.min(hole),
            Err(_) => have,
        },
    )
}

/// The ranges of `src` a remote destination still needs, given the hashes of its
/// partial file's blocks: each block whose hash differs, then everything past them.
pub fn missing_ranges(
    src: BorrowedFd<'_>,
    len: u64,
    hashes: &[Vec<u8>],
) -> io::Result<Vec<(u64, u64)>> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut push = |start: u64, n: u64| match ranges.last_mut() {
        Some(last) if last.0 + last.1 == start => last.1 += n,
        _ => ranges.push((start, n)),
    };
    let blocks = (hashes.len() as u64).min(len / BLOCK);
    for i in 0..blocks {
        if hash_range(src, i * BLOCK, BLOCK)?.as_slice() != hashes[i as usize].as_slice() {
            push(i * BLOCK, BLOCK);
        }
    }
    if blocks * BLOCK < len {
        push(blocks * BLOCK, len - blocks * BLOCK);
    }
    Ok(ranges)
}

/// Completes `part` from `src` (`len` bytes). Returns the number of bytes kept.
pub fn complete(
    copier: &Copier,
    src: BorrowedFd<'_>,
    part: BorrowedFd<'_>,
    len: u64,
) -> io::Result<u64> {
    let have = written_len(part, len)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;

    #[test]
    fn a_partial_file_is_trusted_up_to_its_first_hole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let data = vec![7u8; 2 * BLOCK as usize];
        file::write_all_at(f.as_fd(), &data, 0).unwrap();
        // An earlier run gave the file its final length before writing it all.
        file::set_len(f.as_fd(), 5 * BLOCK).unwrap();
        let hashes = block_hashes(f.as_fd(), 5 * BLOCK).unwrap();
        let holes = rustix::fs::seek(f.as_fd(), rustix::fs::SeekFrom::Hole(0)).unwrap();
        if holes < 5 * BLOCK {
            assert_eq!(
                hashes.len(),
                2,
                "the blocks written, not the hole after them"
            );
        } else {
            // A filesystem without holes (or without SEEK_HOLE) trusts the whole length,
            // and the hashes still decide.
            assert_eq!(hashes.len(), 5);
        }
        let first = crate::checksum::hash_range(f.as_fd(), 0, BLOCK).unwrap();
        assert_eq!(hashes[0], first);
    }
}
