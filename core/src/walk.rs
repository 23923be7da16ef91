//! The parallel walk of a source tree.
//!
//! Directories are read by a pool of workers (rayon's work-stealing scope): each one is
//! listed with large `getdents64` reads, every entry is `statx`ed without following
//! symlinks, excluded entries are dropped, and the rest — a `Listed` batch, sorted by
//! name bytes — goes to a `Visitor`. The visitor decides which subdirectories to descend
//! into (and with what state) by calling `Subdirs::descend`; each subdirectory becomes a
//! job any idle worker can take. The pool runs jobs depth-first, so the directories in
//! flight — and memory — stay small on trees of millions of entries: at most one listing
//! per directory being visited. Jobs are queued, never nested on a worker's stack, and
//! a queued job holds no descriptor (`sys::reopen`), so neither grows with the depth.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fd::{AsFd, OwnedFd};

use crate::entry::{Entry, sort_by_name};
use crate::filter::Filter;
use crate::report::Stats;
use crate::sys::{dir, reopen};

/// One directory's entries, filtered and sorted by name.
pub struct Listed {
    /// Path of the directory relative to the walk's root.
    pub rel: PathBuf,
    /// The open directory (entries can be opened relative to it).
    pub fd: Arc<OwnedFd>,
    pub entries: Vec<Entry>,
}

/// What a walk does with each directory.
pub trait Visitor: Sync + Sized {
    /// State handed from a directory's visit to each of its subdirectories' visits.
    type State: Send;

    /// Called once per directory. Call `subdirs.descend` for each subdirectory to visit.
    fn visit<'s>(&'s self, dir: Listed, state: Self::State, subdirs: &Subdirs<'_, 's, Self>);

    /// A directory or entry that could not be read; the walk goes on without it.
    fn failed(&self, rel: &Path, name: &OsStr, operation: &'static str, error: &io::Error);
}

/// A parallel walk over one source tree.
pub struct Walk<'s, V: Visitor> {
    visitor: &'s V,
    filter: &'s Filter,
    stats: &'s Stats,
}

/// Hands subdirectories of the directory being visited to the pool.
pub struct Subdirs<'a, 's, V: Visitor> {
    walk: &'s Walk<'s, V>,
    scope: &'a rayon::Scope<'s>,
    root: &'a Arc<OwnedFd>,
    parent: &'a Arc<OwnedFd>,
    rel: &'a Path,
}

impl<'s, V: Visitor> Subdirs<'_, 's, V> {
    /// Queues the visit of subdirectory `name`. It is opened by whichever worker runs it,
    /// and queued visits hold no descriptors: not their own, and not their parent's
    /// (`sys::reopen`), or a comb-shaped tree would hold one per level.
    pub fn descend(&self, name: &OsStr, state: V::State)
    where
        V::State: 's,
    {
        let walk = self.walk;
        let root = self.root.clone();
        let parent = Arc::downgrade(self.parent);
        let rel = self.rel.join(name);
        let name = name.to_owned();
        self.scope.spawn(move |scope| {
            let parent_rel = rel.parent().unwrap_or(Path::new(""));
            let fd = match reopen::open_child(root.as_fd(), &parent, parent_rel, &name) {
                Ok(fd) => Arc::new(fd),
                Err(e) => return walk.visitor.failed(&rel, "".as_ref(), "open directory", &e),
            };
            walk.visit(scope, &root, fd, rel, None, state);
        });
    }
}

impl<'s, V: Visitor> Walk<'s, V> {
    pub fn new(visitor: &'s V, filter: &'s Filter, stats: &'s Stats) -> Walk<'s, V> {
        Walk {
            visitor,
            filter,
            stats,
        }
    }

    /// Walks the tree below the open directory `root`, in the current rayon pool, and
    /// returns when every directory has been visited. With `only`, the root's listing
    /// holds just that entry (a single-file transfer).
    pub fn run(&'s self, root: OwnedFd, only: Option<OsString>, state: V::State)
    where
        V::State: 's,
    {
        let root = Arc::new(root);
        let fd = root.clone();
        rayon::scope(|scope| self.visit(scope, &root, fd, PathBuf::new(), only, state));
    }

    fn visit(
        &'s self,
        scope: &rayon::Scope<'s>,
        root: &Arc<OwnedFd>,
        fd: Arc<OwnedFd>,
        rel: PathBuf,
        only: Option<OsString>,
        state: V::State,
    ) where
        V::State: 's,
    {
        let Some(entries) = self.list(&fd, &rel, only.as_deref()) else {
            return;
        };
        let subdirs = Subdirs {
            walk: self,
            scope,
            root,
            parent: &fd,
            rel: &rel,
        };
        let listed = Listed {
            rel: rel.clone(),
            fd: fd.clone(),
            entries,
        };
        self.visitor.visit(listed, state, &subdirs);
    }

    /// Lists, filters and sorts one directory. `None` if it could not be read.
    fn list(&self, fd: &OwnedFd, rel: &Path, only: Option<&OsStr>) -> Option<Vec<Entry>> {
        let listing = match only {
            Some(name) => dir::stat_at(fd.as_fd(), name).map(|e| dir::Listing {
                entries: vec![e],
                errors: Vec::new(),
            }),
            None => dir::list(fd.as_fd()),
        };
        let listing = match listing {
            Ok(l) => l,
            Err(e) => {
                self.visitor.failed(rel, "".as_ref(), "read directory", &e);
                return None;
            }
        };
        for (name, e) in &listing.errors {
            self.visitor.failed(rel, name, "stat", e);
        }
        let mut entries = listing.entries;
        if !self.filter.is_empty() {
            entries.retain(|e| !self.filter.excludes(&rel.join(&e.name), e.is_dir()));
        }
        sort_by_name(&mut entries);
        Stats::add(&self.stats.entries_seen, entries.len() as u64);
        Some(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records every directory's entries; descends into every subdirectory.
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<(PathBuf, Vec<OsString>)>>,
    }

    impl Visitor for Recorder {
        type State = ();

        fn visit<'s>(&'s self, dir: Listed, _: (), subdirs: &Subdirs<'_, 's, Self>) {
            for e in dir.entries.iter().filter(|e| e.is_dir()) {
                subdirs.descend(&e.name, ());
            }
            let names = dir.entries.into_iter().map(|e| e.name).collect();
            self.seen.lock().unwrap().push((dir.rel, names));
        }

        fn failed(&self, rel: &Path, _: &OsStr, op: &'static str, e: &io::Error) {
            panic!("{op} {rel:?}: {e}");
        }
    }

    #[test]
    fn walks_every_directory_in_parallel_without_following_symlinks() {
        use std::os::unix::ffi::OsStrExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for d in 0..20 {
            std::fs::create_dir_all(root.join(format!("d{d:02}/sub"))).unwrap();
            std::fs::write(root.join(format!("d{d:02}/sub/f")), b"x").unwrap();
        }
        let odd = OsStr::from_bytes(b"\xff-name");
        std::fs::write(root.join(odd), b"x").unwrap();
        std::os::unix::fs::symlink(root.join("d00"), root.join("link")).unwrap();
        std::fs::write(root.join("skip.log"), b"x").unwrap();
        let mut filter = Filter::new();
        filter
            .add(crate::filter::RuleKind::Exclude, "*.log")
            .unwrap();

        let recorder = Recorder::default();
        let stats = Stats::default();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            Walk::new(&recorder, &filter, &stats).run(dir::open_root(root).unwrap(), None, ())
        });

        let mut seen = recorder.seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen.len(), 1 + 20 + 20, "root, d*, d*/sub");
        let (rel, names) = &seen[0];
        assert_eq!(rel, Path::new(""));
        assert_eq!(
            names.len(),
            22,
            "20 dirs, the odd name and the link; not the excluded log"
        );
        assert_eq!(names[21].as_bytes(), b"\xff-name", "sorted by bytes");
        assert!(
            seen.iter().all(|(rel, _)| !rel.starts_with("link")),
            "symlink not followed"
        );
        assert_eq!(
            stats
                .entries_seen
                .load(std::sync::atomic::Ordering::Relaxed),
            22 + 20 + 20
        );
    }
}
