//! Applying preserved metadata: ownership, mode and nanosecond mtimes.
//!
//! Ownership goes first because `chown` clears setuid/setgid bits; the mode is set after
//! it; the mtime last, since nothing after it may touch the inode.

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

/// Applies metadata to an open file or directory.
pub fn apply_fd(fd: BorrowedFd<'_>, meta: &Meta, policy: MetaPolicy) -> io::Result<()> {
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
        rustix::fs::chmodat(dir, name, Mode::from_raw_mode(meta.mode), AtFlags::empty())
            .map_err(io_err)?;
    }
    rustix::fs::utimensat(dir, name, &timestamps(meta), AtFlags::SYMLINK_NOFOLLOW).map_err(io_err)
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
