//! Opening a subdirectory whose parent's descriptor may have been let go.
//!
//! A walk queues the visit of each subdirectory. If a queued visit kept its parent open,
//! a tree shaped like a comb — a deep spine with a side directory at every level — would
//! hold one descriptor per level while the spine is walked (a 10,000-level comb: 20,000
//! descriptors, with a source and a destination side), until the process, and every
//! other session of an agent with it, ran out. So a queued visit keeps its parent
//! weakly: while the parent is still open (its own visit is running, or a sibling's
//! visit holds it) it is used as it is; otherwise the parent is reached by path through
//! the calling thread's [`Cursor`] for that root. Workers take their own queued visits
//! last-in first-out, so that cursor is usually a step or two from where it must go,
//! and a thread holds at most a cursor's few descriptors per root.
//!
//! Reached again, the parent is the directory the cursor still holds at that path, or
//! else the one found there now, as with any tool that walks by path: each component
//! opened without following symlinks, and a directory climbed back to through `..`
//! checked to be the one the cursor came down through, so nothing leads out of the root.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::Weak;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};

use super::cursor::{Cursor, Identity, identity};
use super::{dir, io_err};

/// Cursors a thread keeps: one per root it works beneath (a local transfer's workers
/// reopen on both the source and the destination side).
const CURSORS_PER_THREAD: usize = 2;

thread_local! {
    /// This thread's cursors, each on its own duplicate of the root it moves beneath,
    /// keyed by the root's device and inode; the most recently used last.
    static CURSORS: RefCell<Vec<(Identity, Cursor<OwnedFd>)>> = const { RefCell::new(Vec::new()) };
}

/// Opens directory `name` inside its parent, which is `parent_rel` beneath `root`:
/// through `parent` while anyone still holds it open, else by path through this
/// thread's cursor for `root`.
pub fn open_child(
    root: BorrowedFd<'_>,
    parent: &Weak<OwnedFd>,
    parent_rel: &Path,
    name: &OsStr,
) -> io::Result<OwnedFd> {
    if let Some(fd) = parent.upgrade() {
        return dir::open_dir_at(fd.as_fd(), name);
    }
    let key = identity(root)?;
    CURSORS.with(|cursors| {
        let mut cursors = cursors.borrow_mut();
        let mut entry = match cursors.iter().position(|(k, _)| *k == key) {
            Some(i) => cursors.remove(i),
            None => {
                let dup = rustix::io::fcntl_dupfd_cloexec(root, 0).map_err(io_err)?;
                (key, Cursor::new(dup))
            }
        };
        let opened = entry
            .1
            .go(parent_rel)
            .and_then(|()| dir::open_dir_at(entry.1.fd(), name));
        if cursors.len() == CURSORS_PER_THREAD {
            cursors.remove(0);
        }
        cursors.push(entry);
        opened
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn reopens_by_path_once_the_parent_is_closed() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b/c")).unwrap();
        let root = dir::open_root(tmp.path()).unwrap();
        let parent = Arc::new(dir::open_beneath(root.as_fd(), Path::new("a/b")).unwrap());
        let weak = Arc::downgrade(&parent);
        let open = || open_child(root.as_fd(), &weak, Path::new("a/b"), OsStr::new("c"));
        let through_parent = identity(open().unwrap().as_fd()).unwrap();
        drop(parent);
        let by_path = identity(open().unwrap().as_fd()).unwrap();
        assert_eq!(through_parent, by_path);
        let gone = Arc::downgrade(&Arc::new(dir::open_root(tmp.path()).unwrap()));
        let a = open_child(root.as_fd(), &gone, Path::new(""), OsStr::new("a")).unwrap();
        let meta = std::fs::metadata(tmp.path().join("a")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(identity(a.as_fd()).unwrap(), (meta.dev(), meta.ino()));
    }
}
