//! Removing destination entries: files, symlinks and whole directory trees.
//!
//! Everything is done relative to directory descriptors opened with `O_NOFOLLOW`, so a
//! symlink inside the destination (even one pointing at a directory elsewhere) is removed
//! as a link and never walked through. Entries a filter protects are kept, and so are the
//! directories that still hold them.

use std::ffi::OsStr;
use std::io;
use std::path::Path;

use rustix::fd::{AsFd, BorrowedFd};

use crate::entry::EntryKind;
use crate::sys::dir;

/// Decides whether an entry (path relative to the transfer root, is-directory) must be kept.
pub type Protect<'a> = &'a (dyn Fn(&Path, bool) -> bool + Sync);

/// Removes `name` from `parent`; a directory is removed with its contents. Returns how many
/// entries were removed.
pub fn remove(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    kind: EntryKind,
    rel: &Path,
    protect: Protect<'_>,
) -> io::Result<u64> {
    prune(parent, name, kind, rel, protect, Pass::Remove)
}

/// Counts the entries `remove` would remove (for `--max-delete` and dry runs).
pub fn count(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    kind: EntryKind,
    rel: &Path,
    protect: Protect<'_>,
) -> io::Result<u64> {
    prune(parent, name, kind, rel, protect, Pass::Count)
}

/// Whether `prune` removes entries or only counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Count,
    Remove,
}

fn prune(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    kind: EntryKind,
    rel: &Path,
    protect: Protect<'_>,
    pass: Pass,
) -> io::Result<u64> {
    if kind != EntryKind::Dir {
        if pass == Pass::Remove {
            dir::unlink_at(parent, name)?;
        }
        return Ok(1);
    }
    let fd = dir::open_dir_at(parent, name)?;
    let mut removed = 0;
    let mut kept = false;
    for entry in dir::list(fd.as_fd())?.entries {
        let child_rel = rel.join(&entry.name);
        if protect(&child_rel, entry.is_dir()) {
            kept = true;
            continue;
        }
        removed += prune(
            fd.as_fd(),
            &entry.name,
            entry.kind,
            &child_rel,
            protect,
            pass,
        )?;
    }
    drop(fd);
    if pass == Pass::Count {
        // Protected entries keep their directory alive; that is the point of protecting them.
        return Ok(removed + u64::from(!kept));
    }
    match dir::rmdir_at(parent, name) {
        Ok(()) => Ok(removed + 1),
        Err(e) if kept && e.raw_os_error() == Some(rustix::io::Errno::NOTEMPTY.raw_os_error()) => {
            Ok(removed)
        }
        Err(e) => Err(e),
    }
}
