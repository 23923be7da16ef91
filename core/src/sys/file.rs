//! Opening source files and creating destination files that appear only when complete.
//!
//! New files are written as unnamed `O_TMPFILE` inodes and linked into place with
//! `linkat` once their content and metadata are final: one directory operation per file,
//! and a killed run leaves nothing behind. Where that is unavailable, or a file replaces
//! an existing one, a named temp file in the same directory (`sys::temp`) is renamed over
//! the target.

use std::ffi::OsStr;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, Stat};

use super::io_err;

/// Whether `O_NOATIME` is still worth asking for (it fails with EPERM on files we don't own).
static NOATIME_OK: AtomicBool = AtomicBool::new(true);

/// Opens a source file for reading without following symlinks and, where permitted,
/// without updating its access time. Only a regular file is opened for reading: see
/// [`open_source_stat`].
pub fn open_source(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    open_source_stat(dir, name).map(|(fd, _)| fd)
}

/// [`open_source`], with the open file's status. The open itself never blocks: a FIFO
/// without a writer (or a device) in place of the file listed would otherwise hold the
/// thread forever, so it is opened non-blocking (and never as a controlling terminal),
/// refused unless the open file is a regular one, and only then made blocking again.
pub fn open_source_stat(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<(OwnedFd, Stat)> {
    let base =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let mut opened = None;
    if NOATIME_OK.load(Ordering::Relaxed) {
        match rustix::fs::openat(dir, name, base | OFlags::NOATIME, Mode::empty()) {
            Ok(fd) => opened = Some((fd, OFlags::NOATIME)),
            Err(rustix::io::Errno::PERM) => NOATIME_OK.store(false, Ordering::Relaxed),
            Err(e) => return Err(io_err(e)),
        }
    }
    let (fd, status) = match opened {
        Some(opened) => opened,
        None => (
            rustix::fs::openat(dir, name, base, Mode::empty()).map_err(io_err)?,
            OFlags::empty(),
        ),
    };
    let st = rustix::fs::fstat(&fd).map_err(io_err)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file; not read",
        ));
    }
    rustix::fs::fcntl_setfl(&fd, status).map_err(io_err)?;
    Ok((fd, st))
}

/// Opens an existing destination file for reading (used to verify and resume).
pub fn open_read(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err)
}

/// Creates an unnamed file in `dir` (`O_TMPFILE`). Returns `Ok(None)` when the kernel or
/// filesystem does not support it, so the caller can fall back to a named temp file.
pub fn create_unnamed(dir: BorrowedFd<'_>, mode: u32) -> io::Result<Option<OwnedFd>> {
    let flags = OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, ".", flags, Mode::from_raw_mode(mode & 0o7777)) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR | rustix::io::Errno::INVAL) => {
            Ok(None)
        }
        Err(e) => Err(io_err(e)),
    }
}

/// Links an unnamed file into `dir` as `name`. Fails with `AlreadyExists` if `name` exists.
pub fn link_unnamed(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc form works for everyone.
    if super::is_root() {
        match rustix::fs::linkat(fd, "", dir, name, AtFlags::EMPTY_PATH) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::PERM) => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::linkat(CWD, proc_path.as_str(), dir, name, AtFlags::SYMLINK_FOLLOW).map_err(io_err)
}

/// Creates a hard link `dir/name` to `target_dir/target`.
pub fn hard_link(
    target_dir: BorrowedFd<'_>,
    target: &OsStr,
    dir: BorrowedFd<'_>,
    name: &OsStr,
) -> io::Result<()> {
    rustix::fs::linkat(target_dir, target, dir, name, AtFlags::empty()).map_err(io_err)
}

/// Creates a symlink `dir/name` pointing at `target`.
pub fn symlink(target: &OsStr, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    rustix::fs::symlinkat(target, dir, name).map_err(io_err)
}

/// Creates a FIFO, socket or device node like `like_mode`/`rdev`.
pub fn make_special(dir: BorrowedFd<'_>, name: &OsStr, raw_mode: u32, rdev: u64) -> io::Result<()> {
    let file_type = rustix::fs::FileType::from_raw_mode(raw_mode);
    rustix::fs::mknodat(
        dir,
        name,
        file_type,
        Mode::from_raw_mode(raw_mode & 0o7777),
        rdev,
    )
    .map_err(io_err)
}

/// `pread` into `buf` at `offset`, retried when interrupted: how many bytes were read
/// (0 at the end of the file).
pub fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match rustix::io::pread(fd, &mut *buf, offset) {
            Err(rustix::io::Errno::INTR) => {}
            other => return other.map_err(io_err),
        }
    }
}

/// `pwrite` until all of `buf` is written at `offset`.
pub fn write_all_at(fd: BorrowedFd<'_>, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::pwrite(fd, buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(())
}

/// Flushes a file's data (and the metadata needed to read it back) to stable storage:
/// what a move waits for before it lets the source go.
pub fn sync_data(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::fs::fdatasync(fd).map_err(io_err)
}

/// Flushes a directory, so the names created or renamed in it survive a crash.
pub fn sync_dir(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::fs::fsync(fd).map_err(io_err)
}

/// Sets the length of a file (used to keep trailing holes of sparse files).
pub fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    rustix::fs::ftruncate(fd, len).map_err(io_err)
}

/// The size of an open file.
pub fn len(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd).map_err(io_err)?.st_size as u64)
}
