//! Moving bytes from a source file to a destination file by the fastest correct means.
//!
//! In order of preference: a reflink (`FICLONE`, shares blocks, O(1)), `copy_file_range`
//! (in-kernel, no user-space copy), and a buffered `pread`/`pwrite` loop. Sparse files are
//! copied extent by extent (`SEEK_DATA`/`SEEK_HOLE`) so holes stay holes. What a
//! filesystem does not support is learned once per run, not retried for every file.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

use rustix::fd::BorrowedFd;
use rustix::fs::SeekFrom;

use crate::prefault::Prefault;
use crate::sys::file::{read_at, write_all_at};
use crate::sys::io_err;

/// Whether to try copy-on-write clones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reflink {
    /// Clone when the filesystem supports it, copy otherwise.
    #[default]
    Auto,
    /// Clone or fail.
    Always,
    /// Always copy the bytes (without copy_file_range, which may clone).
    Never,
}

const UNKNOWN: u8 = 0;
const WORKS: u8 = 1;
const UNSUPPORTED: u8 = 2;

/// Buffer size for the fallback loop.
const BUF: usize = 1 << 20;
/// Bytes per copy call while a helper warms the page cache ahead (see `prefault`).
const WARMED_STEP: u64 = 8 << 20;

/// Copies file contents; shared by all workers of a run.
#[derive(Debug)]
pub struct Copier {
    reflink: Reflink,
    reflink_state: AtomicU8,
    cfr_state: AtomicU8,
}

impl Copier {
    /// Copies the whole of `src` (`len` bytes) into the empty file `dst`.
    ///
    /// A large file is copied by one thread: the kernel moves the bytes, and on ext4
    /// buffered writes to one inode serialize on its lock, so splitting a file into ranges
    /// copied in parallel measured slower (W2, 4 GiB: 8.6 s split in two threads against
    /// 4.5 s in one). The pool's parallelism goes to different files instead; what a second
    /// thread does for one large file is warm the page cache ahead of the copy
    /// ([`Prefault`]).
    pub fn copy_file(
        &self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        len: u64,
        sparse: bool,
    ) -> io::Result<()> {
        if len == 0 || self.try_reflink(src, dst)? {
            return Ok(());
        }
        if sparse {
            return self.copy_sparse(src, dst, len);
        }
        match Prefault::start(dst, len) {
            Some(prefault) => self.copy_warmed(src, dst, len, &prefault),
            None => self.copy_range(src, dst, 0, len),
        }
    }

    /// Copies in steps, telling the helper that warms the page cache ahead how far the
    /// copy has got.
    fn copy_warmed(
        &self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        len: u64,
        prefault: &Prefault,
    ) -> io::Result<()> {
        let mut at = 0;
        while at < len {
            let n = WARMED_STEP.min(len - at);
            self.copy_range(src, dst, at, n)?;
            at += n;
            prefault.written(at);
        }
        Ok(())
    }

    pub fn new(reflink: Reflink) -> Copier {
        // copy_file_range clones on filesystems that can (XFS, btrfs), so "never" must
        // avoid it too and move the bytes through a buffer.
        let initial = if reflink == Reflink::Never {
            UNSUPPORTED
        } else {
            UNKNOWN
        };
        Copier {
            reflink,
            reflink_state: AtomicU8::new(initial),
            cfr_state: AtomicU8::new(initial),
        }
    }

    /// Tries `FICLONE`; `Ok(false)` means "not supported here, copy instead".
    fn try_reflink(&self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<bool> {
        if self.reflink_state.load(Ordering::Relaxed) == UNSUPPORTED {
            return Ok(false);
        }
        match rustix::fs::ioctl_ficlone(dst, src) {
            Ok(()) => {
                self.reflink_state.store(WORKS, Ordering::Relaxed);
                Ok(true)
            }
            Err(e) if self.reflink == Reflink::Always => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("reflink failed ({e}) and reflinks are required (always)"),
            )),
            Err(_) => {
                // EXDEV/EOPNOTSUPP/EINVAL/ENOTTY: this filesystem pair cannot clone.
                if self.reflink_state.load(Ordering::Relaxed) == UNKNOWN {
                    self.reflink_state.store(UNSUPPORTED, Ordering::Relaxed);
                }
                Ok(false)
            }
        }
    }

    /// Copies `[offset, offset+len)` of `src` to the same offsets of `dst`.
    pub fn copy_range(
        &self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        if self.cfr_state.load(Ordering::Relaxed) != UNSUPPORTED {
            match copy_file_range_all(src, dst, offset, len) {
                Ok(()) => {
                    self.cfr_state.store(WORKS, Ordering::Relaxed);
                    return Ok(());
                }
                Err(Fallback::Unsupported) => self.cfr_state.store(UNSUPPORTED, Ordering::Relaxed),
                Err(Fallback::Io(e)) => return Err(e),
            }
        }
        buffered_range(src, dst, offset, len)?;
        Ok(())
    }

    /// Copies only the data extents of `src`, then sets the length so trailing holes stay.
    fn copy_sparse(&self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>, len: u64) -> io::Result<()> {
        let mut offset = 0;
        while offset < len {
            let data = match rustix::fs::seek(src, SeekFrom::Data(offset)) {
                Ok(d) => d,
                Err(rustix::io::Errno::NXIO) => break,
                Err(e) => return Err(io_err(e)),
            };
            if data >= len {
                break;
            }
            let hole = match rustix::fs::seek(src, SeekFrom::Hole(data)) {
                Ok(h) => h.min(len),
                Err(e) => return Err(io_err(e)),
            };
            self.copy_range(src, dst, data, hole - data)?;
            offset = hole;
        }
        crate::sys::file::set_len(dst, len)
    }
}

enum Fallback {
    Unsupported,
    Io(io::Error),
}

fn copy_file_range_all(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    offset: u64,
    len: u64,
) -> Result<(), Fallback> {
    let (mut off_in, mut off_out) = (offset, offset);
    let end = offset + len;
    let mut first = true;
    while off_in < end {
        let chunk = usize::try_from(end - off_in)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), chunk) {
            Ok(0) => return Err(Fallback::Io(shrank())),
            Ok(_) => first = false,
            Err(rustix::io::Errno::INTR) => {}
            Err(
                rustix::io::Errno::XDEV
                | rustix::io::Errno::NOSYS
                | rustix::io::Errno::OPNOTSUPP
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::PERM,
            ) if first => return Err(Fallback::Unsupported),
            Err(e) => return Err(Fallback::Io(io_err(e))),
        }
    }
    Ok(())
}

fn buffered_range(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    let mut buf = vec![0u8; BUF.min(usize::try_from(len).unwrap_or(BUF))];
    let end = offset + len;
    let mut pos = offset;
    while pos < end {
        let want = buf
            .len()
            .min(usize::try_from(end - pos).unwrap_or(usize::MAX));
        let n = match read_at(src, &mut buf[..want], pos)? {
            0 => return Err(shrank()),
            n => n,
        };
        write_all_at(dst, &buf[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

fn shrank() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "source file shrank while it was being copied",
    )
}
