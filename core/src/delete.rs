//! Removing destination entries: files, symlinks and whole directory trees.
//!
//! Everything is done relative to directory descriptors opened with `O_NOFOLLOW`, so a
//! symlink inside the destination (even one pointing at a directory elsewhere) is removed
//! as a link and never walked through. Entries a filter protects are kept, and so are the
//! directories that still hold them, up to the top. Trees are walked without recursion
//! (`sys::tree`): their depth is whatever the tree's writer made it.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, BorrowedFd};

use crate::entry::EntryKind;
use crate::sys::dir;
use crate::sys::tree::{self, Parent, Step, Visit};

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
    let mut pruner = Pruner {
        pass,
        protect,
        top: rel,
        path: PathBuf::new(),
        done: None,
    };
    tree::walk(fd.as_fd(), &mut pruner)?;
    drop(fd);
    let inside = pruner.done.expect("the walk ends by leaving its start");
    let mut outcome = Pruned::default();
    settle(pass, inside, parent, name, &mut outcome)?;
    Ok(outcome.removed)
}

/// What pruning one directory's contents came to.
#[derive(Debug, Default)]
struct Pruned {
    removed: u64,
    /// Something in it stays, so it stays too.
    kept: bool,
}

/// The walk that removes (or counts) a directory's contents, deepest first.
struct Pruner<'a> {
    pass: Pass,
    protect: Protect<'a>,
    /// The directory's path relative to the transfer root (what `protect` is asked about).
    top: &'a Path,
    /// Scratch for the entry paths handed to `protect`.
    path: PathBuf,
    /// The starting directory's outcome, once the walk left it.
    done: Option<Pruned>,
}

impl Visit for Pruner<'_> {
    type Frame = Pruned;

    fn enter(&mut self, dir: BorrowedFd<'_>, rel: &Path, _: usize) -> io::Result<Step<Pruned>> {
        let mut frame = Pruned::default();
        let mut subdirs = Vec::new();
        self.path.clear();
        self.path.push(self.top);
        self.path.push(rel);
        for entry in dir::list(dir)?.entries {
            self.path.push(&entry.name);
            let protected = (self.protect)(&self.path, entry.is_dir());
            self.path.pop();
            if protected {
                frame.kept = true;
            } else if entry.is_dir() {
                subdirs.push(entry.name);
            } else {
                if self.pass == Pass::Remove {
                    dir::unlink_at(dir, &entry.name)?;
                }
                frame.removed += 1;
            }
        }
        Ok(Step::Descend { frame, subdirs })
    }

    fn leave(&mut self, frame: Pruned, parent: Option<Parent<'_, Pruned>>) -> io::Result<()> {
        match parent {
            Some(p) => settle(self.pass, frame, p.fd, p.name, p.frame),
            None => {
                self.done = Some(frame);
                Ok(())
            }
        }
    }
}

/// A directory whose contents were pruned (`inside`): remove it from `parent` unless it
/// keeps something, and add the outcome to the parent's.
fn settle(
    pass: Pass,
    inside: Pruned,
    parent: BorrowedFd<'_>,
    name: &OsStr,
    into: &mut Pruned,
) -> io::Result<()> {
    into.removed += inside.removed;
    if inside.kept {
        // Protected entries keep their directory alive; that is the point of protecting them.
        into.kept = true;
        return Ok(());
    }
    if pass == Pass::Remove {
        dir::rmdir_at(parent, name)?;
    }
    into.removed += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(p: &Path) -> rustix::fd::OwnedFd {
        dir::open_root(p).unwrap()
    }

    #[test]
    fn removes_a_tree_and_counts_what_it_removes() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("top");
        for d in ["a/b/c", "a/e", "f"] {
            std::fs::create_dir_all(top.join(d)).unwrap();
        }
        std::fs::write(top.join("a/b/c/file"), b"x").unwrap();
        std::fs::write(top.join("a/g"), b"x").unwrap();
        std::os::unix::fs::symlink(tmp.path(), top.join("a/link")).unwrap();
        let root = open(tmp.path());
        let none = |_: &Path, _: bool| false;
        let args = (OsStr::new("top"), EntryKind::Dir, Path::new("top"));
        let counted = count(root.as_fd(), args.0, args.1, args.2, &none).unwrap();
        assert_eq!(counted, 9, "top, a, b, c, file, e, g, link, f");
        assert!(top.join("a/b/c/file").exists(), "counting removes nothing");
        let removed = remove(root.as_fd(), args.0, args.1, args.2, &none).unwrap();
        assert_eq!(removed, counted);
        assert!(!top.exists());
        assert!(
            tmp.path().exists(),
            "the symlink's target was not walked into"
        );
    }

    #[test]
    fn a_protected_entry_keeps_every_directory_above_it() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("top");
        std::fs::create_dir_all(top.join("a/b")).unwrap();
        std::fs::create_dir_all(top.join("gone")).unwrap();
        std::fs::write(top.join("a/b/keep.me"), b"x").unwrap();
        std::fs::write(top.join("a/b/drop"), b"x").unwrap();
        std::fs::write(top.join("a/drop"), b"x").unwrap();
        let root = open(tmp.path());
        let protect = |p: &Path, _: bool| p.extension().is_some_and(|e| e == "me");
        let args = (OsStr::new("top"), EntryKind::Dir, Path::new("top"));
        assert_eq!(
            count(root.as_fd(), args.0, args.1, args.2, &protect).unwrap(),
            3,
            "the two drops and gone"
        );
        assert_eq!(
            remove(root.as_fd(), args.0, args.1, args.2, &protect).unwrap(),
            3
        );
        assert!(top.join("a/b/keep.me").exists());
        assert!(!top.join("a/b/drop").exists() && !top.join("gone").exists());
    }
}
