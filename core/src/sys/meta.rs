//! Applying preserved metadata: ownership, mode and nanosecond mtimes.
//!
//! Order matters: ownership first, because `chown` clears setuid/setgid bits and file
//! capabilities; then the mode; then extended attributes (callers do that between
//! `set_owner_mode` and `set_mtime`); the mtime last, since nothing after it may touch
//! the inode.
//!
//! An entry that exists already gets only what differs ([`MetaPolicy::narrowed`],
//! [`update_mtime`]): every write changes its ctime, so a run that finds everything up to
//! date must write nothing.

use std::ffi::OsStr;
use std::io;

use rustix::fd::BorrowedFd;
use rustix::fs::{AtFlags, Gid, Mode, Timespec, Timestamps, UTIME_OMIT, Uid};

use super::io_err;
use crate::entry::{Meta, Timestamp};

/// Which parts of the metadata to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaPolicy {
    /// Set uid/gid (only meaningful when running as root).
    pub owner: bool,
    /// Set permission bits; false when the file was created with the right mode already.
    pub mode: bool,
}

impl MetaPolicy {
    /// This policy, keeping only the parts in which `current` (what the entry has now)
    /// differs from `wanted`.
    pub fn narrowed(self, current: &Meta, wanted: &Meta) -> MetaPolicy {
        MetaPolicy {
            owner: self.owner && (current.uid, current.gid) != (wanted.uid, wanted.gid),
            mode: self.mode && current.mode != wanted.mode,
        }
    }
}

/// The metadata an open file or directory has now.
pub fn read(fd: BorrowedFd<'_>) -> io::Result<Meta> {
    rustix::fs::fstat(fd)
        .map(|st| from_stat(&st))
        .map_err(io_err)
}

fn from_stat(st: &rustix::fs::Stat) -> Meta {
    Meta {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: Timestamp {
            sec: st.st_mtime,
            nsec: st.st_mtime_nsec as u32,
        },
    }
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

/// Sets the mtime of an open file or directory whose metadata is `current` to `wanted`'s,
/// unless it has it already.
pub fn update_mtime(fd: BorrowedFd<'_>, current: &Meta, wanted: &Meta) -> io::Result<()> {
    if current.mtime == wanted.mtime {
        return Ok(());
    }
    set_mtime(fd, wanted)
}

/// Applies metadata to `dir/name` without following a symlink. Symlinks have no mode of
/// their own: pass `policy.mode = false` for them.
pub fn apply_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    meta: &Meta,
    policy: MetaPolicy,
) -> io::Result<()> {
    set_owner_mode_at(dir, name, meta, policy)?;
    set_mtime_at(dir, name, meta)
}

/// Sets owner and mode of `dir/name` without following a symlink, as `policy` says.
pub fn set_owner_mode_at(
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
    Ok(())
}

/// Sets the mtime of `dir/name` without following a symlink.
fn set_mtime_at(dir: BorrowedFd<'_>, name: &OsStr, meta: &Meta) -> io::Result<()> {
    rustix::fs::utimensat(dir, name, &timestamps(meta), AtFlags::SYMLINK_NOFOLLOW).map_err(io_err)
}

/// Sets the mtime of `dir/name`, whose metadata is `current`, to `wanted`'s unless it has
/// it already (not following a symlink).
pub fn update_mtime_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    current: &Meta,
    wanted: &Meta,
) -> io::Result<()> {
    if current.mtime == wanted.mtime {
        return Ok(());
    }
    set_mtime_at(dir, name, wanted)
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;

    #[test]
    fn narrowed_keeps_only_what_differs_and_was_asked() {
        let wanted = Meta {
            mode: 0o755,
            uid: 1,
            gid: 2,
            mtime: Timestamp { sec: 5, nsec: 6 },
        };
        let all = MetaPolicy {
            owner: true,
            mode: true,
        };
        let none = MetaPolicy {
            owner: false,
            mode: false,
        };
        assert_eq!(all.narrowed(&wanted, &wanted), none);
        let other = Meta {
            mode: 0o700,
            gid: 3,
            mtime: Timestamp { sec: 5, nsec: 7 },
            ..wanted
        };
        assert_eq!(all.narrowed(&other, &wanted), all);
        let mode_only = MetaPolicy {
            owner: false,
            mode: true,
        };
        assert_eq!(mode_only.narrowed(&other, &wanted), mode_only);
    }

    /// `read` sees what was set.
    #[test]
    fn reads_what_was_set() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let wanted = Meta {
            mode: 0o640,
            mtime: Timestamp {
                sec: 1_600_000_000,
                nsec: 123_456_789,
            },
            ..read(file.as_fd()).unwrap()
        };
        let mode = MetaPolicy {
            owner: false,
            mode: true,
        };
        set_owner_mode(file.as_fd(), &wanted, mode).unwrap();
        set_mtime(file.as_fd(), &wanted).unwrap();
        assert_eq!(read(file.as_fd()).unwrap(), wanted);
    }
}
