//! Applying preserved metadata: ownership, mode and nanosecond mtimes.
//!
//! Order matters: ownership first, because `chown` clears setuid/setgid bits and file
//! capabilities; then the mode; then extended attributes (callers do that between
//! `set_owner_mode` and `set_mtime`); the mtime last, since nothing after it may touch
//! the inode.

use std::ffi::OsStr;
use std::io;

use rustix::fd::BorrowedFd;
use rustix::fs::{AtFlags, Gid, Mode, Timespec, Timestamps, UTIME_OMIT, Uid};

use super::io_err;
use crate::entry::Meta;

/// Which parts of the metadata to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaPolicy {
    /// Set uid/gid (only meaningful when running as root).
    pub owner: bool,
    /// Set permission bits; false when the file was created with the right mode already.
    pub mode: bool,
}

fn timestamps(meta: &Meta) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: meta.mtime.sec,
            tv_nsec: i64::from(meta.mtime.nsec) as _,
        },
    }
}

/// Sets owner and mode of an open file or directory, as `policy` says.
pub fn set_owner_mode(fd: BorrowedFd<'_>, meta: &Meta, policy: MetaPolicy) -> io::Result<()> {
    if policy.owner {
        rustix::fs::fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(io_err)?;
    }
    if policy.mode || policy.owner {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(io_err)?;
    }
    Ok(())
}

/// Sets the mtime of an open file or directory (the last change made to it).
pub fn set_mtime(fd: BorrowedFd<'_>, meta: &Meta) -> io::Result<()> {
    rustix::fs::futimens(fd, &timestamps(meta)).map_err(io_err)
}

/// Applies metadata to `dir/name` without following a symlink. Symlinks have no mode of
/// their own: pass `policy.mode = false` for them.
pub fn apply_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    meta: &Meta,
    policy: MetaPolicy,
) -> io::Result<()> {
    if policy.owner {
        let (uid, gid) = (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid));
        rustix::fs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err)?;
    }
    if policy.mode {
        chmod_nofollow(dir, name, meta.mode)?;
    }
    rustix::fs::utimensat(dir, name, &timestamps(meta), AtFlags::SYMLINK_NOFOLLOW).map_err(io_err)
}

/// `chmod` that refuses to act through a symlink (`fchmodat` has no working
/// `AT_SYMLINK_NOFOLLOW`): the entry is pinned with `O_PATH|O_NOFOLLOW`, checked, and
/// changed through its `/proc/self/fd` link, which names that inode and nothing else.
fn chmod_nofollow(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    use rustix::fd::AsRawFd;
    use rustix::fs::{FileType, OFlags};
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let pinned = rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(io_err)?;
    let st = rustix::fs::fstat(&pinned).map_err(io_err)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        return Err(io::Error::other(
            "refusing to change the mode through a symlink",
        ));
    }
    let proc_path = format!("/proc/self/fd/{}", pinned.as_raw_fd());
    let mode = Mode::from_raw_mode(mode & 0o7777);
    match rustix::fs::chmodat(rustix::fs::CWD, proc_path.as_str(), mode, AtFlags::empty()) {
        Err(rustix::io::Errno::NOENT) => {
            // No /proc: the type check above is the best we can do.
            rustix::fs::chmodat(dir, name, mode, AtFlags::empty()).map_err(io_err)
        }
        other => other.map_err(io_err),
    }
}

/// The process umask, read once (reading it requires setting it, so do it at start-up).
pub fn umask() -> u32 {
    use std::sync::OnceLock;
    static UMASK: OnceLock<u32> = OnceLock::new();
    *UMASK.get_or_init(|| {
        let old = rustix::process::umask(Mode::from_raw_mode(0o022));
        rustix::process::umask(old);
        old.as_raw_mode()
    })
}
